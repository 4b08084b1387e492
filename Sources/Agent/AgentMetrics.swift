public import NodeprofCore
import Prometheus
import Synchronization

/// The agent's Prometheus metrics. The agent's parts keep their own counters (statistics
/// structs); at each scrape their current totals are mirrored into a
/// `PrometheusCollectorRegistry` (a counter grows by the difference since the last scrape)
/// and the registry writes the text exposition format.
public final class AgentMetrics: Sendable {
    private struct Key: Hashable {
        var name: String
        var labels: [String]
    }

    private let registry = PrometheusCollectorRegistry()
    private let counters = Mutex<[Key: (counter: Counter, last: Double)]>([:])
    private let gauges = Mutex<[Key: Gauge]>([:])

    public init() {}

    /// Mirrors `samples` into the registry and returns the exposition text.
    public func render(_ samples: [MetricSample]) -> [UInt8] {
        for sample in samples {
            let key = Key(name: sample.name, labels: sample.labels.flatMap { [$0.0, $0.1] })
            switch sample.kind {
            case .counter:
                counters.withLock { counters in
                    var entry =
                        counters[key]
                        ?? (
                            registry.makeCounter(
                                name: sample.name, labels: sample.labels, help: sample.help), 0
                        )
                    // A source that restarted (a new exporter) reports smaller totals: count on
                    // from there rather than going backwards.
                    let delta = sample.value >= entry.last ? sample.value - entry.last : sample.value
                    if delta > 0 { entry.counter.increment(by: delta) }
                    entry.last = sample.value
                    counters[key] = entry
                }
            case .gauge:
                gauges.withLock { gauges in
                    let gauge =
                        gauges[key]
                        ?? registry.makeGauge(
                            name: sample.name, labels: sample.labels, help: sample.help)
                    gauge.set(sample.value)
                    gauges[key] = gauge
                }
            }
        }
        return registry.emitToBuffer()
    }
}
