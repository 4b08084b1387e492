/// The receiver's address: `http://` means plaintext and `https://` TLS, for both protocols.
public struct OTLPEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// The path OTLP/HTTP appends to a base URL for profiles (OTLP spec, "OTLP/HTTP Request").
    public static let profilesSignalPath = "v1development/profiles"

    /// TLS (`https`) or plaintext (`http`).
    public var usesTLS: Bool
    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    /// TCP port.
    public var port: Int
    /// Request path with any query, starting with `/` (HTTP); empty for gRPC.
    public var path: String

    public init(usesTLS: Bool, host: String, port: Int, path: String) {
        self.usesTLS = usesTLS
        self.host = host
        self.port = port
        self.path = path
    }

    /// The endpoint as a URL.
    public var url: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "\(usesTLS ? "https" : "http")://\(hostPart):\(port)\(path)"
    }

    public var description: String { url }

    /// Parses an endpoint used as-is: an HTTP URL keeps its path (`/` when it has none); a gRPC
    /// target drops a bare `/` and may omit the scheme, in which case `insecure` chooses
    /// plaintext (OTLP exporter spec, "Configuration Options": Endpoint (OTLP/gRPC), Insecure).
    ///
    /// - Parameter setting: names the source of `text` in errors.
    public init(
        parsing text: String, for transportProtocol: OTLPExporterConfiguration.TransportProtocol,
        insecure: Bool = false, setting: String = "endpoint"
    ) throws(OTLPConfigurationError) {
        let parts = try URLParts(parsing: text, setting: setting, schemeRequired: transportProtocol == .httpProtobuf)
        let usesTLS = parts.scheme.map { $0 == "https" } ?? !insecure
        switch transportProtocol {
        case .httpProtobuf:
            self.init(
                usesTLS: usesTLS, host: parts.host, port: parts.port ?? (usesTLS ? 443 : 80),
                path: parts.path.isEmpty ? "/" + parts.query : parts.path + parts.query)
        case .grpc:
            guard parts.path.isEmpty || parts.path == "/", parts.query.isEmpty else {
                throw OTLPConfigurationError(
                    setting: setting, value: text,
                    problem: "a gRPC endpoint has no path; use scheme://host:port such as http://collector:4317")
            }
            self.init(usesTLS: usesTLS, host: parts.host, port: parts.port ?? (usesTLS ? 443 : 80), path: "")
        }
    }

    /// Builds the profiles URL from a base URL (`OTEL_EXPORTER_OTLP_ENDPOINT` with HTTP): the
    /// base path gets a trailing `/` if it lacks one, then ``profilesSignalPath`` (OTLP
    /// exporter spec, "Endpoint URLs for OTLP/HTTP").
    public init(parsingBaseURL text: String, setting: String = "endpoint") throws(OTLPConfigurationError) {
        let parts = try URLParts(parsing: text, setting: setting, schemeRequired: true)
        let usesTLS = parts.scheme == "https"
        let base = parts.path.hasSuffix("/") ? parts.path : parts.path + "/"
        self.init(
            usesTLS: usesTLS, host: parts.host, port: parts.port ?? (usesTLS ? 443 : 80),
            path: base + Self.profilesSignalPath + parts.query)
    }
}

/// The parts of an endpoint URL that OTLP uses: scheme, host, port, path and query
/// (RFC 3986 section 3; user info is refused, a fragment ignored).
private struct URLParts {
    var scheme: String?
    var host: String
    var port: Int?
    /// Empty or starting with `/`.
    var path: String
    /// Empty or starting with `?`.
    var query: String

    init(parsing original: String, setting: String, schemeRequired: Bool) throws(OTLPConfigurationError) {
        func fail(_ problem: String) -> OTLPConfigurationError {
            OTLPConfigurationError(setting: setting, value: original, problem: problem)
        }
        let text = original.trimmingASCIIWhitespace()
        guard !text.isEmpty else { throw fail("is empty; use a URL such as http://collector:4318") }
        guard text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw fail("contains spaces, control or non-ASCII characters; percent-encode the path")
        }

        var rest = Substring(text)
        if let colon = rest.firstIndex(of: ":"), rest[colon...].hasPrefix("://") {
            let scheme = rest[..<colon].lowercased()
            guard scheme == "http" || scheme == "https" else {
                throw fail("scheme \"\(scheme)\" is not supported; use http:// (plaintext) or https:// (TLS)")
            }
            self.scheme = scheme
            rest = rest[colon...].dropFirst(3)
        } else if schemeRequired {
            throw fail("needs a scheme; use http://host:port (plaintext) or https://host:port (TLS)")
        } else {
            self.scheme = nil
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }

        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let pathAndQuery = rest[authorityEnd...]
        if let questionMark = pathAndQuery.firstIndex(of: "?") {
            path = String(pathAndQuery[..<questionMark])
            query = String(pathAndQuery[questionMark...])
        } else {
            path = String(pathAndQuery)
            query = ""
        }
        guard !authority.contains("@") else {
            throw fail("user info in the URL is not supported; send credentials with OTEL_EXPORTER_OTLP_HEADERS")
        }

        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw fail("the IPv6 address has no closing \"]\"")
            }
            let address = authority[authority.index(after: authority.startIndex)..<close]
            guard !address.isEmpty, address.contains(":"),
                address.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." })
            else { throw fail("\"[\(address)]\" is not an IPv6 address") }
            host = String(address)
            let afterAddress = authority[authority.index(after: close)...]
            if !afterAddress.isEmpty {
                guard afterAddress.hasPrefix(":") else { throw fail("unexpected text after the IPv6 address") }
                portText = afterAddress.dropFirst()
            }
        } else {
            let pieces = authority.split(separator: ":", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else {
                throw fail("has more than one \":\" in host:port; write IPv6 addresses in brackets: http://[::1]:4318")
            }
            host = String(pieces[0])
            if pieces.count == 2 { portText = pieces[1] }
            guard !host.isEmpty else { throw fail("has no host; use a URL such as http://collector:4318") }
            guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" }) else {
                throw fail("host \"\(host)\" may only contain letters, digits, \"-\", \"_\" and \".\"")
            }
        }

        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let port = Int(portText), (1...65535).contains(port)
            else { throw fail("port \"\(portText)\" is not a number in 1...65535") }
            self.port = port
        } else {
            port = nil
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line breaks.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
