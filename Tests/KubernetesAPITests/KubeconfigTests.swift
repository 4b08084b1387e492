import Foundation
import KubernetesAPI
import TestSupport
import Testing

@Suite struct KubeconfigTests {
    static let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    static var pemBase64: String { Data(pem.utf8).base64EncodedString() }

    /// Writes `contents` as a kubeconfig in a fresh directory and parses it.
    static func parse(_ contents: String, context: String? = nil) throws(KubernetesConfigurationError)
        -> KubernetesClientConfiguration
    {
        let directory: TemporaryDirectory
        do {
            directory = try TemporaryDirectory(prefix: "nodeprof-kubeconfig")
            try contents.write(toFile: directory.file("config"), atomically: true, encoding: .utf8)
        } catch {
            fatalError("cannot write a temporary file: \(error)")
        }
        return try withExtendedLifetime(directory) { () throws(KubernetesConfigurationError) in
            try KubernetesClientConfiguration.kubeconfig(path: directory.file("config"), context: context)
        }
    }

    static func error(_ contents: String, context: String? = nil) -> KubernetesConfigurationError? {
        do {
            _ = try parse(contents, context: context)
            return nil
        } catch {
            return error
        }
    }

    /// A kind-style kubeconfig: data fields, a token, two contexts.
    static var kindConfig: String {
        """
        apiVersion: v1
        kind: Config
        preferences: {}
        clusters:
        - cluster:
            certificate-authority-data: \(pemBase64)
            server: https://127.0.0.1:6443
          name: kind-kind
        - cluster:
            insecure-skip-tls-verify: true
            server: https://[fd00::1]:443/
          name: lab
        contexts:
        - context:
            cluster: kind-kind
            user: kind-kind
            namespace: shop
          name: kind-kind
        - context:
            cluster: lab
            user: admin
          name: lab
        current-context: kind-kind
        users:
        - name: kind-kind
          user:
            token: abc.def.ghi
            client-certificate-data: \(pemBase64)
            client-key-data: \(pemBase64)
        - name: admin
          user:
            tokenFile: tokens/admin
        """
    }

    @Test func dataFieldsAndTheCurrentContext() throws {
        let configuration = try Self.parse(Self.kindConfig)
        #expect(configuration.server == "https://127.0.0.1:6443")
        #expect(configuration.tls.certificateAuthority == .data(Array(Self.pem.utf8)))
        #expect(configuration.tls.clientCertificate == .data(Array(Self.pem.utf8)))
        #expect(configuration.tls.clientKey == .data(Array(Self.pem.utf8)))
        #expect(!configuration.tls.insecureSkipVerify)
        #expect(configuration.credentials == .token("abc.def.ghi"))
        #expect(configuration.namespace == "shop")
    }

    @Test func namedContextWithRelativeTokenFile() throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-kubeconfig")
        try Self.kindConfig.write(toFile: directory.file("config"), atomically: true, encoding: .utf8)
        let configuration = try KubernetesClientConfiguration.kubeconfig(path: directory.file("config"), context: "lab")
        #expect(configuration.server == "https://[fd00::1]:443")
        #expect(configuration.tls.insecureSkipVerify)
        #expect(configuration.tls.certificateAuthority == nil)
        #expect(configuration.credentials == .tokenFile(directory.file("tokens/admin")))
        #expect(configuration.namespace == nil)
    }

    @Test func fileFieldsResolveAgainstTheKubeconfigDirectory() throws {
        let configuration = try Self.parse(
            """
            clusters:
            - name: c
              cluster:
                server: https://api.example.com:6443
                certificate-authority: certs/ca.crt
            users:
            - name: u
              user:
                client-certificate: /etc/absolute/client.crt
                client-key: client.key
            contexts:
            - name: x
              context: {cluster: c, user: u}
            current-context: x
            """)
        guard case .file(let ca) = configuration.tls.certificateAuthority,
            case .file(let key) = configuration.tls.clientKey
        else {
            Issue.record("expected file sources: \(configuration.tls)")
            return
        }
        #expect(ca.hasPrefix("/") && ca.hasSuffix("/certs/ca.crt"))
        #expect(key.hasPrefix("/") && key.hasSuffix("/client.key"))
        #expect(configuration.tls.clientCertificate == .file("/etc/absolute/client.crt"))
        #expect(configuration.credentials == .none)
    }

    @Test func tokenFileIsPreferredToAToken() throws {
        let configuration = try Self.parse(
            """
            clusters: [{name: c, cluster: {server: "http://127.0.0.1:8080"}}]
            users: [{name: u, user: {token: fixed, tokenFile: /var/run/token}}]
            contexts: [{name: x, context: {cluster: c, user: u}}]
            current-context: x
            """)
        #expect(configuration.credentials == .tokenFile("/var/run/token"))
        #expect(configuration.server == "http://127.0.0.1:8080")
    }

    @Test func brokenKubeconfigsSayWhatIsWrong() {
        let clusters = "clusters: [{name: c, cluster: {server: \"https://h:6443\"}}]\n"
        let users = "users: [{name: u, user: {token: t}}]\n"
        let contexts = "contexts: [{name: x, context: {cluster: c, user: u}}]\n"

        guard case .noCurrentContext? = Self.error(clusters + users + contexts) else {
            Issue.record("no current-context")
            return
        }
        #expect(Self.error(clusters + users + contexts + "current-context: \"\"\n") != nil)
        if case .unknownContext(_, let name)? = Self.error(clusters + users + contexts + "current-context: y\n") {
            #expect(name == "y")
        } else {
            Issue.record("unknown current context")
        }
        if case .unknownContext(_, let name)? = Self.error(clusters + users + contexts, context: "nope") {
            #expect(name == "nope")
        } else {
            Issue.record("unknown context")
        }
        if case .unknownUser(_, "x", "ghost")? = Self.error(
            clusters + users + "contexts: [{name: x, context: {cluster: c, user: ghost}}]\ncurrent-context: x\n")
        {
        } else {
            Issue.record("unknown user")
        }
        if case .unknownCluster(_, "x", "nowhere")? = Self.error(
            clusters + users + "contexts: [{name: x, context: {cluster: nowhere, user: u}}]\ncurrent-context: x\n")
        {
        } else {
            Issue.record("unknown cluster")
        }
        let badBase64 =
            "clusters: [{name: c, cluster: {server: \"https://h\", certificate-authority-data: \"%%%not base64%%%\"}}]\n"
            + users + contexts + "current-context: x\n"
        #expect(
            Self.error(badBase64).map { "\($0)" }?.contains("certificate-authority-data is not valid base64") == true)
        let noScheme =
            "clusters: [{name: c, cluster: {server: \"h:6443\"}}]\n" + users + contexts + "current-context: x\n"
        guard case .invalidServer? = Self.error(noScheme) else {
            Issue.record("server without a scheme")
            return
        }
        let noServer = "clusters: [{name: c, cluster: {}}]\n" + users + contexts + "current-context: x\n"
        #expect(Self.error(noServer).map { "\($0)" }?.contains("cluster \"c\" has no server") == true)
    }

    @Test func pluginsAreRefusedWithAdvice() {
        let exec = """
            clusters: [{name: c, cluster: {server: "https://h"}}]
            users:
            - name: eks
              user:
                exec:
                  apiVersion: client.authentication.k8s.io/v1beta1
                  command: aws
                  args: [eks, get-token, --cluster-name, prod]
            contexts: [{name: x, context: {cluster: c, user: eks}}]
            current-context: x
            """
        let error = Self.error(exec)
        guard case .unsupportedAuthentication(_, "eks", let method)? = error else {
            Issue.record("exec: \(String(describing: error))")
            return
        }
        #expect(method == "an exec plugin")
        #expect("\(error!)".contains("use a token"))

        let authProvider = exec.replacingOccurrences(
            of:
                "exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: [eks, get-token, --cluster-name, prod]",
            with: "auth-provider: {name: gcp}")
        guard case .unsupportedAuthentication(_, _, "an auth-provider")? = Self.error(authProvider) else {
            Issue.record("auth-provider: \(String(describing: Self.error(authProvider)))")
            return
        }
        let basic = exec.replacingOccurrences(
            of:
                "exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: [eks, get-token, --cluster-name, prod]",
            with: "username: admin\n    password: hunter2")
        guard case .unsupportedAuthentication(_, _, "basic authentication")? = Self.error(basic) else {
            Issue.record("basic: \(String(describing: Self.error(basic)))")
            return
        }
    }

    @Test(arguments: [
        "", "   \n", "{{{: [", "just a string", "- a\n- list\n", "clusters: {a: b}\n", "clusters: [1, 2]\n",
        "\u{0}\u{1}\u{2}binary\u{ff}", "current-context: [1]\n", "key: \"unterminated\n",
    ])
    func notKubeconfigs(contents: String) {
        guard case .invalidKubeconfig(_, let problem)? = Self.error(contents) else {
            Issue.record("\(contents.debugDescription): \(String(describing: Self.error(contents)))")
            return
        }
        #expect(!problem.isEmpty)
    }

    @Test func missingFileIsUnreadable() {
        #expect(throws: KubernetesConfigurationError.self) {
            try KubernetesClientConfiguration.kubeconfig(path: "/nonexistent/kubeconfig")
        }
        do {
            _ = try KubernetesClientConfiguration.kubeconfig(path: "/nonexistent/kubeconfig")
        } catch {
            guard case .unreadableFile(let path, "kubeconfig", _) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(path == "/nonexistent/kubeconfig")
        }
    }

    // MARK: In cluster

    static func serviceAccount() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory(prefix: "nodeprof-sa")
        try "token-1\n".write(toFile: directory.file("token"), atomically: true, encoding: .utf8)
        try pem.write(toFile: directory.file("ca.crt"), atomically: true, encoding: .utf8)
        try "monitoring\n".write(toFile: directory.file("namespace"), atomically: true, encoding: .utf8)
        return directory
    }

    @Test func inClusterFromTheServiceAccount() throws {
        let directory = try Self.serviceAccount()
        let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let configuration = try KubernetesClientConfiguration.inCluster(
            environment: environment, serviceAccountDirectory: directory.path)
        #expect(configuration.server == "https://10.96.0.1:443")
        #expect(configuration.tls.certificateAuthority == .file(directory.file("ca.crt")))
        #expect(configuration.credentials == .tokenFile(directory.file("token")))
        #expect(configuration.namespace == "monitoring")

        let ipv6 = try KubernetesClientConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "6443"],
            serviceAccountDirectory: directory.path + "/")
        #expect(ipv6.server == "https://[fd00:10:96::1]:6443")
    }

    @Test func inClusterFailuresSayWhatToDo() throws {
        #expect(throws: KubernetesConfigurationError.notInCluster) {
            try KubernetesClientConfiguration.inCluster(environment: [:])
        }
        #expect("\(KubernetesConfigurationError.notInCluster)".contains("KUBECONFIG"))
        let directory = try Self.serviceAccount()
        #expect(throws: KubernetesConfigurationError.self) {
            try KubernetesClientConfiguration.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "https"],
                serviceAccountDirectory: directory.path)
        }
        try FileManager.default.removeItem(atPath: directory.file("token"))
        do {
            _ = try KubernetesClientConfiguration.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                serviceAccountDirectory: directory.path)
            Issue.record("no token file, no error")
        } catch {
            guard case .unreadableFile(let path, _, let problem) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(path == directory.file("token"))
            #expect(problem.contains("automountServiceAccountToken"))
        }
    }

    @Test func defaultPicksExplicitThenKUBECONFIGThenInCluster() throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-kubeconfig")
        try Self.kindConfig.write(toFile: directory.file("a"), atomically: true, encoding: .utf8)
        let other = Self.kindConfig.replacingOccurrences(of: "https://127.0.0.1:6443", with: "https://10.1.1.1:6443")
        try other.write(toFile: directory.file("b"), atomically: true, encoding: .utf8)

        let explicit = try KubernetesClientConfiguration.default(
            kubeconfig: directory.file("b"), environment: ["KUBECONFIG": directory.file("a")])
        #expect(explicit.server == "https://10.1.1.1:6443")
        let fromEnvironment = try KubernetesClientConfiguration.default(
            environment: ["KUBECONFIG": directory.file("a") + ":" + directory.file("b")])
        #expect(fromEnvironment.server == "https://127.0.0.1:6443")

        let serviceAccount = try Self.serviceAccount()
        #expect(throws: KubernetesConfigurationError.notInCluster) {
            try KubernetesClientConfiguration.default(environment: [:])
        }
        // In cluster is the last resort; the default directory does not exist here.
        #expect(throws: KubernetesConfigurationError.self) {
            try KubernetesClientConfiguration.default(
                environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"])
        }
        _ = serviceAccount
    }

    @Test func clientRefusesBadTLSMaterial() throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-tls")
        try "not a certificate".write(toFile: directory.file("ca.crt"), atomically: true, encoding: .utf8)
        func clientError(_ tls: KubernetesClientConfiguration.TLS) -> KubernetesConfigurationError? {
            do {
                _ = try KubernetesClient(configuration: KubernetesClientConfiguration(server: "https://h", tls: tls))
                return nil
            } catch {
                return error
            }
        }
        guard case .invalidTLS? = clientError(.init(certificateAuthority: .file(directory.file("ca.crt")))) else {
            Issue.record("not PEM")
            return
        }
        guard case .invalidTLS? = clientError(.init(certificateAuthority: .data(Array(Self.pem.utf8)))) else {
            Issue.record("PEM but not a certificate")
            return
        }
        guard case .unreadableFile? = clientError(.init(certificateAuthority: .file(directory.file("missing")))) else {
            Issue.record("missing file")
            return
        }
        #expect(throws: KubernetesConfigurationError.self) {
            try KubernetesClient(configuration: KubernetesClientConfiguration(server: "ftp://h"))
        }
    }
}
