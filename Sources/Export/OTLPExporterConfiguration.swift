/// Everything an ``OTLPExporter`` needs to know: where to send, how, and how much to hold
/// while the receiver is unreachable.
///
/// Build one from the standard `OTEL_EXPORTER_OTLP_*` environment variables with
/// ``init(environment:overrides:warning:)``, or set the fields directly. The defaults are the
/// OTel SDK's, except compression, which is gzip here (the SDK leaves it off): profiles
/// compress 5-10x and a node agent sends them around the clock.
public struct OTLPExporterConfiguration: Sendable, Hashable {
    /// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL` values).
    public enum TransportProtocol: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// OTLP/gRPC: unary `ProfilesService/Export` calls over HTTP/2 (default port 4317).
        case grpc = "grpc"
        /// OTLP/HTTP with binary protobuf bodies (default port 4318).
        case httpProtobuf = "http/protobuf"

        public var description: String { rawValue }
    }

    /// Request compression (`OTEL_EXPORTER_OTLP_COMPRESSION` values).
    public enum Compression: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        case gzip
        case none

        public var description: String { rawValue }
    }

    /// TLS material and verification for `https://` endpoints. Ignored for plaintext ones.
    public struct TLS: Sendable, Hashable {
        /// PEM file of the CA certificates that verify the receiver (`OTEL_EXPORTER_OTLP_CERTIFICATE`);
        /// `nil` trusts the system roots.
        public var certificateAuthorityFile: String?
        /// PEM client certificate (chain) for mutual TLS (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
        public var clientCertificateFile: String?
        /// PEM private key of the client certificate (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
        public var clientKeyFile: String?
        /// Accepts any server certificate: encrypted but unauthenticated, for test setups only.
        /// (Not `OTEL_EXPORTER_OTLP_INSECURE`, which selects plaintext for scheme-less gRPC
        /// endpoints; see ``OTLPExporterConfiguration/init(environment:overrides:warning:)``.)
        public var skipServerVerification: Bool

        public init(
            certificateAuthorityFile: String? = nil, clientCertificateFile: String? = nil,
            clientKeyFile: String? = nil, skipServerVerification: Bool = false
        ) {
            self.certificateAuthorityFile = certificateAuthorityFile
            self.clientCertificateFile = clientCertificateFile
            self.clientKeyFile = clientKeyFile
            self.skipServerVerification = skipServerVerification
        }
    }

    /// Where requests go. For gRPC only scheme, host and port matter.
    public var endpoint: OTLPEndpoint
    /// gRPC or HTTP/protobuf.
    public var transportProtocol: TransportProtocol
    /// Extra request headers (gRPC metadata), such as an API key. Names are lowercase.
    public var headers: [OTLPHeader]
    /// Request compression.
    public var compression: Compression
    /// Longest time one export attempt may take (gRPC deadline, HTTP request timeout).
    public var timeout: Duration
    /// TLS files and verification.
    public var tls: TLS
    /// When and how often failed exports are retried.
    public var retry: OTLPRetryPolicy
    /// Most bytes of serialized requests held at once, queued and in flight together.
    /// When a new request does not fit, the oldest queued requests are dropped (and counted).
    public var queueLimitBytes: Int
    /// Requests sent concurrently. 1 keeps requests in order and is enough for a node agent
    /// (OTLP spec, "OTLP/gRPC Concurrent Requests": sequential operation is recommended for a
    /// local collector).
    public var maxConcurrentExports: Int
    /// How long ``OTLPExporter/run()`` spends, after it is cancelled, giving each queued request
    /// one last attempt before dropping what is left.
    public var shutdownTimeout: Duration

    /// The default gRPC endpoint, `http://localhost:4317`.
    public static let defaultGRPCEndpoint = OTLPEndpoint(usesTLS: false, host: "localhost", port: 4317, path: "")
    /// The default HTTP endpoint, `http://localhost:4318/v1development/profiles`.
    public static let defaultHTTPEndpoint = OTLPEndpoint(
        usesTLS: false, host: "localhost", port: 4318, path: "/" + OTLPEndpoint.profilesSignalPath)
    /// Default ``queueLimitBytes``: 64 MiB, the collector's recommended request limit, so the
    /// largest request the builder makes always fits.
    public static let defaultQueueLimitBytes = 64 << 20

    public init(
        endpoint: OTLPEndpoint? = nil,
        transportProtocol: TransportProtocol = .httpProtobuf,
        headers: [OTLPHeader] = [],
        compression: Compression = .gzip,
        timeout: Duration = .seconds(10),
        tls: TLS = TLS(),
        retry: OTLPRetryPolicy = OTLPRetryPolicy(),
        queueLimitBytes: Int = defaultQueueLimitBytes,
        maxConcurrentExports: Int = 1,
        shutdownTimeout: Duration = .seconds(5)
    ) {
        self.endpoint =
            endpoint ?? (transportProtocol == .grpc ? Self.defaultGRPCEndpoint : Self.defaultHTTPEndpoint)
        self.transportProtocol = transportProtocol
        self.headers = headers
        self.compression = compression
        self.timeout = timeout
        self.tls = tls
        self.retry = retry
        self.queueLimitBytes = queueLimitBytes
        self.maxConcurrentExports = maxConcurrentExports
        self.shutdownTimeout = shutdownTimeout
    }

    /// Checks the values that the environment does not cover (they come from code or flags).
    public func validate() throws(OTLPConfigurationError) {
        guard queueLimitBytes > 0 else {
            throw OTLPConfigurationError(
                setting: "queue limit", value: "\(queueLimitBytes) bytes",
                problem: "must be positive; 64 MiB holds a few minutes of profiles from a busy node")
        }
        guard maxConcurrentExports >= 1 else {
            throw OTLPConfigurationError(
                setting: "max concurrent exports", value: "\(maxConcurrentExports)", problem: "must be at least 1")
        }
        guard timeout > .zero else {
            throw OTLPConfigurationError(
                setting: "timeout", value: "\(timeout)", problem: "must be positive, such as 10 seconds")
        }
        guard shutdownTimeout >= .zero else {
            throw OTLPConfigurationError(
                setting: "shutdown timeout", value: "\(shutdownTimeout)", problem: "must not be negative")
        }
        try retry.validate()
        if transportProtocol == .grpc && !(endpoint.path.isEmpty || endpoint.path == "/") {
            throw OTLPConfigurationError(
                setting: "endpoint", value: endpoint.url,
                problem: "a gRPC endpoint has no path; use scheme://host:port")
        }
        if (tls.clientCertificateFile == nil) != (tls.clientKeyFile == nil) {
            throw OTLPConfigurationError(
                setting: "client certificate",
                value: tls.clientCertificateFile ?? tls.clientKeyFile ?? "",
                problem: "mutual TLS needs both a client certificate and its key; set both or neither")
        }
    }
}

/// One request header (gRPC metadata entry).
public struct OTLPHeader: Sendable, Hashable, CustomStringConvertible {
    /// Lowercase header name.
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name.lowercased()
        self.value = value
    }

    /// The name only: header values are often credentials and stay out of logs.
    public var description: String { "\(name)=<redacted>" }
}

/// A configuration value that cannot be used, with what to do about it.
public struct OTLPConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The environment variable, flag or field that holds the value.
    public var setting: String
    /// The value as given (header values are never included).
    public var value: String
    /// What is wrong and how to fix it.
    public var problem: String

    public init(setting: String, value: String, problem: String) {
        self.setting = setting
        self.value = value
        self.problem = problem
    }

    public var description: String {
        "invalid \(setting) \"\(value.escapedForMessage)\": \(problem)"
    }
}

extension String {
    /// Control characters made visible, and length bounded, for error messages and logs.
    var escapedForMessage: String {
        var result = ""
        for scalar in unicodeScalars.prefix(200) {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return unicodeScalars.count > 200 ? result + "..." : result
    }
}
