public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// A response of the status server.
public struct StatusResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = Array(body.utf8)
    }

    public init(status: Int, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// The agent's one HTTP port: `/healthz` (liveness), `/readyz` (readiness) and `/metrics`
/// (Prometheus text format), for the kubelet's probes and for scrapers. HTTP/1.1 with
/// keep-alive, GET and HEAD only; anything else is answered 404 or 405. Request bodies are
/// refused beyond 64 KiB (a probe sends none).
public final class StatusServer: Service, Sendable {
    public typealias Handler = @Sendable (_ path: String) async -> StatusResponse

    public let host: String
    public let port: Int
    private let handler: Handler
    private let logger: Logger
    private let bound = Mutex<(port: Int?, waiters: [CheckedContinuation<Int?, Never>])>((nil, []))

    public init(host: String, port: Int, logger: Logger, handler: @escaping Handler) {
        self.host = host
        self.port = port
        self.logger = logger
        self.handler = handler
    }

    /// The port the server listens on once bound (useful with port 0); nil when binding failed.
    public func boundPort() async -> Int? {
        await withCheckedContinuation { continuation in
            let ready: Int?? = bound.withLock { state in
                if let port = state.port { return .some(port) }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func publish(port: Int?) {
        let waiters = bound.withLock { state in
            state.port = port ?? -1
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    public func run() async throws {
        typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
        let server: NIOAsyncChannel<Connection, Never>
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            publish(port: nil)
            throw StatusServerError(
                "cannot listen on \(host):\(port) for /healthz, /readyz and /metrics: \(error); "
                    + "choose a free port with --listen-address")
        }
        let port = server.channel.localAddress?.port ?? self.port
        publish(port: port)
        logger.info("status server listening on \(host):\(port) (/healthz /readyz /metrics)")

        // Stays up through the graceful shutdown of the other services (probes keep
        // answering), and closes when the group cancels it or shuts it down last.
        do {
            try await cancelWhenGracefulShutdown {
                try await server.executeThenClose { connections in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await connection in connections {
                            group.addTask { await self.serve(connection) }
                        }
                    }
                }
            }
        } catch is CancellationError {
            // Shut down: the listening socket is closed.
        }
    }

    private func serve(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    ) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var bodyBytes = 0
                for try await part in inbound {
                    switch part {
                    case .head(let requestHead):
                        head = requestHead
                        bodyBytes = 0
                    case .body(let buffer):
                        bodyBytes += buffer.readableBytes
                        if bodyBytes > 65_536 { return }
                    case .end:
                        guard let request = head else { return }
                        head = nil
                        let response: StatusResponse
                        switch request.method {
                        case .GET, .HEAD:
                            let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
                            response = await handler(path)
                        default:
                            response = StatusResponse(status: 405, body: "only GET and HEAD\n")
                        }
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: response.contentType)
                        headers.add(name: "Content-Length", value: String(response.body.count))
                        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
                        try await outbound.write(
                            .head(
                                HTTPResponseHead(
                                    version: request.version, status: HTTPResponseStatus(statusCode: response.status),
                                    headers: headers)))
                        if request.method != .HEAD {
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
                        }
                        try await outbound.write(.end(nil))
                        if !request.isKeepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("status connection ended: \(error)")
        }
    }
}

public struct StatusServerError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
