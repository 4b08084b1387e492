/// A Kubernetes API request that failed; the message says what to do about it.
///
/// `path` is the request's path without the query (never a token or a body).
public enum KubernetesAPIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No connection to the server (refused, reset, DNS, closed before the response).
    case connectionFailed(server: String, reason: String)
    /// The TLS handshake failed (untrusted certificate, wrong host name, bad client cert).
    case tlsFailed(server: String, reason: String)
    /// No response head within the request timeout, or silence longer than the read idle
    /// timeout while reading a response.
    case timedOut(path: String, reason: String)
    /// 401: the token is missing, expired or not accepted.
    case unauthorized(path: String, message: String)
    /// 403: RBAC does not allow `verb` on `resource`.
    case forbidden(path: String, verb: String, resource: String, namespace: String?, message: String)
    /// 404.
    case notFound(path: String, message: String)
    /// 410: a resourceVersion or continue token too old for the server's history.
    case expired(path: String, message: String)
    /// 429: the server asks to slow down, for `retryAfter` when it said.
    case tooManyRequests(path: String, retryAfter: Duration?, message: String)
    /// 5xx; `retryAfter` when the server said (503 often does).
    case serverError(path: String, status: Int, retryAfter: Duration?, message: String)
    /// Another status the client does not expect (3xx, 400, 422, ...).
    case unexpectedStatus(path: String, status: Int, message: String)
    /// A 2xx body that is not the JSON expected.
    case malformedJSON(path: String, reason: String)
    /// A body over the client's limit.
    case responseTooLarge(path: String, limit: Int)
    /// A 2xx reply that is not JSON at all (an HTML proxy page, a wrong endpoint).
    case unexpectedContent(path: String, contentType: String, reason: String)

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
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .expired: 410
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
        case .tlsFailed(let server, let reason):
            return
                "TLS with the Kubernetes API server \(server) failed: \(reason); check the CA certificate (ca.crt or certificate-authority) and the server name"
        case .timedOut(let path, let reason):
            return "Kubernetes API request \(path) timed out: \(reason); the API server is slow or unreachable"
        case .unauthorized(let path, let message):
            return
                "Kubernetes API request \(path) unauthorized (401): \(message); the token is missing, expired or revoked: check the service account token mount or the kubeconfig credentials"
        case .forbidden(let path, let verb, let resource, let namespace, let message):
            let scope = namespace.map { "in namespace \($0)" } ?? "cluster-wide"
            return
                "Kubernetes API request \(path) forbidden (403): RBAC does not allow \"\(verb)\" on \"\(resource)\" \(scope); grant get, list and watch on \(resource) to the agent's service account (its ClusterRole and binding); server said: \(message)"
        case .notFound(let path, let message):
            return
                "Kubernetes API request \(path) found nothing (404): \(message); check the resource's API group and version are served by this cluster"
        case .expired(let path, let message):
            return "Kubernetes API request \(path) expired (410): \(message); list again from scratch"
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
