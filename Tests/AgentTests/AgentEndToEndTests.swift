import Foundation
import TestSupport
import Testing

/// `nodeprof agent` as a child process with its stderr in a file: started, probed on its
/// status port, stopped with SIGTERM.
final class AgentProcess {
    let process = Process()
    let logPath: String
    private(set) var statusPort = 0

    init(arguments: [String], directory: TemporaryDirectory) throws {
        logPath = directory.file("agent.log")
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: try builtProduct("nodeprof"))
        process.arguments = ["agent"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits for the "status server listening on HOST:PORT" line.
    func waitForStatusPort(seconds: Double = 60) async throws -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let match = log.firstMatch(of: /status server listening on [^ ]+:(\d+)/), let port = Int(match.1) {
                statusPort = port
                return port
            }
            guard process.isRunning else { throw FixtureError("nodeprof agent exited early:\n\(log)") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw FixtureError("nodeprof agent did not open its status port within \(seconds) s:\n\(log)")
    }

    /// GET on the status port (curl keeps the test's networking simple).
    func get(_ path: String) throws -> (status: Int, body: String) {
        let result = try runProgramCapturing(
            "/usr/bin/curl", ["-s", "-m", "10", "-w", "\n%{http_code}", "http://127.0.0.1:\(statusPort)\(path)"])
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.popLast() ?? "") ?? 0
        return (status, lines.joined(separator: "\n"))
    }

    /// SIGTERM, then waits up to `seconds`; returns the exit status and the time it took,
    /// or nil when it had to be killed.
    func terminate(within seconds: Double) async -> (status: Int32, seconds: Double)? {
        let started = Date()
        kill(process.processIdentifier, SIGTERM)
        while process.isRunning && Date().timeIntervalSince(started) < seconds {
            try? await Task.sleep(for: .milliseconds(50))
        }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return (process.terminationStatus, Date().timeIntervalSince(started))
    }
}

/// Polls `condition` until it holds or `seconds` pass.
func eventually(seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(250))
    }
    return try await condition()
}

/// A shell loop that burns CPU: each pod's workload. Niced: three of them on a 2-CPU machine
/// would otherwise starve the agent and the tests running beside this one.
let burnCPU = #"["/usr/bin/nice", "-n", "19", "/bin/sh", "-c", "while :; do :; done"]"#

/// The simulated node end to end: three pods of different owners, each burning CPU in its
/// own kubelet-shaped cgroup, `nodeprof agent` exporting to the OTLP receiver.
@Suite(.serialized, .machineExclusive) struct AgentEndToEndTests {
    struct ExpectedPod {
        var created: FakeNode.CreatedPod
        var name: String
        var namespace: String
        var container: String
        var owners: [String: String]
        var serviceName: String
    }

    @Test func everySampleOfEachWorkloadCarriesItsPodThroughFaultsAndRecreation() async throws {
        let receiver = try await OTLPTestReceiver.start()
        defer { receiver.stop() }
        let node = try await FakeNode.start()
        defer { node.stop() }
        let kubeconfig = try #require(node.kubeconfig)

        var pods: [ExpectedPod] = []
        let web = try await node.createPod(
            #"""
            {"name": "web-5d9c7b6f4-q2x7z", "namespace": "shop", "owner": {"kind": "Deployment", "name": "web"},
             "style": "systemd", "qos": "burstable", "runtime": "containerd", "pending_first": true,
             "containers": [{"name": "app", "image": "registry.example.com/shop/web:1.4.2", "command": \#(burnCPU)}]}
            """#)
        pods.append(
            ExpectedPod(
                created: web, name: "web-5d9c7b6f4-q2x7z", namespace: "shop", container: "app",
                owners: ["k8s.deployment.name": "web"], serviceName: "web"))
        let db = try await node.createPod(
            #"""
            {"name": "db-0", "namespace": "data", "owner": {"kind": "StatefulSet", "name": "db"},
             "style": "cgroupfs", "qos": "guaranteed", "runtime": "cri-o",
             "labels": {"app.kubernetes.io/instance": "db-main"},
             "containers": [{"name": "postgres", "image": "postgres:16.3", "command": \#(burnCPU)}]}
            """#)
        pods.append(
            ExpectedPod(
                created: db, name: "db-0", namespace: "data", container: "postgres",
                owners: ["k8s.statefulset.name": "db"], serviceName: "db-main"))
        let report = try await node.createPod(
            #"""
            {"name": "report-29354820-8xk2p", "namespace": "batch", "owner": {"kind": "CronJob", "name": "report"},
             "style": "systemd", "qos": "besteffort", "runtime": "docker",
             "annotations": {"resource.opentelemetry.io/service.name": "nightly-report"},
             "containers": [{"name": "report", "image": "registry.example.com/batch/report:2024.06", "command": \#(burnCPU)}]}
            """#)
        pods.append(
            ExpectedPod(
                created: report, name: "report-29354820-8xk2p", namespace: "batch", container: "report",
                owners: ["k8s.cronjob.name": "report"], serviceName: "nightly-report"))

        let directory = try TemporaryDirectory()
        let agent = try AgentProcess(
            arguments: [
                "--kubeconfig", kubeconfig, "--node-name", node.nodeName, "--otlp-endpoint", receiver.httpEndpoint,
                "--export-interval", "1s", "--frequency", "49", "--listen-address", "127.0.0.1:0",
                "--shutdown-timeout", "10s",
            ], directory: directory)
        _ = try await agent.waitForStatusPort()
        #expect(try await eventually(seconds: 30) { try agent.get("/readyz").status == 200 }, "\(agent.log)")
        #expect(try agent.get("/healthz").status == 200)

        // Let every workload be sampled for a few windows.
        try await Task.sleep(for: .seconds(3))

        // API faults while the agent runs: split events, bad events, an expired watch.
        // (The 20 MiB object goes first, in whole chunks: split into 7-byte chunks it would take
        // the Python server minutes to write.)
        try await node.faults(#"{"inject": "gigantic"}"#)
        try await node.faults(#"{"chunk_size": 7}"#)
        for kind in ["malformed", "unknown-type", "missing-fields", "not-json-object"] {
            try await node.faults(#"{"inject": "\#(kind)"}"#)
        }
        try await node.faults(#"{"expire": true}"#)
        try await node.faults(#"{"chunk_size": 1}"#)
        // The server fails the next requests (the re-list among them) and cuts the watches.
        try await node.faults(#"{"fail_next": {"status": 503, "count": 2}, "close_watches": true}"#)
        // The agent gets through: it re-lists after the backoff and watches again (split into
        // one-byte chunks from here on).
        let recovered = try await eventually(seconds: 60) {
            let metrics = try agent.get("/metrics").body
            guard !metrics.contains("nodeprof_kubernetes_relists_total 0"),
                !metrics.contains("nodeprof_kubernetes_backoffs_total 0")
            else { return false }
            let state = try await node.control("GET", "/state")
            let openWatches = (try JSONSerialization.jsonObject(with: state) as? [String: Any])?["open_watches"] as? Int
            return (openWatches ?? 0) >= 1
        }
        #expect(recovered, "the agent did not watch again after the faults:\n\(agent.log)")

        // The Deployment's pod is replaced: deleted, then recreated under the same name with
        // a new uid, new container id, new cgroup and a new process.
        try await node.deletePod(namespace: "shop", name: "web-5d9c7b6f4-q2x7z")
        let recreated = try await node.createPod(
            #"""
            {"name": "web-5d9c7b6f4-q2x7z", "namespace": "shop", "owner": {"kind": "Deployment", "name": "web"},
             "style": "systemd", "qos": "burstable", "runtime": "containerd",
             "containers": [{"name": "app", "image": "registry.example.com/shop/web:1.4.3", "command": \#(burnCPU)}]}
            """#)
        #expect(recreated.uid != web.uid)
        // Samples must carry the new pod within 2 s of its process's first sample: the window
        // that closes later than that must have it.
        try await Task.sleep(for: .seconds(4))
        try await node.faults(#"{"reset": true}"#)

        let metrics = try agent.get("/metrics").body
        let stopped = await agent.terminate(within: 15)
        let log = agent.log
        #expect(stopped?.status == 0, "exit after SIGTERM: \(String(describing: stopped))\n\(log)")
        #expect((stopped?.seconds ?? 99) < 12, "SIGTERM to exit took \(stopped?.seconds ?? -1) s")

        // Bad replies were counted and skipped, the watch restarted, and the agent kept going.
        #expect(metrics.contains(#"nodeprof_kubernetes_bad_events_total{problem="malformed"}"#))
        #expect(!metrics.contains(#"nodeprof_kubernetes_bad_events_total{problem="malformed"} 0"#), "\(metrics)")
        #expect(!metrics.contains(#"nodeprof_kubernetes_relists_total 0"#), "\(metrics)\n\(log)")
        #expect(!metrics.contains(#"nodeprof_kubernetes_bad_events_total{problem="oversized"} 0"#), "\(metrics)")
        #expect(!metrics.contains(#"nodeprof_kubernetes_backoffs_total 0"#), "\(metrics)")

        let resources = try await receiver.resources()
        let records = try await receiver.records()
        #expect(records.allSatisfy { $0.violations.isEmpty }, "\(records.flatMap(\.violations).prefix(5))")

        // Every resource of a workload process carries exactly its pod's attributes.
        pods[0].created = web
        var all = pods
        all.append(
            ExpectedPod(
                created: recreated, name: "web-5d9c7b6f4-q2x7z", namespace: "shop", container: "app",
                owners: ["k8s.deployment.name": "web"], serviceName: "web"))
        for pod in all {
            let container = try #require(pod.created.containers.first)
            let mine = resources.filter { $0.pid == Int(container.pid) }
            #expect(!mine.isEmpty, "no samples of \(pod.namespace)/\(pod.name) (pid \(container.pid))")
            let attributed = mine.filter { $0.string("k8s.pod.name") != nil }
            #expect(
                attributed.map(\.weight).reduce(0, +) >= 20,
                "\(pod.name): \(attributed.count) of \(mine.count) windows attributed")
            let firstSample = mine.compactMap(\.firstTimestampUnixNano).min() ?? 0
            for resource in mine {
                // Attribution is exact from the first window for pods the agent saw being
                // created; a window closing within 2 s of a process's first sample may wait
                // for its pod, never longer.
                if resource.string("k8s.pod.uid") == nil {
                    let last = resource.lastTimestampUnixNano ?? .max
                    #expect(
                        last < firstSample + 2_000_000_000,
                        "\(pod.name) (uid \(pod.created.uid)): a window ending \(Double(last &- firstSample) / 1e9) s after the first sample has no pod"
                    )
                    continue
                }
                #expect(resource.string("k8s.pod.name") == pod.name)
                #expect(resource.string("k8s.pod.uid") == pod.created.uid)
                #expect(resource.string("k8s.namespace.name") == pod.namespace)
                #expect(resource.string("k8s.node.name") == node.nodeName)
                #expect(resource.string("k8s.container.name") == pod.container)
                #expect(resource.string("container.id") == container.containerId)
                #expect(resource.string("service.name") == pod.serviceName)
                #expect(resource.string("service.instance.id") == "\(pod.namespace).\(pod.name).\(pod.container)")
                for (key, value) in pod.owners { #expect(resource.string(key) == value, "\(pod.name) \(key)") }
            }
        }
        // The recreated pod's image tag differs: its attributes are not the old pod's.
        let recreatedResources = resources.filter { $0.pid == Int(recreated.containers[0].pid) }
        #expect(recreatedResources.contains { $0.string("container.image.tag") == "1.4.3" })
        // No other process carries a workload's pod.
        let workloadPIDs = Set(all.compactMap { $0.created.containers.first.map { Int($0.pid) } })
        let podUIDs = Set(all.map(\.created.uid))
        for resource in resources where !workloadPIDs.contains(resource.pid ?? -1) {
            if let uid = resource.string("k8s.pod.uid") {
                #expect(!podUIDs.contains(uid), "pid \(resource.pid ?? -1) carries pod \(uid)")
            }
        }
    }
}
