import Glibc
import HTTPTransport
import NIOSSL
import NodeprofCore

extension OTLPExporterConfiguration.TLS {
    /// The shared TLS settings (`HTTPTransport`) of these files.
    var settings: ClientTLSSettings {
        ClientTLSSettings(
            certificateAuthority: certificateAuthorityFile.map { .file($0) },
            clientCertificate: clientCertificateFile.map { .file($0) }, clientKey: clientKeyFile.map { .file($0) },
            skipServerVerification: skipServerVerification)
    }

    /// The PEM files, read once when a transport is created so that a wrong path fails at
    /// startup with a message that names it.
    func material() throws(OTLPConfigurationError) -> TLSMaterial {
        do {
            return try TLSMaterial(settings)
        } catch {
            throw configurationError(error)
        }
    }

    /// The NIOSSL client configuration of these files (HTTP transport).
    func nioConfiguration() throws(OTLPConfigurationError) -> TLSConfiguration {
        let material = try material()
        do {
            return try material.makeConfiguration()
        } catch {
            throw configurationError(error)
        }
    }

    /// The exporter's wording of a TLS problem: the setting is the file's, the problem says
    /// what to do.
    private func configurationError(_ error: TLSSetupError) -> OTLPConfigurationError {
        switch error {
        case .unreadableFile(let role, let path, let readError):
            let problem: String
            switch readError {
            case .systemCall(_, let operation, let code):
                let advice =
                    code == ENOENT
                    ? "check the path (a Kubernetes secret must be mounted there)"
                    : "check the file's permissions"
                problem = "\(operation) failed: \(SystemCall.errnoName(code)); \(advice)"
            case .tooLarge:
                problem = "is larger than \(TLSMaterial.sizeLimit) bytes; a PEM file is a few kilobytes"
            }
            return OTLPConfigurationError(setting: "\(role.rawValue) file", value: path, problem: problem)
        case .notPEM(let role, let path):
            return OTLPConfigurationError(
                setting: "\(role.rawValue) file", value: path ?? "",
                problem: "is not a PEM file (no \"-----BEGIN\" line); convert it to PEM")
        case .invalidCertificateAuthority(let reason), .invalidClientCertificateOrKey(let reason):
            return OTLPConfigurationError(
                setting: "TLS files",
                value: [certificateAuthorityFile, clientCertificateFile, clientKeyFile].compactMap { $0 }.joined(
                    separator: ", "),
                problem: "cannot load the certificates or key (\(reason)); check that they are PEM and match")
        }
    }
}
