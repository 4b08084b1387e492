import Agent
import ArgumentParser
import Foundation
import KubeMetadata
import KubernetesAPI
import Logging
import NodeprofCore
import TestSupport

/// API requests of the agent's pod list/watch at steady state, counted by the API server.
///
/// hack/fake-node/apiserver.py holds the node's pods (three of them CronJob runs, with their
/// Jobs and CronJobs); the agent's ``PodWatchService`` runs in this process with its
/// ``PodCache`` and the agent's Job lookup (``JobOwnersFromAPI``), for `--seconds`, with time scaled
/// down by `--time-scale`: the watch timeouts (the agent's 240...360 s) and the CronJob's
/// period are divided by it, so `--seconds 60 --time-scale 60` stands for one hour. A
/// CronJob of the node runs every `--cronjob-period-minutes` (scaled): each run adds a Job and
/// its pod and removes the previous run's pod. The server's request log gives the count of
/// each kind of request.
struct KubeRequests: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-requests",
        abstract: "Count the pod list/watch's API requests on a simulated busy node (prints JSON).",
        discussion: """
            Runs with watch timeouts and the CronJob period divided by --time-scale; the \
            report has the measured counts, the same scaled to real time per hour, and what the \
            formula predicts. For hack/bench --quick, fewer seconds.
            """)

    @Option(help: "Measured seconds (scaled time).") var seconds = 60.0
    @Option(help: "Time scale: watch timeouts and the CronJob period are divided by it.") var timeScale = 60.0
    @Option(help: "Pods of the node.") var pods = 110
    @Option(help: "The extra CronJob's period, in real minutes (a run every so often).")
    var cronjobPeriodMinutes = 15.0
    @Option(help: "Python with hack/otlp/requirements.txt installed.") var python = ".venv/bin/python"
    @Option(help: "The fake API server script.") var apiserver = "hack/fake-node/apiserver.py"
    @Option(help: "Write the server's log here (default: discard).") var serverLog: String?

    static let nodeName = "bench-node"
    /// The agent's watch timeout range, seconds (`NodeAgentConfiguration.Kubernetes`).
    static let agentWatchTimeout = 240...360

    func validate() throws {
        guard seconds > 0, timeScale >= 1, pods >= 6, cronjobPeriodMinutes > 0 else {
            throw ValidationError("--seconds and --cronjob-period-minutes must be positive, --time-scale at least 1")
        }
        let lower = Double(Self.agentWatchTimeout.lowerBound) / timeScale
        guard lower >= 1, lower.rounded() == lower else {
            throw ValidationError("--time-scale must divide 240 and 360 into whole seconds (60 does)")
        }
    }

    func run() async throws {
        ChildRegistry.installSignalHandlers()
        let fixtures = KubePodFixtures(nodeName: Self.nodeName, count: pods, seed: 11)
        // Bookmarks: the real server sends one about a minute; scaled like everything else.
        let bookmarkSeconds = max(0.2, 60 / timeScale)
        let server = try ToolProcess(
            [
                python, apiserver, "--port", "0", "--control-port", "0", "--history", "100000",
                "--bookmark-interval", String(bookmarkSeconds),
            ], name: "apiserver.py", logPath: serverLog)
        defer { server.stop() }
        let apiPort = server.port("api_port")

        func post(_ object: [String: Any]) throws {
            try server.control("POST", "/objects", body: Array(jsonText(object).utf8))
        }
        func cronJob(_ name: String, _ namespace: String, uid: String) -> [String: Any] {
            [
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": ["name": name, "namespace": namespace, "uid": uid],
                "spec": ["schedule": "*/15 * * * *"],
            ]
        }
        func job(_ name: String, _ namespace: String, uid: String, cronJob: String, cronJobUID: String) -> [String: Any]
        {
            [
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": [
                    "name": name, "namespace": namespace, "uid": uid,
                    "ownerReferences": [
                        [
                            "apiVersion": "batch/v1", "kind": "CronJob", "name": cronJob, "uid": cronJobUID,
                            "controller": true, "blockOwnerDeletion": true,
                        ]
                    ],
                ],
            ]
        }
        for plan in fixtures.plans {
            if plan.workload == .cronJob {
                let cronJobUID = "cronjob-\(plan.workloadName)"
                try post(cronJob(plan.workloadName, plan.namespace, uid: cronJobUID))
                try post(
                    job(
                        plan.ownerName, plan.namespace, uid: plan.ownerUID, cronJob: plan.workloadName,
                        cronJobUID: cronJobUID))
            }
            try post(fixtures.object(plan, resourceVersion: 0, kindAndVersion: true))
        }
        // The CronJob that runs during the measurement: a copy of the first CronJob pod.
        guard var template = fixtures.plans.first(where: { $0.workload == .cronJob }) else {
            throw ValidationError("no CronJob pod among the fixtures")
        }
        template.workloadName = "queue-drain"
        try post(cronJob("queue-drain", template.namespace, uid: "cronjob-queue-drain"))
        try server.control("POST", "/reset-requests")

        var logger = Logger(label: "nodeprof-bench.kube")
        logger.logLevel = .warning
        let client = try KubernetesClient(
            configuration: KubernetesClientConfiguration(server: "http://127.0.0.1:\(apiPort)"), logger: logger)
        let cache = PodCache(
            configuration: PodAttributeConfiguration(nodeName: Self.nodeName),
            jobLookup: JobOwnersFromAPI(client: client),
            logger: logger)
        let scaled =
            Int(
                Double(Self.agentWatchTimeout.lowerBound) / timeScale)...Int(
                Double(Self.agentWatchTimeout.upperBound) / timeScale)
        let service = PodWatchService(
            client: client, nodeName: Self.nodeName, cache: cache, watchTimeoutSeconds: scaled, state: AgentState(),
            logger: logger)
        let clock = ContinuousClock()
        let start = clock.now
        let running = Task { try await service.run() }

        // CronJob runs, half a period in and then every period.
        let period = cronjobPeriodMinutes * 60 / timeScale
        var runs = 0
        var previous: KubePodFixtures.Plan?
        var next = period / 2
        var random = SplitMix64(seed: 99)
        while next < seconds {
            try await Task.sleep(until: start + .milliseconds(Int(next * 1000)), clock: clock)
            var run = template
            let minutes = 29_916_100 + runs * Int(cronjobPeriodMinutes)
            run.ownerName = "queue-drain-\(minutes)"
            run.ownerUID = "job-\(random.hex(bytes: 8))"
            run.uid = "pod-\(random.hex(bytes: 8))"
            run.name = "\(run.ownerName)-\(random.hex(bytes: 3).prefix(5))"
            run.containers[0].id = random.hex(bytes: 32)
            try post(
                job(
                    run.ownerName, run.namespace, uid: run.ownerUID, cronJob: "queue-drain",
                    cronJobUID: "cronjob-queue-drain"))
            try post(fixtures.object(run, resourceVersion: 0, kindAndVersion: true))
            if let previous {
                let target: [String: Any] = [
                    "apiVersion": "v1", "kind": "Pod", "namespace": previous.namespace, "name": previous.name,
                ]
                try server.control("POST", "/delete", body: Array(jsonText(target).utf8))
            }
            previous = run
            runs += 1
            next += period
        }
        try await Task.sleep(until: start + .milliseconds(Int(seconds * 1000)), clock: clock)
        let elapsed = Measurement.milliseconds(clock.now - start) / 1000
        let log = try server.controlJSON("GET", "/requests") as? [[String: Any]] ?? []
        running.cancel()
        _ = try? await running.value
        let statistics = service.statistics
        let cacheStatistics = await cache.currentStatistics
        await client.shutdown()

        // The log's requests up to the end of the measured period.
        var lists = 0
        var watches = 0
        var jobGets = 0
        var other: [String] = []
        var watchTimes: [Double] = []
        for entry in log {
            let path = entry["path"] as? String ?? ""
            if entry["watch"] as? Bool == true {
                watches += 1
                watchTimes.append(entry["time"] as? Double ?? 0)
            } else if path == "/api/v1/pods" {
                lists += 1
            } else if path.hasPrefix("/apis/batch/v1/namespaces/"), path.contains("/jobs/") {
                jobGets += 1
            } else {
                other.append(path)
            }
        }
        watchTimes.sort()
        let gaps = zip(watchTimes.dropFirst(), watchTimes).map { $0 - $1 }
        let scale = 3600 / (elapsed * timeScale)  // measured count -> per real hour
        let meanTimeout = Double(Self.agentWatchTimeout.lowerBound + Self.agentWatchTimeout.upperBound) / 2
        let initialJobs = fixtures.plans.filter { $0.workload == .cronJob }.count
        let report: [String: Any] = [
            "pods": pods, "seconds": elapsed, "time_scale": timeScale, "represents_hours": elapsed * timeScale / 3600,
            "watch_timeout_s": [
                "agent": [Self.agentWatchTimeout.lowerBound, Self.agentWatchTimeout.upperBound],
                "scaled": [scaled.lowerBound, scaled.upperBound],
            ],
            "bookmark_interval_s": bookmarkSeconds, "cronjob_period_minutes": cronjobPeriodMinutes,
            "cronjob_runs": runs, "initial_cronjob_pods": initialJobs,
            "measured": [
                "list_pages": lists, "watches": watches, "job_gets": jobGets, "other": other.count,
                "total": log.count,
            ],
            "per_hour": [
                "watches": Double(watches) * scale,
                "job_gets_after_start": Double(jobGets - initialJobs) * scale,
            ],
            "watch_lifetime_s": [
                "mean": gaps.isEmpty ? 0 : gaps.reduce(0, +) / Double(gaps.count) * timeScale,
                "count": gaps.count,
            ],
            "formula": [
                "list_pages_at_start": (pods + 499) / 500, "job_gets_at_start": initialJobs,
                "watches_per_hour": 3600 / meanTimeout, "mean_watch_timeout_s": meanTimeout,
                "job_gets_per_hour": 60 / cronjobPeriodMinutes,
            ],
            "client_go": [
                "watch_timeout_s": [300, 600], "mean_watch_timeout_s": 450, "watches_per_hour": 3600.0 / 450,
                "lists_at_start": 1,
            ],
            "list_watch": [
                "lists": statistics.lists, "relists": statistics.relists, "watches": statistics.watchesStarted,
                "requests": statistics.requests, "bookmarks": statistics.bookmarks,
                "restarts_closed": statistics.watchRestarts[.streamEnded],
                "restarts_total": statistics.watchRestarts.total,
                "added": statistics.events.added, "deleted": statistics.events.deleted,
            ],
            "cache": [
                "pods": cacheStatistics.pods, "job_lookups": cacheStatistics.jobLookups,
                "job_lookup_failures": cacheStatistics.jobLookupFailures,
            ],
        ]
        try Measurement.printJSON(report)
    }
}
