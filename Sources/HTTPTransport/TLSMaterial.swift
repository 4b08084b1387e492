public import NIOSSL
public import NodeprofCore

/// PEM bytes, given inline or as a file that is read when the client is created.
public enum PEMSource: Sendable, Hashable {
    case file(String)
    case data([UInt8])
}

/// The TLS settings of an HTTPS client: whom to trust, which certificate to present, and
/// whether to verify the server at all.
public struct ClientTLSSettings: Sendable, Hashable {
    /// The CA that signed the server's certificate; `nil` trusts the system roots.
    public var certificateAuthority: PEMSource?
    /// A client certificate (chain) and its key, for mutual TLS. Used only when both are set.
    public var clientCertificate: PEMSource?
    public var clientKey: PEMSource?
    /// Do not verify the server's certificate. For test setups only: anyone on the path can
    /// impersonate the server.
    public var skipServerVerification: Bool

    public init(
        certificateAuthority: PEMSource? = nil, clientCertificate: PEMSource? = nil, clientKey: PEMSource? = nil,
        skipServerVerification: Bool = false
    ) {
        self.certificateAuthority = certificateAuthority
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.skipServerVerification = skipServerVerification
    }
}

/// The PEM bytes of ``ClientTLSSettings``, read once (so that a wrong path fails at startup
/// with a message that names it), and the NIOSSL configuration built from them.
///
/// The bytes are checked to look like PEM here; whether they parse as certificates and a
/// matching key is checked by ``makeConfiguration()``. Transports that build their own TLS
/// stack (gRPC) take the bytes.
public struct TLSMaterial: Sendable, Hashable {
    /// Which PEM input a problem is about.
    public enum Role: String, Sendable, Hashable {
        case certificateAuthority = "CA certificate"
        case clientCertificate = "client certificate"
        case clientKey = "client key"
    }

    /// PEM files are a few kilobytes; anything larger is not what was meant.
    public static let sizeLimit = 1 << 20

    public var certificateAuthority: [UInt8]?
    public var clientCertificate: [UInt8]?
    public var clientKey: [UInt8]?
    public var skipServerVerification: Bool

    /// Reads the files of `settings` (inline data is taken as is) and checks each is PEM.
    public init(_ settings: ClientTLSSettings) throws(TLSSetupError) {
        certificateAuthority = try settings.certificateAuthority.map { source throws(TLSSetupError) in
            try Self.pemBytes(source, role: .certificateAuthority)
        }
        clientCertificate = try settings.clientCertificate.map { source throws(TLSSetupError) in
            try Self.pemBytes(source, role: .clientCertificate)
        }
        clientKey = try settings.clientKey.map { source throws(TLSSetupError) in
            try Self.pemBytes(source, role: .clientKey)
        }
        skipServerVerification = settings.skipServerVerification
    }

    /// A client `TLSConfiguration`: the CA as the only trust root when given, the client
    /// certificate and key when both are given, no verification when asked.
    public func makeConfiguration() throws(TLSSetupError) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        do {
            if let certificateAuthority {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(certificateAuthority))
            }
        } catch {
            throw .invalidCertificateAuthority(reason: "\(error)")
        }
        do {
            if let clientCertificate, let clientKey {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMBytes(clientCertificate).map {
                    .certificate($0)
                }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: clientKey, format: .pem))
            }
        } catch {
            throw .invalidClientCertificateOrKey(reason: "\(error)")
        }
        if skipServerVerification { configuration.certificateVerification = .none }
        return configuration
    }

    private static func pemBytes(_ source: PEMSource, role: Role) throws(TLSSetupError) -> [UInt8] {
        let bytes: [UInt8]
        let origin: String?
        switch source {
        case .data(let data):
            bytes = data
            origin = nil
        case .file(let path):
            do {
                bytes = try FileContents.read(path, limit: sizeLimit)
            } catch {
                throw .unreadableFile(role: role, path: path, error: error)
            }
            origin = path
        }
        guard containsPEMMarker(bytes) else { throw .notPEM(role: role, path: origin) }
        return bytes
    }

    /// True when `bytes` hold a `-----BEGIN ` line marker anywhere.
    static func containsPEMMarker(_ bytes: [UInt8]) -> Bool {
        let marker = Array("-----BEGIN ".utf8)
        guard bytes.count >= marker.count else { return false }
        return (0...(bytes.count - marker.count)).contains { start in
            bytes[start..<(start + marker.count)].elementsEqual(marker)
        }
    }
}

/// TLS material that cannot be used. Each client maps it to its own configuration error,
/// which names the setting to fix.
public enum TLSSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A PEM file cannot be read.
    case unreadableFile(role: TLSMaterial.Role, path: String, error: FileReadError)
    /// The bytes have no `-----BEGIN` line (DER, or the wrong file); `path` is nil for inline data.
    case notPEM(role: TLSMaterial.Role, path: String?)
    /// The CA bytes are PEM but not certificates.
    case invalidCertificateAuthority(reason: String)
    /// The client certificate or key does not load, or they do not match.
    case invalidClientCertificateOrKey(reason: String)

    public var description: String {
        switch self {
        case .unreadableFile(let role, _, let error):
            return "cannot read the \(role.rawValue) file: \(error)"
        case .notPEM(let role, let path):
            return "the \(role.rawValue)\(path.map { " \($0)" } ?? "") is not PEM (no \"-----BEGIN\" line)"
        case .invalidCertificateAuthority(let reason):
            return "the CA certificate is not a valid PEM certificate (\(reason))"
        case .invalidClientCertificateOrKey(let reason):
            return "the client certificate or key is not valid PEM (\(reason)); check they match"
        }
    }
}
