import ArgumentParser
import Foundation
import Glibc
import TestSupport

/// `nodeprof agent` on the simulated node: hack/fake-node/fake-node with `--pods` pods in
/// kubelet-shaped cgroups (real processes: most `sleep infinity`, a few burning CPU), the
/// OTLP receiver (hack/otlp/receiver.py), and the agent exporting to it. Measures the agent's
/// CPU (utime + stime over wall time, /proc/PID/stat) and memory (VmRSS, VmHWM), scrapes its
/// /metrics at the end, stops it with SIGTERM and times the shutdown.
///
/// During the run `--probes` more pods (burning CPU) are created at different points of an
/// export window; for each,
/// the time from sending the create to the receiver's arrival time of the first export whose
/// resources carry that pod's uid: the end-to-end latency, bounded by the export interval.
///
/// Peer, on the same node right after: `perf record -F <frequency> -a -g -- sleep <seconds>`,
/// its CPU and peak RSS from wait4.
struct KubeAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-agent",
        abstract: "Measure nodeprof agent's CPU and memory on the simulated node (prints JSON).",
        discussion: """
            Needs root (cgroups, BPF, perf). Everything started is stopped on every exit path, \
            also on SIGINT/SIGTERM (fake-node then removes its cgroups). For hack/bench --quick, \
            fewer seconds.
            """)

    @Option(help: "The nodeprof executable (a release build).") var nodeprof = ".build/release/nodeprof"
    @Option(help: "Seconds the agent runs after it is ready (and perf records).") var seconds = 60.0
    @Option(help: "Sampling frequency, Hz.") var frequency = 19
    @Option(help: "The agent's export interval, seconds.") var exportInterval = 10
    @Option(help: "Pods on the node at the end of the run (the probes included).") var pods = 110
    @Option(help: "Pods burning CPU from the start.") var burners = 3
    @Option(help: "Pods (burning CPU) created while the agent runs, to time attribution end to end.")
    var probes = 3
    @Option(help: "Seconds perf records on the same node afterwards (0: no peer).") var perfSeconds = 60.0
    @Option(help: "Directory for logs and perf.data.") var workDir = "/tmp"
    @Option(help: "Python with hack/otlp/requirements.txt installed.") var python = ".venv/bin/python"
    @Option(help: "The simulated node.") var fakeNode = "hack/fake-node/fake-node"
    @Option(help: "The OTLP receiver.") var receiver = "hack/otlp/receiver.py"

    static let burn = ["/bin/sh", "-c", "while :; do :; done"]

    func validate() throws {
        guard seconds >= 5, frequency > 0, exportInterval > 0, pods > probes + burners, burners >= 0, probes >= 0,
            perfSeconds >= 0
        else {
            throw ValidationError("--seconds at least 5, --pods above --probes + --burners, the rest positive")
        }
    }

    func run() async throws {
        ChildRegistry.installSignalHandlers()
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        let receiverTool = try ToolProcess(
            [python, receiver, "--grpc-port", "0", "--http-port", "0", "--control-port", "0"], name: "receiver.py",
            logPath: "\(workDir)/receiver.log")
        defer { receiverTool.stop() }
        let node = try ToolProcess(
            [
                python, fakeNode, "--api-port", "0", "--control-port", "0", "--node-name", "fake-node-1",
                "--kubeconfig-out", "\(workDir)/fake-node.kubeconfig",
            ], name: "fake-node", logPath: "\(workDir)/fake-node.log")
        defer { node.stop() }
        guard let kubeconfig = node.ready["kubeconfig"] as? String, let nodeName = node.ready["node_name"] as? String
        else { throw ChildProcess.Failure(description: "fake-node's ready line has no kubeconfig") }

        // The node's pods, from the same fixtures as the other Kubernetes benchmarks; the
        // probes are Deployment pods of their own.
        let fixtures = KubePodFixtures(nodeName: nodeName, count: pods, seed: 3)
        var burnersLeft = burners
        let clock = ContinuousClock()
        let creating = clock.now
        var containerProcesses = 0
        for plan in fixtures.plans.prefix(pods - probes) {
            var burning = false
            if plan.workload == .deployment && burnersLeft > 0 {
                burning = true
                burnersLeft -= 1
            }
            containerProcesses += plan.containers.count
            try node.control("POST", "/node/pods", body: Self.request(plan, burning: burning))
        }
        let creationSeconds = Measurement.milliseconds(clock.now - creating) / 1000

        let agentLog = "\(workDir)/agent.log"
        try? FileManager.default.removeItem(atPath: agentLog)
        let arguments = [
            nodeprof, "agent", "--kubeconfig", kubeconfig, "--node-name", nodeName, "--otlp-endpoint",
            "http://127.0.0.1:\(receiverTool.port("http_port"))", "--frequency", String(frequency),
            "--export-interval", "\(exportInterval)s", "--listen-address", "127.0.0.1:0",
        ]
        let agent = try ChildProcess(arguments, name: "nodeprof agent", captureStdout: false, stderrPath: agentLog)
        defer { agent.stop(timeoutSeconds: 30) }
        let agentStarted = clock.now
        let statusPort = try await waitForStatusPort(agent: agent, log: agentLog)
        while try PlainHTTP.request("GET", port: statusPort, path: "/readyz").status != 200 {
            guard agent.isRunning, clock.now - agentStarted < .seconds(60) else {
                throw ChildProcess.Failure(description: "the agent did not become ready:\n\(Self.tail(agentLog))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let readySeconds = Measurement.milliseconds(clock.now - agentStarted) / 1000
        guard let atReady = ProcessUsage(pid: agent.pid) else {
            throw ChildProcess.Failure(description: "cannot read /proc/\(agent.pid)")
        }

        // The run: four readings a second; the probes every 1 + 1/(probes + 1) export intervals,
        // so that each starts at a different point of a window (at even intervals over the run
        // when that does not fit).
        let step = Double(exportInterval) * (1 + 1 / Double(probes + 1))
        let fitsInWindows = Double(probes) * step <= seconds - Double(exportInterval)
        var probeTimes: [Double] = []
        for index in 1...max(1, probes) {
            probeTimes.append(fitsInWindows ? Double(index) * step : seconds * Double(index) / Double(probes + 1))
        }
        struct Probe {
            var uid: String
            var name: String
            var sentUnix: Double
            var returnedUnix: Double
            var afterReady: Double
            var pid: Int
        }
        let readyAt = clock.now
        var probesMade: [Probe] = []
        let probePlans = Array(fixtures.plans.suffix(probes))
        var readings: [[Double]] = []
        var tick = 0
        while true {
            let elapsed = Measurement.milliseconds(clock.now - readyAt) / 1000
            guard elapsed < seconds else { break }
            if probesMade.count < probePlans.count, elapsed >= probeTimes[probesMade.count] {
                let plan = probePlans[probesMade.count]
                let sent = Date().timeIntervalSince1970
                let answer = try node.controlJSON(
                    "POST", "/node/pods", body: Self.request(plan, burning: true, onlyFirstContainer: true))
                let returned = Date().timeIntervalSince1970
                let created = answer as? [String: Any] ?? [:]
                let pid = ((created["containers"] as? [[String: Any]])?.first?["pid"] as? Int) ?? 0
                probesMade.append(
                    Probe(
                        uid: created["uid"] as? String ?? "", name: plan.name, sentUnix: sent, returnedUnix: returned,
                        afterReady: elapsed, pid: pid))
            }
            if let usage = ProcessUsage(pid: agent.pid) {
                readings.append([
                    elapsed, usage.cpuSeconds - atReady.cpuSeconds, Double(usage.residentKiB),
                    Double(usage.peakResidentKiB),
                ])
            }
            guard agent.isRunning else {
                throw ChildProcess.Failure(description: "the agent exited during the run:\n\(Self.tail(agentLog))")
            }
            tick += 1
            try await Task.sleep(until: readyAt + .milliseconds(min(Int(seconds * 1000), tick * 250)), clock: clock)
        }
        let runSeconds = Measurement.milliseconds(clock.now - readyAt) / 1000
        let metrics = try PlainHTTP.request("GET", port: statusPort, path: "/metrics").text
        guard let atEnd = ProcessUsage(pid: agent.pid) else {
            throw ChildProcess.Failure(description: "cannot read /proc/\(agent.pid)")
        }
        let stopping = clock.now
        agent.signal(SIGTERM)
        let exit = agent.wait(timeoutSeconds: 30)
        let shutdownSeconds = Measurement.milliseconds(clock.now - stopping) / 1000
        let totalSeconds = Measurement.milliseconds(clock.now - agentStarted) / 1000
        guard let exit else {
            throw ChildProcess.Failure(description: "the agent did not exit within 30 s of SIGTERM")
        }

        // What the receiver got.
        let records = try receiverTool.controlJSON("GET", "/requests") as? [[String: Any]] ?? []
        var okRequests = 0
        var exportedWeight = 0
        var podUIDs = Set<String>()
        var firstArrival: [String: Double] = [:]
        var firstSample: [String: Double] = [:]
        var violations = 0
        // Per probe process: resources that carry it, with and without its pod.
        let probePIDs = Set(probesMade.map(\.pid))
        var processArrival: [Int: Double] = [:]
        var processWithoutPod: [Int: Int] = [:]
        for record in records {
            if record["outcome"] as? String == "ok" { okRequests += 1 }
            violations += (record["violations"] as? [Any])?.count ?? 0
            guard let summary = record["summary"] as? [String: Any] else { continue }
            exportedWeight += summary["total_weight"] as? Int ?? 0
            let time = record["time"] as? Double ?? 0
            for resource in summary["resources"] as? [[String: Any]] ?? [] {
                let attributes = resource["attributes"] as? [String: Any] ?? [:]
                if let pid = (attributes["process.pid"] as? NSNumber)?.intValue, probePIDs.contains(pid) {
                    if processArrival[pid].map({ time < $0 }) ?? true { processArrival[pid] = time }
                    if attributes["k8s.pod.uid"] == nil { processWithoutPod[pid, default: 0] += 1 }
                }
                guard let uid = attributes["k8s.pod.uid"] as? String else { continue }
                podUIDs.insert(uid)
                if firstArrival[uid].map({ time < $0 }) ?? true { firstArrival[uid] = time }
                if let first = (resource["first_timestamp_unix_nano"] as? NSNumber)?.doubleValue {
                    if firstSample[uid].map({ first / 1e9 < $0 }) ?? true { firstSample[uid] = first / 1e9 }
                }
            }
        }
        let probeReport: [[String: Any]] = probesMade.map { probe in
            var entry: [String: Any] = [
                "name": probe.name, "created_after_ready_s": probe.afterReady,
                "control_round_trip_ms":
                    (probe.returnedUnix - probe.sentUnix) * 1000,
            ]
            entry["exported_after_s"] = firstArrival[probe.uid].map { $0 - probe.sentUnix } ?? -1
            entry["first_sample_after_s"] = firstSample[probe.uid].map { $0 - probe.sentUnix } ?? -1
            // The process may reach the collector before its pod does (a window without it).
            entry["process_exported_after_s"] = processArrival[probe.pid].map { $0 - probe.sentUnix } ?? -1
            entry["process_windows_without_pod"] = processWithoutPod[probe.pid] ?? 0
            return entry
        }

        // The peer on the same node, agent gone.
        var perfReport: [String: Any] = [:]
        if perfSeconds > 0 {
            let output = "\(workDir)/perf-kube.data"
            let command = [
                "/usr/bin/perf", "record", "-F", String(frequency), "-a", "-g", "-q", "-o", output, "--", "sleep",
                String(Int(perfSeconds)),
            ]
            let perfStart = clock.now
            let perf = try ChildProcess(command, name: "perf record", captureStdout: false, stderrPath: nil)
            guard let perfExit = perf.wait(timeoutSeconds: perfSeconds + 60) else {
                perf.stop()
                throw ChildProcess.Failure(description: "perf record did not finish")
            }
            let wall = Measurement.milliseconds(clock.now - perfStart) / 1000
            let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
            perfReport = [
                "command": command.joined(separator: " "), "wall_s": wall, "user_s": perfExit.userSeconds,
                "sys_s": perfExit.systemSeconds, "max_rss_kib": perfExit.maxResidentKiB, "bytes": size,
                "exit_code": Int(perfExit.code ?? -1),
            ]
            try? FileManager.default.removeItem(atPath: output)
        }
        let nodeExit = node.child.stop(timeoutSeconds: 30)
        receiverTool.stop()

        let steadyCPU = atEnd.cpuSeconds - atReady.cpuSeconds
        let report: [String: Any] = [
            "command": arguments.joined(separator: " "),
            "node": [
                "pods_at_start": pods - probes, "pods_at_end": pods, "burners": burners, "probes": probes,
                "container_processes_at_start": containerProcesses, "creation_s": creationSeconds,
                "fake_node_exit_code": Int(nodeExit?.code ?? -1),
            ],
            "frequency": frequency, "export_interval_s": exportInterval,
            "cpus": ProcessInfo.processInfo.activeProcessorCount,
            "agent": [
                "ready_s": readySeconds, "run_s": runSeconds, "shutdown_s": shutdownSeconds,
                "exit_code": Int(exit.code ?? -1), "total_wall_s": totalSeconds,
                "startup_cpu_s": atReady.cpuSeconds, "run_cpu_s": steadyCPU,
                "run_user_s": atEnd.userSeconds - atReady.userSeconds,
                "run_sys_s": atEnd.systemSeconds - atReady.systemSeconds,
                "run_cpu_percent": 100 * steadyCPU / runSeconds,
                "total_user_s": exit.userSeconds, "total_sys_s": exit.systemSeconds,
                "total_cpu_percent": 100 * (exit.userSeconds + exit.systemSeconds) / totalSeconds,
                "rss_end_kib": atEnd.residentKiB, "peak_rss_kib": atEnd.peakResidentKiB,
                "max_rss_kib_wait4": exit.maxResidentKiB,
            ],
            "metrics": Self.metricValues(metrics),
            "receiver": [
                "requests": records.count, "ok": okRequests, "samples": exportedWeight, "pods_seen": podUIDs.count,
                "violations": violations,
            ],
            "probes": probeReport,
            "readings_columns": ["seconds", "cpu_s_since_ready", "rss_kib", "peak_rss_kib"],
            "readings": readings.enumerated().filter { $0.offset % 4 == 0 }.map(\.element),
            "perf": perfReport,
        ]
        try Measurement.printJSON(report)
    }

    /// The body of `POST /node/pods` for a planned pod.
    static func request(_ plan: KubePodFixtures.Plan, burning: Bool, onlyFirstContainer: Bool = false) -> [UInt8] {
        let containers = (onlyFirstContainer ? Array(plan.containers.prefix(1)) : plan.containers).enumerated().map {
            [
                "name": $0.element.name, "image": $0.element.image,
                "command": burning && $0.offset == 0 ? burn : ["sleep", "infinity"],
            ]
                as [String: Any]
        }
        let body: [String: Any] = [
            "name": plan.name, "namespace": plan.namespace,
            "owner": ["kind": plan.workload.rawValue, "name": plan.workloadName], "labels": plan.labels,
            "annotations": plan.annotations, "containers": containers, "style": "systemd",
            "qos": plan.workload == .cronJob ? "besteffort" : "burstable", "runtime": "containerd",
        ]
        return Array(jsonText(body).utf8)
    }

    /// Waits for the agent's "status server listening on HOST:PORT" line.
    func waitForStatusPort(agent: ChildProcess, log: String) async throws -> Int {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let match = text.firstMatch(of: /status server listening on [^ ]+:(\d+)/), let port = Int(match.1) {
                return port
            }
            guard agent.isRunning else {
                throw ChildProcess.Failure(description: "the agent exited early:\n\(Self.tail(log))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ChildProcess.Failure(description: "the agent opened no status port:\n\(Self.tail(log))")
    }

    static func tail(_ path: String) -> String {
        String(((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").suffix(3000))
    }

    /// The metrics the report shows, summed over their labels where several series exist.
    static func metricValues(_ text: String) -> [String: Double] {
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            let series = String(line[..<space])
            let name = series.split(separator: "{").first.map(String.init) ?? series
            values[name, default: 0] += value
            if series.contains("{") { values[series] = value }
        }
        let wanted = [
            "nodeprof_export_samples_total", "nodeprof_export_requests_total", "nodeprof_samples_recorded_total",
            "nodeprof_samples_received_total", "nodeprof_samples_dropped_total", "nodeprof_pod_cache_pods",
            "nodeprof_pod_cache_containers", "nodeprof_kubernetes_watch_restarts_total",
            "nodeprof_kubernetes_requests_total", "nodeprof_kubernetes_lists_total",
            "nodeprof_kubernetes_watches_total",
            "nodeprof_kubernetes_events_total", "nodeprof_pod_cache_job_lookups_total", "nodeprof_windows_total",
            "nodeprof_windows_dropped_total", #"nodeprof_samples_attributed_total{to="pod"}"#,
            #"nodeprof_samples_attributed_total{to="container"}"#, #"nodeprof_samples_attributed_total{to="node"}"#,
            "nodeprof_processes_tracked", "nodeprof_cgroup_cache_entries",
        ]
        return values.filter { wanted.contains($0.key) }
    }
}
