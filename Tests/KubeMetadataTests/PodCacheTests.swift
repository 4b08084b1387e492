import KubernetesAPI
import NodeprofCore
import ProcessTable
import Synchronization
import Testing

@testable import KubeMetadata

/// A pod shaped like the API server's: labels, owner, container statuses.
func makePod(
    name: String, namespace: String = "shop", uid: String, owner: OwnerReference? = nil,
    labels: [String: String] = [:], annotations: [String: String] = [:],
    containers: [(name: String, id: String?, image: String)] = [],
    imageID: String = "registry.example.com/shop/web@sha256:" + String(repeating: "ab", count: 32)
) -> Pod {
    Pod(
        metadata: ObjectMeta(
            name: name, namespace: namespace, uid: uid, resourceVersion: "1", creationTimestamp: "2026-11-21T10:00:00Z",
            labels: labels, annotations: annotations, ownerReferences: owner.map { [$0] }),
        spec: .init(nodeName: "node-1", containers: containers.map { .init(name: $0.name, image: $0.image) }),
        status: .init(
            phase: "Running", startTime: "2026-11-21T10:00:05Z",
            containerStatuses: containers.map {
                .init(name: $0.name, containerID: $0.id.map { "containerd://" + $0 }, image: $0.image, imageID: imageID)
            }))
}

func hexID(_ seed: Character) -> String { String(repeating: String(seed), count: 64) }

func value(_ attributes: [Attribute]?, _ key: String) -> String? {
    guard let attribute = attributes?.first(where: { $0.key == key }) else { return nil }
    if case .string(let string) = attribute.value { return string }
    return "\(attribute.value)"
}

/// Counts Job GETs and answers from a table.
final class FakeJobs: JobOwnerLookup {
    let owners: [String: [OwnerReference]]
    let calls = Mutex(0)
    init(_ owners: [String: [OwnerReference]]) { self.owners = owners }
    func ownerReferences(ofJob name: String, namespace: String) async throws -> [OwnerReference]? {
        calls.withLock { $0 += 1 }
        return owners[name]
    }
}

@Suite struct PodCacheTests {
    let configuration = PodAttributeConfiguration(
        nodeName: "node-1", labelKeys: ["team", "tier/*"], annotationKeys: ["owner.example.com/contact"])

    @Test func deploymentPodGetsSemanticConventionAttributes() async {
        let cache = PodCache(configuration: configuration, jobLookup: nil)
        await cache.upsert(
            makePod(
                name: "web-7d4b9c8f5-x2x4k", uid: "11111111-2222-3333-4444-555555555555",
                owner: OwnerReference(
                    apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-7d4b9c8f5", uid: "rs-uid", controller: true),
                labels: ["pod-template-hash": "7d4b9c8f5", "team": "payments", "tier/level": "front", "other": "x"],
                annotations: ["owner.example.com/contact": "ops@example.com", "unrelated": "y"],
                containers: [
                    ("app", hexID("a"), "registry.example.com:5000/shop/web:1.4.2"), ("sidecar", hexID("b"), "envoy"),
                ]))
        let attributes = await cache.attributes(containerID: hexID("a"), podUID: nil)
        #expect(value(attributes, "k8s.pod.name") == "web-7d4b9c8f5-x2x4k")
        #expect(value(attributes, "k8s.pod.uid") == "11111111-2222-3333-4444-555555555555")
        #expect(value(attributes, "k8s.namespace.name") == "shop")
        #expect(value(attributes, "k8s.node.name") == "node-1")
        #expect(value(attributes, "k8s.pod.start_time") == "2026-11-21T10:00:05Z")
        #expect(value(attributes, "k8s.container.name") == "app")
        #expect(value(attributes, "container.id") == hexID("a"))
        #expect(value(attributes, "container.image.name") == "registry.example.com:5000/shop/web")
        #expect(value(attributes, "container.image.tag") == "1.4.2")
        #expect(
            attributes?.first { $0.key == "container.image.repo_digests" }?.value
                == .array([.string("registry.example.com/shop/web@sha256:" + String(repeating: "ab", count: 32))]))
        #expect(value(attributes, "k8s.replicaset.name") == "web-7d4b9c8f5")
        #expect(value(attributes, "k8s.replicaset.uid") == "rs-uid")
        #expect(value(attributes, "k8s.deployment.name") == "web")
        #expect(value(attributes, "k8s.pod.label.team") == "payments")
        #expect(value(attributes, "k8s.pod.label.tier/level") == "front")
        #expect(value(attributes, "k8s.pod.label.other") == nil)
        #expect(value(attributes, "k8s.pod.annotation.owner.example.com/contact") == "ops@example.com")
        #expect(value(attributes, "k8s.pod.annotation.unrelated") == nil)
        #expect(value(attributes, "service.name") == "web")
        #expect(value(attributes, "service.namespace") == "shop")
        #expect(value(attributes, "service.version") == "1.4.2")
        #expect(value(attributes, "service.instance.id") == "shop.web-7d4b9c8f5-x2x4k.app")
        // Every key once.
        let keys = attributes?.map(\.key) ?? []
        #expect(Set(keys).count == keys.count)

        let sidecar = await cache.attributes(containerID: hexID("b"), podUID: nil)
        #expect(value(sidecar, "k8s.container.name") == "sidecar")
        #expect(value(sidecar, "container.image.tag") == "latest")
        #expect(value(sidecar, "service.instance.id") == "shop.web-7d4b9c8f5-x2x4k.sidecar")
    }

    @Test(
        arguments: [
            // (labels, annotations, owner kind, expected service.name, namespace, version)
            (
                [
                    "app.kubernetes.io/instance": "inst", "app.kubernetes.io/name": "nm",
                    "app.kubernetes.io/version": "9",
                ],
                [
                    "resource.opentelemetry.io/service.name": "annotated",
                    "resource.opentelemetry.io/service.namespace": "ns-a",
                    "resource.opentelemetry.io/service.version": "v-a",
                ],
                "StatefulSet", "annotated", "ns-a", "v-a"
            ),
            (
                [
                    "app.kubernetes.io/instance": "inst", "app.kubernetes.io/name": "nm",
                    "app.kubernetes.io/version": "9",
                ], [:], "StatefulSet", "inst", "shop", "9"
            ),
            (["app.kubernetes.io/name": "nm"], [:], "StatefulSet", "nm", "shop", "2.0"),
            ([:], [:], "StatefulSet", "db", "shop", "2.0"),
            ([:], [:], "DaemonSet", "db", "shop", "2.0"),
            ([:], [:], "Job", "db", "shop", "2.0"),
            ([:], [:], "None", "pod-0", "shop", "2.0"),
        ] as [([String: String], [String: String], String, String, String, String)])
    func serviceAttributesFollowThePrecedenceRules(
        labels: [String: String], annotations: [String: String], ownerKind: String, name: String, namespace: String,
        version: String
    ) async {
        let cache = PodCache(configuration: configuration, jobLookup: nil)
        let owner = ownerKind == "None" ? nil : OwnerReference(kind: ownerKind, name: "db", uid: "o", controller: true)
        await cache.upsert(
            makePod(
                name: "pod-0", uid: "u-1", owner: owner, labels: labels, annotations: annotations,
                containers: [("c", hexID("c"), "db:2.0")]))
        let attributes = await cache.attributes(containerID: hexID("c"), podUID: nil)
        #expect(value(attributes, "service.name") == name)
        #expect(value(attributes, "service.namespace") == namespace)
        #expect(value(attributes, "service.version") == version)
        let kindKey = "k8s.\(ownerKind.lowercased()).name"
        if ownerKind != "None" { #expect(value(attributes, kindKey) == "db") }
    }

    @Test func resourceAnnotationsBecomeAttributesAndWin() async {
        let cache = PodCache(configuration: configuration, jobLookup: nil)
        await cache.upsert(
            makePod(
                name: "p", uid: "u",
                annotations: [
                    "resource.opentelemetry.io/deployment.environment.name": "prod",
                    "resource.opentelemetry.io/service.instance.id": "custom",
                ],
                containers: [("c", hexID("d"), "x:1")]))
        let attributes = await cache.attributes(containerID: hexID("d"), podUID: nil)
        #expect(value(attributes, "deployment.environment.name") == "prod")
        #expect(value(attributes, "service.instance.id") == "custom")
        #expect(attributes?.filter { $0.key == "service.instance.id" }.count == 1)
    }

    @Test func cronJobIsResolvedWithOneGetPerJob() async throws {
        let jobs = FakeJobs([
            "report-29354820": [
                OwnerReference(apiVersion: "batch/v1", kind: "CronJob", name: "report", uid: "cj-uid", controller: true)
            ]
        ])
        let cache = PodCache(configuration: configuration, jobLookup: jobs)
        let owner = OwnerReference(kind: "Job", name: "report-29354820", uid: "job-uid", controller: true)
        // Two pods of the same Job (parallelism 2) and a pod of a Job that no CronJob made.
        await cache.upsert(
            makePod(name: "report-29354820-a", uid: "p1", owner: owner, containers: [("c", hexID("1"), "r:1")]))
        await cache.upsert(
            makePod(name: "report-29354820-b", uid: "p2", owner: owner, containers: [("c", hexID("2"), "r:1")]))
        await cache.upsert(
            makePod(
                name: "migrate-x", uid: "p3",
                owner: OwnerReference(kind: "Job", name: "migrate", uid: "j2", controller: true),
                containers: [("c", hexID("3"), "m:1")]))
        try await waitUntil { await cache.isSettled(containerID: hexID("1")) }
        let attributes = await cache.attributes(containerID: hexID("2"), podUID: nil)
        #expect(value(attributes, "k8s.job.name") == "report-29354820")
        #expect(value(attributes, "k8s.job.uid") == "job-uid")
        #expect(value(attributes, "k8s.cronjob.name") == "report")
        #expect(value(attributes, "k8s.cronjob.uid") == "cj-uid")
        #expect(value(attributes, "service.name") == "report")
        let migrate = await cache.attributes(containerID: hexID("3"), podUID: nil)
        #expect(value(migrate, "k8s.cronjob.name") == nil)
        #expect(value(migrate, "service.name") == "migrate")
        #expect(jobs.calls.withLock { $0 } == 1)
        #expect(await cache.currentStatistics.jobLookups == 1)
    }

    @Test func podsMissingFieldsAreCountedAndSkipped() async {
        let cache = PodCache(configuration: configuration, jobLookup: nil)
        await cache.upsert(Pod(metadata: ObjectMeta(name: "no-uid", namespace: "x")))
        await cache.upsert(Pod(metadata: ObjectMeta(namespace: "x", uid: "u")))
        await cache.upsert(Pod(metadata: ObjectMeta(name: "n", uid: "u2")))
        // No spec, no status: cached, but with no container to find.
        await cache.upsert(Pod(metadata: ObjectMeta(name: "bare", namespace: "x", uid: "u3")))
        await cache.remove(Pod(metadata: ObjectMeta(name: "gone")))
        let statistics = await cache.currentStatistics
        #expect(statistics.rejected == ["missing uid": 2, "missing name": 1, "missing namespace": 1])
        #expect(statistics.pods == 1)
        #expect(
            await cache.attributes(containerID: hexID("e"), podUID: "u3").map { value($0, "k8s.pod.name") } == "bare")
        #expect(await cache.attributes(containerID: hexID("e"), podUID: nil) == nil)
    }

    @Test func hostileValuesAreBoundedAndMalformedIdsIgnored() async {
        let cache = PodCache(configuration: configuration, jobLookup: nil)
        var pod = makePod(
            name: "p", uid: "u", labels: ["team": String(repeating: "x", count: 1 << 20)],
            containers: [("c", "not-hex", "img:1"), ("d", hexID("F"), "img:1")])
        pod.status?.containerStatuses?.append(.init(name: "e", containerID: "://", image: nil, imageID: "@"))
        await cache.upsert(pod)
        let statistics = await cache.currentStatistics
        #expect(statistics.droppedValues == 1)
        #expect(statistics.containers == 1)  // only the valid id, lowercased
        let attributes = await cache.attributes(containerID: hexID("f"), podUID: nil)
        #expect(value(attributes, "k8s.container.name") == "d")
        #expect(value(attributes, "k8s.pod.label.team") == nil)
    }

    @Test func relistConvergesAndRecreatedPodsGetNewIdentity() async {
        let cache = PodCache(configuration: configuration, jobLookup: nil, deletedRetention: .zero)
        await cache.replaceAll([
            makePod(name: "a", uid: "ua", containers: [("c", hexID("1"), "a:1")]),
            makePod(name: "b", uid: "ub", containers: [("c", hexID("2"), "b:1")]),
        ])
        // Deleted and recreated under the same name while the watch was down.
        await cache.replaceAll([
            makePod(name: "a", uid: "ua2", containers: [("c", hexID("3"), "a:1")]),
            makePod(name: "b", uid: "ub", containers: [("c", hexID("2"), "b:1")]),
        ])
        #expect(await cache.podUIDs == ["ua2", "ub"])
        #expect(await cache.attributes(containerID: hexID("1"), podUID: nil) == nil)
        #expect(value(await cache.attributes(containerID: hexID("3"), podUID: nil), "k8s.pod.uid") == "ua2")
        // A container restart changes the id: the old one is forgotten.
        await cache.upsert(makePod(name: "b", uid: "ub", containers: [("c", hexID("4"), "b:1")]))
        #expect(await cache.attributes(containerID: hexID("2"), podUID: nil) == nil)
        #expect(value(await cache.attributes(containerID: hexID("4"), podUID: nil), "k8s.pod.name") == "b")
        await cache.remove(makePod(name: "b", uid: "ub"))
        #expect(await cache.currentStatistics.containers == 1)
    }

    @Test func deletedPodsStillAnswerForTheirLastSamples() async throws {
        let cache = PodCache(configuration: configuration, jobLookup: nil, deletedRetention: .milliseconds(300))
        await cache.upsert(makePod(name: "gone", uid: "ug", containers: [("c", hexID("5"), "g:1")]))
        await cache.remove(makePod(name: "gone", uid: "ug"))
        #expect(await cache.podUIDs.isEmpty)
        #expect(value(await cache.attributes(containerID: hexID("5"), podUID: nil), "k8s.pod.name") == "gone")
        #expect(await cache.isSettled(containerID: hexID("5")))
        #expect(await cache.currentStatistics.recentlyDeleted == 1)
        // Gone from a re-list counts as deleted too.
        await cache.upsert(makePod(name: "listed-out", uid: "ul", containers: [("c", hexID("6"), "l:1")]))
        await cache.replaceAll([])
        #expect(value(await cache.attributes(containerID: hexID("6"), podUID: nil), "k8s.pod.uid") == "ul")
        // After the retention they are forgotten (pruned on the next change).
        try await Task.sleep(for: .milliseconds(400))
        await cache.replaceAll([])
        #expect(await cache.attributes(containerID: hexID("5"), podUID: nil) == nil)
        #expect(await cache.attributes(containerID: hexID("6"), podUID: "ul") == nil)
        #expect(await cache.currentStatistics.recentlyDeleted == 0)
    }

    /// A static pod's processes sit in a cgroup named after the kubelet's config hash; its
    /// mirror pod has another uid and carries the hash in `kubernetes.io/config.mirror`.
    @Test func staticPodsAreFoundThroughTheirMirrorPod() async throws {
        let hash = "6d8a1f0c2b3e4d5f6a7b8c9d0e1f2a3b"
        let cache = PodCache(configuration: configuration, jobLookup: nil, deletedRetention: .seconds(60))
        let mirror = makePod(
            name: "kube-apiserver-node-1", namespace: "kube-system", uid: "9f0e1d2c-0000-4000-8000-mirror000001",
            owner: OwnerReference(apiVersion: "v1", kind: "Node", name: "node-1", uid: "node-uid", controller: true),
            annotations: [
                "kubernetes.io/config.mirror": hash, "kubernetes.io/config.hash": hash,
                "kubernetes.io/config.source": "file",
            ],
            // The mirror's status does not list this container (yet): only the hash links them.
            containers: [("kube-apiserver", nil, "registry.k8s.io/kube-apiserver:v1.31.0")])
        await cache.upsert(mirror)
        let identity = try #require(
            ContainerIdentity(
                cgroupPath:
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(hash).slice/cri-containerd-\(hexID("7")).scope"
            ))
        #expect(identity.podUID == hash)
        let attributes = await cache.attributes(containerID: identity.containerID, podUID: identity.podUID)
        #expect(value(attributes, "k8s.pod.name") == "kube-apiserver-node-1")
        #expect(value(attributes, "k8s.pod.uid") == "9f0e1d2c-0000-4000-8000-mirror000001")
        #expect(value(attributes, "k8s.namespace.name") == "kube-system")
        #expect(value(attributes, "container.id") == hexID("7"))
        #expect(await cache.currentStatistics.lookupsByMirrorPod == 1)
        // Upper-case hex in the cgroup, as a hostile or odd runtime might write it, still matches.
        #expect(value(await cache.attributes(containerID: nil, podUID: hash.uppercased()), "k8s.pod.name") != nil)

        // Deleted: still answers during the retention; gone from a re-list: the same.
        await cache.remove(mirror)
        #expect(
            value(await cache.attributes(containerID: nil, podUID: hash), "k8s.pod.name") == "kube-apiserver-node-1")

        // Only a mirror annotation that can be a cgroup's pod uid is indexed.
        for hostile in ["", "../../x", "not-hex-zz", String(repeating: "a", count: 65), "ab cd"] {
            #expect(PodRecord.staticPodHash(hostile) == nil, "\(hostile)")
        }
        #expect(PodRecord.staticPodHash("ABCDEF0123") == "abcdef0123")
        // A pod without the annotation is never found by a hash.
        let fresh = PodCache(configuration: configuration, jobLookup: nil)
        await fresh.upsert(makePod(name: "plain", uid: "plain-uid", containers: [("c", hexID("8"), "p:1")]))
        #expect(await fresh.attributes(containerID: hexID("9"), podUID: hash) == nil)
    }

    @Test func theCacheIsBounded() async {
        let cache = PodCache(configuration: configuration, jobLookup: nil, maximumPods: 3)
        for index in 0..<10 { await cache.upsert(makePod(name: "p\(index)", uid: "u\(index)")) }
        let statistics = await cache.currentStatistics
        #expect(statistics.pods == 3)
        #expect(statistics.overflow == 7)
    }

    @Test(
        arguments: [
            ("nginx", "nginx", "latest"),
            ("nginx:1.25", "nginx", "1.25"),
            ("registry.example.com:5000/team/app", "registry.example.com:5000/team/app", "latest"),
            ("registry.example.com:5000/team/app:v2", "registry.example.com:5000/team/app", "v2"),
            ("app@sha256:" + String(repeating: "0", count: 64), "app", nil),
            ("app:3@sha256:" + String(repeating: "0", count: 64), "app", "3"),
            ("localhost/app:", "localhost/app", nil),
        ] as [(String, String, String?)])
    func imageReferencesSplitIntoNameAndTag(reference: String, name: String, tag: String?) {
        let image = ImageReference(reference)
        #expect(image?.name == name)
        #expect(image?.tag == tag)
    }

    @Test func hostileImageReferencesAreRefused() {
        #expect(ImageReference("") == nil)
        #expect(ImageReference(":tag") == nil)
        #expect(ImageReference("@sha256:00") == nil)
        #expect(ImageReference(String(repeating: "a", count: 5000)) == nil)
        #expect(repoDigest(imageID: "docker-pullable://repo@sha256:00") == "repo@sha256:00")
        #expect(repoDigest(imageID: "sha256:00") == nil)
        #expect(containerID(fromStatus: "containerd://" + hexID("A")) == hexID("a"))
        #expect(containerID(fromStatus: "containerd://" + hexID("g")) == nil)
        #expect(containerID(fromStatus: hexID("a")) == nil)
        #expect(PodCache.mayBelongToCronJob(jobName: "report-29354820"))
        #expect(!PodCache.mayBelongToCronJob(jobName: "migrate"))
        #expect(!PodCache.mayBelongToCronJob(jobName: "-123"))
        #expect(!PodCache.mayBelongToCronJob(jobName: "x-"))
    }
}

/// Polls `condition` every 10 ms until it holds; fails after `seconds`.
func waitUntil(seconds: Double = 10, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while !(await condition()) {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(seconds) s")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
