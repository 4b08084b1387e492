import ArgumentParser
import Foundation
import KubeMetadata
import KubernetesAPI
import Logging
import NodeprofCore
import Synchronization
import TestSupport

/// How soon a new pod's attributes can be looked up: hack/fake-node/apiserver.py holds the
/// node's pods; a `ListWatch<Pod>` feeds a `PodCache` in this process exactly as the agent's
/// pod watch does (list, then watch with the agent's defaults, every event applied to the
/// cache); pods are created one at a time through the server's control API, and for each
/// one the time from sending the create to `attributes(containerID:podUID:)` answering for
/// its container is taken.
///
/// The clock starts before the create request is sent, not when it returns: the server
/// queues the watch event while it stores the object, before it writes the control reply,
/// so the event often arrives first. The control round trip is reported beside it.
///
/// Peer, on the same server and pods: a raw watch read by a few lines of Python
/// (`http.client` on the chunked stream, `json.loads` of each event line, nothing else),
/// timed from the same start to the line parsed. The two watchers run one after the other.
struct KubeLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-latency",
        abstract: "Measure the latency from creating a pod to its attributes in the pod cache (prints JSON).",
        discussion: """
            Starts hack/fake-node/apiserver.py with the venv's Python, seeds it with --existing \
            realistic pods of the node, then creates --pods more one at a time for the pod cache \
            and as many for the Python peer. Times are CLOCK_MONOTONIC in both processes. For \
            hack/bench --quick, fewer pods.
            """)

    @Option(help: "Pods created and timed (for each of the two watchers).") var pods = 50
    @Option(help: "Pods of the node on the server before the measurement.") var existing = 110
    @Option(help: "Milliseconds to wait between two creates.") var gapMs = 20
    @Option(help: "Python with hack/otlp/requirements.txt installed.") var python = ".venv/bin/python"
    @Option(help: "The fake API server script.") var apiserver = "hack/fake-node/apiserver.py"
    @Option(help: "Write the server's log here (default: discard).") var serverLog: String?

    static let nodeName = "bench-node"

    /// The peer: a raw watch, one line per event, printing `uid monotonic-ns` per ADDED.
    static let pythonWatcher = #"""
        import http.client, json, sys, time
        port, rv, node = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", f"/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
                     f"&fieldSelector=spec.nodeName%3D{node}&timeoutSeconds=3600")
        response = conn.getresponse()
        print("ready", flush=True)
        while True:
            line = response.readline()
            if not line:
                break
            event = json.loads(line)
            if event.get("type") == "ADDED":
                print(event["object"]["metadata"]["uid"], time.monotonic_ns(), flush=True)
        """#

    func validate() throws {
        guard pods > 0, existing >= 0, gapMs >= 0 else { throw ValidationError("--pods must be positive") }
    }

    struct Timing {
        var sent: UInt64
        var returned: UInt64
        var visible: UInt64
    }

    func run() async throws {
        ChildRegistry.installSignalHandlers()
        let fixtures = KubePodFixtures(nodeName: Self.nodeName, count: existing + 2 * pods, seed: 7)
        let server = try ToolProcess(
            [python, apiserver, "--port", "0", "--control-port", "0", "--history", "100000"], name: "apiserver.py",
            logPath: serverLog)
        defer { server.stop() }
        let apiPort = server.port("api_port")

        for plan in fixtures.plans.prefix(existing) {
            try server.control(
                "POST", "/objects",
                body: Array(jsonText(fixtures.object(plan, resourceVersion: 0, kindAndVersion: true)).utf8))
        }
        let ours = Array(fixtures.plans[existing..<(existing + pods)])
        let theirs = Array(fixtures.plans[(existing + pods)...])

        // The agent's pod watch, in this process.
        var logger = Logger(label: "nodeprof-bench.kube")
        logger.logLevel = .warning
        let client = try KubernetesClient(
            configuration: KubernetesClientConfiguration(server: "http://127.0.0.1:\(apiPort)"), logger: logger)
        let cache = PodCache(configuration: PodAttributeConfiguration(nodeName: Self.nodeName), jobLookup: nil)
        let listWatch = ListWatch<Pod>(
            client: client,
            configuration: .init(path: "/api/v1/pods", fieldSelector: "spec.nodeName=\(Self.nodeName)"), logger: logger)
        let watched = Dictionary(uniqueKeysWithValues: ours.map { ($0.uid, $0.containers[0].id) })
        let visible = Mutex<[String: UInt64]>([:])
        let listedAt = Mutex<UInt64?>(nil)
        let watchStart = monotonicNanoseconds()
        let consumer = Task {
            for await event in listWatch {
                switch event {
                case .replaced(let pods):
                    await cache.replaceAll(pods)
                    let now = monotonicNanoseconds()
                    listedAt.withLock { $0 = $0 ?? now }
                case .added(let pod), .modified(let pod):
                    await cache.upsert(pod)
                    if let uid = pod.metadata.uid, let id = watched[uid],
                        await cache.attributes(containerID: id, podUID: nil) != nil
                    {
                        let now = monotonicNanoseconds()
                        visible.withLock { if $0[uid] == nil { $0[uid] = now } }
                    }
                case .deleted(let pod):
                    await cache.remove(pod)
                }
            }
        }
        while listedAt.withLock({ $0 }) == nil {
            try await Task.sleep(for: .milliseconds(1))
        }
        let listMilliseconds = Double((listedAt.withLock { $0 } ?? watchStart) - watchStart) / 1e6
        try await Task.sleep(for: .milliseconds(200))  // the watch is open
        let cacheTimings = try await create(ours, fixtures: fixtures, server: server) { uid in
            visible.withLock { $0[uid] }
        }
        consumer.cancel()
        await consumer.value
        let statistics = listWatch.statistics
        await client.shutdown()

        // The peer, from the server's current resourceVersion.
        let state = try server.controlJSON("GET", "/state") as? [String: Any] ?? [:]
        let peer = try ChildProcess(
            [
                python, "-c", Self.pythonWatcher, String(apiPort), state["resource_version"] as? String ?? "0",
                Self.nodeName,
            ],
            name: "python watch", captureStdout: true, stderrPath: serverLog)
        defer { peer.stop() }
        guard try peer.readLine(timeoutSeconds: 30) == "ready" else {
            throw ChildProcess.Failure(description: "the Python watcher did not start")
        }
        let seen = Mutex<[String: UInt64]>([:])
        let reader = Thread {
            while let line = try? peer.readLine(timeoutSeconds: 3600) {
                let parts = line.split(separator: " ")
                if parts.count == 2, let time = UInt64(parts[1]) {
                    seen.withLock { $0[String(parts[0])] = time }
                }
            }
        }
        reader.start()
        try await Task.sleep(for: .milliseconds(200))
        let peerTimings = try await create(theirs, fixtures: fixtures, server: server) { uid in
            seen.withLock { $0[uid] }
        }
        peer.stop()

        func summary(_ timings: [Timing]) -> [String: Any] {
            [
                "from_send_ms": distribution(timings.map { Double($0.visible &- $0.sent) / 1e6 }),
                "control_round_trip_ms": distribution(timings.map { Double($0.returned - $0.sent) / 1e6 }),
                "before_control_reply": timings.filter { $0.visible < $0.returned }.count,
                "after_control_reply_ms": distribution(
                    timings.filter { $0.visible >= $0.returned }.map { Double($0.visible - $0.returned) / 1e6 }),
            ]
        }
        let eventBytes = ours.map { jsonText(fixtures.object($0, resourceVersion: 1, kindAndVersion: true)).utf8.count }
        let report: [String: Any] = [
            "pods": pods, "existing": existing, "gap_ms": gapMs,
            "event_object_bytes_mean": Double(eventBytes.reduce(0, +)) / Double(max(1, eventBytes.count)),
            "list_ms": listMilliseconds,
            "pod_cache": summary(cacheTimings),
            "python_raw_watch": summary(peerTimings),
            "watch": [
                "lists": statistics.lists, "watches": statistics.watchesStarted, "added": statistics.events.added,
                "modified": statistics.events.modified, "bookmarks": statistics.bookmarks,
            ],
        ]
        try Measurement.printJSON(report)
    }

    /// Creates each pod, then waits until `seenAt(uid)` has a time for it.
    func create(
        _ plans: [KubePodFixtures.Plan], fixtures: KubePodFixtures, server: ToolProcess,
        seenAt: (String) -> UInt64?
    ) async throws -> [Timing] {
        var timings: [Timing] = []
        for plan in plans {
            let body = Array(jsonText(fixtures.object(plan, resourceVersion: 0, kindAndVersion: true)).utf8)
            let sent = monotonicNanoseconds()
            try server.control("POST", "/objects", body: body)
            let returned = monotonicNanoseconds()
            let deadline = returned + 10_000_000_000
            var visible = seenAt(plan.uid)
            while visible == nil {
                guard monotonicNanoseconds() < deadline else {
                    throw ChildProcess.Failure(description: "pod \(plan.name) did not arrive within 10 s")
                }
                try await Task.sleep(for: .microseconds(200))
                visible = seenAt(plan.uid)
            }
            timings.append(Timing(sent: sent, returned: returned, visible: visible!))
            try await Task.sleep(for: .milliseconds(gapMs))
        }
        return timings
    }
}
