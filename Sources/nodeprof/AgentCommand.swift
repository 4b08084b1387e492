import Agent
import ArgumentParser
import Export
import Foundation
import KubeMetadata
import KubernetesAPI
import Logging
import Profiles
import Sampling
import Symbolization

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Profile this node without end and export OTLP profiles with pod and container attributes.",
        discussion: """
            The long-running mode, run on every node by the DaemonSet. Samples every CPU at \
            --frequency Hz and exports one OTLP profile request every --export-interval. Each \
            process's resource carries its container (container.id, from its cgroup) and, \
            from a list/watch of this node's pods on the Kubernetes API, its pod: k8s.pod.name, \
            k8s.namespace.name, k8s.container.name, owners (deployment, statefulset, cronjob, \
            ...), service.name and more (docs/kubernetes.md).

            Kubernetes access: --kubeconfig FILE (or KUBECONFIG), else the in-cluster service \
            account (KUBERNETES_SERVICE_HOST, token and CA under --service-account-dir). \
            --kubernetes off profiles without the API (container ids only). The node's name \
            comes from --node-name, else NODE_NAME (set it from the downward API: \
            spec.nodeName), else the host name.

            Health and metrics on one HTTP port (--listen-address): /healthz (liveness), \
            /readyz (ready once sampling runs and the pod list has synced), /metrics \
            (Prometheus). SIGTERM stops sampling, exports the last profile and exits within \
            --shutdown-timeout.

            Examples:
              nodeprof agent --otlp-endpoint http://otel-collector:4317
              nodeprof agent --kubeconfig ~/.kube/config --node-name worker-1 \\
                  --otlp-endpoint http://localhost:4318 --pod-label team --pod-annotation 'example.com/*'
            """)

    @Option(help: "Samples per second on each CPU (continuous profiling: 19 is cheap and enough).")
    var frequency: UInt64 = 19

    @Option(help: "How often to export a profile (its length).")
    var exportInterval = DurationArgument(seconds: 10)

    @OptionGroup(title: "OTLP export (required: where profiles go)")
    var otlp: OTLPOptions

    @Option(
        help: ArgumentHelp(
            "auto: use the Kubernetes API when a kubeconfig or in-cluster account is found; on: require it; off: never.",
            valueName: "auto|on|off"))
    var kubernetes = KubernetesMode.auto

    @Option(help: ArgumentHelp("Kubeconfig file for running outside the cluster (else KUBECONFIG).", valueName: "FILE"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("Context of --kubeconfig to use (else its current-context).", valueName: "NAME"))
    var kubeContext: String?

    @Option(
        help: ArgumentHelp(
            "Service account directory (token, ca.crt) when running in the cluster.", valueName: "DIR"))
    var serviceAccountDir = KubernetesClientConfiguration.serviceAccountDirectory

    @Option(help: ArgumentHelp("This node's name (else NODE_NAME, else the host name).", valueName: "NAME"))
    var nodeName: String?

    @Option(
        name: .customLong("pod-label"),
        help: ArgumentHelp(
            "Copy this pod label as k8s.pod.label.KEY (repeatable; KEY* matches a prefix).", valueName: "KEY"))
    var podLabels: [String] = []

    @Option(
        name: .customLong("pod-annotation"),
        help: ArgumentHelp(
            "Copy this pod annotation as k8s.pod.annotation.KEY (repeatable; KEY* matches a prefix).", valueName: "KEY")
    )
    var podAnnotations: [String] = []

    @Option(
        help: ArgumentHelp(
            "Where /healthz, /readyz and /metrics listen (HOST:PORT; port 0 picks a free one).", valueName: "HOST:PORT")
    )
    var listenAddress = "0.0.0.0:9464"

    @Option(help: "Upper bound on a graceful shutdown (SIGTERM); keep it below the pod's termination grace period.")
    var shutdownTimeout = DurationArgument(seconds: 20)

    @Option(help: "How long a profile waits for a pod the watch has not delivered yet before it is exported.")
    var attributionGrace = DurationArgument(seconds: 2)

    @Option(
        name: .customLong("ring-buffer-mib"),
        help: ArgumentHelp(
            "Ring buffer size in MiB between the kernel and nodeprof (a power of two).", valueName: "MiB"))
    var ringBufferMiB: UInt32?

    @Flag(help: "Export a count per stack instead of per-sample timestamps (smaller; no timeline).")
    var noTimestamps = false

    @Option(help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error.", valueName: "level"))
    var logLevel = "info"

    enum KubernetesMode: String, ExpressibleByArgument, CaseIterable {
        case auto, on, off
    }

    func validate() throws {
        guard frequency >= 1 else { throw ValidationError("--frequency must be at least 1 Hz") }
        guard exportInterval.seconds >= 1 else { throw ValidationError("--export-interval must be at least 1s") }
        guard shutdownTimeout.seconds >= 2 else { throw ValidationError("--shutdown-timeout must be at least 2s") }
        guard attributionGrace.seconds >= 0, attributionGrace.seconds <= 60 else {
            throw ValidationError("--attribution-grace must be between 0s and 60s")
        }
        if let mib = ringBufferMiB, mib < 1 || mib > 1024 || mib & (mib - 1) != 0 {
            throw ValidationError("--ring-buffer-mib must be a power of two between 1 and 1024")
        }
        _ = try listen()
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level \(logLevel): use trace, debug, info, notice, warning or error")
        }
    }

    func listen() throws -> (host: String, port: Int) {
        guard let colon = listenAddress.lastIndex(of: ":"),
            let port = Int(listenAddress[listenAddress.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw ValidationError("--listen-address \(listenAddress): write it as HOST:PORT, such as 0.0.0.0:9464")
        }
        var host = String(listenAddress[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    func run() async throws {
        // A parent may start us with these blocked (they are inherited): unblock them, or
        // SIGTERM from the kubelet would never reach the graceful shutdown.
        var signals = sigset_t()
        sigemptyset(&signals)
        for number in [SIGTERM, SIGINT, SIGQUIT] { sigaddset(&signals, number) }
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        // Logs go to stderr (a container's log); stdout stays free.
        LoggingSystem.bootstrap { label in StreamLogHandler.standardError(label: label) }
        var logger = Logger(label: "nodeprof.agent")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        guard let exporter = try otlp.exporterConfiguration() else {
            throw AgentStartupError(
                description: "nodeprof agent needs a collector: --otlp-endpoint URL (or OTEL_EXPORTER_OTLP_ENDPOINT)")
        }
        let environment = ProcessInfo.processInfo.environment
        let node = nodeName ?? environment["NODE_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? hostName()
        let kubernetesSettings = try kubernetesConfiguration(environment: environment, nodeName: node, logger: logger)
        let (host, port) = try listen()
        let configuration = NodeAgentConfiguration(
            sampler: SamplerConfiguration(
                frequency: frequency, processIDs: nil, dropIdle: true, ringBufferBytes: ringBufferMiB.map { $0 << 20 }),
            exportInterval: exportInterval.seconds, exporter: exporter,
            builder: .init(
                hostName: node, kernelBuildID: KernelSymbols.buildID(), scopeVersion: NodeprofVersion.string,
                sampleTimestamps: !noTimestamps),
            listenHost: host, listenPort: port, kubernetes: kubernetesSettings,
            attributionGrace: .milliseconds(Int(attributionGrace.seconds * 1000)),
            shutdownTimeout: .milliseconds(Int(shutdownTimeout.seconds * 1000)))
        logger.info(
            "nodeprof agent \(NodeprofVersion.string) on node \(node): exporting to \(exporter.endpoint) (\(exporter.transportProtocol)) every \(exportInterval)"
        )
        try await NodeAgent(configuration: configuration, logger: logger).run()
        logger.info("stopped")
    }

    func kubernetesConfiguration(environment: [String: String], nodeName: String, logger: Logger) throws
        -> NodeAgentConfiguration.Kubernetes?
    {
        let attributes = PodAttributeConfiguration(
            nodeName: nodeName, labelKeys: podLabels, annotationKeys: podAnnotations)
        switch kubernetes {
        case .off:
            logger.info("Kubernetes attribution is off: processes carry their container id only")
            return nil
        case .on, .auto:
            let explicit =
                kubeconfig != nil || !(environment["KUBECONFIG"] ?? "").isEmpty
                || !(environment["KUBERNETES_SERVICE_HOST"] ?? "").isEmpty
            if kubernetes == .auto && !explicit {
                logger.notice(
                    "no kubeconfig and not in a cluster (KUBERNETES_SERVICE_HOST unset): profiling without pod attributes; --kubernetes on makes this an error"
                )
                return nil
            }
            do {
                let client: KubernetesClientConfiguration
                let firstListed = (environment["KUBECONFIG"] ?? "").split(separator: ":").first.map(String.init)
                if let path = kubeconfig ?? firstListed {
                    client = try .kubeconfig(path: path, context: kubeContext)
                } else {
                    client = try .inCluster(environment: environment, serviceAccountDirectory: serviceAccountDir)
                }
                return NodeAgentConfiguration.Kubernetes(client: client, attributes: attributes)
            } catch {
                throw AgentStartupError(description: "\(error)")
            }
        }
    }
}

/// A configuration problem found at startup: printed as one line, without the usage text
/// (the flags were fine; their target was not).
struct AgentStartupError: Error, CustomStringConvertible {
    var description: String
}
