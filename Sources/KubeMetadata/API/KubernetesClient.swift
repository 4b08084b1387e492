import AsyncHTTPClient
import FoundationEssentials
public import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import NodeprofCore
import Synchronization

/// A small Kubernetes API client: GET, paged LIST and WATCH of JSON objects over one shared
/// AsyncHTTPClient, with bearer tokens that follow file rotation.
///
/// Replies are untrusted: a non-watch body is capped at ``maxResponseBytes`` and one watch
/// event at ``KubernetesWatchStream/maxEventBytes``. Every failure is a
/// ``KubernetesAPIError`` (or `CancellationError` when the calling task is cancelled).
///
/// The HTTP client is created by the first request; call ``shutdown()`` once done with a
/// client that made requests.
public final class KubernetesClient: Sendable {
    /// Largest non-watch response body: a page of 500 pods with managed fields is a few MiB.
    public static let maxResponseBytes = 64 << 20
    /// Largest error body read for its message.
    static let maxErrorBodyBytes = 64 << 10

    private enum Client {
        case notCreated
        case running(HTTPClient)
        case shutDown
    }

    public let configuration: KubernetesClientConfiguration
    let logger: Logger
    private let client = Mutex(Client.notCreated)
    private let clientConfiguration: HTTPClient.Configuration
    private let token: BearerTokenSource
    private let requestCount = Atomic<Int>(0)

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
            tlsConfiguration = try Self.tlsConfiguration(configuration.tls)
        }
        var clientConfiguration = HTTPClient.Configuration(
            tlsConfiguration: tlsConfiguration, redirectConfiguration: .disallow,
            timeout: .init(
                connect: .nanoseconds(min(configuration.requestTimeout, .seconds(10)).nanoseconds),
                read: .nanoseconds(configuration.readIdleTimeout.nanoseconds)))
        clientConfiguration.decompression = .disabled
        // A connection that cannot be made fails the request at once: the caller's backoff
        // paces reconnection and counts it.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        self.clientConfiguration = clientConfiguration
    }

    /// Requests sent so far (each page and each watch counts once).
    public var requestsSent: Int { requestCount.load(ordering: .relaxed) }

    /// Closes the connections. Requests after this fail with ``KubernetesAPIError/connectionFailed(server:reason:)``.
    public func shutdown() async {
        let running = client.withLock { client in
            defer { client = .shutDown }
            guard case .running(let httpClient) = client else { return nil as HTTPClient? }
            return httpClient
        }
        try? await running?.shutdown()
    }

    // MARK: Requests

    /// GET `path` (e.g. `/api/v1/namespaces/default/pods/web-0`) decoded as `T`.
    public func get<T: Decodable>(
        _ type: T.Type = T.self, path: String, query: [String: String] = [:]
    ) async throws -> T {
        let body = try await fetch(path: path, query: query, verb: "get")
        return try Self.decode(T.self, from: body, path: path)
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

    /// A complete LIST. An expired continue token throws ``KubernetesAPIError/expired(path:message:)``
    /// (the caller starts again); `onRequest` is called before each page's request, `onPage`
    /// with each page received.
    func listAll<T: KubernetesObject>(
        _ type: T.Type, path: String, query: [String: String], limit: Int,
        onRequest: () -> Void = {}, onPage: (ListPage<T>) -> Void = { _ in }
    ) async throws -> ListPage<T> {
        var all = ListPage<T>(items: [], resourceVersion: "", undecodable: [])
        var continueToken: String?
        repeat {
            var pageQuery = query
            if limit > 0 { pageQuery["limit"] = String(limit) }
            if let continueToken { pageQuery["continue"] = continueToken }
            onRequest()
            let body = try await fetch(path: path, query: pageQuery, verb: "list")
            let list = try Self.decode(LenientList<T>.self, from: body, path: path)
            var page = ListPage<T>(items: [], resourceVersion: list.metadata?.resourceVersion ?? "", undecodable: [])
            for item in list.items ?? [] {
                switch item.value {
                case .success(let object): page.items.append(object)
                case .failure(let failure): page.undecodable.append(failure.reason)
                }
            }
            onPage(page)
            all.items += page.items
            all.undecodable += page.undecodable
            // Every page carries the list's resourceVersion; the first page's is the
            // snapshot the continue tokens read from.
            if all.resourceVersion.isEmpty { all.resourceVersion = page.resourceVersion }
            continueToken = list.metadata?.continue.flatMap { $0.isEmpty ? nil : $0 }
        } while continueToken != nil
        guard !all.resourceVersion.isEmpty else {
            throw KubernetesAPIError.malformedJSON(
                path: path, reason: "the list has no metadata.resourceVersion to watch from")
        }
        return all
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
        let response = try await send(path: path, query: watchQuery, verb: "watch")
        try checkJSONContent(response, path: path)
        return KubernetesWatchStream(
            body: response.body, path: path, server: configuration.server, maxEventBytes: maxEventBytes)
    }

    // MARK: Internals

    /// A request whose whole body is read (capped), checked to be JSON.
    private func fetch(path: String, query: [String: String], verb: String) async throws -> [UInt8] {
        let response = try await send(path: path, query: query, verb: verb)
        try checkJSONContent(response, path: path)
        return try await Self.collect(
            response.body, limit: Self.maxResponseBytes, path: path, server: configuration.server)
    }

    /// Sends a GET and returns a 2xx response; any other status becomes its error (a 401
    /// also makes the next request re-read the token file).
    private func send(path: String, query: [String: String], verb: String) async throws -> HTTPClientResponse {
        guard let httpClient = currentClient() else {
            throw KubernetesAPIError.connectionFailed(server: configuration.server, reason: "the client is shut down")
        }
        var request = HTTPClientRequest(url: configuration.server + path + Self.queryString(query))
        request.method = .GET
        request.headers.add(name: "accept", value: "application/json")
        request.headers.add(name: "user-agent", value: "nodeprof")
        if let token = try token.token() {
            request.headers.add(name: "authorization", value: "Bearer \(token)")
        }
        requestCount.add(1, ordering: .relaxed)

        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(
                request, timeout: .nanoseconds(configuration.requestTimeout.nanoseconds), logger: nil)
        } catch {
            throw Self.transportError(error, path: path, server: configuration.server)
        }
        let status = Int(response.status.code)
        if (200..<300).contains(status) { return response }

        let body = (try? await Self.collectPrefix(response.body, limit: Self.maxErrorBodyBytes)) ?? []
        if status == 401 { token.invalidate() }
        throw Self.statusError(
            status: status, path: path, verb: verb, body: body, retryAfter: response.headers.first(name: "retry-after"))
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

    private func currentClient() -> HTTPClient? {
        client.withLock { client in
            switch client {
            case .notCreated:
                let httpClient = HTTPClient(
                    eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: clientConfiguration)
                client = .running(httpClient)
                return httpClient
            case .running(let httpClient):
                return httpClient
            case .shutDown:
                return nil
            }
        }
    }

    private static func tlsConfiguration(
        _ tls: KubernetesClientConfiguration.TLS
    ) throws(KubernetesConfigurationError) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        let authority = try tls.certificateAuthority.map { source throws(KubernetesConfigurationError) in
            try pemBytes(source, what: "CA certificate")
        }
        let certificate = try tls.clientCertificate.map { source throws(KubernetesConfigurationError) in
            try pemBytes(source, what: "client certificate")
        }
        let key = try tls.clientKey.map { source throws(KubernetesConfigurationError) in
            try pemBytes(source, what: "client key")
        }
        do {
            if let authority {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(authority))
            }
        } catch {
            throw .invalidTLS(problem: "the CA certificate is not a valid PEM certificate (\(error))")
        }
        do {
            if let certificate, let key {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificate).map {
                    .certificate($0)
                }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: key, format: .pem))
            }
        } catch {
            throw .invalidTLS(problem: "the client certificate or key is not valid PEM (\(error)); check they match")
        }
        if tls.insecureSkipVerify { configuration.certificateVerification = .none }
        return configuration
    }

    private static func pemBytes(
        _ source: KubernetesClientConfiguration.PEMSource, what: String
    ) throws(KubernetesConfigurationError) -> [UInt8] {
        let bytes: [UInt8]
        switch source {
        case .data(let data):
            bytes = data
        case .file(let path):
            do {
                bytes = try FileContents.read(path, limit: 1 << 20)
            } catch {
                throw .unreadableFile(path: path, what: what, problem: error.description)
            }
        }
        guard String(decoding: bytes.prefix(1 << 20), as: UTF8.self).contains("-----BEGIN ") else {
            throw .invalidTLS(problem: "the \(what) is not PEM (no \"-----BEGIN\" line)")
        }
        return bytes
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
            throw transportError(error, path: path, server: server)
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

    /// The error of a request that failed before or while reading the response.
    static func transportError(_ error: any Error, path: String, server: String) -> any Error {
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
        let reason = String(describing: error).boundedForMessage(limit: 300)
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return KubernetesAPIError.tlsFailed(server: server, reason: reason)
        }
        return KubernetesAPIError.connectionFailed(server: server, reason: reason)
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
        case 401:
            return .unauthorized(path: path, message: message)
        case 403:
            let (resource, namespace) = resource(ofPath: path)
            return .forbidden(path: path, verb: verb, resource: resource, namespace: namespace, message: message)
        case 404:
            return .notFound(path: path, message: message)
        case 410:
            return .expired(path: path, message: message)
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

    /// The resource (with its API group) and namespace a path names, for RBAC messages:
    /// `/api/v1/namespaces/ns/pods/x` is `pods` in `ns`; `/apis/apps/v1/replicasets` is
    /// `replicasets.apps` cluster-wide.
    static func resource(ofPath path: String) -> (resource: String, namespace: String?) {
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
        let resource = parts.first ?? "namespaces"
        return (group.isEmpty ? resource : "\(resource).\(group)", namespace)
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

struct DecodeFailure: Error, Hashable {
    var reason: String
}

extension Duration {
    /// Whole nanoseconds, saturating.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow
            ? (seconds < 0 ? .min : .max) : whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}
