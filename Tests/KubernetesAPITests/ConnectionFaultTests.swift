import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization
import TestSupport
import Testing

@testable import KubernetesAPI

/// What a server that closes idle keep-alive connections, or restarts with its history
/// compacted, does to the list/watch: each test failed before the client retried reads on a
/// new connection, re-listed at once after a 410, and named stream ends for what they are.
@Suite struct ConnectionFaultTests {
    @Test func watchResumesOverAClosedPooledConnectionNeitherFailNorBackOff() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(WatchIntegrationTests.pods(1...3))
            // Every request that reuses a kept-alive connection meets the server's close: the
            // race an idle timeout makes, on every resume.
            try await server.faults(#"{"keepalive_timeout": 0, "keepalive_close_on_reuse": true}"#)
            let configuration = WatchHarness.listWatchConfiguration(watchTimeoutSeconds: 1...1)
            try await WatchHarness.run(server: server, configuration: configuration) { harness in
                try await harness.converge()
                try await harness.until("three watches") { $0.watchesStarted >= 3 }
                try await server.putAll([TestPods.json(name: "after-resumes")])
                try await harness.converge()
                let statistics = harness.listWatch.statistics
                #expect(harness.client.statistics.retriedOnNewConnection >= 1)
                let dropped = try await harness.requests().filter { $0.dropped == true }
                #expect(!dropped.isEmpty, "the server did close reused connections")
                #expect(statistics.connectionFailures == 0)
                #expect(statistics.backoffs == 0)
                #expect(statistics.watchRestarts[.connectFailed] == 0)
                #expect(statistics.watchRestarts[.connectionClosedBeforeResponse] == 0)
                #expect(statistics.watchRestarts[.streamEnded] >= 2)
                #expect(statistics.lists == 1)
            }
        }
    }

    @Test func aWriteIsNotResentWhenItsConnectionClosesBeforeTheAnswer() async throws {
        try await withFakeAPIServer { server in
            try await server.faults(#"{"keepalive_timeout": 0, "keepalive_close_on_reuse": true}"#)
            let client = try KubernetesClient(
                configuration: WatchHarness.clientConfiguration(server), logger: WatchHarness.logger)
            // A first request opens the pooled connection the write then reuses.
            _ = try await client.list(.pods, as: Pod.self)
            do {
                let _: Lease = try await client.create(Lease.sample(holder: "a"), in: .leases, namespace: "kube-system")
                Issue.record("the dropped create was answered")
            } catch let error as KubernetesAPIError {
                guard case .connectionClosedBeforeResponse(_, "POST", retried: false, _) = error else {
                    Issue.record("\(error)")
                    await client.shutdown()
                    return
                }
                #expect(error.description.contains("read the object again before retrying"))
            }
            #expect(client.statistics.retriedOnNewConnection == 0)
            let posts = try await server.requests().filter { $0.method == "POST" }
            #expect(posts.count == 1, "sent once")
            await client.shutdown()
        }
    }

    @Test func restartWithCompactedHistoryResumesAndRelistsAtOnce() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(WatchIntegrationTests.pods(1...4))
            let log = CapturedLog()
            try await WatchHarness.run(server: server, logger: log.logger) { harness in
                try await harness.converge()
                // A healthy watch: it applied an event.
                try await server.putAll([TestPods.json(name: "before-restart")])
                try await harness.converge()
                try await server.faults(#"{"restart": true}"#)
                try await server.putAll([TestPods.json(name: "after-restart")])
                try await server.delete(namespace: "default", name: "pod-1")
                try await harness.until("a re-list") { $0.relists >= 1 }
                try await harness.converge()
                let statistics = harness.listWatch.statistics
                #expect(statistics.watchRestarts[.streamInterrupted] == 1)
                #expect(statistics.watchRestarts[.expired] == 1)
                #expect(statistics.streamsInterrupted == 1)
                #expect(statistics.connectionFailures == 0)
                #expect(statistics.backoffs == 0, "neither the cut stream nor the 410 waits")
            }
            let messages = log.messages
            #expect(!messages.contains { $0.contains("cannot connect") || $0.contains("check the server address") })
            #expect(messages.contains { $0.contains("was cut off mid-stream") })
        }
    }

    @Test func consecutiveExpiriesRelistWithoutWaitingEachTime() async throws {
        try await withFakeAPIServer { server in
            try await server.putAll(WatchIntegrationTests.pods(1...2))
            try await WatchHarness.run(server: server) { harness in
                try await harness.converge()
                // Each expiry ends the watch that a fresh list just started. Before, every one
                // waited; now only the third and later in a row do (no hot list/watch loop).
                for round in 1...4 {
                    try await harness.until("watch \(round)") { $0.watchesStarted >= round }
                    try await server.faults(#"{"expire": true}"#)
                    try await harness.until("re-list \(round)") { $0.relists >= round }
                }
                let statistics = harness.listWatch.statistics
                #expect(statistics.watchRestarts[.expired] == 4)
                #expect(statistics.backoffs <= 2)
            }
        }
    }

    @Test func transportErrorsAreNamedForWhatHappened() {
        let server = "https://10.0.0.1:6443"
        let closedBefore = KubernetesClient.transportError(
            HTTPClientError.remoteConnectionClosed, path: "/api/v1/pods", server: server, phase: .request)
        guard case KubernetesAPIError.connectionClosedBeforeResponse? = closedBefore as? KubernetesAPIError else {
            Issue.record("\(closedBefore)")
            return
        }
        let cutOff = KubernetesClient.transportError(
            HTTPClientError.remoteConnectionClosed, path: "/api/v1/pods", server: server, phase: .body)
        guard let cutOff = cutOff as? KubernetesAPIError, case .streamInterrupted = cutOff else {
            Issue.record("\(cutOff)")
            return
        }
        #expect(!cutOff.description.contains("cannot connect"))
        #expect(!cutOff.description.contains("check the server address"))
        #expect(ListWatch<Pod>.AsyncIterator.restartCause(of: cutOff) == .streamInterrupted)
        let refused = KubernetesClient.transportError(
            IOError(errnoCode: ECONNREFUSED, reason: "connect"), path: "/api/v1/pods", server: server, phase: .request)
        guard let refused = refused as? KubernetesAPIError, case .connectionFailed = refused else {
            Issue.record("\(refused)")
            return
        }
        #expect(refused.description.contains("check the server address"))
        #expect(ListWatch<Pod>.AsyncIterator.restartCause(of: refused) == .connectFailed)
        #expect(KubernetesClient.isClosedBeforeResponse(IOError(errnoCode: ECONNRESET, reason: "write")))
        #expect(KubernetesClient.isClosedBeforeResponse(HTTPClientError.remoteConnectionClosed))
        #expect(!KubernetesClient.isClosedBeforeResponse(IOError(errnoCode: ECONNREFUSED, reason: "connect")))
        #expect(!KubernetesClient.isClosedBeforeResponse(HTTPClientError.readTimeout))
        let fiveHundred = KubernetesAPIError.serverError(path: "/p", status: 503, retryAfter: nil, message: "m")
        #expect(ListWatch<Pod>.AsyncIterator.restartCause(of: fiveHundred) == .http5xx)
        #expect(WatchRestartCause.allCases.map(\.rawValue).contains("connection_closed_before_response"))
        #expect(Set(WatchRestartCause.allCases.map(\.rawValue)).count == WatchRestartCause.allCases.count)
    }
}
