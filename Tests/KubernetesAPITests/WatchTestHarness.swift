import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import KubernetesAPI

/// Pods as the kubelet's API objects look, small.
enum TestPods {
    static func json(
        name: String, namespace: String = "default", uid: String? = nil, node: String = "node-a",
        labels: [String: String] = [:], phase: String = "Running"
    ) -> String {
        var metadata: [String: Any] = ["name": name, "namespace": namespace, "labels": labels]
        metadata["uid"] = uid ?? "uid-\(namespace)-\(name)"
        let object: [String: Any] = [
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": ["nodeName": node, "containers": [["name": "app", "image": "registry.example.com/\(name):1.0"]]],
            "status": [
                "phase": phase,
                "containerStatuses": [
                    ["name": "app", "containerID": "containerd://" + String(repeating: "a", count: 64)]
                ],
            ],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// What a consumer of a ``ListWatch`` holds: pods by uid, applied from the events in order,
/// plus the anomalies a correct list/watch never produces.
final class TestPodCache: Sendable {
    struct State {
        var pods: [String: Pod] = [:]
        var replaced = 0
        var events = 0
        /// ADDED for a uid already held, DELETED or MODIFIED of a uid not held.
        var anomalies: [String] = []
    }

    private let state = Mutex(State())

    var snapshot: State { state.withLock { $0 } }

    func apply(_ event: ListWatchEvent<Pod>) {
        state.withLock { state in
            state.events += 1
            switch event {
            case .replaced(let pods):
                state.replaced += 1
                state.pods = [:]
                for pod in pods {
                    let uid = pod.metadata.uid ?? ""
                    if state.pods[uid] != nil { state.anomalies.append("list has \(uid) twice") }
                    state.pods[uid] = pod
                }
            case .added(let pod):
                let uid = pod.metadata.uid ?? ""
                if state.pods[uid] != nil { state.anomalies.append("ADDED \(uid) held already") }
                state.pods[uid] = pod
            case .modified(let pod):
                let uid = pod.metadata.uid ?? ""
                if state.pods[uid] == nil { state.anomalies.append("MODIFIED \(uid) not held") }
                state.pods[uid] = pod
            case .deleted(let pod):
                let uid = pod.metadata.uid ?? ""
                if state.pods.removeValue(forKey: uid) == nil { state.anomalies.append("DELETED \(uid) not held") }
            }
        }
    }

    /// uid -> `namespace/name@resourceVersion`: equal to the server's exactly when every
    /// pod is there in its latest version and nothing else is.
    var summary: [String: String] { Self.summary(state.withLock { Array($0.pods.values) }) }

    static func summary(_ pods: [Pod]) -> [String: String] {
        var result: [String: String] = [:]
        for pod in pods {
            result[pod.metadata.uid ?? "?"] =
                "\(pod.metadata.namespace ?? "")/\(pod.metadata.name ?? "")@\(pod.metadata.resourceVersion ?? "")"
        }
        return result
    }
}

/// A fake API server, a client for it, a list/watch of its pods and a consumer task applying
/// the events to a ``TestPodCache``.
struct WatchHarness {
    let server: FakeAPIServer
    let client: KubernetesClient
    let listWatch: ListWatch<Pod>
    let cache: TestPodCache
    let configuration: ListWatch<Pod>.Configuration

    static let logger: Logger = {
        var logger = Logger(label: "nodeprof.test.kubernetes")
        logger.logLevel = .critical
        return logger
    }()

    static func listWatchConfiguration(
        fieldSelector: String? = nil, pageSize: Int = 500, watchTimeoutSeconds: ClosedRange<Int> = 30...30
    ) -> ListWatch<Pod>.Configuration {
        ListWatch<Pod>.Configuration(
            path: "/api/v1/pods", fieldSelector: fieldSelector, pageSize: pageSize,
            watchTimeoutSeconds: watchTimeoutSeconds,
            backoff: KubernetesBackoff(initial: .milliseconds(50), maximum: .milliseconds(300)))
    }

    static func clientConfiguration(
        _ server: FakeAPIServer, credentials: KubernetesClientConfiguration.Credentials = .none,
        readIdleTimeout: Duration = .seconds(30)
    ) -> KubernetesClientConfiguration {
        KubernetesClientConfiguration(
            server: server.apiURL, credentials: credentials, requestTimeout: .seconds(5),
            readIdleTimeout: readIdleTimeout)
    }

    /// Runs `body` with a consumer iterating the list/watch; cancels it afterwards and checks
    /// that it stops promptly.
    static func run(
        server: FakeAPIServer, client clientConfiguration: KubernetesClientConfiguration? = nil,
        configuration: ListWatch<Pod>.Configuration = listWatchConfiguration(),
        listPageObserver: (@Sendable (Int) -> Void)? = nil, logger: Logger = Self.logger,
        _ body: (WatchHarness) async throws -> Void
    ) async throws {
        let client = try KubernetesClient(
            configuration: clientConfiguration ?? Self.clientConfiguration(server), logger: logger)
        var listWatch = ListWatch<Pod>(client: client, configuration: configuration, logger: logger)
        listWatch.listPageObserver = listPageObserver
        let cache = TestPodCache()
        let consumer = Task { [listWatch] in
            for await event in listWatch { cache.apply(event) }
        }
        let harness = WatchHarness(
            server: server, client: client, listWatch: listWatch, cache: cache, configuration: configuration)
        do {
            try await body(harness)
        } catch {
            consumer.cancel()
            await consumer.value
            await client.shutdown()
            throw error
        }
        let cancelled = ContinuousClock.now
        consumer.cancel()
        await consumer.value
        // A hang detector (a cancelled watch that kept reading would never return).
        #expect(ContinuousClock.now - cancelled < .seconds(15), "the list/watch stops when cancelled")
        await client.shutdown()
        #expect(cache.snapshot.anomalies == [], "no duplicate or lost pod")
    }

    /// The server's pods (with this list/watch's selector), listed by a separate client.
    func truth() async throws -> [String: String] {
        let checker = try KubernetesClient(configuration: client.configuration, logger: Self.logger)
        defer { Task { await checker.shutdown() } }
        // resourceVersion=0 (ignored by the fake server) marks these lists in its request log.
        var query: [String: String] = ["resourceVersion": "0"]
        if let selector = configuration.fieldSelector { query["fieldSelector"] = selector }
        let (pods, _) = try await checker.list(Pod.self, path: "/api/v1/pods", query: query, limit: 0)
        await checker.shutdown()
        return TestPodCache.summary(pods)
    }

    /// The API requests of the list/watch (not those of ``truth()``).
    func requests() async throws -> [FakeAPIServer.Request] {
        try await server.requests().filter { $0.watch || $0.query["resourceVersion"] != "0" }
    }

    /// Waits until the cache equals the server's state (and at least one list arrived).
    func converge(within timeout: Duration = .seconds(45), _ comment: String = "") async throws {
        let deadline = ContinuousClock.now + timeout
        var expected: [String: String] = [:]
        while ContinuousClock.now < deadline {
            guard let truth = try? await truth() else {
                try await Task.sleep(for: .milliseconds(50))
                continue
            }
            expected = truth
            if cache.snapshot.replaced > 0 && cache.summary == expected { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record(
            "\(comment): the cache did not converge: has \(cache.summary.sorted { $0.key < $1.key }), server has \(expected.sorted { $0.key < $1.key }); statistics \(listWatch.statistics)"
        )
        throw FixtureError("did not converge")
    }

    /// Waits until `condition` holds on the statistics.
    func until(
        within timeout: Duration = .seconds(45), _ what: String, _ condition: (ListWatchStatistics) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(listWatch.statistics) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("timed out waiting for \(what); statistics \(listWatch.statistics)")
        throw FixtureError("timed out waiting for \(what)")
    }
}

/// Log messages kept for tests that check what the list/watch says.
final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])

    var messages: [String] { lines.withLock { $0 } }

    var logger: Logger {
        var logger = Logger(label: "nodeprof.test.captured") { _ in CapturingHandler(log: self) }
        logger.logLevel = .debug
        return logger
    }

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct CapturingHandler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.append("\(event.level): \(event.message)")
        }
    }
}

/// Starts a fake API server for one test and stops it afterwards.
func withFakeAPIServer(
    tokens: [String] = [], tls: (certificate: String, key: String)? = nil, bookmarkInterval: Double = 0.3,
    _ body: (FakeAPIServer) async throws -> Void
) async throws {
    let server = try await FakeAPIServer.start(tokens: tokens, tls: tls, bookmarkInterval: bookmarkInterval)
    defer { server.stop() }
    do {
        try await body(server)
    } catch {
        Issue.record("fake API server log:\n\(server.log.suffix(4000))")
        throw error
    }
}
