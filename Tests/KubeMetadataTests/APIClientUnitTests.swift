import Foundation
import TestSupport
import Testing

@testable import KubeMetadata

/// The client's pure parts: status classification, RBAC messages, URLs, backoff, and the
/// decoding of single watch events.
@Suite struct APIClientUnitTests {
    static func status(_ code: Int, reason: String, message: String) -> [UInt8] {
        Array(
            #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"\#(message)","reason":"\#(reason)","code":\#(code)}"#
                .utf8)
    }

    @Test func statusesBecomeTypedErrors() {
        func error(_ code: Int, verb: String = "list", path: String = "/api/v1/pods", retryAfter: String? = nil)
            -> KubernetesAPIError
        {
            KubernetesClient.statusError(
                status: code, path: path, verb: verb, body: Self.status(code, reason: "R", message: "said \(code)"),
                retryAfter: retryAfter)
        }
        #expect(error(401) == .unauthorized(path: "/api/v1/pods", message: "said 401"))
        #expect(error(404) == .notFound(path: "/api/v1/pods", message: "said 404"))
        #expect(error(410) == .expired(path: "/api/v1/pods", message: "said 410"))
        #expect(
            error(429, retryAfter: "3")
                == .tooManyRequests(path: "/api/v1/pods", retryAfter: .seconds(3), message: "said 429"))
        #expect(error(429).retryAfter == nil)
        #expect(
            error(503, retryAfter: " 7 ")
                == .serverError(path: "/api/v1/pods", status: 503, retryAfter: .seconds(7), message: "said 503"))
        #expect(error(500).status == 500)
        #expect(error(400) == .unexpectedStatus(path: "/api/v1/pods", status: 400, message: "said 400"))

        let forbidden = error(403, verb: "watch", path: "/api/v1/namespaces/shop/pods")
        #expect(
            forbidden
                == .forbidden(
                    path: "/api/v1/namespaces/shop/pods", verb: "watch", resource: "pods", namespace: "shop",
                    message: "said 403"))
        #expect(forbidden.description.contains("RBAC does not allow \"watch\" on \"pods\" in namespace shop"))
        #expect(forbidden.description.contains("grant get, list and watch on pods"))
    }

    @Test func nonStatusBodiesAreQuotedBounded() {
        let html = Array(("<html>" + String(repeating: "x", count: 5000) + "\u{1b}[31m</html>").utf8)
        let error = KubernetesClient.statusError(status: 502, path: "/p", verb: "get", body: html, retryAfter: nil)
        guard case .serverError(_, 502, nil, let message) = error else {
            Issue.record("\(error)")
            return
        }
        #expect(message.hasPrefix("<html>"))
        #expect(message.count < 600)
        #expect(!message.contains("\u{1b}"))
    }

    @Test func resourcesOfPathsNameTheRBACRule() {
        #expect(KubernetesClient.resource(ofPath: "/api/v1/pods") == ("pods", nil))
        #expect(KubernetesClient.resource(ofPath: "/api/v1/namespaces/a/pods/web-0") == ("pods", "a"))
        #expect(KubernetesClient.resource(ofPath: "/api/v1/namespaces/a") == ("namespaces", nil))
        #expect(KubernetesClient.resource(ofPath: "/apis/apps/v1/replicasets") == ("replicasets.apps", nil))
        #expect(
            KubernetesClient.resource(ofPath: "/apis/nodeprof.dev/v1alpha1/namespaces/x/profilingpolicies")
                == ("profilingpolicies.nodeprof.dev", "x"))
    }

    @Test func queryStringsArePercentEncodedAndSorted() {
        #expect(KubernetesClient.queryString([:]) == "")
        #expect(
            KubernetesClient.queryString([
                "watch": "1", "fieldSelector": "spec.nodeName=node-1", "labelSelector": "app in (a,b)",
                "continue": "eyJ2Ijo+/=",
            ])
                == "?continue=eyJ2Ijo%2B%2F%3D&fieldSelector=spec.nodeName%3Dnode-1&labelSelector=app%20in%20%28a%2Cb%29&watch=1"
        )
    }

    @Test func backoffGrowsToItsCapWithFlooredJitter() {
        let backoff = KubernetesBackoff(initial: .seconds(1), maximum: .seconds(30))
        #expect(backoff.ceiling(forAttempt: 0) == .seconds(1))
        #expect(backoff.ceiling(forAttempt: 3) == .seconds(8))
        #expect(backoff.ceiling(forAttempt: 50) == .seconds(30))
        var random = SplitMix64(seed: 7)
        var delays: [Duration] = []
        for _ in 0..<1000 {
            let delay = backoff.delay(forAttempt: 2, using: &random)
            #expect(delay >= .milliseconds(400) && delay <= .seconds(4))
            delays.append(delay)
        }
        #expect(Set(delays).count > 900, "jittered")
        // Retry-After wins when longer, bounded by maxRetryAfter.
        #expect(backoff.delay(forAttempt: 0, retryAfter: .seconds(5), using: &random) == .seconds(5))
        #expect(backoff.delay(forAttempt: 0, retryAfter: .seconds(86_400), using: &random) == .seconds(120))
        #expect(backoff.delay(forAttempt: 10, retryAfter: .seconds(1), using: &random) >= .seconds(3))
    }

    // MARK: Watch events

    static func envelope(_ json: String) throws -> WatchEventEnvelope<Pod> {
        try JSONDecoder().decode(WatchEventEnvelope<Pod>.self, from: Data(json.utf8))
    }

    @Test func decodesAPodEvent() throws {
        let event = try Self.envelope(
            #"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"w","namespace":"n","uid":"u","resourceVersion":"17","managedFields":[{"x":1}]},"spec":{"nodeName":"node-1"},"status":{"phase":"Running"}}}"#
        )
        #expect(event.type == "MODIFIED")
        #expect(event.resourceVersion == "17")
        #expect((try? event.object?.get())?.spec?.nodeName == "node-1")
    }

    @Test func decodesBookmarksAndErrors() throws {
        let bookmark = try Self.envelope(
            #"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12345"}}}"#)
        #expect(bookmark.type == "BOOKMARK")
        #expect(bookmark.resourceVersion == "12345")
        #expect(bookmark.object == nil)

        let error = try Self.envelope(
            #"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#
        )
        #expect(error.status?.code == 410)
        #expect(error.status?.reason == "Expired")
    }

    @Test func badObjectsAreFailuresNotThrows() throws {
        let wrongType = try Self.envelope(#"{"type":"ADDED","object":{"metadata":"not an object"}}"#)
        guard case .failure? = wrongType.object else {
            Issue.record("expected a decode failure, got \(String(describing: wrongType.object))")
            return
        }
        let numberVersion = try Self.envelope(#"{"type":"ADDED","object":{"metadata":{"resourceVersion":5}}}"#)
        #expect(numberVersion.resourceVersion == nil)
        let unknown = try Self.envelope(#"{"type":"SURPRISE","object":{"metadata":{"resourceVersion":"9"}}}"#)
        #expect(unknown.type == "SURPRISE")
        #expect(unknown.object == nil)
        let noType = try Self.envelope(#"{"object":{}}"#)
        #expect(noType.type == nil)
        // Not a JSON object at all: only then does decoding throw.
        #expect(throws: (any Error).self) { try Self.envelope("[1,2,3]") }
        #expect(throws: (any Error).self) { try Self.envelope(#"{"type":"ADDED","object":{"kind":"Pod",,}}"#) }
    }

    @Test func deeplyNestedEventIsRejectedWithoutCrashing() {
        let depth = 100_000
        let nested = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        let json = #"{"type":"ADDED","object":{"metadata":{"name":"n","uid":"u"},"spec":"# + nested + "}}"
        let result = Result { try Self.envelope(json) }
        // Foundation's parser limits nesting; either way the object is not a usable Pod.
        if case .success(let envelope) = result, case .success? = envelope.object {
            Issue.record("a 100000-deep spec decoded as a Pod")
        }
    }
}

@Suite struct APITokenFileTests {
    @Test func tokenFileIsReReadPeriodicallyAndAfterInvalidation() async throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-token")
        let path = directory.file("token")
        try "one\n".write(toFile: path, atomically: true, encoding: .utf8)
        let source = BearerTokenSource(.tokenFile(path), refreshInterval: .milliseconds(300))
        #expect(try source.token() == "one")
        try "two".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try source.token() == "one", "cached within the refresh interval")
        source.invalidate()
        #expect(try source.token() == "two", "re-read after a 401")
        try "three".write(toFile: path, atomically: true, encoding: .utf8)
        try await Task.sleep(for: .milliseconds(400))
        #expect(try source.token() == "three", "re-read after the refresh interval")
        // A vanished file keeps the last token; with none ever read it is an error.
        try FileManager.default.removeItem(atPath: path)
        source.invalidate()
        #expect(try source.token() == "three")
        let missing = BearerTokenSource(.tokenFile(path), refreshInterval: .seconds(60))
        #expect(throws: KubernetesAPIError.self) { try missing.token() }
        #expect(try BearerTokenSource(.token("fixed"), refreshInterval: .seconds(60)).token() == "fixed")
        #expect(try BearerTokenSource(.none, refreshInterval: .seconds(60)).token() == nil)
    }
}
