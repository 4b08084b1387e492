import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import HTTPTransport
import Profiles
import Synchronization

/// OTLP/gRPC: unary `ProfilesService/Export` calls through grpc-swift over HTTP/2.
///
/// The request bytes go out as the message unchanged (a pass-through codec), gzip-compressed
/// by the gRPC framing when configured; headers become metadata; the timeout is the call's
/// deadline. Calls fail fast while the connection is down (no wait-for-ready), and the
/// channel's own reconnect backoff is kept short (at most 5 s) so that an export resumes soon
/// after the receiver returns; the exporter's retry policy paces the attempts.
final class GRPCExportTransport: OTLPExportTransport {
    static let method = MethodDescriptor(
        fullyQualifiedService: "opentelemetry.proto.collector.profiles.v1development.ProfilesService",
        method: "Export")

    private enum Connections {
        case notStarted
        case running(Task<Void, Never>)
        case shutDown
    }

    private let client: GRPCClient<HTTP2ClientTransport.Posix>
    /// The client's connection task, started by the first export (so that a transport that
    /// never exports holds no connection and no task).
    private let connections = Mutex(Connections.notStarted)
    private let options: CallOptions
    private let metadata: Metadata

    init(configuration: OTLPExporterConfiguration) throws(OTLPConfigurationError) {
        let endpoint = configuration.endpoint
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if endpoint.usesTLS {
            let files = try configuration.tls.material()
            let skipVerification = configuration.tls.skipServerVerification
            security = .tls { tls in
                if let authority = files.certificateAuthority {
                    tls.trustRoots = .certificates([.bytes(authority, format: .pem)])
                }
                if let certificate = files.clientCertificate, let key = files.clientKey {
                    tls.certificateChain = [.bytes(certificate, format: .pem)]
                    tls.privateKey = .bytes(key, format: .pem)
                }
                if skipVerification { tls.serverCertificateVerification = .noVerification }
            }
        } else {
            security = .plaintext
        }

        var transportConfig = HTTP2ClientTransport.Posix.Config.defaults
        let compression: CompressionAlgorithm = configuration.compression == .gzip ? .gzip : .none
        transportConfig.compression = .init(algorithm: compression, enabledAlgorithms: .gzip)
        transportConfig.backoff = .init(initial: .milliseconds(500), max: .seconds(5), multiplier: 1.6, jitter: 0.2)

        let target: any ResolvableTarget =
            if endpoint.host.contains(":") {
                .ipv6(address: endpoint.host, port: endpoint.port)
            } else if endpoint.host.split(separator: ".").count == 4
                && endpoint.host.allSatisfy({ $0.isNumber || $0 == "." })
            {
                .ipv4(address: endpoint.host, port: endpoint.port)
            } else {
                .dns(host: endpoint.host, port: endpoint.port)
            }
        let transport: HTTP2ClientTransport.Posix
        do {
            transport = try HTTP2ClientTransport.Posix(
                target: target, transportSecurity: security, config: transportConfig)
        } catch {
            throw OTLPConfigurationError(
                setting: endpoint.usesTLS ? "TLS configuration" : "endpoint", value: endpoint.url,
                problem: "cannot set up the gRPC transport: \(error)")
        }
        client = GRPCClient(transport: transport)

        var options = CallOptions.defaults
        options.timeout = configuration.timeout
        options.waitForReady = false
        options.compression = compression
        options.maxRequestMessageBytes = max(configuration.queueLimitBytes, 4 << 20)
        self.options = options

        var metadata = Metadata()
        for header in configuration.headers {
            if header.name.hasSuffix("-bin") {
                metadata.addBinary(Array(header.value.utf8), forKey: header.name)
            } else {
                metadata.addString(header.value, forKey: header.name)
            }
        }
        metadata.addString("nodeprof", forKey: "user-agent")
        self.metadata = metadata
    }

    func export(_ request: [UInt8]) async -> OTLPExportAttemptOutcome {
        connections.withLock { connections in
            guard case .notStarted = connections else { return }
            let client = client
            connections = .running(Task { try? await client.runConnections() })
        }
        let response: [UInt8]
        do {
            response = try await client.unary(
                request: ClientRequest(message: request, metadata: metadata), descriptor: Self.method,
                serializer: RawBytesSerializer(), deserializer: RawBytesDeserializer(), options: options
            ) { response in try response.message }
        } catch let error as RPCError {
            return Self.outcome(of: error)
        } catch {
            // Not an RPC status: the client could not run the call (such as while shutting down).
            return .retryable(reason: "gRPC call failed: \(error)", retryAfter: nil)
        }
        do {
            return .success(try OTLPExportResult(serializedResponse: response))
        } catch {
            // The receiver answered OK: the data is accepted even if its answer is unreadable.
            return .success(OTLPExportResult(errorMessage: "accepted, but the response is unreadable: \(error)"))
        }
    }

    func shutdown() async {
        let running = connections.withLock { connections in
            defer { connections = .shutDown }
            guard case .running(let task) = connections else { return nil as Task<Void, Never>? }
            return task
        }
        client.beginGracefulShutdown()
        await running?.value
    }

    /// Classifies a failed call (OTLP spec, "OTLP/gRPC Response", "Failures"), reading
    /// RetryInfo from the `grpc-status-details-bin` trailer ("OTLP/gRPC Throttling").
    static func outcome(of error: RPCError) -> OTLPExportAttemptOutcome {
        // The connection's error travels as the call's cause: a refused certificate is refused
        // again on every attempt, so it is permanent whatever the status code says.
        if let failure = TLSVerificationFailure.find(in: error, causes: { ($0 as? RPCError)?.cause }) {
            return .permanent(reason: failure.description)
        }
        let code = OTLPRetryClassification.GRPCStatusCode(rawValue: error.code.rawValue) ?? .unknown
        var retryDelay: Duration?
        if let status = try? error.unpackGoogleRPCStatus() {
            retryDelay = status.details.lazy.compactMap(\.retryInfo).first?.delay
        }
        return OTLPRetryClassification.grpcFailure(code: code, message: error.message, retryInfoDelay: retryDelay)
    }
}

/// The message is already serialized: bytes in, bytes out.
struct RawBytesSerializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
        Bytes(message)
    }
}

/// Keeps the response message as bytes for ``OTLPExportResult/init(serializedResponse:)``.
struct RawBytesDeserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}
