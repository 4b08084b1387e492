import FoundationEssentials
import HTTPTransport
import NodeprofCore

/// Where and how to reach the Kubernetes API server: its URL, TLS trust and client
/// certificate, and the credentials sent with every request.
///
/// Made by ``inCluster(environment:serviceAccountDirectory:)`` inside a pod, by
/// ``kubeconfig(path:context:)`` from a kubeconfig file, or by
/// ``default(kubeconfig:environment:)`` which picks one of the two the way kubectl does.
public struct KubernetesClientConfiguration: Sendable, Hashable {
    /// PEM bytes, given inline or as a file read when the client is created.
    public enum PEMSource: Sendable, Hashable {
        case file(String)
        case data([UInt8])

        /// The same source for the shared TLS setup (`HTTPTransport`).
        var shared: HTTPTransport.PEMSource {
            switch self {
            case .file(let path): .file(path)
            case .data(let bytes): .data(bytes)
            }
        }
    }

    public struct TLS: Sendable, Hashable {
        /// The CA that signed the server's certificate; `nil` trusts the system roots.
        public var certificateAuthority: PEMSource?
        /// A client certificate and its key, for clusters that authenticate by certificate.
        public var clientCertificate: PEMSource?
        public var clientKey: PEMSource?
        /// Do not verify the server's certificate (kubeconfig `insecure-skip-tls-verify`).
        /// For test clusters only: anyone on the path can impersonate the API server.
        public var insecureSkipVerify: Bool

        public init(
            certificateAuthority: PEMSource? = nil, clientCertificate: PEMSource? = nil, clientKey: PEMSource? = nil,
            insecureSkipVerify: Bool = false
        ) {
            self.certificateAuthority = certificateAuthority
            self.clientCertificate = clientCertificate
            self.clientKey = clientKey
            self.insecureSkipVerify = insecureSkipVerify
        }

        /// The shared TLS settings of these.
        var settings: ClientTLSSettings {
            ClientTLSSettings(
                certificateAuthority: certificateAuthority?.shared, clientCertificate: clientCertificate?.shared,
                clientKey: clientKey?.shared, skipServerVerification: insecureSkipVerify)
        }
    }

    /// What authenticates the requests.
    public enum Credentials: Sendable, Hashable {
        /// Nothing (a client certificate, or an unauthenticated test server).
        case none
        /// A fixed bearer token.
        case token(String)
        /// A bearer token read from a file, re-read every ``tokenRefreshInterval`` and right
        /// after any 401: the kubelet rotates projected service account tokens in place.
        case tokenFile(String)
    }

    /// `https://host:port`, without a trailing slash.
    public var server: String
    public var tls: TLS
    public var credentials: Credentials
    /// The namespace of the context or of the service account, when known.
    public var namespace: String?
    /// Longest wait for the response head of any request (the connection, TLS and the
    /// server's answer).
    public var requestTimeout: Duration
    /// Longest silence on a response before the request is abandoned: no byte, not even a
    /// watch bookmark. A watch that stays silent this long is treated as stalled and resumed.
    /// The API server sends bookmarks about once a minute, so the default is 90 s.
    public var readIdleTimeout: Duration
    /// How often a token file is re-read (besides after a 401).
    public var tokenRefreshInterval: Duration

    public init(
        server: String, tls: TLS = TLS(), credentials: Credentials = .none, namespace: String? = nil,
        requestTimeout: Duration = .seconds(30), readIdleTimeout: Duration = .seconds(90),
        tokenRefreshInterval: Duration = .seconds(60)
    ) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.tls = tls
        self.credentials = credentials
        self.namespace = namespace
        self.requestTimeout = requestTimeout
        self.readIdleTimeout = readIdleTimeout
        self.tokenRefreshInterval = tokenRefreshInterval
    }

    /// The service account directory every pod gets (unless it opts out of automounting).
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The configuration of a pod: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
    /// the CA `ca.crt` and the token file `token` of the service account directory, whose
    /// `namespace` file names the pod's namespace.
    ///
    /// The token is a file credential (re-read as the kubelet rotates it); its presence is
    /// checked here so that a pod without a mounted token fails at startup.
    public static func inCluster(
        environment: [String: String], serviceAccountDirectory: String = serviceAccountDirectory
    ) throws(KubernetesConfigurationError) -> KubernetesClientConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw .notInCluster
        }
        guard let portNumber = Int(port), (1...65535).contains(portNumber) else {
            throw .invalidServer(
                source: "KUBERNETES_SERVICE_PORT", server: port, problem: "is not a port number between 1 and 65535")
        }
        // An IPv6 address goes in brackets in a URL.
        let authority = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        let directory = serviceAccountDirectory.hasSuffix("/") ? serviceAccountDirectory : serviceAccountDirectory + "/"
        let tokenPath = directory + "token"
        let caPath = directory + "ca.crt"
        for (path, what) in [(tokenPath, "service account token"), (caPath, "service account CA certificate")] {
            guard FileContents.exists(path) else {
                throw .unreadableFile(
                    path: path, what: what,
                    problem:
                        "does not exist; the pod needs a service account token mounted (automountServiceAccountToken must not be false)"
                )
            }
        }
        var namespace: String?
        if let bytes = try? FileContents.read(directory + "namespace", limit: 4096) {
            let text = String(decoding: bytes, as: UTF8.self).trimmingASCIIWhitespace()
            namespace = text.isEmpty ? nil : text
        }
        return KubernetesClientConfiguration(
            server: "https://\(authority):\(portNumber)", tls: TLS(certificateAuthority: .file(caPath)),
            credentials: .tokenFile(tokenPath), namespace: namespace)
    }

    /// The configuration kubectl would use: the kubeconfig file `kubeconfig` when given, else
    /// the first file of `KUBECONFIG`, else the in-cluster configuration.
    public static func `default`(
        kubeconfig: String? = nil, environment: [String: String]
    ) throws(KubernetesConfigurationError) -> KubernetesClientConfiguration {
        if let kubeconfig, !kubeconfig.isEmpty {
            return try Self.kubeconfig(path: kubeconfig)
        }
        if let list = environment["KUBECONFIG"],
            let first = list.split(separator: ":", omittingEmptySubsequences: true).first
        {
            return try Self.kubeconfig(path: String(first))
        }
        return try inCluster(environment: environment)
    }
}

/// A Kubernetes client configuration that cannot be used; the message says what to change.
public enum KubernetesConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Neither a kubeconfig nor the in-cluster environment variables.
    case notInCluster
    /// A file (kubeconfig, token, certificate) cannot be read.
    case unreadableFile(path: String, what: String, problem: String)
    /// The kubeconfig is not YAML or not shaped like a kubeconfig.
    case invalidKubeconfig(path: String, problem: String)
    /// No `current-context` and no context was asked for.
    case noCurrentContext(path: String)
    case unknownContext(path: String, name: String)
    case unknownCluster(path: String, context: String, name: String)
    case unknownUser(path: String, context: String, name: String)
    /// A `*-data` field that is not base64.
    case invalidBase64(path: String, field: String)
    /// An `exec` plugin, an `auth-provider` or basic authentication.
    case unsupportedAuthentication(path: String, user: String, method: String)
    case invalidServer(source: String, server: String, problem: String)
    /// Certificates or a key that cannot be loaded.
    case invalidTLS(problem: String)

    public var description: String {
        switch self {
        case .notInCluster:
            return
                "no Kubernetes configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod); pass --kubeconfig or set KUBECONFIG"
        case .unreadableFile(let path, let what, let problem):
            return "cannot read the \(what) \(path): \(problem)"
        case .invalidKubeconfig(let path, let problem):
            return "kubeconfig \(path) is invalid: \(problem); check it with `kubectl config view --kubeconfig \(path)`"
        case .noCurrentContext(let path):
            return
                "kubeconfig \(path) has no current-context; set one with `kubectl config use-context NAME` or name a context"
        case .unknownContext(let path, let name):
            return "kubeconfig \(path) has no context named \"\(name)\"; list them with `kubectl config get-contexts`"
        case .unknownCluster(let path, let context, let name):
            return
                "kubeconfig \(path): context \"\(context)\" names cluster \"\(name)\", which is not in the clusters list"
        case .unknownUser(let path, let context, let name):
            return "kubeconfig \(path): context \"\(context)\" names user \"\(name)\", which is not in the users list"
        case .invalidBase64(let path, let field):
            return "kubeconfig \(path): \(field) is not valid base64; it must hold the base64 of a PEM file"
        case .unsupportedAuthentication(let path, let user, let method):
            return
                "kubeconfig \(path): user \"\(user)\" authenticates with \(method), which nodeprof does not support; use a token (a service account token via `token` or `tokenFile`) or a client certificate"
        case .invalidServer(let source, let server, let problem):
            return "Kubernetes API server \"\(server)\" from \(source) \(problem)"
        case .invalidTLS(let problem):
            return "cannot set up TLS to the Kubernetes API server: \(problem)"
        }
    }
}
