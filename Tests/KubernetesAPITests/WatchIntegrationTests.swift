import Foundation
import Synchronization
import TestSupport
import Testing

@testable import KubernetesAPI

/// The list/watch against hack/fake-node/apiserver.py: every test checks that a consumer's
/// cache converges to the server's exact state, with no duplicate or lost pod.
@Suite struct WatchIntegrationTests {
    static func pods(_ range: ClosedRange<Int>, prefix: String = "pod", node: String = "node-a") -> [String] {
        range.map { TestPods.json(name: "\(prefix)-\($0)", node: node) }
    }

    @Test func pagingListsEveryPodOnce() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...25) + Self.pods(1...5, prefix: "elsewhere", node: "node-b"))
            let configuration = WatchHarness.listWatchConfiguration(fieldSelector: "spec.nodeName=node-a", pageSize: 7)
            try await WatchHarness.run(server: server, configuration: configuration) { harness in
                try await harness.converge()
                #expect(harness.cache.summary.count == 25)
                let statistics = harness.listWatch.statistics
                #expect(statistics.lists == 1)
                #expect(statistics.listPages == 4)
                let lists = try await harness.requests().filter { !$0.watch }
                #expect(lists.count == 4)
                #expect(
                    lists.allSatisfy { $0.query["limit"] == "7" && $0.query["fieldSelector"] == "spec.nodeName=node-a" }
                )
                #expect(lists.first?.query["continue"] == nil)
                #expect(lists.dropFirst().allSatisfy { !($0.query["continue"] ?? "").isEmpty })

                // Changes after the list arrive through the watch, selector included.
                try await server.putAll([
                    TestPods.json(name: "pod-26"), TestPods.json(name: "pod-1", phase: "Succeeded"),
                    TestPods.json(name: "moved-in", node: "node-b"), TestPods.json(name: "moved-in", node: "node-a"),
                ])
                try await server.delete(namespace: "default", name: "pod-2")
                try await harness.converge()
                #expect(harness.listWatch.statistics.lists == 1)
            }
        }
    }

    @Test(arguments: [#"{"chunk_size": 1}"#, #"{"coalesce": 5}"#, #"{"chunk_size": 7, "coalesce": 3}"#])
    func eventsSplitOrCoalescedAreAppliedOnce(fault: String) async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...3))
            try await WatchHarness.run(server: server) { harness in
                try await harness.converge()
                try await server.faults(fault)
                try await server.putAll(
                    Self.pods(4...9) + [TestPods.json(name: "pod-1", labels: ["tier": "é日本🚀 {\"}"])])
                try await server.delete(namespace: "default", name: "pod-2")
                try await server.delete(namespace: "default", name: "pod-5")
                try await harness.converge()
                let statistics = harness.listWatch.statistics
                #expect(statistics.events.added == 6)
                #expect(statistics.events.modified == 1)
                #expect(statistics.events.deleted == 2)
                #expect(statistics.lists == 1)
                #expect(statistics.malformed == 0 && statistics.decodeFailures == 0)
                let labels = harness.cache.snapshot.pods["uid-default-pod-1"]?.metadata.labels
                #expect(labels == ["tier": "é日本🚀 {\"}"])
            }
        }
    }

    @Test func bookmarksAdvanceTheResourceVersion() async throws {
        try await withFakeAPIServer(bookmarkInterval: 0.2) { server in
            try await server.putAll(Self.pods(1...2))
            let configuration = WatchHarness.listWatchConfiguration(
                fieldSelector: "spec.nodeName=node-a", watchTimeoutSeconds: 1...1)
            try await WatchHarness.run(server: server, configuration: configuration) { harness in
                try await harness.converge()
                // Changes this watch does not see move the server's version past the last
                // event's; only bookmarks can tell the client.
                try await server.putAll(Self.pods(1...3, prefix: "other", node: "node-b"))
                let current = try await server.state().resourceVersion
                try await harness.until("a bookmark at the current version") {
                    $0.bookmarks > 0 && $0.resourceVersion == current
                }
                try await harness.until("the next watch") { $0.watchRestarts[.streamEnded] >= 2 }
                let watches = try await harness.requests().filter(\.watch)
                #expect(watches.contains { $0.query["resourceVersion"] == current })
                #expect(watches.allSatisfy { $0.query["allowWatchBookmarks"] == "true" })
                #expect(watches.allSatisfy { $0.query["timeoutSeconds"] == "1" })
                #expect(harness.listWatch.statistics.lists == 1, "a watch that times out resumes without a list")
                try await server.putAll([TestPods.json(name: "late")])
                try await harness.converge()
            }
        }
    }

    @Test func expiryMidWatchRelists() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...4))
            try await WatchHarness.run(server: server) { harness in
                try await harness.converge()
                try await harness.until("the watch is open") { $0.watchesStarted >= 1 }
                try await server.faults(#"{"expire": true}"#)
                try await harness.until("a re-list") { $0.relists >= 1 }
                #expect(harness.listWatch.statistics.watchRestarts[.expired] >= 1)
                #expect(harness.cache.snapshot.replaced >= 2)
                try await server.putAll([TestPods.json(name: "after")])
                try await server.delete(namespace: "default", name: "pod-1")
                try await harness.converge()
            }
        }
    }

    @Test func changesDuringAGapAreSeenAfterExpiry() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...6))
            try await WatchHarness.run(server: server) { harness in
                try await harness.converge()
                // Every request fails while the pods change, then the history is compacted:
                // resuming from the old version gets 410 and only a re-list can tell the
                // client what was deleted.
                try await server.faults(#"{"fail_next": {"status": 500, "count": 100000}, "close_watches": true}"#)
                try await harness.until("a failed watch") { $0.serverErrors >= 1 }
                try await server.putAll([TestPods.json(name: "pod-3", phase: "Failed"), TestPods.json(name: "new")])
                try await server.delete(namespace: "default", name: "pod-1")
                try await server.delete(namespace: "default", name: "pod-2")
                try await server.faults(#"{"expire": true}"#)
                try await server.faults(#"{"reset": true}"#)
                try await harness.converge()
                let statistics = harness.listWatch.statistics
                #expect(statistics.relists >= 1)
                #expect(statistics.events.deleted == 0, "the deletions came from the re-list")
                #expect(statistics.backoffs >= 1)
            }
        }
    }

    @Test func expiredContinueTokenRestartsTheList() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...10))
            let expired = Mutex(false)
            let observer: @Sendable (Int) -> Void = { page in
                // Compact the history after the first page of the first list only.
                guard page == 1, !expired.withLock({ $0 }) else { return }
                expired.withLock { $0 = true }
                _ = try? server.control("POST", "/faults", body: #"{"expire": true}"#)
            }
            let configuration = WatchHarness.listWatchConfiguration(pageSize: 4)
            try await WatchHarness.run(server: server, configuration: configuration, listPageObserver: observer) {
                harness in
                try await harness.converge()
                let statistics = harness.listWatch.statistics
                #expect(statistics.listRestarts == 1)
                #expect(statistics.lists == 1)
                #expect(statistics.listPages == 1 + 3)
                let lists = try await harness.requests().filter { !$0.watch }
                #expect(lists.map(\.status) == [200, 410, 200, 200, 200])
                #expect(lists[2].query["continue"] == nil, "the list starts again from scratch")
            }
        }
    }

    @Test func closedWatchesResumeFromTheLastVersion() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...3))
            try await WatchHarness.run(server: server) { harness in
                try await harness.converge()
                try await server.putAll([TestPods.json(name: "seen-by-watch")])
                try await harness.converge()
                let version = try await server.state().resourceVersion
                try await harness.until("the watch saw the version") { $0.resourceVersion == version }
                try await server.resetRequests()
                try await server.faults(#"{"close_watches": true}"#)
                try await harness.until("a resumed watch") {
                    $0.watchRestarts[.streamEnded] >= 1 && $0.watchesStarted >= 2
                }
                try await server.putAll([TestPods.json(name: "after-close")])
                try await server.delete(namespace: "default", name: "pod-3")
                try await harness.converge()
                let requests = try await harness.requests()
                #expect(requests.allSatisfy { $0.watch }, "no list after a closed watch")
                #expect(requests.first?.query["resourceVersion"] == version)
                #expect(harness.listWatch.statistics.lists == 1)
            }
        }
    }

    @Test func rotatedTokenFileRecoversFromUnauthorized() async throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-token")
        let tokenPath = directory.file("token")
        try "token-one\n".write(toFile: tokenPath, atomically: true, encoding: .utf8)
        try await withFakeAPIServer(tokens: ["token-one"]) { server in
            try await server.putAll(Self.pods(1...2))
            let client = WatchHarness.clientConfiguration(server, credentials: .tokenFile(tokenPath))
            try await WatchHarness.run(server: server, client: client) { harness in
                try await harness.converge()
                // The kubelet rotated the token: the server accepts only the new one, and the
                // watch is cut; the file is rewritten a moment later.
                try await server.faults(#"{"tokens": ["token-two"], "close_watches": true}"#)
                try await harness.until("a 401") { $0.unauthorized >= 1 }
                try "token-two\n".write(toFile: tokenPath, atomically: true, encoding: .utf8)
                let rotated = ContinuousClock.now
                try await server.putAll([TestPods.json(name: "after-rotation")])
                try await harness.converge()
                // Recovery is prompt (the 401 re-reads the file); the bound only catches a hang.
                #expect(ContinuousClock.now - rotated < .seconds(20), "recovered after the file changed")
                let statistics = harness.listWatch.statistics
                #expect(statistics.watchRestarts[.unauthorized] >= 1)
                #expect(statistics.lists == 1)
            }
        }
    }

    @Test func stalledWatchIsResumedAfterTheIdleTimeout() async throws {
        try await withFakeAPIServer(bookmarkInterval: 0.2) { server in
            try await server.putAll(Self.pods(1...3))
            let client = WatchHarness.clientConfiguration(server, readIdleTimeout: .milliseconds(800))
            try await WatchHarness.run(server: server, client: client) { harness in
                try await harness.converge()
                try await harness.until("the watch is open") { $0.watchesStarted >= 1 }
                try await server.faults(#"{"stall": 2.0}"#)
                try await server.putAll([TestPods.json(name: "during-stall")])
                try await server.delete(namespace: "default", name: "pod-1")
                try await harness.until("a stalled watch") { $0.watchRestarts[.stalled] >= 1 }
                try await harness.converge()
                #expect(harness.listWatch.statistics.lists == 1, "resumed from the last version, no list")
            }
        }
    }

    @Test(arguments: [500, 503, 429])
    func failuresBackOffThenSucceed(status: Int) async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...3))
            let count = status == 429 ? 2 : 3
            try await server.faults(#"{"fail_next": {"status": \#(status), "count": \#(count)}}"#)
            let start = ContinuousClock.now
            try await WatchHarness.run(server: server) { harness in
                try await harness.until("a list") { $0.lists >= 1 }
                try await harness.converge()
                let statistics = harness.listWatch.statistics
                #expect(statistics.backoffs >= count)
                if status == 429 {
                    #expect(statistics.throttled == count)
                    #expect(ContinuousClock.now - start >= .seconds(count), "Retry-After: 1 honoured")
                } else {
                    #expect(statistics.serverErrors == count)
                }
                let lists = try await harness.requests().filter { !$0.watch }
                #expect(lists.map(\.status) == Array(repeating: status, count: count) + [200])
                // Waits were spread out, not a hot loop.
                let times = lists.map(\.time)
                for (earlier, later) in zip(times, times.dropFirst()) { #expect(later - earlier >= 0.004) }
            }
        }
    }

    @Test(arguments: ["malformed", "invalid-json", "unknown-type", "gigantic", "missing-fields", "not-json-object"])
    func injectedBadEventsAreCountedAndSkipped(kind: String) async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...2))
            try await WatchHarness.run(server: server) { harness in
                try await harness.converge()
                try await harness.until("the watch is open") { $0.watchesStarted >= 1 }
                let reply = try await server.faults(#"{"inject": "\#(kind)"}"#)
                #expect(reply["injected_into"] as? Int == 1)
                try await server.putAll([TestPods.json(name: "after-\(kind)")])
                try await server.delete(namespace: "default", name: "pod-1")
                try await harness.converge()
                let statistics = harness.listWatch.statistics
                switch kind {
                case "unknown-type": #expect(statistics.unknownType == 1)
                case "gigantic": #expect(statistics.oversized == 1)
                case "missing-fields": #expect(statistics.decodeFailures == 1)
                default: #expect(statistics.malformed == 1)
                }
                #expect(statistics.lists == 1, "the stream continued")
                #expect(statistics.watchesStarted == 1)
                #expect(statistics.events.added == 1 && statistics.events.deleted == 1)
            }
        }
    }

    @Test func inClusterOverHTTPSWithAPrivateCA() async throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-incluster")
        let files = try TestCertificates.make(in: directory)
        let serviceAccount = directory.file("serviceaccount")
        try FileManager.default.createDirectory(atPath: serviceAccount, withIntermediateDirectories: true)
        try "sa-token".write(toFile: serviceAccount + "/token", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: files.authority, toPath: serviceAccount + "/ca.crt")
        try "kube-system".write(toFile: serviceAccount + "/namespace", atomically: true, encoding: .utf8)

        try await withFakeAPIServer(tokens: ["sa-token"], tls: (files.serverCertificate, files.serverKey)) { server in
            try await server.putAll(Self.pods(1...3))
            var configuration = try KubernetesClientConfiguration.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "\(server.apiPort)"],
                serviceAccountDirectory: serviceAccount)
            #expect(configuration.server == "https://127.0.0.1:\(server.apiPort)")
            #expect(configuration.namespace == "kube-system")
            configuration.readIdleTimeout = .seconds(30)
            try await WatchHarness.run(server: server, client: configuration) { harness in
                try await harness.converge()
                try await server.putAll([TestPods.json(name: "tls")])
                try await harness.converge()
                let pod: Pod = try await harness.client.get(path: "/api/v1/namespaces/default/pods/tls")
                #expect(pod.metadata.uid == "uid-default-tls")
            }

            // Without the private CA the server is not trusted.
            var untrusting = configuration
            untrusting.tls.certificateAuthority = nil
            let client = try KubernetesClient(configuration: untrusting, logger: WatchHarness.logger)
            do {
                _ = try await client.list(Pod.self, path: "/api/v1/pods")
                Issue.record("listed without trusting the server")
            } catch let error as KubernetesAPIError {
                guard case .tlsFailed = error else {
                    Issue.record("expected a TLS failure: \(error)")
                    await client.shutdown()
                    return
                }
            }
            await client.shutdown()
        }
    }

    @Test func requestErrorsAreTyped() async throws {
        try await withFakeAPIServer(tokens: ["t"]) { server in
            try await server.putAll([TestPods.json(name: "web")])
            let client = try KubernetesClient(
                configuration: WatchHarness.clientConfiguration(server, credentials: .token("t")),
                logger: WatchHarness.logger)
            let pod: Pod = try await client.get(path: "/api/v1/namespaces/default/pods/web")
            #expect(pod.metadata.name == "web")
            await #expect(throws: KubernetesAPIError.self) {
                let _: Pod = try await client.get(path: "/api/v1/namespaces/default/pods/missing")
            }
            do {
                let _: Pod = try await client.get(path: "/api/v1/namespaces/default/pods/missing")
            } catch let error as KubernetesAPIError {
                #expect(error.status == 404)
                #expect("\(error)".contains("not found"))
            }
            do {
                _ = try await client.list(Pod.self, path: "/api/v1/pods", query: ["fieldSelector": "spec.bogus=1"])
                Issue.record("a bad selector listed")
            } catch let error as KubernetesAPIError {
                #expect(error.status == 400)
            }
            // A raw watch: framed events (here the bookmark that the server sends soon).
            let watch = try await client.watch(path: "/api/v1/pods", resourceVersion: "1", timeoutSeconds: 5)
            var frames = watch.makeAsyncIterator()
            guard case .object(let bytes)? = try await frames.next() else {
                Issue.record("no event")
                return
            }
            #expect(String(decoding: bytes, as: UTF8.self).contains("\"BOOKMARK\""))
            await client.shutdown()

            let anonymous = try KubernetesClient(
                configuration: WatchHarness.clientConfiguration(server), logger: WatchHarness.logger)
            do {
                _ = try await anonymous.list(Pod.self, path: "/api/v1/pods")
                Issue.record("listed without a token")
            } catch let error as KubernetesAPIError {
                guard case .unauthorized = error else {
                    Issue.record("\(error)")
                    await anonymous.shutdown()
                    return
                }
            }
            await anonymous.shutdown()

            let refused = try KubernetesClient(
                configuration: KubernetesClientConfiguration(server: "http://127.0.0.1:1"), logger: WatchHarness.logger)
            do {
                _ = try await refused.list(Pod.self, path: "/api/v1/pods")
            } catch let error as KubernetesAPIError {
                guard case .connectionFailed = error else {
                    Issue.record("\(error)")
                    await refused.shutdown()
                    return
                }
            }
            await refused.shutdown()
        }
    }

    @Test func cancellationClosesTheWatch() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(Self.pods(1...2))
            try await WatchHarness.run(server: server) { harness in
                try await harness.converge()
                try await harness.until("the watch is open") { $0.watchesStarted >= 1 }
            }
            // The harness cancelled the consumer: the server sees the watch go away.
            let deadline = ContinuousClock.now + .seconds(30)
            var open = try await server.state().openWatches
            while open > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                open = try await server.state().openWatches
            }
            #expect(open == 0)
        }
    }
}
