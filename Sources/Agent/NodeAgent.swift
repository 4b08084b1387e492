public import Export
public import KubeMetadata
public import KubernetesAPI
public import Logging
public import NodeprofCore
import ProcessContext
public import ProcessTable
public import Profiles
public import Sampling
public import ServiceLifecycle
import Symbolization
import UnixSignals

/// Everything `nodeprof agent` needs to run.
public struct NodeAgentConfiguration: Sendable {
    public var sampler: SamplerConfiguration
    /// Length of a profile (and of the pause between exports), in seconds.
    public var exportInterval: Double
    public var exporter: OTLPExporterConfiguration
    public var builder: OTLPBuilder.Configuration
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    public var listenHost: String
    public var listenPort: Int
    /// Kubernetes attribution; nil profiles the node with container ids only.
    public var kubernetes: Kubernetes?
    /// How long a window with a not-yet-known pod container waits for the pod watch.
    public var attributionGrace: Duration
    /// The bound on a graceful shutdown (SIGTERM): the last window is exported within it.
    /// Keep it below the pod's `terminationGracePeriodSeconds` (30 s by default).
    public var shutdownTimeout: Duration

    public struct Kubernetes: Sendable {
        public var client: KubernetesClientConfiguration
        public var attributes: PodAttributeConfiguration
        /// Watch timeout range (the server ends each watch after a random time in it).
        public var watchTimeoutSeconds: ClosedRange<Int>

        public init(
            client: KubernetesClientConfiguration, attributes: PodAttributeConfiguration,
            watchTimeoutSeconds: ClosedRange<Int> = 240...360
        ) {
            self.client = client
            self.attributes = attributes
            self.watchTimeoutSeconds = watchTimeoutSeconds
        }
    }

    public init(
        sampler: SamplerConfiguration, exportInterval: Double, exporter: OTLPExporterConfiguration,
        builder: OTLPBuilder.Configuration, listenHost: String, listenPort: Int, kubernetes: Kubernetes?,
        attributionGrace: Duration = .seconds(2), shutdownTimeout: Duration = .seconds(20)
    ) {
        self.sampler = sampler
        self.exportInterval = exportInterval
        self.exporter = exporter
        self.builder = builder
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.kubernetes = kubernetes
        self.attributionGrace = attributionGrace
        self.shutdownTimeout = shutdownTimeout
    }
}

/// `nodeprof agent`: the long-running mode, as a `ServiceGroup`:
///
/// ```
/// SamplingService --windows--> AttributionService --> ProfileExport --> OTLPExporter --> collector
///       | cgroup id -> container (CgroupAttribution)     ^
///       v                                                | attributes
/// PodWatchService (list/watch pods of this node) --> PodCache
/// StatusServer: /healthz /readyz /metrics
/// ```
///
/// SIGTERM or SIGINT shut it down gracefully in reverse order: sampling stops and hands
/// over its last window, attribution exports it and flushes, the pod watch stops, and the
/// status server closes last.
public final class NodeAgent: Sendable {
    public let configuration: NodeAgentConfiguration
    public let state = AgentState()
    public let metrics = AgentMetrics()
    private let logger: Logger

    public init(configuration: NodeAgentConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let configuration = self.configuration
        let exporter = try OTLPExporter(configuration: configuration.exporter, logger: logger)
        let export = ProfileExport(
            builder: OTLPBuilder(configuration: configuration.builder), exporter: exporter, logger: logger)
        // Two windows may wait for export; beyond that export has fallen behind and the oldest
        // windows are kept (newer ones are dropped and counted).
        let (windows, windowInput) = AsyncStream.makeStream(of: ClosedWindow.self, bufferingPolicy: .bufferingOldest(2))

        var podCache: PodCache?
        var podWatch: PodWatchService?
        var client: KubernetesClient?
        if let kubernetes = configuration.kubernetes {
            let kubernetesClient = try KubernetesClient(configuration: kubernetes.client, logger: logger)
            client = kubernetesClient
            let cache = PodCache(
                configuration: kubernetes.attributes, jobLookup: JobOwnersFromAPI(client: kubernetesClient),
                logger: logger)
            podCache = cache
            podWatch = PodWatchService(
                client: kubernetesClient, nodeName: kubernetes.attributes.nodeName, cache: cache,
                watchTimeoutSeconds: kubernetes.watchTimeoutSeconds, state: state, logger: logger)
            state.update { $0.kubernetesRequired = true }
        }

        let sampling = SamplingService(
            configuration: configuration.sampler, windowSeconds: configuration.exportInterval, windows: windowInput,
            state: state, logger: logger)
        let attribution = AttributionService(
            windows: windows, podCache: podCache, export: export, state: state,
            attributionGrace: configuration.attributionGrace)
        let status = StatusServer(host: configuration.listenHost, port: configuration.listenPort, logger: logger) {
            [self, podCache, podWatch] path in
            await self.respond(path: path, exporter: exporter, podCache: podCache, podWatch: podWatch)
        }

        // Shut down in reverse order: sampling first, the status server last.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: status, successTerminationBehavior: .gracefullyShutdownGroup)
        ]
        if let podWatch {
            services.append(.init(service: podWatch, successTerminationBehavior: .gracefullyShutdownGroup))
        }
        // The exporter drains on its turn, after attribution has handed over the last window;
        // it gets what is left of the one shutdown bound.
        services.append(.init(service: exporter, successTerminationBehavior: .gracefullyShutdownGroup))
        services.append(.init(service: attribution, successTerminationBehavior: .gracefullyShutdownGroup))
        services.append(.init(service: sampling, successTerminationBehavior: .gracefullyShutdownGroup))
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [.sigquit],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownTimeout
        groupConfiguration.maximumCancellationDuration = .seconds(3)
        let group = ServiceGroup(configuration: groupConfiguration)
        do {
            try await group.run()
        } catch {
            await client?.shutdown()
            throw error
        }
        await client?.shutdown()
    }

    // MARK: Status endpoints

    private func respond(
        path: String, exporter: OTLPExporter, podCache: PodCache?, podWatch: PodWatchService?
    ) async -> StatusResponse {
        switch path {
        case "/healthz", "/livez":
            return state.isAlive()
                ? StatusResponse(status: 200, body: "ok\n")
                : StatusResponse(
                    status: 503,
                    body:
                        "the sampling loop has not reported for 30 s\(state.snapshot.samplingError.map { ": \($0)" } ?? "")\n"
                )
        case "/readyz":
            let (ready, reasons) = state.readiness()
            return ready
                ? StatusResponse(status: 200, body: "ok\n")
                : StatusResponse(status: 503, body: reasons.joined(separator: "\n") + "\n")
        case "/metrics":
            let samples = await metricSamples(exporter: exporter, podCache: podCache, podWatch: podWatch)
            return StatusResponse(
                status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render(samples))
        default:
            return StatusResponse(status: 404, body: "not found: try /healthz, /readyz or /metrics\n")
        }
    }

    func metricSamples(exporter: OTLPExporter, podCache: PodCache?, podWatch: PodWatchService?) async -> [MetricSample]
    {
        let snapshot = state.snapshot
        let counters = snapshot.samplerCounters
        var samples = counters.metricSamples + snapshot.processTable.metricSamples
        samples += [
            .counter("nodeprof_samples_recorded_total", "Samples symbolized into profiles.", snapshot.samplesRecorded),
            .counter("nodeprof_windows_total", "Profiles (export windows) closed.", snapshot.windowsClosed),
            .counter(
                "nodeprof_windows_dropped_total", "Profiles dropped because export fell behind.",
                snapshot.windowsDropped),
            .gauge("nodeprof_up", "1 while the sampler runs.", snapshot.samplerRunning ? 1 : 0),
        ]
        for (target, processes, count) in [
            ("pod", snapshot.processesAttributedToPods, snapshot.samplesAttributedToPods),
            ("container", snapshot.processesAttributedToContainersOnly, snapshot.samplesAttributedToContainersOnly),
            ("node", snapshot.processesOnNode, snapshot.samplesOnNode),
        ] {
            samples.append(
                .counter(
                    "nodeprof_samples_attributed_total", "Samples by what they were attributed to.", count,
                    labels: [("to", target)]))
            samples.append(
                .counter(
                    "nodeprof_process_windows_attributed_total",
                    "Processes (per profile) by what they were attributed to.", processes, labels: [("to", target)]))
        }

        samples += await exporter.statistics.metricSamples
        if let podCache { samples += await podCache.currentStatistics.metricSamples }
        if let podWatch { samples += podWatch.metricSamples() }
        return samples
    }
}
