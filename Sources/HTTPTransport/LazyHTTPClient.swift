public import AsyncHTTPClient
import NIOCore
public import NIOSSL
import Synchronization

/// One AsyncHTTPClient, created by the first request and shut down once: an `HTTPClient`
/// must be shut down before it is released, and a user that never sends a request should
/// hold no client, no connection and need no shutdown.
///
/// Both users (the Kubernetes API client and the OTLP/HTTP exporter) want the same client
/// behaviour: no redirects (a POST body would be resent elsewhere; a Kubernetes redirect is a
/// misconfiguration), no transparent decompression, and a failed connection attempt fails
/// the request at once, so that the caller's own backoff paces reconnection and counts it.
///
/// ``freshConnectionClient()`` is a second client whose connections serve one request each:
/// a request retried on it is guaranteed a new connection, never another pooled one that the
/// server may also have closed.
public final class LazyHTTPClient: Sendable {
    private enum State {
        case notCreated
        case running(HTTPClient)
        case shutDown
    }

    private let shared = Mutex(State.notCreated)
    private let fresh = Mutex(State.notCreated)
    /// The configuration of the shared client.
    public let configuration: HTTPClient.Configuration

    /// `tls` is nil for plain HTTP. `connectTimeout` bounds the TCP connect; `readTimeout`
    /// is the longest silence while a response is expected or streams.
    public init(tls: TLSConfiguration?, connectTimeout: Duration, readTimeout: Duration) {
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow,
            timeout: .init(
                connect: .nanoseconds(connectTimeout.saturatingNanoseconds),
                read: .nanoseconds(readTimeout.saturatingNanoseconds)))
        configuration.decompression = .disabled
        configuration.connectionPool.retryConnectionEstablishment = false
        self.configuration = configuration
    }

    /// The shared client (pooled keep-alive connections), created now if needed; nil after
    /// ``shutdown()``.
    public func client() -> HTTPClient? {
        Self.current(shared, configuration: configuration)
    }

    /// A client that opens a new connection for every request; nil after ``shutdown()``.
    public func freshConnectionClient() -> HTTPClient? {
        Self.current(fresh, configuration: freshConnectionConfiguration)
    }

    /// The configuration of the fresh-connection client: the shared one, one request per
    /// connection.
    public var freshConnectionConfiguration: HTTPClient.Configuration {
        var configuration = configuration
        configuration.maximumUsesPerConnection = 1
        return configuration
    }

    /// Whether a request created a client (for tests: creation is lazy).
    public var isCreated: Bool {
        shared.withLock { if case .running = $0 { true } else { false } }
    }

    /// Closes the connections; later calls to ``client()`` answer nil.
    public func shutdown() async {
        let running = [Self.takeForShutdown(shared), Self.takeForShutdown(fresh)]
        for httpClient in running {
            try? await httpClient?.shutdown()
        }
    }

    private static func takeForShutdown(_ state: borrowing Mutex<State>) -> HTTPClient? {
        state.withLock { state in
            defer { state = .shutDown }
            guard case .running(let httpClient) = state else { return nil }
            return httpClient
        }
    }

    private static func current(_ state: borrowing Mutex<State>, configuration: HTTPClient.Configuration) -> HTTPClient?
    {
        state.withLock { state in
            switch state {
            case .notCreated:
                let httpClient = HTTPClient(
                    eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
                state = .running(httpClient)
                return httpClient
            case .running(let httpClient):
                return httpClient
            case .shutDown:
                return nil
            }
        }
    }
}

extension Duration {
    /// Whole nanoseconds, saturating at the bounds of `Int64`.
    public var saturatingNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow
            ? (seconds < 0 ? .min : .max) : whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}
