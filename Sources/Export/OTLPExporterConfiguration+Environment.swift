extension OTLPExporterConfiguration {
    /// Values given explicitly (command-line flags). Each one set here wins over every
    /// environment variable for the same option.
    public struct Overrides: Sendable, Hashable {
        /// Used as-is, like `OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT`.
        public var endpoint: String?
        public var transportProtocol: TransportProtocol?
        /// Replaces the headers from the environment.
        public var headers: [OTLPHeader]?
        public var compression: Compression?
        public var timeout: Duration?
        public var certificateAuthorityFile: String?
        public var clientCertificateFile: String?
        public var clientKeyFile: String?
        /// Plaintext for a gRPC endpoint given without a scheme.
        public var insecure: Bool?

        public init(
            endpoint: String? = nil, transportProtocol: TransportProtocol? = nil, headers: [OTLPHeader]? = nil,
            compression: Compression? = nil, timeout: Duration? = nil, certificateAuthorityFile: String? = nil,
            clientCertificateFile: String? = nil, clientKeyFile: String? = nil, insecure: Bool? = nil
        ) {
            self.endpoint = endpoint
            self.transportProtocol = transportProtocol
            self.headers = headers
            self.compression = compression
            self.timeout = timeout
            self.certificateAuthorityFile = certificateAuthorityFile
            self.clientCertificateFile = clientCertificateFile
            self.clientKeyFile = clientKeyFile
            self.insecure = insecure
        }
    }

    /// Reads the OTLP exporter environment variables as the OTel SDKs do (OTLP exporter spec,
    /// "Configuration Options"; SDK environment variable spec, "Configuration types").
    ///
    /// For each option the first of these that is set wins: `overrides`, the profiles
    /// variable (`OTEL_EXPORTER_OTLP_PROFILES_*`), the generic one (`OTEL_EXPORTER_OTLP_*`), the
    /// default. An empty variable counts as unset, enum values ignore case.
    ///
    /// - The endpoint: `OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT` is used as-is; for HTTP, the
    ///   generic `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL that gets `v1development/profiles`
    ///   appended. gRPC endpoints are used as-is and may omit the scheme, in which case
    ///   `OTEL_EXPORTER_OTLP_INSECURE=true` selects plaintext (otherwise TLS).
    /// - The protocol defaults to `http/protobuf` (the spec's default).
    /// - `_TIMEOUT` is whole milliseconds; 0 means no limit (about 24 days).
    /// - `_HEADERS` is `key=value` pairs separated by commas, values percent-encoded.
    ///
    /// Deliberate difference from the SDKs: an invalid value throws instead of being ignored
    /// with a warning. A DaemonSet that fails to start with "invalid OTEL_EXPORTER_OTLP_TIMEOUT
    /// ..." in its log is easier to fix than one that silently sends elsewhere. Booleans
    /// follow the spec exactly: only "true" (any case) is true, other values are false with
    /// a warning.
    ///
    /// - Parameter warning: receives the message for each value that is accepted with a caveat.
    public init(
        environment: [String: String], overrides: Overrides = Overrides(),
        warning: (String) -> Void = { _ in }
    ) throws(OTLPConfigurationError) {
        let variables = EnvironmentVariables(environment: environment)

        let transportProtocol: TransportProtocol
        if let explicit = overrides.transportProtocol {
            transportProtocol = explicit
        } else if case let (name, value)? = variables.value(of: "PROTOCOL") {
            guard let parsed = TransportProtocol(rawValue: value.trimmingASCIIWhitespace().lowercased()) else {
                let hint = value.lowercased().contains("json") ? "http/json is not supported; " : ""
                throw OTLPConfigurationError(
                    setting: name, value: value, problem: hint + "use \"grpc\" or \"http/protobuf\"")
            }
            transportProtocol = parsed
        } else {
            transportProtocol = .httpProtobuf
        }

        var insecure = false
        if let explicit = overrides.insecure {
            insecure = explicit
        } else if case let (name, value)? = variables.value(of: "INSECURE") {
            switch value.trimmingASCIIWhitespace().lowercased() {
            case "true": insecure = true
            case "false": insecure = false
            default:
                warning("\(name)=\"\(value.escapedForMessage)\" is neither true nor false; treating it as false")
            }
        }

        let endpoint: OTLPEndpoint
        if let explicit = overrides.endpoint {
            endpoint = try OTLPEndpoint(
                parsing: explicit, for: transportProtocol, insecure: insecure, setting: "endpoint")
        } else if let value = variables.signalValue(of: "ENDPOINT") {
            endpoint = try OTLPEndpoint(
                parsing: value, for: transportProtocol, insecure: insecure,
                setting: EnvironmentVariables.signalName("ENDPOINT"))
        } else if let value = variables.genericValue(of: "ENDPOINT") {
            let name = EnvironmentVariables.genericName("ENDPOINT")
            switch transportProtocol {
            case .httpProtobuf: endpoint = try OTLPEndpoint(parsingBaseURL: value, setting: name)
            case .grpc: endpoint = try OTLPEndpoint(parsing: value, for: .grpc, insecure: insecure, setting: name)
            }
        } else {
            endpoint = transportProtocol == .grpc ? Self.defaultGRPCEndpoint : Self.defaultHTTPEndpoint
        }

        let headers: [OTLPHeader]
        if let explicit = overrides.headers {
            headers = explicit
        } else if case let (name, value)? = variables.value(of: "HEADERS") {
            headers = try Self.parseHeaders(value, setting: name)
        } else {
            headers = []
        }

        var compression = Compression.gzip
        if let explicit = overrides.compression {
            compression = explicit
        } else if case let (name, value)? = variables.value(of: "COMPRESSION") {
            guard let parsed = Compression(rawValue: value.trimmingASCIIWhitespace().lowercased()) else {
                throw OTLPConfigurationError(setting: name, value: value, problem: "use \"gzip\" or \"none\"")
            }
            compression = parsed
        }

        var timeout = Duration.seconds(10)
        if let explicit = overrides.timeout {
            timeout = explicit
        } else if case let (name, value)? = variables.value(of: "TIMEOUT") {
            timeout = try Self.parseTimeout(value, setting: name)
        }

        var tls = TLS()
        tls.certificateAuthorityFile = overrides.certificateAuthorityFile ?? variables.value(of: "CERTIFICATE")?.1
        tls.clientCertificateFile = overrides.clientCertificateFile ?? variables.value(of: "CLIENT_CERTIFICATE")?.1
        tls.clientKeyFile = overrides.clientKeyFile ?? variables.value(of: "CLIENT_KEY")?.1
        if (tls.clientCertificateFile == nil) != (tls.clientKeyFile == nil) {
            let missing = tls.clientKeyFile == nil ? "CLIENT_KEY" : "CLIENT_CERTIFICATE"
            let given = tls.clientKeyFile ?? tls.clientCertificateFile ?? ""
            throw OTLPConfigurationError(
                setting: EnvironmentVariables.genericName(missing), value: "(unset; the other file is \(given))",
                problem: "mutual TLS needs both a client certificate and its key; set OTEL_EXPORTER_OTLP_\(missing) "
                    + "(or its PROFILES_ form) too, or neither")
        }
        if !endpoint.usesTLS
            && (tls.certificateAuthorityFile != nil || tls.clientCertificateFile != nil)
        {
            warning("TLS certificate files are set but the endpoint \(endpoint.url) is plaintext; they are unused")
        }

        self.init(
            endpoint: endpoint, transportProtocol: transportProtocol, headers: headers, compression: compression,
            timeout: timeout, tls: tls)
    }

    /// Parses `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` list members separated by commas, as
    /// in W3C Baggage without properties (OTLP exporter spec, "Specifying headers via
    /// environment variables"). Keys and values are trimmed, values percent-decoded, empty
    /// members skipped. Every invalid member is reported, by position and key only (values are
    /// often secrets).
    static func parseHeaders(_ text: String, setting: String) throws(OTLPConfigurationError) -> [OTLPHeader] {
        var headers: [OTLPHeader] = []
        var problems: [String] = []
        for (index, member) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let position = "entry \(index + 1)"
            guard !member.trimmingASCIIWhitespace().isEmpty else { continue }
            guard let equals = member.firstIndex(of: "=") else {
                problems.append("\(position) has no \"=\"; write key=value")
                continue
            }
            let key = member[..<equals].trimmingASCIIWhitespace().lowercased()
            guard !key.isEmpty else {
                problems.append("\(position) has an empty key")
                continue
            }
            guard key.unicodeScalars.allSatisfy(Self.isTokenCharacter) else {
                problems.append("\(position): key \"\(key.escapedForMessage)\" is not a valid header name")
                continue
            }
            guard !Self.reservedHeaderNames.contains(key), !key.hasPrefix("grpc-") else {
                problems.append("\(position): \(key) is set by the exporter itself; remove it")
                continue
            }
            guard let value = percentDecoded(member[member.index(after: equals)...].trimmingASCIIWhitespace()) else {
                problems.append("\(position) (\(key)): the value has an invalid %-escape or is not UTF-8")
                continue
            }
            guard !value.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F }) else {
                problems.append("\(position) (\(key)): the value contains control characters")
                continue
            }
            headers.append(OTLPHeader(name: key, value: value))
        }
        guard problems.isEmpty else {
            throw OTLPConfigurationError(
                setting: setting, value: "<\(text.utf8.count) bytes, not shown>",
                problem: problems.joined(separator: "; ")
                    + "; use comma-separated key=value pairs with %-encoded values, such as api-key=abc%20def")
        }
        return headers
    }

    /// Parses a timeout in whole milliseconds (SDK environment variable spec, "Timeout"): 0 is
    /// no limit, which is substituted by the spec's suggestion, 2^31-1 ms.
    static func parseTimeout(_ text: String, setting: String) throws(OTLPConfigurationError) -> Duration {
        let digits = text.trimmingASCIIWhitespace()
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw OTLPConfigurationError(
                setting: setting, value: text,
                problem: "use whole milliseconds without a unit, such as 10000 for 10 s (0 means no limit)")
        }
        guard let milliseconds = Int32(digits) else {
            throw OTLPConfigurationError(
                setting: setting, value: text, problem: "is larger than 2147483647 ms; use 0 for no limit")
        }
        return .milliseconds(milliseconds == 0 ? Int32.max : milliseconds)
    }

    /// Headers that the transports set; user values would corrupt requests.
    static let reservedHeaderNames: Set<String> = [
        "content-type", "content-length", "content-encoding", "transfer-encoding", "host", "te", "connection",
        "upgrade", "keep-alive", "user-agent",
    ]

    /// RFC 9110 `tchar`.
    static func isTokenCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9": true
        case "!", "#", "$", "%", "&", "'", "*", "+", "-", ".", "^", "_", "`", "|", "~": true
        default: false
        }
    }
}

/// `%XX` escapes decoded; `nil` when an escape is malformed or the result is not UTF-8.
func percentDecoded(_ text: String) -> String? {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count)
    var iterator = text.utf8.makeIterator()
    while let byte = iterator.next() {
        guard byte == UInt8(ascii: "%") else {
            bytes.append(byte)
            continue
        }
        guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
            return nil
        }
        bytes.append(high << 4 | low)
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// The process environment seen through the OTLP naming scheme.
private struct EnvironmentVariables {
    let environment: [String: String]

    static func signalName(_ option: String) -> String { "OTEL_EXPORTER_OTLP_PROFILES_\(option)" }
    static func genericName(_ option: String) -> String { "OTEL_EXPORTER_OTLP_\(option)" }

    /// A non-empty value (SDK environment variable spec, "Parsing empty value").
    private func nonEmpty(_ name: String) -> String? {
        guard let value = environment[name], !value.trimmingASCIIWhitespace().isEmpty else { return nil }
        return value
    }

    func signalValue(of option: String) -> String? { nonEmpty(Self.signalName(option)) }
    func genericValue(of option: String) -> String? { nonEmpty(Self.genericName(option)) }

    /// The profiles variable if set, else the generic one, with the name that supplied it.
    func value(of option: String) -> (String, String)? {
        if let value = signalValue(of: option) { return (Self.signalName(option), value) }
        if let value = genericValue(of: option) { return (Self.genericName(option), value) }
        return nil
    }
}
