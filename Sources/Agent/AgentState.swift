import Glibc
public import NodeprofCore
public import ProcessTable
public import Sampling
import Synchronization

/// What the agent's parts report about themselves, for `/healthz`, `/readyz` and `/metrics`.
/// Written by the sampling thread and the services, read by the status server; a mutex
/// around a small value (written about once a second) costs nothing measurable.
public final class AgentState: Sendable {
    public struct Snapshot: Sendable {
        /// Monotonic time of the sampling loop's last sign of life (0: not started).
        public var samplingHeartbeatNanos: UInt64 = 0
        /// The BPF sampler is loaded and attached.
        public var samplerRunning = false
        /// The sampling loop ended (stopped or failed).
        public var samplingEnded = false
        public var samplingError: String?
        public var samplerCounters = SamplerCounters()
        public var samplesRecorded = 0
        /// What the process table read (process and thread context among it).
        public var processTable = ProcessTableStatistics()
        public var processContexts: ProcessContextStatistics { processTable.contexts }
        public var processesTracked = 0
        /// Windows handed to attribution and export, and windows dropped because export fell
        /// behind.
        public var windowsClosed = 0
        public var windowsDropped = 0
        /// Processes attributed per window: to a pod, to a container only (no pod known), or
        /// to the node (no container).
        public var processesAttributedToPods = 0
        public var processesAttributedToContainersOnly = 0
        public var processesOnNode = 0
        public var samplesAttributedToPods = 0
        public var samplesAttributedToContainersOnly = 0
        public var samplesOnNode = 0
        /// The Kubernetes pod watch is required and has synced at least once.
        public var kubernetesRequired = false
        public var kubernetesSynced = false
        public var kubernetesLastError: String?

        public init() {}
    }

    private let state = Mutex(Snapshot())

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    public func update(_ body: (inout Snapshot) -> Void) {
        state.withLock { body(&$0) }
    }

    /// Liveness: the sampling loop reported within `staleAfterNanos` (it reports about once a
    /// second), or it has not started yet (startup is readiness's business).
    public func isAlive(now: UInt64 = monotonicNanoseconds(), staleAfterNanos: UInt64 = 30_000_000_000) -> Bool {
        let snapshot = self.snapshot
        if snapshot.samplingEnded { return snapshot.samplingError == nil }
        guard snapshot.samplingHeartbeatNanos != 0 else { return true }
        return now &- snapshot.samplingHeartbeatNanos < staleAfterNanos
    }

    /// Readiness, and what is missing when not ready.
    public func readiness() -> (ready: Bool, reasons: [String]) {
        let snapshot = self.snapshot
        var reasons: [String] = []
        if !snapshot.samplerRunning { reasons.append("the BPF sampler is not running") }
        if let error = snapshot.samplingError { reasons.append("sampling failed: \(error)") }
        if snapshot.kubernetesRequired && !snapshot.kubernetesSynced {
            var reason = "the pod list from the Kubernetes API has not synced yet"
            if let error = snapshot.kubernetesLastError { reason += " (last error: \(error))" }
            reasons.append(reason)
        }
        return (reasons.isEmpty, reasons)
    }
}
