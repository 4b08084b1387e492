public import Export
public import KubeMetadata
public import KubernetesAPI
public import Logging
public import NodeprofCore
import ProcessContext
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
/// SamplingService --windows--> AttributionService --> ProfileExport --> collector
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
            state: state, logger: logger
        ) { [state] in
            var cgroups = CgroupAttribution()
            return { pid, cgroupID in
                let identity = cgroups.identity(cgroupID: cgroupID, pid: pid)
                let entries = cgroups.count
                state.update { $0.cgroupCacheEntries = entries }
                return identity
            }
        }
        // The flush gets what is left of the shutdown bound after sampling has stopped (it
        // stops within a poll timeout).
        let attribution = AttributionService(
            windows: windows, podCache: podCache, export: export, state: state,
            attributionGrace: configuration.attributionGrace,
            flushTimeout: max(.seconds(1), configuration.shutdownTimeout - .seconds(3)), logger: logger)
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

    /// What was read of the process and thread context processes publish.
    public static func processContextSamples(_ contexts: ProcessContextStatistics) -> [MetricSample] {
        let reader = contexts.reader
        var samples: [MetricSample] = [
            .gauge(
                "nodeprof_process_contexts", "Processes known to publish a process context (OTEP 4719).",
                Double(contexts.processesWithContext))
        ]
        let lookups = [
            ("read", reader.reads), ("unchanged", reader.cacheHits), ("none", reader.withoutContext),
            ("bad_signature", reader.badSignature), ("bad_version", reader.badVersion), ("bad_size", reader.badSize),
            ("not_published", reader.notPublished), ("torn", reader.torn), ("unreadable", reader.unreadableMemory),
            ("decode_error", reader.decodeErrors), ("process_gone", reader.processesGone),
        ]
        for (result, count) in lookups {
            samples.append(
                .counter(
                    "nodeprof_process_context_lookups_total",
                    "Process-context lookups by result: read (payload decoded), unchanged (header only), none (no OTEL_CTX mapping), or why the context was refused.",
                    count, labels: [("result", result)]))
        }
        for (result, count) in [
            ("located", contexts.threadContextsLocated), ("unsupported", contexts.locateFailures),
            ("map_update_failed", contexts.mapUpdateFailures),
        ] {
            samples.append(
                .counter(
                    "nodeprof_thread_context_processes_total",
                    "Processes that announced thread context (OTEP 4947), by whether the sampler could follow their TLS variable.",
                    count, labels: [("result", result)]))
        }
        for (result, count) in [("decoded", contexts.recordsDecoded), ("invalid", contexts.recordsInvalid)] {
            samples.append(
                .counter(
                    "nodeprof_thread_context_records_total",
                    "Span records received from the sampler, by decoding result.",
                    count, labels: [("result", result)]))
        }
        samples.append(
            .counter(
                "nodeprof_thread_context_key_map_refreshes_total",
                "Process contexts read again because a span record used an attribute key index beyond the known map.",
                contexts.keyMapRefreshes))
        return samples
    }

    func metricSamples(exporter: OTLPExporter, podCache: PodCache?, podWatch: PodWatchService?) async -> [MetricSample]
    {
        let snapshot = state.snapshot
        let counters = snapshot.samplerCounters
        var samples: [MetricSample] = [
            .counter("nodeprof_bpf_samples_seen_total", "Perf events the BPF program ran for.", counters.seen),
            .counter("nodeprof_samples_received_total", "Samples read from the ring buffer.", counters.received),
            .counter("nodeprof_samples_recorded_total", "Samples symbolized into profiles.", snapshot.samplesRecorded),
            .counter(
                "nodeprof_samples_dropped_total", "Samples lost, by reason.", counters.lostRingBufferFull,
                labels: [("reason", "ring_buffer_full")]),
            .counter(
                "nodeprof_samples_dropped_total", "Samples lost, by reason.", counters.malformedRecords,
                labels: [("reason", "malformed")]),
            .counter(
                "nodeprof_samples_dropped_total", "Samples lost, by reason.", counters.internalErrors,
                labels: [("reason", "bpf_internal_error")]),
            .counter(
                "nodeprof_samples_idle_total", "Samples of the idle task, dropped in the kernel.", counters.idleDropped),
            .counter(
                "nodeprof_thread_context_samples_total",
                "Samples that carried the thread's span record (OTEP 4947 thread context).",
                counters.threadContextsFound),
            .counter(
                "nodeprof_thread_context_unreadable_total",
                "Located thread-context variables or span records the BPF program could not read.",
                counters.threadContextsUnreadable),
            .counter(
                "nodeprof_thread_context_invalid_total",
                "Samples whose thread had a span record attached that was not marked valid (sent without a span).",
                counters.threadContextsInvalid),
            .counter("nodeprof_windows_total", "Profiles (export windows) closed.", snapshot.windowsClosed),
            .counter(
                "nodeprof_windows_dropped_total", "Profiles dropped because export fell behind.",
                snapshot.windowsDropped),
            .gauge("nodeprof_processes_tracked", "Processes the symbolizer tracks.", Double(snapshot.processesTracked)),
            .gauge("nodeprof_up", "1 while the sampler runs.", snapshot.samplerRunning ? 1 : 0),
        ]
        samples += Self.processContextSamples(snapshot.processContexts)
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

        let export = await exporter.statistics
        samples += [
            .counter(
                "nodeprof_export_requests_total", "OTLP export requests by result.", export.succeeded.requests,
                labels: [("result", "success")]),
            .counter(
                "nodeprof_export_requests_total", "OTLP export requests by result.", export.partiallySucceeded.requests,
                labels: [("result", "partial_success")]),
            .counter(
                "nodeprof_export_samples_total", "Samples the collector accepted.",
                export.succeeded.samples + export.partiallySucceeded.samples),
            .counter("nodeprof_export_attempts_total", "Export attempts, first tries and retries.", export.attempts),
            .counter("nodeprof_export_retries_total", "Export attempts that were retries.", export.retries),
            .counter("nodeprof_export_bytes_total", "Protobuf bytes sent, before compression.", export.bytesSent),
            .gauge("nodeprof_export_queue_bytes", "Bytes queued or in flight.", Double(export.queuedBytes)),
        ]
        for (reason, counts) in export.dropped.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            samples.append(
                .counter(
                    "nodeprof_export_requests_dropped_total", "OTLP export requests dropped, by reason.",
                    counts.requests,
                    labels: [("reason", reason.rawValue)]))
        }

        samples.append(
            .gauge(
                "nodeprof_cgroup_cache_entries", "Cgroups the agent has resolved.", Double(snapshot.cgroupCacheEntries))
        )
        if let podCache {
            let pods = await podCache.currentStatistics
            samples += [
                .gauge("nodeprof_pod_cache_pods", "Pods of this node in the cache.", Double(pods.pods)),
                .gauge(
                    "nodeprof_pod_cache_containers", "Containers of this node's pods in the cache.",
                    Double(pods.containers)),
                .counter("nodeprof_pod_cache_job_lookups_total", "Job GETs made to find CronJobs.", pods.jobLookups),
                .counter(
                    "nodeprof_pod_cache_overflow_total", "Pods refused because the cache was full.", pods.overflow),
            ]
            for (reason, count) in pods.rejected.sorted(by: { $0.key < $1.key }) {
                samples.append(
                    .counter(
                        "nodeprof_pod_cache_rejected_total", "Pods from the API that could not be cached, by reason.",
                        count, labels: [("reason", reason)]))
            }
        }
        if let podWatch { samples += podWatch.metricSamples() }
        return samples
    }
}
