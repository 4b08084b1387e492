public import KubeMetadata
public import KubernetesAPI
public import Logging
import NodeprofCore
public import ServiceLifecycle

/// Keeps the ``PodCache`` equal to the API server's pods of this node: a
/// ``ListWatch`` of `/api/v1/pods?fieldSelector=spec.nodeName=<node>`, forever. Readiness
/// waits for its first list; failures are retried by the list/watch itself (with backoff)
/// and show on `/metrics` and `/readyz`.
public final class PodWatchService: Service, Sendable {
    private let listWatch: ListWatch<Pod>
    private let cache: PodCache
    private let state: AgentState
    private let logger: Logger

    public init(
        client: KubernetesClient, nodeName: String, cache: PodCache, watchTimeoutSeconds: ClosedRange<Int>,
        state: AgentState, logger: Logger
    ) {
        listWatch = ListWatch(
            client: client,
            configuration: .init(
                path: "/api/v1/pods", fieldSelector: "spec.nodeName=\(nodeName)",
                watchTimeoutSeconds: watchTimeoutSeconds),
            logger: logger)
        self.cache = cache
        self.state = state
        self.logger = logger
    }

    public var statistics: ListWatchStatistics { listWatch.statistics }

    public func run() async throws {
        // The sequence ends only when this task is cancelled, which a graceful shutdown does.
        await cancelWhenGracefulShutdown {
            for await event in self.listWatch {
                switch event {
                case .replaced(let pods):
                    await self.cache.replaceAll(pods)
                    self.state.update { $0.kubernetesSynced = true }
                    self.logger.debug("pod list synced: \(pods.count) pods on this node")
                case .added(let pod), .modified(let pod):
                    await self.cache.upsert(pod)
                case .deleted(let pod):
                    await self.cache.remove(pod)
                }
            }
        }
    }

    /// The list/watch counters for `/metrics`.
    func metricSamples() -> [MetricSample] {
        let statistics = listWatch.statistics
        let restarts = statistics.watchRestarts
        var samples: [MetricSample] = [
            .counter("nodeprof_kubernetes_lists_total", "Pod LISTs (first list and re-lists).", statistics.lists),
            .counter("nodeprof_kubernetes_relists_total", "Pod re-lists after an expiry.", statistics.relists),
            .counter("nodeprof_kubernetes_watches_total", "Pod watches started.", statistics.watchesStarted),
            .counter("nodeprof_kubernetes_requests_total", "API requests for the pod list/watch.", statistics.requests),
            .counter("nodeprof_kubernetes_bookmarks_total", "Watch bookmarks received.", statistics.bookmarks),
            .counter("nodeprof_kubernetes_backoffs_total", "Waits before retrying the API.", statistics.backoffs),
        ]
        for (cause, count) in restarts.byCause {
            samples.append(
                .counter(
                    "nodeprof_kubernetes_watch_restarts_total", "Pod watch restarts, by cause.", count,
                    labels: [("cause", cause.rawValue)]))
        }
        for (type, count) in [
            ("added", statistics.events.added), ("modified", statistics.events.modified),
            ("deleted", statistics.events.deleted),
        ] {
            samples.append(
                .counter(
                    "nodeprof_kubernetes_events_total", "Pod watch events applied, by type.", count,
                    labels: [("type", type)]))
        }
        for (kind, count) in [
            ("malformed", statistics.malformed), ("unknown_type", statistics.unknownType),
            ("undecodable", statistics.decodeFailures), ("oversized", statistics.oversized),
        ] {
            samples.append(
                .counter(
                    "nodeprof_kubernetes_bad_events_total", "Watch events skipped, by problem.", count,
                    labels: [("problem", kind)]))
        }
        for (kind, count) in [
            ("unauthorized", statistics.unauthorized), ("forbidden", statistics.forbidden),
            ("throttled", statistics.throttled), ("server_error", statistics.serverErrors),
            ("connection", statistics.connectionFailures), ("timeout", statistics.timeouts),
            ("other", statistics.otherFailures),
        ] {
            samples.append(
                .counter(
                    "nodeprof_kubernetes_failures_total", "Failed API requests, by kind.", count,
                    labels: [("kind", kind)]))
        }
        if let lastSync = statistics.lastSyncUnixNanoseconds {
            samples.append(
                .gauge(
                    "nodeprof_kubernetes_last_sync_timestamp_seconds", "When the pod list last synced (Unix time).",
                    Double(lastSync) / 1e9))
        }
        return samples
    }
}
