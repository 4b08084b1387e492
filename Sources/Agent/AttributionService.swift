public import Export
public import KubeMetadata
public import Logging
public import NodeprofCore
public import Profiles
public import ServiceLifecycle

/// Gives each process of a closed window its container and pod attributes, then hands the
/// window to export. Runs until the sampling side finishes the window stream; the exporter,
/// a service of its own, sends what is left on its turn of the shutdown.
///
/// Attributes are looked up when the window closes, not at sample time: a pod whose ADDED
/// event arrives after its first samples is still attributed. When a window holds a
/// container the pod cache does not know yet, export waits up to `attributionGrace` for the
/// watch to catch up.
///
/// Precedence (first wins, the OTLP builder keeps the first value of a key): what the agent
/// reads of the process itself (`process.executable.path`), then the pod's
/// `resource.opentelemetry.io/*` annotations, then derived `k8s.*`/`container.*`/`service.*`
/// attributes.
public final class AttributionService: Service, Sendable {
    private let windows: AsyncStream<ClosedWindow>
    private let attribution: WindowAttribution
    private let export: ProfileExport

    public init(
        windows: AsyncStream<ClosedWindow>, podCache: PodCache?, export: ProfileExport, state: AgentState,
        attributionGrace: Duration = .seconds(2)
    ) {
        self.windows = windows
        self.attribution = WindowAttribution(podCache: podCache, state: state, grace: attributionGrace)
        self.export = export
    }

    public func run() async throws {
        // Not cancelled on graceful shutdown: the sampling service ends the stream after its
        // last window, and that window must still be exported.
        for await window in windows {
            var profile = window.profile
            await attribution.attribute(&profile)
            await export.submit(profile)
        }
        // Finish only when the group asks: it shuts services down one at a time, in reverse
        // order, and a service that ends before its turn fails the whole shutdown. (The
        // stream ends as soon as sampling stops, which is the turn before this one.)
        try? await gracefulShutdown()
    }

}

/// Adds container and pod attributes to each process of a window's profile, and counts
/// what it attributed in the agent's state.
public struct WindowAttribution: Sendable {
    public let podCache: PodCache?
    public let state: AgentState
    /// How long to wait for pod containers the cache does not know yet.
    public let grace: Duration

    public init(podCache: PodCache?, state: AgentState, grace: Duration) {
        self.podCache = podCache
        self.state = state
        self.grace = grace
    }

    /// Adds container and pod attributes to each process description of `profile` that
    /// names a container.
    public func attribute(_ profile: inout Profile) async {
        let samplesByProcess = profile.sampleCountsByProcess
        var processes = profile.processes

        if let podCache {
            // Only containers whose cgroup names a pod are worth waiting for: a plain Docker
            // container never shows up in the pod list.
            let podContainers = processes.compactMap { $0.podUID == nil ? nil : $0.containerID }
            if !podContainers.isEmpty { await waitUntilSettled(Set(podContainers), in: podCache) }
        }
        var pods = 0, containersOnly = 0, node = 0
        var podSamples = 0, containerOnlySamples = 0, nodeSamples = 0
        for (position, samples) in samplesByProcess.enumerated() where samples > 0 {
            guard let containerID = processes[position].containerID else {
                node += 1
                nodeSamples += samples
                continue
            }
            let podUID = processes[position].podUID
            let (attributes, knownPod) =
                await podCache?.resourceAttributes(containerID: containerID, podUID: podUID)
                ?? (PodCache.containerOnlyAttributes(containerID: containerID, podUID: podUID), false)
            processes[position].attributes += attributes
            if knownPod {
                pods += 1
                podSamples += samples
            } else {
                containersOnly += 1
                containerOnlySamples += samples
            }
        }
        profile.processes = processes
        state.update {
            $0.processesAttributedToPods += pods
            $0.processesAttributedToContainersOnly += containersOnly
            $0.processesOnNode += node
            $0.samplesAttributedToPods += podSamples
            $0.samplesAttributedToContainersOnly += containerOnlySamples
            $0.samplesOnNode += nodeSamples
        }
    }

    /// Waits, at most the grace period, until the pod cache knows every container with its
    /// owners resolved.
    private func waitUntilSettled(_ containerIDs: Set<String>, in cache: PodCache) async {
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            var allSettled = true
            for id in containerIDs where !(await cache.isSettled(containerID: id)) {
                allSettled = false
                break
            }
            if allSettled { return }
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return }
        }
    }
}
