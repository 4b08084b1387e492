import FoundationEssentials
import NodeprofCore
import Yams

extension KubernetesClientConfiguration {
    /// Kubeconfig files are small; anything larger is not what was meant.
    static let kubeconfigSizeLimit = 4 << 20

    /// The configuration of context `context` (default: `current-context`) of the kubeconfig
    /// file at `path`.
    ///
    /// Read: `clusters[].cluster` `server`, `certificate-authority(-data)`,
    /// `insecure-skip-tls-verify`; `users[].user` `token`, `tokenFile` (preferred when both are
    /// given: it is re-read as it rotates), `client-certificate(-data)`, `client-key(-data)`;
    /// `contexts[].context` `cluster`, `user`, `namespace`. Relative file paths are resolved
    /// against the kubeconfig's directory, as kubectl does. `exec` plugins, `auth-provider`s
    /// and basic authentication are refused with an error that says to use a token.
    public static func kubeconfig(
        path: String, context: String? = nil
    ) throws(KubernetesConfigurationError) -> KubernetesClientConfiguration {
        let bytes: [UInt8]
        do {
            bytes = try FileContents.read(path, limit: kubeconfigSizeLimit)
        } catch {
            throw .unreadableFile(path: path, what: "kubeconfig", problem: error.description)
        }
        return try kubeconfig(contents: String(decoding: bytes, as: UTF8.self), path: path, context: context)
    }

    /// Parses kubeconfig text; `path` names the file in errors and anchors relative paths.
    static func kubeconfig(
        contents: String, path: String, context contextName: String?
    ) throws(KubernetesConfigurationError) -> KubernetesClientConfiguration {
        guard !contents.trimmingASCIIWhitespace().isEmpty else {
            throw .invalidKubeconfig(path: path, problem: "the file is empty")
        }
        let file: KubeconfigFile
        do {
            file = try YAMLDecoder().decode(KubeconfigFile.self, from: contents)
        } catch let error as DecodingError {
            throw .invalidKubeconfig(path: path, problem: Self.describe(error))
        } catch {
            throw .invalidKubeconfig(path: path, problem: "not YAML (\(error))")
        }

        guard let name = contextName ?? file.currentContext.flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw .noCurrentContext(path: path)
        }
        guard let context = file.contexts?.first(where: { $0.name == name }) else {
            throw .unknownContext(path: path, name: name)
        }
        guard let clusterName = context.context?.cluster, !clusterName.isEmpty else {
            throw .invalidKubeconfig(path: path, problem: "context \"\(name)\" names no cluster")
        }
        guard let cluster = file.clusters?.first(where: { $0.name == clusterName })?.cluster else {
            throw .unknownCluster(path: path, context: name, name: clusterName)
        }
        var user: KubeconfigFile.User?
        if let userName = context.context?.user, !userName.isEmpty {
            guard let named = file.users?.first(where: { $0.name == userName }) else {
                throw .unknownUser(path: path, context: name, name: userName)
            }
            user = named.user ?? KubeconfigFile.User()
        }

        guard let server = cluster.server?.trimmingASCIIWhitespace(), !server.isEmpty else {
            throw .invalidKubeconfig(path: path, problem: "cluster \"\(clusterName)\" has no server")
        }
        guard server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw .invalidServer(
                source: "kubeconfig \(path)", server: server,
                problem: "is not an http(s) URL; write it as https://HOST:PORT")
        }

        let directory = Self.directory(of: path)
        func resolve(_ file: String) -> String {
            file.hasPrefix("/") ? file : directory + file
        }
        func pem(data: String?, file: String?, field: String) throws(KubernetesConfigurationError) -> PEMSource? {
            if let data, !data.isEmpty {
                let compact = String(data.unicodeScalars.filter { !$0.properties.isWhitespace })
                guard let decoded = Data(base64Encoded: compact), !decoded.isEmpty else {
                    throw .invalidBase64(path: path, field: field + "-data")
                }
                return .data(Array(decoded))
            }
            if let file, !file.isEmpty { return .file(resolve(file)) }
            return nil
        }

        var tls = TLS(insecureSkipVerify: cluster.insecureSkipTLSVerify ?? false)
        tls.certificateAuthority = try pem(
            data: cluster.certificateAuthorityData, file: cluster.certificateAuthority, field: "certificate-authority")
        var credentials = Credentials.none
        if let user, let userName = context.context?.user {
            if user.exec != nil {
                throw .unsupportedAuthentication(path: path, user: userName, method: "an exec plugin")
            }
            if user.authProvider != nil {
                throw .unsupportedAuthentication(path: path, user: userName, method: "an auth-provider")
            }
            if user.username != nil || user.password != nil {
                throw .unsupportedAuthentication(path: path, user: userName, method: "basic authentication")
            }
            tls.clientCertificate = try pem(
                data: user.clientCertificateData, file: user.clientCertificate, field: "client-certificate")
            tls.clientKey = try pem(data: user.clientKeyData, file: user.clientKey, field: "client-key")
            if (tls.clientCertificate == nil) != (tls.clientKey == nil) {
                throw .invalidKubeconfig(
                    path: path,
                    problem:
                        "user \"\(userName)\" has a client certificate without a key or a key without a certificate")
            }
            if let tokenFile = user.tokenFile, !tokenFile.isEmpty {
                credentials = .tokenFile(resolve(tokenFile))
            } else if let token = user.token, !token.isEmpty {
                credentials = .token(token)
            }
        }
        let namespace = context.context?.namespace.flatMap { $0.isEmpty ? nil : $0 }
        return KubernetesClientConfiguration(server: server, tls: tls, credentials: credentials, namespace: namespace)
    }

    /// The directory of `path` with a trailing slash (`./` for a bare file name).
    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "./" }
        return String(path[...slash])
    }

    private static func describe(_ error: DecodingError) -> String {
        func location(_ path: [any CodingKey]) -> String {
            path.isEmpty
                ? "the top level" : path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(location(context.codingPath)) is not a \(type) (\(context.debugDescription))"
        case .valueNotFound(_, let context):
            return "\(location(context.codingPath)) is missing"
        case .keyNotFound(let key, let context):
            return "\(location(context.codingPath + [key])) is missing"
        case .dataCorrupted(let context):
            return "\(location(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// The parts of a kubeconfig nodeprof reads. Unknown keys are ignored, as kubectl does.
struct KubeconfigFile: Decodable {
    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster?
    }

    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }

    struct NamedUser: Decodable {
        var name: String
        var user: User?
    }

    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var exec: Present?
        var authProvider: Present?
        var username: String?
        var password: String?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, exec, username, password
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
        }
    }

    struct NamedContext: Decodable {
        var name: String
        var context: Context?
    }

    struct Context: Decodable {
        var cluster: String?
        var user: String?
        var namespace: String?
    }

    /// Any value: only its presence matters.
    struct Present: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    var clusters: [NamedCluster]?
    var users: [NamedUser]?
    var contexts: [NamedContext]?
    var currentContext: String?

    enum CodingKeys: String, CodingKey {
        case clusters, users, contexts
        case currentContext = "current-context"
    }
}
