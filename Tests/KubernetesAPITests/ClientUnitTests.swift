import Foundation
import TestSupport
import Testing

@testable import KubernetesAPI

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
        #expect(error(400) == .badRequest(path: "/api/v1/pods", message: "said 400"))
        #expect(error(400).status == 400)
        #expect(error(405) == .unexpectedStatus(path: "/api/v1/pods", status: 405, message: "said 405"))
        #expect(error(415) == .unsupportedMediaType(path: "/api/v1/pods", message: "said 415"))

        let forbidden = error(403, verb: "watch", path: "/api/v1/namespaces/shop/pods")
        #expect(
            forbidden
                == .forbidden(
                    path: "/api/v1/namespaces/shop/pods", verb: "watch", group: "", resource: "pods", namespace: "shop",
                    message: "said 403"))
        #expect(
            forbidden.description.contains(
                "RBAC does not allow \"watch\" on \"pods\" of the core API group (\"\") in namespace shop"))
        #expect(forbidden.description.contains(#"{apiGroups: [""], resources: ["pods"], verbs: ["watch"]}"#))

        // A write of a custom resource's status names the subresource and the group.
        let status = error(403, verb: "update", path: "/apis/nodeprof.dev/v1alpha1/profilingpolicies/cpu/status")
        #expect(
            status.description.contains(
                #"{apiGroups: ["nodeprof.dev"], resources: ["profilingpolicies/status"], verbs: ["update"]}"#))
        #expect(status.description.contains("cluster-wide"))
    }

    @Test func writeConflictsSayToReadAgainAndInvalidCarriesTheServersMessage() {
        let conflictBody = Self.status(
            409, reason: "Conflict",
            message:
                "Operation cannot be fulfilled on leases.coordination.k8s.io \\\"nodeprof\\\": the object has been modified; please apply your changes to the latest version and try again"
        )
        let conflict = KubernetesClient.statusError(
            status: 409, path: "/apis/coordination.k8s.io/v1/namespaces/n/leases/nodeprof", verb: "update",
            body: conflictBody, retryAfter: nil)
        guard case .conflict(_, let message) = conflict else {
            Issue.record("\(conflict)")
            return
        }
        #expect(message.contains("the object has been modified"))
        #expect(conflict.description.contains("read it again, re-apply the change and retry"))
        #expect(conflict.status == 409)

        let exists = KubernetesClient.statusError(
            status: 409, path: "/api/v1/namespaces/n/pods", verb: "create",
            body: Self.status(409, reason: "AlreadyExists", message: "pods \\\"web\\\" already exists"),
            retryAfter: nil)
        #expect(exists == .alreadyExists(path: "/api/v1/namespaces/n/pods", message: "pods \"web\" already exists"))

        let invalid = KubernetesClient.statusError(
            status: 422, path: "/apis/nodeprof.dev/v1alpha1/profilingpolicies", verb: "create",
            body: Self.status(
                422, reason: "Invalid",
                message: "ProfilingPolicy.nodeprof.dev \\\"cpu\\\" is invalid: spec.frequency: Invalid value: 0"),
            retryAfter: nil)
        #expect(
            invalid
                == .invalid(
                    path: "/apis/nodeprof.dev/v1alpha1/profilingpolicies",
                    message: "ProfilingPolicy.nodeprof.dev \"cpu\" is invalid: spec.frequency: Invalid value: 0"))
        #expect(invalid.description.contains("spec.frequency: Invalid value: 0"))
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

    @Test func pathsNameTheirRBACRule() {
        func rule(_ path: String) -> String {
            let rule = KubernetesClient.rbacRule(ofPath: path)
            return "\(rule.group)|\(rule.resource)|\(rule.namespace ?? "-")"
        }
        #expect(rule("/api/v1/pods") == "|pods|-")
        #expect(rule("/api/v1/namespaces/a/pods/web-0") == "|pods|a")
        #expect(rule("/api/v1/namespaces/a") == "|namespaces|-")
        #expect(rule("/apis/apps/v1/replicasets") == "apps|replicasets|-")
        #expect(
            rule("/apis/nodeprof.dev/v1alpha1/namespaces/x/profilingpolicies") == "nodeprof.dev|profilingpolicies|x")
        #expect(
            rule("/apis/nodeprof.dev/v1alpha1/profilingpolicies/p/status") == "nodeprof.dev|profilingpolicies/status|-")
        #expect(rule("/apis/coordination.k8s.io/v1/namespaces/n/leases/l") == "coordination.k8s.io|leases|n")
        // Hostile or truncated paths still give an answer, never a crash.
        #expect(rule("") == "|namespaces|-")
        #expect(rule("/apis") == "|namespaces|-")
        #expect(rule("/api/v1/namespaces") == "|namespaces|-")
    }

    @Test func resourcesBuildPathsAndRefuseNamesThatAreNotSegments() throws {
        let policies = KubernetesResource(
            group: "nodeprof.dev", version: "v1alpha1", plural: "profilingpolicies", namespaced: false)
        #expect(policies.apiVersion == "nodeprof.dev/v1alpha1")
        #expect(try policies.collectionPath(namespace: nil) == "/apis/nodeprof.dev/v1alpha1/profilingpolicies")
        #expect(
            try policies.objectPath(name: "cpu", namespace: nil, subresource: "status")
                == "/apis/nodeprof.dev/v1alpha1/profilingpolicies/cpu/status")
        #expect(throws: KubernetesAPIError.self) { try policies.collectionPath(namespace: "x") }
        #expect(try KubernetesResource.pods.collectionPath(namespace: nil) == "/api/v1/pods")
        #expect(
            try KubernetesResource.leases.objectPath(name: "nodeprof", namespace: "kube-system")
                == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/nodeprof")
        #expect(throws: KubernetesAPIError.self) { try KubernetesResource.leases.objectPath(name: "l", namespace: nil) }
        for hostile in ["", ".", "..", "a/b", "../../secrets"] {
            #expect(throws: KubernetesAPIError.self, "\(hostile)") {
                try KubernetesResource.pods.objectPath(name: hostile, namespace: "default")
            }
            #expect(throws: KubernetesAPIError.self, "\(hostile)") {
                try KubernetesResource.pods.collectionPath(namespace: hostile)
            }
        }
        // Other characters are encoded, so a name cannot add a query or a fragment.
        #expect(
            try KubernetesResource.pods.objectPath(name: "a?watch=1#x", namespace: "default")
                == "/api/v1/namespaces/default/pods/a%3Fwatch%3D1%23x")
    }

    @Test func patchesCarryTheirContentTypes() throws {
        #expect(KubernetesPatch.merge(Array("{}".utf8)).contentType == "application/merge-patch+json")
        #expect(KubernetesPatch.strategicMerge([]).contentType == "application/strategic-merge-patch+json")
        let apply = KubernetesPatch.apply(Array("{}".utf8), fieldManager: "nodeprof", force: true)
        #expect(apply.contentType == "application/apply-patch+yaml")
        #expect(apply.query == ["fieldManager": "nodeprof", "force": "true"])
        let json = try KubernetesPatch.json([
            JSONPatchOperation(op: .test, path: "/metadata/resourceVersion", value: .string("7")),
            JSONPatchOperation(
                op: .add,
                path: "/metadata/labels/" + JSONPatchOperation.escapedPointerToken("nodeprof.dev/role~x"),
                value: .object(["a": .number(1), "b": .null, "c": .array([.bool(true), .number(0.5)])])),
            JSONPatchOperation(op: .remove, path: "/spec/x"),
        ])
        #expect(json.contentType == "application/json-patch+json")
        #expect(
            String(decoding: json.body, as: UTF8.self)
                == #"[{"op":"test","path":"/metadata/resourceVersion","value":"7"},{"op":"add","path":"/metadata/labels/nodeprof.dev~1role~0x","value":{"a":1,"b":null,"c":[true,0.5]}},{"op":"remove","path":"/spec/x"}]"#
        )
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
