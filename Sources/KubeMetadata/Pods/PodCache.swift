public import KubernetesAPI
public import Logging
public import NodeprofCore

/// Looks up a Job's owner references, to tell whether a CronJob made it. The agent passes
/// its API client; tests pass a fake.
public protocol JobOwnerLookup: Sendable {
    /// The owner references of Job `name` in `namespace`; nil when the Job does not exist.
    func ownerReferences(ofJob name: String, namespace: String) async throws -> [OwnerReference]?
}

/// The pods of this node, by container id: what a sample's container id (from its cgroup)
/// resolves to, as OpenTelemetry resource attributes.
///
/// Fed by a list/watch of the node's pods (``replaceAll(_:)``, ``upsert(_:)``,
/// ``remove(_:)``); asked by the export path (``attributes(containerID:podUID:)``). Owners are
/// resolved with the fewest API calls: a ReplicaSet's Deployment from the
/// `pod-template-hash` label (none), a Job's CronJob with one GET per Job whose name looks
/// like a CronJob's (`<cronjob>-<minutes>`), remembered by Job uid.
public actor PodCache {
    public struct Statistics: Sendable, Hashable {
        public var pods = 0
        public var containers = 0
        /// Pods that could not be cached (missing uid, name or namespace), by reason.
        public var rejected: [String: Int] = [:]
        /// Label or annotation values over ``PodRecord/maximumValueBytes``, dropped.
        public var droppedValues = 0
        /// Pods refused because the cache was full.
        public var overflow = 0
        /// Deleted pods still answering lookups (see ``PodCache/deletedRetention``).
        public var recentlyDeleted = 0
        public var lookups = 0
        public var lookupsByContainer = 0
        public var lookupsByPodOnly = 0
        /// Lookups answered by a static pod's mirror pod: the cgroup's pod uid is the
        /// kubelet's config hash, found in the mirror pod's `kubernetes.io/config.mirror`.
        public var lookupsByMirrorPod = 0
        public var lookupsUnknown = 0
        /// GETs of Jobs (to find a CronJob), and how many failed.
        public var jobLookups = 0
        public var jobLookupFailures = 0
        public var cachedJobs = 0
        public init() {}
    }

    public let configuration: PodAttributeConfiguration
    /// The most pods kept; a node runs at most a few hundred (kubelet's default is 110).
    public let maximumPods: Int
    private let jobLookup: (any JobOwnerLookup)?
    private let logger: Logger

    private var pods: [String: PodRecord] = [:]
    private var podByContainer: [String: String] = [:]
    /// Mirror pods by the config hash of their static pod (``PodRecord/staticPodHash``).
    private var podByStaticPodHash: [String: String] = [:]
    /// Pods deleted (or gone from a re-list) in the last ``deletedRetention``: their
    /// processes' last samples are attributed after the pod is gone.
    private var deleted: [String: (record: PodRecord, at: ContinuousClock.Instant)] = [:]
    private var deletedByContainer: [String: String] = [:]
    /// How long a deleted pod still answers lookups.
    public let deletedRetention: Duration
    /// CronJob of a Job, by Job uid (nil value: the Job has no CronJob).
    private var cronJobs: [String: OwnerChain.Named?] = [:]
    private var pendingJobs: Set<String> = []
    private var failedJobLookups: [String: ContinuousClock.Instant] = [:]
    private var statistics = Statistics()
    private var generation = 0

    public init(
        configuration: PodAttributeConfiguration, jobLookup: (any JobOwnerLookup)?, maximumPods: Int = 4096,
        deletedRetention: Duration = .seconds(60), logger: Logger = Logger(label: "nodeprof.pods")
    ) {
        self.deletedRetention = deletedRetention
        self.configuration = configuration
        self.jobLookup = jobLookup
        self.maximumPods = maximumPods
        self.logger = logger
    }

    // MARK: Feeding

    /// Replaces the whole state (after a LIST): pods not in `all` are gone.
    public func replaceAll(_ all: [Pod]) {
        let listed = Set(all.compactMap(\.metadata.uid))
        for uid in pods.keys where !listed.contains(uid) { removeRecord(uid: uid) }
        pods.removeAll(keepingCapacity: true)
        podByContainer.removeAll(keepingCapacity: true)
        podByStaticPodHash.removeAll(keepingCapacity: true)
        for pod in all { insert(pod) }
        pruneJobs()
        generation += 1
    }

    /// Adds or updates one pod (ADDED / MODIFIED).
    public func upsert(_ pod: Pod) {
        if let uid = pod.metadata.uid { removeRecord(uid: uid) }
        insert(pod)
        generation += 1
    }

    /// Forgets one pod (DELETED).
    public func remove(_ pod: Pod) {
        guard let uid = pod.metadata.uid else {
            statistics.rejected["missing uid", default: 0] += 1
            return
        }
        removeRecord(uid: uid)
        generation += 1
    }

    private func insert(_ pod: Pod) {
        let record: PodRecord
        do {
            record = try PodRecord(pod: pod, configuration: configuration, droppedValues: &statistics.droppedValues)
        } catch {
            let reason: String
            switch error {
            case .missingUID: reason = "missing uid"
            case .missingName: reason = "missing name"
            case .missingNamespace: reason = "missing namespace"
            }
            statistics.rejected[reason, default: 0] += 1
            logger.warning(
                "skipping a pod the API server sent: \(reason)",
                metadata: ["pod": "\(pod.metadata.namespace ?? "?")/\(pod.metadata.name ?? "?")"])
            return
        }
        guard pods.count < maximumPods || pods[record.uid] != nil else {
            statistics.overflow += 1
            return
        }
        pods[record.uid] = record
        for container in record.containers {
            if let id = container.id { podByContainer[id] = record.uid }
        }
        if let hash = record.staticPodHash { podByStaticPodHash[hash] = record.uid }
        statistics.pods = pods.count
        statistics.containers = podByContainer.count
        resolveCronJob(of: record)
    }

    /// Forgets a pod, keeping it as recently deleted (its processes may have samples in a
    /// window that has not closed yet).
    private func removeRecord(uid: String) {
        guard let old = pods.removeValue(forKey: uid) else { return }
        for container in old.containers {
            if let id = container.id, podByContainer[id] == uid { podByContainer[id] = nil }
        }
        if let hash = old.staticPodHash, podByStaticPodHash[hash] == uid { podByStaticPodHash[hash] = nil }
        pruneDeleted()
        if deleted.count < maximumPods {
            deleted[uid] = (old, ContinuousClock.now)
            for container in old.containers {
                if let id = container.id { deletedByContainer[id] = uid }
            }
        }
        statistics.pods = pods.count
        statistics.containers = podByContainer.count
        statistics.recentlyDeleted = deleted.count
    }

    private func pruneDeleted() {
        let cutoff = ContinuousClock.now - deletedRetention
        for (uid, entry) in deleted where entry.at < cutoff {
            deleted[uid] = nil
            for container in entry.record.containers {
                if let id = container.id, deletedByContainer[id] == uid { deletedByContainer[id] = nil }
            }
        }
        statistics.recentlyDeleted = deleted.count
    }

    // MARK: Owners

    /// A Job named `<name>-<digits>` may be a CronJob's; only those cost a GET.
    static func mayBelongToCronJob(jobName: String) -> Bool {
        guard let dash = jobName.lastIndex(of: "-") else { return false }
        let suffix = jobName[jobName.index(after: dash)...]
        return !suffix.isEmpty && suffix.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
            && dash != jobName.startIndex
    }

    private func resolveCronJob(of pod: PodRecord) {
        guard let jobLookup, let owner = pod.owner, owner.kind == "Job", let jobUID = owner.uid,
            cronJobs[jobUID] == nil, !pendingJobs.contains(jobUID)
        else { return }
        guard Self.mayBelongToCronJob(jobName: owner.name) else {
            cronJobs[jobUID] = .some(nil)
            return
        }
        // A failed lookup is retried at most once a minute.
        if let failedAt = failedJobLookups[jobUID], ContinuousClock.now - failedAt < .seconds(60) { return }
        pendingJobs.insert(jobUID)
        statistics.jobLookups += 1
        let namespace = pod.namespace
        Task {
            let result: Result<[OwnerReference]?, any Error>
            do {
                result = .success(try await jobLookup.ownerReferences(ofJob: owner.name, namespace: namespace))
            } catch {
                result = .failure(error)
            }
            self.finishJobLookup(jobUID: jobUID, name: owner.name, namespace: namespace, result: result)
        }
    }

    private func finishJobLookup(
        jobUID: String, name: String, namespace: String, result: Result<[OwnerReference]?, any Error>
    ) {
        pendingJobs.remove(jobUID)
        switch result {
        case .success(let references):
            let cronJob = (references ?? []).first { $0.kind == "CronJob" && $0.name != nil }
            cronJobs[jobUID] = .some(cronJob.map { OwnerChain.Named(name: $0.name!, uid: $0.uid) })
            failedJobLookups[jobUID] = nil
        case .failure(let error):
            statistics.jobLookupFailures += 1
            failedJobLookups[jobUID] = ContinuousClock.now
            logger.warning(
                "cannot read Job \(namespace)/\(name) to find its CronJob; k8s.cronjob.name stays unset",
                metadata: ["error": "\(error)"])
        }
        statistics.cachedJobs = cronJobs.count
        generation += 1
    }

    /// Forgets Jobs no cached pod refers to.
    private func pruneJobs() {
        let live = Set(
            (pods.values.map { $0 } + deleted.values.map(\.record)).compactMap {
                $0.owner?.kind == "Job" ? $0.owner?.uid : nil
            })
        cronJobs = cronJobs.filter { live.contains($0.key) }
        failedJobLookups = failedJobLookups.filter { live.contains($0.key) }
        statistics.cachedJobs = cronJobs.count
    }

    // MARK: Asking

    /// The resource attributes of the container `containerID` (from a sample's cgroup), or of
    /// pod `podUID` when the pod's status does not list that container yet. Nil when neither
    /// is known.
    public func attributes(containerID: String?, podUID: String?) -> [Attribute]? {
        statistics.lookups += 1
        if !deleted.isEmpty { pruneDeleted() }
        if let containerID, let uid = podByContainer[containerID], let pod = pods[uid] {
            statistics.lookupsByContainer += 1
            let container = pod.containers.first { $0.id == containerID }
            return podAttributes(
                pod: pod, container: container, containerID: containerID, owners: owners(of: pod),
                configuration: configuration)
        }
        if let containerID, let uid = deletedByContainer[containerID], let pod = deleted[uid]?.record {
            statistics.lookupsByContainer += 1
            let container = pod.containers.first { $0.id == containerID }
            return podAttributes(
                pod: pod, container: container, containerID: containerID, owners: owners(of: pod),
                configuration: configuration)
        }
        if let podUID, let pod = pods[podUID] ?? deleted[podUID]?.record {
            statistics.lookupsByPodOnly += 1
            return podAttributes(
                pod: pod, container: nil, containerID: containerID, owners: owners(of: pod),
                configuration: configuration)
        }
        // A static pod: its cgroup names the config hash, which no pod has as its uid.
        if let podUID, let pod = mirrorPod(ofStaticPod: podUID.lowercased()) {
            statistics.lookupsByMirrorPod += 1
            return podAttributes(
                pod: pod, container: nil, containerID: containerID, owners: owners(of: pod),
                configuration: configuration)
        }
        statistics.lookupsUnknown += 1
        return nil
    }

    /// The mirror pod whose static pod has config hash `hash`; a deleted one answers during
    /// the retention, like any deleted pod.
    private func mirrorPod(ofStaticPod hash: String) -> PodRecord? {
        if let uid = podByStaticPodHash[hash], let pod = pods[uid] { return pod }
        return deleted.values.first { $0.record.staticPodHash == hash }?.record
    }

    /// True when `containerID` resolves to a container and its owners are resolved: nothing
    /// more will arrive for it.
    public func isSettled(containerID: String) -> Bool {
        if !deleted.isEmpty { pruneDeleted() }
        if deletedByContainer[containerID] != nil { return true }
        guard let uid = podByContainer[containerID], let pod = pods[uid] else { return false }
        if let owner = pod.owner, owner.kind == "Job", let jobUID = owner.uid { return !pendingJobs.contains(jobUID) }
        return true
    }

    private func owners(of pod: PodRecord) -> OwnerChain {
        var cronJob: OwnerChain.Named?
        if let owner = pod.owner, owner.kind == "Job", let jobUID = owner.uid, let known = cronJobs[jobUID] {
            cronJob = known
        }
        return OwnerChain(pod: pod, cronJobOfJob: cronJob)
    }

    public var currentStatistics: Statistics { statistics }

    /// The resource attributes of a process in container `containerID`: its pod's when the
    /// cache knows the pod (``attributes(containerID:podUID:)``), else what the cgroup says
    /// (``containerOnlyAttributes(containerID:podUID:)``). `knownPod` tells which.
    public func resourceAttributes(containerID: String, podUID: String?) -> (attributes: [Attribute], knownPod: Bool) {
        if let attributes = attributes(containerID: containerID, podUID: podUID) { return (attributes, true) }
        return (Self.containerOnlyAttributes(containerID: containerID, podUID: podUID), false)
    }

    /// `container.id`, and `k8s.pod.uid` when the cgroup names a pod: what is known of a
    /// container whose pod the cache does not know (or without a pod watch at all).
    public static func containerOnlyAttributes(containerID: String, podUID: String?) -> [Attribute] {
        var attributes = [Attribute("container.id", .string(containerID))]
        if let podUID { attributes.append(Attribute("k8s.pod.uid", .string(podUID))) }
        return attributes
    }

    /// Changes whenever the cache changes; lets a waiter tell whether to look again.
    public var currentGeneration: Int { generation }

    /// The uids of the cached pods (for tests and the agent's readiness report).
    public var podUIDs: Set<String> { Set(pods.keys) }
}

extension PodCache.Statistics {
    /// The cache's size and counts as `/metrics` samples.
    public var metricSamples: [MetricSample] {
        var samples: [MetricSample] = [
            .gauge("nodeprof_pod_cache_pods", "Pods of this node in the cache.", Double(pods)),
            .gauge("nodeprof_pod_cache_containers", "Containers of this node's pods in the cache.", Double(containers)),
            .counter("nodeprof_pod_cache_job_lookups_total", "Job GETs made to find CronJobs.", jobLookups),
            .counter("nodeprof_pod_cache_overflow_total", "Pods refused because the cache was full.", overflow),
        ]
        for (reason, count) in rejected.sorted(by: { $0.key < $1.key }) {
            samples.append(
                .counter(
                    "nodeprof_pod_cache_rejected_total", "Pods from the API that could not be cached, by reason.",
                    count, labels: [("reason", reason)]))
        }
        return samples
    }
}
