import AsyncHTTPClient
import Foundation
import KubeMetadata
import KubernetesAPI
import Logging
import NIOCore
import NIOHTTP1
import NodeprofCore
import ProcessTable
import Profiles
import ServiceLifecycle
import TestSupport
import Testing

@testable import Agent

@Suite struct WindowAttributionTests {
    /// A profile with `count` samples of each pid, described with its container.
    func profile(pids: [Int32: Int], containers: [Int32: ContainerIdentity] = [:]) -> Profile {
        var profile = Profile(startTimeNanos: 1, frequencyHz: 99)
        let stack = profile.intern(stack: [Frame(kind: .native, address: 0x1000, function: "work", module: nil)])
        for (pid, count) in pids {
            let process = profile.intern(
                process: ProcessDescription(
                    pid: pid, name: "app",
                    attributes: [Attribute("process.executable.path", .string("/bin/app\(pid)"))],
                    containerID: containers[pid]?.containerID, podUID: containers[pid]?.podUID))
            for index in 0..<count {
                profile.add(
                    stack: stack, process: process, tid: pid, threadName: "t", cgroupID: 7,
                    timestampNanos: UInt64(index))
            }
        }
        return profile
    }

    func pod(_ name: String, uid: String, container: String) -> Pod {
        Pod(
            metadata: ObjectMeta(name: name, namespace: "ns", uid: uid),
            spec: .init(containers: [.init(name: "app", image: "app:1")]),
            status: .init(containerStatuses: [.init(name: "app", containerID: "containerd://" + container)]))
    }

    let a = String(repeating: "a", count: 64)
    let b = String(repeating: "b", count: 64)
    let c = String(repeating: "c", count: 64)

    @Test func processesGetPodContainerOrNoAttributes() async {
        let cache = PodCache(configuration: .init(nodeName: "n"), jobLookup: nil)
        await cache.upsert(pod("known", uid: "u-known", container: a))
        let state = AgentState()
        let attribution = WindowAttribution(podCache: cache, state: state, grace: .milliseconds(300))
        var profile = profile(
            pids: [10: 3, 20: 2, 30: 1, 40: 4],
            containers: [
                10: ContainerIdentity(containerID: a, podUID: "u-known"),
                // A pod container the cache never learns: container id and pod uid only.
                20: ContainerIdentity(containerID: b, podUID: "u-unknown"),
                // A plain Docker container: no pod to wait for.
                30: ContainerIdentity(containerID: c, podUID: nil),
            ])
        await attribution.attribute(&profile)
        let known = profile.processAttributes[10] ?? []
        #expect(known.first == Attribute("process.executable.path", .string("/bin/app10")))
        #expect(known.contains(Attribute("k8s.pod.name", .string("known"))))
        #expect(known.contains(Attribute("container.id", .string(a))))
        let unknown = profile.processAttributes[20] ?? []
        #expect(unknown.contains(Attribute("container.id", .string(b))))
        #expect(unknown.contains(Attribute("k8s.pod.uid", .string("u-unknown"))))
        #expect(!unknown.contains { $0.key == "k8s.pod.name" })
        #expect(profile.processAttributes[30]?.contains(Attribute("container.id", .string(c))) == true)
        #expect(profile.processAttributes[40] == [Attribute("process.executable.path", .string("/bin/app40"))])
        let snapshot = state.snapshot
        #expect(snapshot.samplesAttributedToPods == 3)
        #expect(snapshot.samplesAttributedToContainersOnly == 3)
        #expect(snapshot.samplesOnNode == 4)
        #expect(snapshot.processesAttributedToPods == 1)
    }

    @Test func aPodThatArrivesDuringTheGraceIsAttributed() async {
        let cache = PodCache(configuration: .init(nodeName: "n"), jobLookup: nil)
        let attribution = WindowAttribution(podCache: cache, state: AgentState(), grace: .seconds(60))
        var profile = profile(pids: [10: 1], containers: [10: ContainerIdentity(containerID: a, podUID: "u-late")])
        let late = Task {
            try await Task.sleep(for: .milliseconds(200))
            await cache.upsert(pod("late", uid: "u-late", container: a))
        }
        let started = ContinuousClock.now
        await attribution.attribute(&profile)
        _ = try? await late.value
        #expect(profile.processAttributes[10]?.contains(Attribute("k8s.pod.name", .string("late"))) == true)
        // It waited for the pod, not for the whole grace period.
        #expect(ContinuousClock.now - started < .seconds(50))
    }
}

@Suite struct AgentMetricsTests {
    @Test func countersGrowByTheDifferenceAndGaugesFollow() {
        let metrics = AgentMetrics()
        func render(_ total: Int, _ gauge: Double) -> String {
            String(
                decoding: metrics.render([
                    .counter("test_events_total", "Events.", total, labels: [("kind", "x")]),
                    .gauge("test_level", "Level.", gauge),
                ]), as: UTF8.self)
        }
        #expect(render(5, 1.5).contains(#"test_events_total{kind="x"} 5"#))
        let second = render(12, 0.25)
        #expect(second.contains(#"test_events_total{kind="x"} 12"#))
        #expect(second.contains("test_level 0.25"))
        // A source that restarted reports a smaller total: the counter never goes back.
        #expect(render(3, 0).contains(#"test_events_total{kind="x"} 15"#))
        #expect(second.contains("# TYPE test_events_total counter"))
    }
}

@Suite struct StatusServerTests {
    @Test func answersProbesAndMetricsWithKeepAliveAndRefusesOtherMethods() async throws {
        let server = StatusServer(host: "127.0.0.1", port: 0, logger: Logger(label: "test")) { path in
            switch path {
            case "/healthz": return StatusResponse(status: 200, body: "ok\n")
            case "/readyz": return StatusResponse(status: 503, body: "not yet\n")
            default: return StatusResponse(status: 404, body: "no\n")
            }
        }
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        defer { running.cancel() }
        let port = try #require(await server.boundPort())

        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        func get(_ path: String, method: HTTPMethod = .GET) async throws -> (Int, String) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = method
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), String(buffer: body))
        }
        #expect(try await get("/healthz") == (200, "ok\n"))
        #expect(try await get("/readyz") == (503, "not yet\n"))
        #expect(try await get("/readyz?verbose=1") == (503, "not yet\n"))
        #expect(try await get("/nope").0 == 404)
        #expect(try await get("/healthz", method: .POST).0 == 405)
        try await client.shutdown()
        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test func aBusyPortIsAClearError() async throws {
        let first = StatusServer(host: "127.0.0.1", port: 0, logger: Logger(label: "test")) { _ in
            StatusResponse(status: 200, body: "")
        }
        let group = ServiceGroup(services: [first], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        let port = try #require(await first.boundPort())
        let second = StatusServer(host: "127.0.0.1", port: port, logger: Logger(label: "test")) { _ in
            StatusResponse(status: 200, body: "")
        }
        await #expect {
            try await second.run()
        } throws: { error in
            "\(error)".contains("cannot listen on 127.0.0.1:\(port)") && "\(error)".contains("--listen-address")
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }
}
