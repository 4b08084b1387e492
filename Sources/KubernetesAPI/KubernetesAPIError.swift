/// A Kubernetes API request that failed; the message says what happened and what to do.
///
/// `path` is the request's path without the query (never a token or a body).
public enum KubernetesAPIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No connection could be made (refused, unreachable, DNS, connect timeout).
    case connectionFailed(server: String, reason: String)
    /// The connection closed before any byte of the response: the server (or a load balancer)
    /// closed a keep-alive connection as the request went out, or dropped it. Reads are
    /// retried once on a fresh connection first (`retried`); other requests are not, since
    /// the server may have applied them.
    case connectionClosedBeforeResponse(path: String, method: String, retried: Bool, reason: String)
    /// The response started and then the connection broke (a server restart, a proxy cutting
    /// a long watch).
    case streamInterrupted(path: String, reason: String)
    /// The TLS handshake failed (untrusted certificate, wrong host name, bad client cert).
    case tlsFailed(server: String, reason: String)
    /// No response head within the request timeout, or silence longer than the read idle
    /// timeout while reading a response.
    case timedOut(path: String, reason: String)
    /// 400: the request itself is wrong (a bad selector, a patch that is not JSON).
    case badRequest(path: String, message: String)
    /// 401: the token is missing, expired or not accepted.
    case unauthorized(path: String, message: String)
    /// 403: RBAC does not allow `verb` on `resource` (with its subresource, e.g.
    /// `profilingpolicies/status`) of API group `group` (`""` is the core group).
    case forbidden(path: String, verb: String, group: String, resource: String, namespace: String?, message: String)
    /// 404.
    case notFound(path: String, message: String)
    /// 409 `AlreadyExists`: a create of a name that is taken.
    case alreadyExists(path: String, message: String)
    /// 409 `Conflict`: an update or patch carried a resourceVersion that is no longer current
    /// (someone else changed the object), or a server-side apply conflicts with another
    /// field manager.
    case conflict(path: String, message: String)
    /// 410: a resourceVersion or continue token too old for the server's history.
    case expired(path: String, message: String)
    /// 415: the server does not accept this patch type for this resource (strategic merge
    /// patches on custom resources).
    case unsupportedMediaType(path: String, message: String)
    /// 422 `Invalid`: the object failed validation; `message` is the server's, with the
    /// fields at fault.
    case invalid(path: String, message: String)
    /// 429: the server asks to slow down, for `retryAfter` when it said.
    case tooManyRequests(path: String, retryAfter: Duration?, message: String)
    /// 5xx; `retryAfter` when the server said (503 often does).
    case serverError(path: String, status: Int, retryAfter: Duration?, message: String)
    /// Another status the client does not expect (3xx, 405, ...).
    case unexpectedStatus(path: String, status: Int, message: String)
    /// A 2xx body that is not the JSON expected.
    case malformedJSON(path: String, reason: String)
    /// A body over the client's limit.
    case responseTooLarge(path: String, limit: Int)
    /// A 2xx reply that is not JSON at all (an HTML proxy page, a wrong endpoint).
    case unexpectedContent(path: String, contentType: String, reason: String)
    /// A request the client refuses to send (an object name that cannot be a path segment,
    /// an object that does not encode).
    case invalidRequest(path: String, reason: String)

    /// The delay the server asked for (429 and 503 with `Retry-After`).
    public var retryAfter: Duration? {
        switch self {
        case .tooManyRequests(_, let delay, _), .serverError(_, _, let delay, _): delay
        default: nil
        }
    }

    /// The HTTP status, when the server answered.
    public var status: Int? {
        switch self {
        case .badRequest: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .alreadyExists, .conflict: 409
        case .expired: 410
        case .unsupportedMediaType: 415
        case .invalid: 422
        case .tooManyRequests: 429
        case .serverError(_, let status, _, _), .unexpectedStatus(_, let status, _): status
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .connectionFailed(let server, let reason):
            return
                "cannot connect to the Kubernetes API server \(server): \(reason); check the server address and that the API server is reachable from this node"
        case .connectionClosedBeforeResponse(let path, let method, let retried, let reason):
            if retried {
                return
                    "Kubernetes API request \(method) \(path): the server closed the connection before answering, twice (the second time on a new connection): \(reason); the server or a proxy in front of it drops requests"
            }
            return
                "Kubernetes API request \(method) \(path): the server closed the connection before answering (\(reason)); the request may or may not have been applied: read the object again before retrying"
        case .streamInterrupted(let path, let reason):
            return
                "Kubernetes API response to \(path) was cut off: the connection broke mid-stream (\(reason)); the server restarted or a proxy closed the connection"
        case .tlsFailed(let server, let reason):
            return
                "TLS with the Kubernetes API server \(server) failed: \(reason); check the CA certificate (ca.crt or certificate-authority) and the server name"
        case .timedOut(let path, let reason):
            return "Kubernetes API request \(path) timed out: \(reason); the API server is slow or unreachable"
        case .badRequest(let path, let message):
            return "Kubernetes API request \(path) is malformed (400): \(message)"
        case .unauthorized(let path, let message):
            return
                "Kubernetes API request \(path) unauthorized (401): \(message); the token is missing, expired or revoked: check the service account token mount or the kubeconfig credentials"
        case .forbidden(let path, let verb, let group, let resource, let namespace, let message):
            let scope = namespace.map { "in namespace \($0)" } ?? "cluster-wide"
            let groupName = group.isEmpty ? "the core API group (\"\")" : "API group \"\(group)\""
            return
                "Kubernetes API request \(path) forbidden (403): RBAC does not allow \"\(verb)\" on \"\(resource)\" of \(groupName) \(scope); add the rule {apiGroups: [\"\(group)\"], resources: [\"\(resource)\"], verbs: [\"\(verb)\"]} to the agent's ClusterRole (or Role) and bind it to its service account; server said: \(message)"
        case .notFound(let path, let message):
            return
                "Kubernetes API request \(path) found nothing (404): \(message); check the name, and that the resource's API group and version are served by this cluster (a custom resource needs its CRD installed)"
        case .alreadyExists(let path, let message):
            return
                "Kubernetes API create \(path) failed (409 AlreadyExists): \(message); get the existing object and update it instead"
        case .conflict(let path, let message):
            return
                "Kubernetes API write \(path) conflicted (409): \(message); the object changed since it was read: read it again, re-apply the change and retry"
        case .expired(let path, let message):
            return "Kubernetes API request \(path) expired (410): \(message); list again from scratch"
        case .unsupportedMediaType(let path, let message):
            return
                "Kubernetes API request \(path) used a content type the server refuses (415): \(message); custom resources accept merge and JSON patches, not strategic merge"
        case .invalid(let path, let message):
            return "Kubernetes API rejected the object at \(path) as invalid (422): \(message); fix the fields it names"
        case .tooManyRequests(let path, let retryAfter, let message):
            let wait = retryAfter.map { ", retry after \($0)" } ?? ""
            return "Kubernetes API request \(path) throttled (429\(wait)): \(message); the API server is overloaded"
        case .serverError(let path, let status, _, let message):
            return
                "Kubernetes API request \(path) failed with server error \(status): \(message); retrying with backoff"
        case .unexpectedStatus(let path, let status, let message):
            return
                "Kubernetes API request \(path) answered HTTP \(status): \(message); check the server URL points at the Kubernetes API, not a proxy"
        case .malformedJSON(let path, let reason):
            return "Kubernetes API reply to \(path) is not the JSON expected: \(reason)"
        case .responseTooLarge(let path, let limit):
            return
                "Kubernetes API reply to \(path) is larger than \(limit) bytes; use a smaller page size (limit) or a narrower selector"
        case .unexpectedContent(let path, let contentType, let reason):
            return
                "Kubernetes API reply to \(path) has content type \"\(contentType)\", not JSON (\(reason)); check the server URL points at the Kubernetes API"
        case .invalidRequest(let path, let reason):
            return "Kubernetes API request \(path) was not sent: \(reason)"
        }
    }
}

extension String {
    /// The string without leading and trailing ASCII whitespace.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0a || $0 == 0x0d }
        let bytes = Array(utf8)
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    /// Text from the network made safe for one log line: at most `limit` characters, control
    /// characters escaped.
    func boundedForMessage(limit: Int = 512) -> String {
        var result = ""
        for scalar in unicodeScalars.prefix(limit) {
            if scalar.value < 0x20 || scalar.value == 0x7f {
                result += scalar == "\n" ? "\\n" : "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        if unicodeScalars.count > limit { result += "…" }
        return result
    }
}
