import ArgumentParser
import Foundation
import KubeMetadata
import KubernetesAPI
import NodeprofCore

/// The pod cache's memory per pod, next to what holding the same pods in other forms costs,
/// and the cost of one lookup.
///
/// The pods (``KubePodFixtures``) are written as the JSON text of a LIST reply, managedFields
/// included, and decoded as the client decodes a page: `JSONDecoder` into ``Pod``, which keeps
/// only the fields attribution reads. Each holder is measured as the growth of glibc's heap
/// in use (`mallinfo2`: `uordblks + hblkhd`) from before decoding to after the holder is
/// built and everything else (the reply's bytes, the decoded array) has been released;
/// repeated, the median reported.
struct KubeCacheCost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-cache",
        abstract: "Measure the pod cache's memory per pod and its lookup cost (prints JSON).",
        discussion: """
            Holders measured, each from the same LIST reply: the PodCache as the agent configures \
            it by default; the PodCache with label and annotation keys configured \
            (app.kubernetes.io/*, team, helm.sh/chart, prometheus.io/*); the decoded Pod values \
            in a dictionary by uid (what a cache of decoded objects would keep); each object's \
            raw JSON bytes as the API server sent it (managedFields included). For hack/bench \
            --quick, fewer repeats and lookups.
            """)

    @Option(help: "Pods on the node.") var pods = 110
    @Option(help: "Measurements of each holder (the median is reported).") var repeats = 5
    @Option(help: "attributes(containerID:podUID:) calls timed, per repeat.") var lookups = 100_000
    @Option(help: "Seed of the generated pods.") var seed: UInt64 = 1

    /// The body of a LIST reply, decoded as the client's page type decodes it (items as Pod).
    struct PodList: Decodable {
        var metadata: ListMeta?
        var items: [Pod]?
    }

    /// Answers Job lookups from the fixtures at once (every Job of a CronJob run).
    struct FixtureJobs: JobOwnerLookup {
        let owners: [String: [OwnerReference]]

        func ownerReferences(ofJob name: String, namespace: String) async throws -> [OwnerReference]? {
            owners["\(namespace)/\(name)"]
        }
    }

    /// Keeps a holder alive between the two readings.
    final class Holder: @unchecked Sendable {
        let value: Any
        init(_ value: Any) { self.value = value }
    }

    func validate() throws {
        guard pods > 0, repeats > 0, lookups > 0 else {
            throw ValidationError("--pods, --repeats and --lookups must be positive")
        }
    }

    func run() async throws {
        let fixtures = KubePodFixtures(nodeName: "bench-node", count: pods, seed: seed)
        let reply = fixtures.listReply(resourceVersion: 10_000)
        let objects = fixtures.plans.map { fixtures.object($0, resourceVersion: 1) }
        let itemBytes = objects.map { jsonText($0).utf8.count }
        let itemBytesWithoutManagedFields = objects.map { object -> Int in
            var copy = object
            var metadata = copy["metadata"] as? [String: Any] ?? [:]
            metadata["managedFields"] = nil
            copy["metadata"] = metadata
            return jsonText(copy).utf8.count
        }
        var jobOwners: [String: [OwnerReference]] = [:]
        for plan in fixtures.plans where plan.workload == .cronJob {
            jobOwners["\(plan.namespace)/\(plan.ownerName)"] = [
                OwnerReference(
                    apiVersion: "batch/v1", kind: "CronJob", name: plan.workloadName, uid: "cj-\(plan.ownerUID)",
                    controller: true)
            ]
        }
        let jobs = FixtureJobs(owners: jobOwners)
        let defaults = PodAttributeConfiguration(nodeName: "bench-node")
        let configured = PodAttributeConfiguration(
            nodeName: "bench-node", labelKeys: ["app.kubernetes.io/*", "team", "helm.sh/chart"],
            annotationKeys: ["prometheus.io/*"])
        let cronContainers = fixtures.plans.filter { $0.workload == .cronJob }.map { $0.containers[0].id }

        func decode() throws -> [Pod] {
            try JSONDecoder().decode(PodList.self, from: Data(reply)).items ?? []
        }
        func cache(_ configuration: PodAttributeConfiguration) async throws -> Holder {
            let cache = PodCache(configuration: configuration, jobLookup: jobs)
            await cache.replaceAll(try decode())
            // The CronJob lookups run in tasks of their own: wait for them, as the agent would
            // have them done.
            for id in cronContainers {
                while !(await cache.isSettled(containerID: id)) { try await Task.sleep(for: .milliseconds(1)) }
            }
            return Holder(cache)
        }
        let holders: [(String, () async throws -> Holder)] = [
            ("cache_default", { try await cache(defaults) }),
            ("cache_configured", { try await cache(configured) }),
            (
                "decoded_pods",
                {
                    var byUID: [String: Pod] = [:]
                    for pod in try decode() { byUID[pod.metadata.uid ?? ""] = pod }
                    return Holder(byUID)
                }
            ),
            (
                "raw_json",
                {
                    // Each object's bytes as a watch event or list item carries them.
                    var byUID: [String: [UInt8]] = [:]
                    let list = try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any]
                    for item in list?["items"] as? [[String: Any]] ?? [] {
                        let uid = (item["metadata"] as? [String: Any])?["uid"] as? String ?? ""
                        byUID[uid] = Array(try JSONSerialization.data(withJSONObject: item, options: [.sortedKeys]))
                    }
                    return Holder(byUID)
                }
            ),
        ]

        // One unmeasured round first: lazily built runtime metadata, decoder and logging
        // state are not the holders' cost.
        for (_, build) in holders { _ = try await build() }

        var results: [String: Any] = [:]
        for (name, build) in holders {
            var growth: [Double] = []
            for _ in 0..<repeats {
                let before = heapInUseBytes()
                let holder = try await build()
                let after = heapInUseBytes()
                withExtendedLifetime(holder) {}
                growth.append(Double(after - before))
            }
            let median = Measurement.median(growth)
            results[name] = [
                "bytes_median": median, "bytes_per_pod": median / Double(pods), "bytes_samples": growth,
            ]
        }

        // Lookups: every running container of the node in turn, from outside the actor (as
        // the attribution service asks).
        let lookupCache = try await cache(defaults).value as! PodCache
        let keys = fixtures.plans.flatMap { plan in plan.containers.map { ($0.id, plan.uid) } }
        var perLookup: [Double] = []
        var attributeCount = 0
        let clock = ContinuousClock()
        for _ in 0..<repeats {
            let start = clock.now
            for index in 0..<lookups {
                let key = keys[index % keys.count]
                let answer = await lookupCache.attributes(containerID: key.0, podUID: key.1)
                attributeCount = answer?.count ?? -1
            }
            perLookup.append(Measurement.milliseconds(clock.now - start) * 1e6 / Double(lookups))
        }
        // For scale: one call into the actor that does nothing (reads a counter).
        var perHop: [Double] = []
        var generation = 0
        for _ in 0..<repeats {
            let start = clock.now
            for _ in 0..<lookups { generation &+= await lookupCache.currentGeneration }
            perHop.append(Measurement.milliseconds(clock.now - start) * 1e6 / Double(lookups))
        }
        let statistics = await lookupCache.currentStatistics
        var attributesPerAnswer: [Int] = []
        for key in keys {
            attributesPerAnswer.append(await lookupCache.attributes(containerID: key.0, podUID: key.1)?.count ?? 0)
        }
        let decodeTimes = try Measurement.medianMilliseconds(repeats: repeats) { try decode().count }

        let plans = fixtures.plans
        let report: [String: Any] = [
            "pods": pods, "seed": seed, "repeats": repeats,
            "containers": plans.map(\.containers.count).reduce(0, +),
            "init_containers": plans.map(\.initContainers.count).reduce(0, +),
            "workloads": Dictionary(grouping: plans, by: \.workload.rawValue).mapValues(\.count),
            "labels_per_pod_mean": Double(plans.map(\.labels.count).reduce(0, +)) / Double(pods),
            "annotations_per_pod": [
                "min": plans.map(\.annotations.count).min() ?? 0, "max": plans.map(\.annotations.count).max() ?? 0,
                "mean": Double(plans.map(\.annotations.count).reduce(0, +)) / Double(pods),
            ],
            "last_applied_bytes_mean": Double(
                plans.map { $0.annotations["kubectl.kubernetes.io/last-applied-configuration"]?.utf8.count ?? 0 }
                    .reduce(0, +)) / Double(pods),
            "json": [
                "list_bytes": reply.count, "item_bytes_mean": Double(itemBytes.reduce(0, +)) / Double(pods),
                "item_bytes_min": itemBytes.min() ?? 0, "item_bytes_max": itemBytes.max() ?? 0,
                "managed_fields_share": 1
                    - Double(itemBytesWithoutManagedFields.reduce(0, +)) / Double(itemBytes.reduce(0, +)),
            ],
            "decode_list_ms": decodeTimes.milliseconds,
            "holders": results,
            "cached": ["pods": statistics.pods, "containers": statistics.containers, "jobs": statistics.cachedJobs],
            "lookup": [
                "ns_median": Measurement.median(perLookup), "ns_samples": perLookup, "lookups_per_repeat": lookups,
                "attributes_per_answer_mean": Double(attributesPerAnswer.reduce(0, +))
                    / Double(max(1, attributesPerAnswer.count)),
                "last_answer_attributes": attributeCount, "actor_call_ns_median": Measurement.median(perHop),
                "generation_sum": generation,
            ],
            "configured_keys": ["labels": configured.labelKeys, "annotations": configured.annotationKeys],
            "target_bytes_per_pod": 8192,
        ]
        try Measurement.printJSON(report)
    }
}
