import AsyncHTTPClient
import FoundationEssentials
import Glibc
import HTTPTransport
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NodeprofCore
import Synchronization

/// A typed Kubernetes API client for any resource, built-in or custom: GET, paged and
/// streamed LIST, WATCH, and create, update (PUT), patch (merge, JSON, strategic merge,
/// server-side apply) and delete, of objects and of their subresources (`status`). Bearer
/// tokens follow file rotation.
///
/// Requests name a ``KubernetesResource`` (group, version, plural, scope), or a raw path.
/// Replies are untrusted: a non-watch body is capped at ``maxResponseBytes``, one list item
/// or watch event at ``KubernetesWatchStream/defaultMaxEventBytes``, and LIST bodies are
/// decoded item by item as they arrive (``listEach(_:path:query:limit:onRequest:onPage:_:)``).
/// Every failure is a ``KubernetesAPIError`` whose message says what to do (or
/// `CancellationError` when the calling task is cancelled).
///
/// Connections are pooled (keep-alive). A server or load balancer closes idle ones, and a
/// request can cross the close on the wire: a read (GET, LIST, WATCH) whose connection closes
/// before any response byte is sent again once, on a new connection. Writes are never
/// resent: the server may have applied them.
///
/// The HTTP client is created by the first request; call ``shutdown()`` once done with a
/// client that made requests.
public final class KubernetesClient: Sendable {
    /// Largest non-watch, non-list response body.
    public static let maxResponseBytes = 64 << 20
    /// Largest error body read for its message.
    static let maxErrorBodyBytes = 64 << 10

    /// Counters of one client (all its users).
    public struct Statistics: Sendable, Hashable {
        /// Requests sent, a retry counting again.
        public var requests = 0
        /// Reads sent again on a new connection because their pooled connection closed
        /// before the response.
        public var retriedOnNewConnection = 0
    }

    public let configuration: KubernetesClientConfiguration
    let logger: Logger
    private let http: LazyHTTPClient
    private let token: BearerTokenSource
    private let counters = Mutex(Statistics())

    /// Loads the TLS material (files are read now, so a wrong path fails at startup).
    public init(
        configuration: KubernetesClientConfiguration, logger: Logger = Logger(label: "nodeprof.kubernetes")
    ) throws(KubernetesConfigurationError) {
        guard configuration.server.hasPrefix("https://") || configuration.server.hasPrefix("http://") else {
            throw .invalidServer(
                source: "the configuration", server: configuration.server, problem: "is not an http(s) URL")
        }
        self.configuration = configuration
        self.logger = logger
        token = BearerTokenSource(configuration.credentials, refreshInterval: configuration.tokenRefreshInterval)

        var tlsConfiguration: TLSConfiguration?
        if configuration.server.hasPrefix("https://") {
            do {
                tlsConfiguration = try TLSMaterial(configuration.tls.settings).makeConfiguration()
            } catch {
                throw Self.configurationError(error)
            }
        }
        http = LazyHTTPClient(
            tls: tlsConfiguration, connectTimeout: min(configuration.requestTimeout, .seconds(10)),
            readTimeout: configuration.readIdleTimeout)
    }

    /// Requests sent so far (each page and each watch counts once, a retry again).
    public var requestsSent: Int { counters.withLock { $0.requests } }

    public var statistics: Statistics { counters.withLock { $0 } }

    /// Closes the connections. Requests after this fail with ``KubernetesAPIError/connectionFailed(server:reason:)``.
    public func shutdown() async {
        await http.shutdown()
    }

    // MARK: Reading

    /// GET `path` (e.g. `/api/v1/namespaces/default/pods/web-0`) decoded as `T`.
    public func get<T: Decodable>(
        _ type: T.Type = T.self, path: String, query: [String: String] = [:]
    ) async throws -> T {
        let body = try await fetch(Request(method: .GET, path: path, query: query, verb: "get"))
        return try Self.decode(T.self, from: body, path: path)
    }

    /// GET one object of `resource` (or its `subresource`).
    public func get<T: Decodable>(
        _ resource: KubernetesResource, name: String, namespace: String? = nil, subresource: String? = nil,
        as type: T.Type = T.self
    ) async throws -> T {
        try await get(T.self, path: try resource.objectPath(name: name, namespace: namespace, subresource: subresource))
    }

    /// LIST `path` (e.g. `/api/v1/pods`) page by page (`limit` objects per request, following
    /// `continue`): every object and the list's resourceVersion, the point to watch from.
    ///
    /// Items that fail to decode as `T` are skipped (logged at debug). An expired `continue`
    /// token (410 mid-list) restarts the list from scratch, up to three times.
    public func list<T: KubernetesObject>(
        _ type: T.Type = T.self, path: String, query: [String: String] = [:], limit: Int = 500
    ) async throws -> (items: [T], resourceVersion: String) {
        var restarts = 0
        while true {
            do {
                let result = try await listAll(T.self, path: path, query: query, limit: limit)
                return (result.items, result.resourceVersion)
            } catch KubernetesAPIError.expired(let path, let message) where restarts < 3 {
                restarts += 1
                logger.debug("list \(path) expired mid-list (\(message)); listing again from scratch")
            }
        }
    }

    /// LIST the objects of `resource` in `namespace` (nil: every namespace, or the cluster).
    public func list<T: KubernetesObject>(
        _ resource: KubernetesResource, namespace: String? = nil, query: [String: String] = [:], limit: Int = 500,
        as type: T.Type = T.self
    ) async throws -> (items: [T], resourceVersion: String) {
        try await list(T.self, path: try resource.collectionPath(namespace: namespace), query: query, limit: limit)
    }

    /// A complete LIST collected in memory, decoded item by item as it streams. An expired
    /// continue token throws ``KubernetesAPIError/expired(path:message:)`` (the caller starts
    /// again).
    func listAll<T: KubernetesObject>(
        _ type: T.Type, path: String, query: [String: String], limit: Int,
        onRequest: () -> Void = {}, onPage: (Int) -> Void = { _ in }
    ) async throws -> ListPage<T> {
        var all = ListPage<T>(items: [], resourceVersion: "", undecodable: [])
        all.resourceVersion = try await listEach(
            T.self, path: path, query: query, limit: limit, onRequest: onRequest, onPage: onPage
        ) { item in
            switch item {
            case .success(let object): all.items.append(object)
            case .failure(let failure): all.undecodable.append(failure.reason)
            }
        }
        return all
    }

    /// LIST `path` page by page and hand over each item as soon as its bytes have arrived:
    /// neither a page's body nor the list is ever held whole. Returns the list's
    /// resourceVersion (the first page's: the snapshot the continue tokens read from).
    ///
    /// `body` gets each item decoded as `T`, or why it did not decode (an item that is not
    /// an object, too large, or not a `T`). `onRequest` is called before each page's
    /// request, `onPage` after each page with its number (1 for the first). An expired
    /// continue token throws ``KubernetesAPIError/expired(path:message:)``: the items handed
    /// over so far are from an abandoned list, and the caller starts again.
    public func listEach<T: KubernetesObject>(
        _ type: T.Type, path: String, query: [String: String] = [:], limit: Int = 500,
        maxItemBytes: Int = KubernetesWatchStream.defaultMaxEventBytes,
        onRequest: () -> Void = {}, onPage: (Int) -> Void = { _ in },
        _ body: (Result<T, DecodeFailure>) throws -> Void
    ) async throws -> String {
        var resourceVersion = ""
        var continueToken: String?
        var pages = 0
        let decoder = JSONDecoder()
        repeat {
            var pageQuery = query
            if limit > 0 { pageQuery["limit"] = String(limit) }
            if let continueToken { pageQuery["continue"] = continueToken }
            onRequest()
            let response = try await send(Request(method: .GET, path: path, query: pageQuery, verb: "list"))
            try checkJSONContent(response, path: path)
            var framer = JSONListItemFramer(maxItemBytes: maxItemBytes)
            var chunks = response.body.makeAsyncIterator()
            while true {
                let chunk: ByteBuffer?
                do {
                    chunk = try await chunks.next()
                } catch {
                    throw Self.transportError(error, path: path, server: configuration.server, phase: .body)
                }
                guard let chunk else { break }
                for frame in framer.feed(chunk.readableBytesView) {
                    switch frame {
                    case .item(let bytes):
                        let item: Result<T, DecodeFailure>
                        do {
                            item = .success(try decoder.decode(T.self, from: Data(bytes)))
                        } catch {
                            item = .failure(DecodeFailure(reason: "\(error)".boundedForMessage(limit: 300)))
                        }
                        try body(item)
                    case .oversized(let count):
                        try body(
                            .failure(
                                DecodeFailure(reason: "an item of \(count) bytes, over the \(maxItemBytes) byte limit"))
                        )
                    case .notAnObject(let count):
                        try body(.failure(DecodeFailure(reason: "an item of \(count) bytes that is not a JSON object")))
                    }
                }
                if let problem = framer.problem {
                    throw KubernetesAPIError.malformedJSON(path: path, reason: problem)
                }
            }
            framer.finish()
            if let problem = framer.problem { throw KubernetesAPIError.malformedJSON(path: path, reason: problem) }
            let metadata = try framer.metadata.map { try Self.decode(ListMeta.self, from: $0, path: path) }
            pages += 1
            onPage(pages)
            // Every page carries the list's resourceVersion; the first page's is the
            // snapshot the continue tokens read from.
            if resourceVersion.isEmpty { resourceVersion = metadata?.resourceVersion ?? "" }
            continueToken = metadata?.continue.flatMap { $0.isEmpty ? nil : $0 }
        } while continueToken != nil
        guard !resourceVersion.isEmpty else {
            throw KubernetesAPIError.malformedJSON(
                path: path, reason: "the list has no metadata.resourceVersion to watch from")
        }
        return resourceVersion
    }

    /// Starts a WATCH of `path` from `resourceVersion` and returns once the server accepted
    /// it (a 2xx head); the events follow as framed JSON objects, raw. `timeoutSeconds` asks
    /// the server to end the watch (normally) after that long. A 410 (the version is too old)
    /// throws ``KubernetesAPIError/expired(path:message:)``: list again.
    public func watch(
        path: String, query: [String: String] = [:], resourceVersion: String?, timeoutSeconds: Int?,
        allowBookmarks: Bool = true, maxEventBytes: Int = KubernetesWatchStream.defaultMaxEventBytes
    ) async throws -> KubernetesWatchStream {
        var watchQuery = query
        watchQuery["watch"] = "1"
        if let resourceVersion { watchQuery["resourceVersion"] = resourceVersion }
        if allowBookmarks { watchQuery["allowWatchBookmarks"] = "true" }
        if let timeoutSeconds { watchQuery["timeoutSeconds"] = String(timeoutSeconds) }
        let response = try await send(Request(method: .GET, path: path, query: watchQuery, verb: "watch"))
        try checkJSONContent(response, path: path)
        return KubernetesWatchStream(
            body: response.body, path: path, server: configuration.server, maxEventBytes: maxEventBytes)
    }

    /// WATCH the objects of `resource` in `namespace` (nil: every namespace, or the cluster).
    public func watch(
        _ resource: KubernetesResource, namespace: String? = nil, query: [String: String] = [:],
        resourceVersion: String?, timeoutSeconds: Int?, allowBookmarks: Bool = true
    ) async throws -> KubernetesWatchStream {
        try await watch(
            path: try resource.collectionPath(namespace: namespace), query: query, resourceVersion: resourceVersion,
            timeoutSeconds: timeoutSeconds, allowBookmarks: allowBookmarks)
    }

    // MARK: Writing

    /// POST `object` to the collection of `resource` in `namespace`; answers the created
    /// object as `R`. A taken name is ``KubernetesAPIError/alreadyExists(path:message:)``.
    public func create<R: Decodable>(
        _ object: some Encodable, in resource: KubernetesResource, namespace: String? = nil,
        fieldManager: String? = nil, as type: R.Type = R.self
    ) async throws -> R {
        let path = try resource.collectionPath(namespace: namespace)
        var query: [String: String] = [:]
        if let fieldManager { query["fieldManager"] = fieldManager }
        return try await write(
            R.self,
            Request(
                method: .POST, path: path, query: query, verb: "create",
                body: try Self.encoded(object, path: path), contentType: "application/json"))
    }

    /// PUT `object` over object `name` (or its `subresource`): a replace that the server
    /// accepts only if `metadata.resourceVersion` is still current; otherwise
    /// ``KubernetesAPIError/conflict(path:message:)``: read again and retry.
    public func update<R: Decodable>(
        _ object: some Encodable, _ resource: KubernetesResource, name: String, namespace: String? = nil,
        subresource: String? = nil, fieldManager: String? = nil, as type: R.Type = R.self
    ) async throws -> R {
        let path = try resource.objectPath(name: name, namespace: namespace, subresource: subresource)
        var query: [String: String] = [:]
        if let fieldManager { query["fieldManager"] = fieldManager }
        return try await write(
            R.self,
            Request(
                method: .PUT, path: path, query: query, verb: "update", body: try Self.encoded(object, path: path),
                contentType: "application/json"))
    }

    /// PUT of the `status` subresource: only `status` changes (RBAC: `update` on
    /// `<plural>/status`).
    public func updateStatus<R: Decodable>(
        _ object: some Encodable, _ resource: KubernetesResource, name: String, namespace: String? = nil,
        fieldManager: String? = nil, as type: R.Type = R.self
    ) async throws -> R {
        try await update(
            object, resource, name: name, namespace: namespace, subresource: "status", fieldManager: fieldManager,
            as: R.self)
    }

    /// PATCH object `name` (or its `subresource`) with `patch`; answers the patched object.
    public func patch<R: Decodable>(
        _ resource: KubernetesResource, name: String, namespace: String? = nil, subresource: String? = nil,
        _ patch: KubernetesPatch, as type: R.Type = R.self
    ) async throws -> R {
        let path = try resource.objectPath(name: name, namespace: namespace, subresource: subresource)
        return try await write(
            R.self,
            Request(
                method: .PATCH, path: path, query: patch.query, verb: "patch", body: patch.body,
                contentType: patch.contentType))
    }

    /// PATCH of the `status` subresource (RBAC: `patch` on `<plural>/status`).
    public func patchStatus<R: Decodable>(
        _ resource: KubernetesResource, name: String, namespace: String? = nil, _ patch: KubernetesPatch,
        as type: R.Type = R.self
    ) async throws -> R {
        try await self.patch(resource, name: name, namespace: namespace, subresource: "status", patch, as: R.self)
    }

    /// DELETE object `name`. With `preconditions`, the server deletes only that object
    /// (uid) in that version (resourceVersion), else answers 409. A missing object is
    /// ``KubernetesAPIError/notFound(path:message:)``.
    public func delete(
        _ resource: KubernetesResource, name: String, namespace: String? = nil,
        preconditions: DeletePreconditions? = nil
    ) async throws {
        let path = try resource.objectPath(name: name, namespace: namespace)
        var body: [UInt8]?
        if let preconditions {
            body = try Self.encoded(DeleteOptions(preconditions: preconditions), path: path)
        }
        _ = try await fetch(
            Request(
                method: .DELETE, path: path, query: [:], verb: "delete", body: body,
                contentType: body == nil ? nil : "application/json"))
    }

    /// `DeleteOptions.preconditions`.
    public struct DeletePreconditions: Sendable, Hashable, Encodable {
        public var uid: String?
        public var resourceVersion: String?

        public init(uid: String? = nil, resourceVersion: String? = nil) {
            self.uid = uid
            self.resourceVersion = resourceVersion
        }
    }

    private struct DeleteOptions: Encodable {
        var kind = "DeleteOptions"
        var apiVersion = "v1"
        var preconditions: DeletePreconditions
    }

    // MARK: Internals

    /// One API request.
    struct Request {
        var method: HTTPMethod
        var path: String
        var query: [String: String]
        /// The RBAC verb, for a 403's message.
        var verb: String
        var body: [UInt8]?
        var contentType: String?

        /// Reads can be sent again safely; writes cannot (the server may have applied them).
        var isRead: Bool { method == .GET }
    }

    private func write<R: Decodable>(_ type: R.Type, _ request: Request) async throws -> R {
        let body = try await fetch(request)
        return try Self.decode(R.self, from: body, path: request.path)
    }

    /// A request whose whole body is read (capped), checked to be JSON.
    private func fetch(_ request: Request) async throws -> [UInt8] {
        let response = try await send(request)
        try checkJSONContent(response, path: request.path)
        return try await Self.collect(
            response.body, limit: Self.maxResponseBytes, path: request.path, server: configuration.server)
    }

    /// Sends a request and returns a 2xx response; any other status becomes its error (a
    /// 401 also makes the next request re-read the token file). A read whose connection
    /// closes before the response is sent again once on a new connection.
    private func send(_ request: Request) async throws -> HTTPClientResponse {
        guard let pooled = http.client() else {
            throw KubernetesAPIError.connectionFailed(server: configuration.server, reason: "the client is shut down")
        }
        var httpRequest = HTTPClientRequest(url: configuration.server + request.path + Self.queryString(request.query))
        httpRequest.method = request.method
        httpRequest.headers.add(name: "accept", value: "application/json")
        httpRequest.headers.add(name: "user-agent", value: "nodeprof")
        if let contentType = request.contentType { httpRequest.headers.add(name: "content-type", value: contentType) }
        if let body = request.body { httpRequest.body = .bytes(body) }
        if let token = try token.token() {
            httpRequest.headers.add(name: "authorization", value: "Bearer \(token)")
        }
        let timeout = TimeAmount.nanoseconds(configuration.requestTimeout.saturatingNanoseconds)

        counters.withLock { $0.requests += 1 }
        let response: HTTPClientResponse
        do {
            response = try await pooled.execute(httpRequest, timeout: timeout, logger: nil)
        } catch  where Self.isClosedBeforeResponse(error) && !Task.isCancelled {
            guard request.isRead, let fresh = http.freshConnectionClient() else {
                throw KubernetesAPIError.connectionClosedBeforeResponse(
                    path: request.path, method: request.method.rawValue, retried: false,
                    reason: Self.reason(error))
            }
            // The server closed the pooled connection as the request went out (an idle
            // timeout racing the reuse): not a failure of the server, so no backoff; the
            // retry is on a connection opened for it.
            counters.withLock {
                $0.requests += 1
                $0.retriedOnNewConnection += 1
            }
            logger.debug(
                "the API server closed a pooled connection before answering; sending again on a new connection",
                metadata: ["path": "\(request.path)", "error": "\(Self.reason(error))"])
            do {
                response = try await fresh.execute(httpRequest, timeout: timeout, logger: nil)
            } catch  where Self.isClosedBeforeResponse(error) {
                throw KubernetesAPIError.connectionClosedBeforeResponse(
                    path: request.path, method: request.method.rawValue, retried: true, reason: Self.reason(error))
            } catch {
                throw Self.transportError(error, path: request.path, server: configuration.server, phase: .request)
            }
        } catch {
            throw Self.transportError(error, path: request.path, server: configuration.server, phase: .request)
        }
        let status = Int(response.status.code)
        if (200..<300).contains(status) { return response }

        let body = (try? await Self.collectPrefix(response.body, limit: Self.maxErrorBodyBytes)) ?? []
        if status == 401 { token.invalidate() }
        throw Self.statusError(
            status: status, path: request.path, verb: request.verb, body: body,
            retryAfter: response.headers.first(name: "retry-after"))
    }

    private func checkJSONContent(_ response: HTTPClientResponse, path: String) throws {
        guard let contentType = response.headers.first(name: "content-type") else { return }
        let mediaType = contentType.split(separator: ";").first.map {
            String($0).trimmingASCIIWhitespace().lowercased()
        }
        guard let mediaType, mediaType == "application/json" || mediaType.hasSuffix("+json") else {
            throw KubernetesAPIError.unexpectedContent(
                path: path, contentType: contentType.boundedForMessage(limit: 100), reason: "expected application/json")
        }
    }

    private static func encoded(_ object: some Encodable, path: String) throws(KubernetesAPIError) -> [UInt8] {
        do {
            return try KubernetesPatch.encodedJSON(object)
        } catch {
            throw .invalidRequest(path: path, reason: "the object does not encode as JSON")
        }
    }

    /// The client's wording of a TLS setup problem.
    private static func configurationError(_ error: TLSSetupError) -> KubernetesConfigurationError {
        switch error {
        case .unreadableFile(let role, let path, let readError):
            return .unreadableFile(path: path, what: role.rawValue, problem: readError.description)
        case .notPEM(let role, _):
            return .invalidTLS(problem: "the \(role.rawValue) is not PEM (no \"-----BEGIN\" line)")
        case .invalidCertificateAuthority, .invalidClientCertificateOrKey:
            return .invalidTLS(problem: error.description)
        }
    }

    /// `?k=v&...` with keys sorted (stable URLs for logs and tests), values percent-encoded.
    static func queryString(_ query: [String: String]) -> String {
        guard !query.isEmpty else { return "" }
        return "?"
            + query.sorted { $0.key < $1.key }.map { "\(percentEncoded($0.key))=\(percentEncoded($0.value))" }
            .joined(separator: "&")
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters.
    static func percentEncoded(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xf)]))
            }
        }
        return result
    }

    /// Reads a whole body; more than `limit` bytes is ``KubernetesAPIError/responseTooLarge(path:limit:)``.
    static func collect(
        _ body: HTTPClientResponse.Body, limit: Int, path: String, server: String
    ) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        do {
            for try await buffer in body {
                guard bytes.count + buffer.readableBytes <= limit else {
                    throw KubernetesAPIError.responseTooLarge(path: path, limit: limit)
                }
                bytes.append(contentsOf: buffer.readableBytesView)
            }
        } catch let error as KubernetesAPIError {
            throw error
        } catch {
            throw transportError(error, path: path, server: server, phase: .body)
        }
        return bytes
    }

    /// The first `limit` bytes of a body (the rest is abandoned).
    private static func collectPrefix(_ body: HTTPClientResponse.Body, limit: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await buffer in body {
            bytes.append(contentsOf: buffer.readableBytesView.prefix(limit - bytes.count))
            if bytes.count >= limit { break }
        }
        return bytes
    }

    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8], path: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch {
            throw KubernetesAPIError.malformedJSON(path: path, reason: "\(error)".boundedForMessage(limit: 300))
        }
    }

    /// Where a transport error happened: before the response head, or in its body.
    enum TransportPhase {
        case request
        case body
    }

    /// True for the errors of a connection that closed before the response: the server (or
    /// a proxy) closed it, typically an idle keep-alive connection reused as it closed.
    static func isClosedBeforeResponse(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            return error == .remoteConnectionClosed
        }
        if let error = error as? ChannelError {
            switch error {
            case .ioOnClosedChannel, .eof, .outputClosed, .alreadyClosed: return true
            default: return false
            }
        }
        if let error = error as? IOError {
            return error.errnoCode == ECONNRESET || error.errnoCode == EPIPE
        }
        return false
    }

    /// The error of a request that failed before (`.request`) or while (`.body`) reading
    /// the response.
    static func transportError(_ error: any Error, path: String, server: String, phase: TransportPhase) -> any Error {
        if error is CancellationError { return error }
        if let error = error as? KubernetesAPIError { return error }
        if let httpError = error as? HTTPClientError {
            switch httpError {
            case .cancelled, .requestStreamCancelled:
                return CancellationError()
            case .deadlineExceeded:
                return KubernetesAPIError.timedOut(path: path, reason: "no response within the request timeout")
            case .readTimeout:
                return KubernetesAPIError.timedOut(path: path, reason: "no data within the read idle timeout")
            case .connectTimeout:
                return KubernetesAPIError.connectionFailed(server: server, reason: "connect timed out")
            case .tlsHandshakeTimeout:
                return KubernetesAPIError.tlsFailed(server: server, reason: "the TLS handshake timed out")
            default:
                break
            }
        }
        let reason = Self.reason(error)
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return KubernetesAPIError.tlsFailed(server: server, reason: reason)
        }
        if phase == .body {
            return KubernetesAPIError.streamInterrupted(path: path, reason: reason)
        }
        if isClosedBeforeResponse(error) {
            return KubernetesAPIError.connectionClosedBeforeResponse(
                path: path, method: "GET", retried: false, reason: reason)
        }
        // Refused, unreachable, DNS, connect timeout: no connection was made.
        return KubernetesAPIError.connectionFailed(server: server, reason: reason)
    }

    static func reason(_ error: any Error) -> String {
        String(describing: error).boundedForMessage(limit: 300)
    }

    /// The error for a non-2xx status, with the `Status` message of the body when it has one.
    static func statusError(
        status: Int, path: String, verb: String, body: [UInt8], retryAfter: String?
    ) -> KubernetesAPIError {
        let apiStatus = try? JSONDecoder().decode(APIStatus.self, from: Data(body))
        let text =
            apiStatus?.message
            ?? String(decoding: body.prefix(1024), as: UTF8.self).trimmingASCIIWhitespace()
        let message = (text.isEmpty ? "no message" : text).boundedForMessage()
        let delay = retryAfter.flatMap { Int($0.trimmingASCIIWhitespace()) }.map { Duration.seconds(max(0, $0)) }
        switch status {
        case 400:
            return .badRequest(path: path, message: message)
        case 401:
            return .unauthorized(path: path, message: message)
        case 403:
            let rule = rbacRule(ofPath: path)
            return .forbidden(
                path: path, verb: verb, group: rule.group, resource: rule.resource, namespace: rule.namespace,
                message: message)
        case 404:
            return .notFound(path: path, message: message)
        case 409:
            if apiStatus?.reason == "AlreadyExists" { return .alreadyExists(path: path, message: message) }
            return .conflict(path: path, message: message)
        case 410:
            return .expired(path: path, message: message)
        case 415:
            return .unsupportedMediaType(path: path, message: message)
        case 422:
            return .invalid(path: path, message: message)
        case 429:
            return .tooManyRequests(path: path, retryAfter: delay, message: message)
        case 500..<600:
            return .serverError(path: path, status: status, retryAfter: delay, message: message)
        default:
            if apiStatus?.reason == "Expired" || apiStatus?.reason == "Gone" {
                return .expired(path: path, message: message)
            }
            return .unexpectedStatus(path: path, status: status, message: message)
        }
    }

    /// The RBAC rule a path needs: API group, resource (with its subresource) and
    /// namespace. `/api/v1/namespaces/ns/pods/x` is `pods` of the core group in `ns`;
    /// `/apis/nodeprof.dev/v1alpha1/profilingpolicies/p/status` is
    /// `profilingpolicies/status` of `nodeprof.dev`, cluster-wide.
    static func rbacRule(ofPath path: String) -> (group: String, resource: String, namespace: String?) {
        var parts = path.split(separator: "?").first.map { $0.split(separator: "/").map(String.init) } ?? []
        var group = ""
        if parts.first == "api" {
            parts.removeFirst(min(2, parts.count))
        } else if parts.first == "apis" {
            group = parts.count > 1 ? parts[1] : ""
            parts.removeFirst(min(3, parts.count))
        }
        var namespace: String?
        if parts.count >= 3, parts[0] == "namespaces" {
            namespace = parts[1]
            parts.removeFirst(2)
        }
        var resource = parts.first ?? "namespaces"
        if parts.count >= 3 { resource += "/" + parts[2] }
        return (group, resource, namespace)
    }
}

/// One page of a LIST, and the reasons of items that did not decode.
struct ListPage<T: KubernetesObject> {
    var items: [T]
    var resourceVersion: String
    var undecodable: [String]
}

/// A list reply whose items decode one by one: a bad item is a failure in its place, not
/// the failure of the whole list.
struct LenientList<T: Decodable>: Decodable {
    var metadata: ListMeta?
    var items: [Lenient<T>]?
}

struct Lenient<T: Decodable>: Decodable {
    var value: Result<T, DecodeFailure>

    init(from decoder: any Decoder) {
        do {
            value = .success(try T(from: decoder))
        } catch {
            value = .failure(DecodeFailure(reason: "\(error)".boundedForMessage(limit: 300)))
        }
    }
}

/// Why an item of a list or the object of an event did not decode.
public struct DecodeFailure: Error, Hashable, Sendable {
    public var reason: String
}
