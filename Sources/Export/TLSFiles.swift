import Glibc
import NodeprofCore

/// The PEM files of a TLS configuration, read once when a transport is created so that a
/// wrong path fails at startup with a message that names it.
struct TLSFiles: Sendable {
    var certificateAuthority: [UInt8]?
    var clientCertificate: [UInt8]?
    var clientKey: [UInt8]?

    /// PEM files are small; anything larger is not what was meant.
    static let sizeLimit = 1 << 20

    init(_ tls: OTLPExporterConfiguration.TLS) throws(OTLPConfigurationError) {
        certificateAuthority = try tls.certificateAuthorityFile.map { path throws(OTLPConfigurationError) in
            try Self.read(path, what: "CA certificate file")
        }
        clientCertificate = try tls.clientCertificateFile.map { path throws(OTLPConfigurationError) in
            try Self.read(path, what: "client certificate file")
        }
        clientKey = try tls.clientKeyFile.map { path throws(OTLPConfigurationError) in
            try Self.read(path, what: "client key file")
        }
    }

    private static func read(_ path: String, what: String) throws(OTLPConfigurationError) -> [UInt8] {
        let contents: [UInt8]
        do {
            contents = try FileContents.read(path, limit: sizeLimit)
        } catch {
            let problem: String
            switch error {
            case .systemCall(_, let operation, let code):
                let advice =
                    code == ENOENT
                    ? "check the path (a Kubernetes secret must be mounted there)"
                    : "check the file's permissions"
                problem = "\(operation) failed: \(String(cString: strerror(code))); \(advice)"
            case .tooLarge:
                problem = "is larger than \(sizeLimit) bytes; a PEM file is a few kilobytes"
            }
            throw OTLPConfigurationError(setting: what, value: path, problem: problem)
        }
        let marker = Array("-----BEGIN ".utf8)
        guard contents.count >= marker.count,
            (0...(contents.count - marker.count)).contains(where: {
                contents[$0..<($0 + marker.count)].elementsEqual(marker)
            })
        else {
            throw OTLPConfigurationError(
                setting: what, value: path, problem: "is not a PEM file (no \"-----BEGIN\" line); convert it to PEM")
        }
        return contents
    }
}
