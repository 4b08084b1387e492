import Foundation
import TestSupport
import Testing

@testable import KubernetesAPI

/// A Lease as the coordination API serves it.
struct Lease: KubernetesObject, Codable, Hashable {
    struct Spec: Codable, Hashable {
        var holderIdentity: String?
        var leaseDurationSeconds: Int?
    }

    // Optional: list items come without them.
    var apiVersion: String? = "coordination.k8s.io/v1"
    var kind: String? = "Lease"
    var metadata: ObjectMeta
    var spec: Spec?

    static func sample(holder: String, name: String = "nodeprof") -> Lease {
        Lease(metadata: ObjectMeta(name: name), spec: Spec(holderIdentity: holder, leaseDurationSeconds: 15))
    }
}

/// A cluster-scoped custom resource with a status subresource.
struct ProfilingPolicy: KubernetesObject, Codable, Hashable {
    struct Spec: Codable, Hashable {
        var frequency: Int?
        var selector: [String: String]?
    }

    struct Status: Codable, Hashable {
        var nodes: Int?
    }

    var apiVersion: String? = "nodeprof.dev/v1alpha1"
    var kind: String? = "ProfilingPolicy"
    var metadata: ObjectMeta
    var spec: Spec?
    var status: Status?

    static let resource = KubernetesResource(
        group: "nodeprof.dev", version: "v1alpha1", plural: "profilingpolicies", namespaced: false)
}

/// Writes of any resource against hack/fake-node/apiserver.py's write API.
@Suite struct WriteIntegrationTests {
    static func withClient(_ body: (FakeAPIServer, KubernetesClient) async throws -> Void) async throws {
        try await withFakeAPIServer(tokens: ["t"]) { server in
            let client = try KubernetesClient(
                configuration: WatchHarness.clientConfiguration(server, credentials: .token("t")),
                logger: WatchHarness.logger)
            do {
                try await body(server, client)
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
    }

    @Test func customResourceLifecycleWithStatusAndConflicts() async throws {
        try await Self.withClient { _, client in
            let resource = ProfilingPolicy.resource
            let created: ProfilingPolicy = try await client.create(
                ProfilingPolicy(metadata: ObjectMeta(name: "cpu"), spec: .init(frequency: 19)), in: resource)
            #expect(created.metadata.uid != nil && created.metadata.resourceVersion != nil)

            // Update with the version read: accepted. Again with the same (now stale) version: 409.
            var changed = created
            changed.spec?.frequency = 49
            let updated: ProfilingPolicy = try await client.update(changed, resource, name: "cpu")
            #expect(updated.spec?.frequency == 49)
            #expect(updated.metadata.generation == 2)
            do {
                let _: ProfilingPolicy = try await client.update(changed, resource, name: "cpu")
                Issue.record("a stale update was accepted")
            } catch let error as KubernetesAPIError {
                guard case .conflict = error else { throw error }
                #expect(error.description.contains("read it again, re-apply the change and retry"))
            }

            // The status subresource changes status only; the main resource never does.
            var withStatus = updated
            withStatus.status = .init(nodes: 3)
            withStatus.spec?.frequency = 1
            let statusUpdated: ProfilingPolicy = try await client.updateStatus(withStatus, resource, name: "cpu")
            #expect(statusUpdated.status == .init(nodes: 3))
            #expect(statusUpdated.spec?.frequency == 49)
            let patchedStatus: ProfilingPolicy = try await client.patchStatus(
                resource, name: "cpu", try .merge(encoding: ["status": ["nodes": 5]]))
            #expect(patchedStatus.status?.nodes == 5)

            // Merge patch, JSON patch guarded by a resourceVersion test, server-side apply.
            let merged: ProfilingPolicy = try await client.patch(
                resource, name: "cpu", .merge(Array(#"{"spec":{"selector":{"app":"web"}}}"#.utf8)))
            #expect(merged.spec == .init(frequency: 49, selector: ["app": "web"]))
            let guarded = try KubernetesPatch.json([
                JSONPatchOperation(
                    op: .test, path: "/metadata/resourceVersion", value: .string(merged.metadata.resourceVersion ?? "")),
                JSONPatchOperation(op: .replace, path: "/spec/frequency", value: .number(99)),
            ])
            let jsonPatched: ProfilingPolicy = try await client.patch(resource, name: "cpu", guarded)
            #expect(jsonPatched.spec?.frequency == 99)
            await #expect(throws: KubernetesAPIError.self, "the resourceVersion test now fails") {
                let _: ProfilingPolicy = try await client.patch(resource, name: "cpu", guarded)
            }
            let applied: ProfilingPolicy = try await client.patch(
                resource, name: "mem",
                .apply(
                    Array(
                        #"{"apiVersion":"nodeprof.dev/v1alpha1","kind":"ProfilingPolicy","metadata":{"name":"mem"},"spec":{"frequency":7}}"#
                            .utf8),
                    fieldManager: "nodeprof"))
            #expect(applied.spec?.frequency == 7)
            do {
                let _: ProfilingPolicy = try await client.patch(
                    resource, name: "cpu", .strategicMerge(Array("{}".utf8)))
                Issue.record("a strategic merge patch of a custom resource was accepted")
            } catch let error as KubernetesAPIError {
                #expect(error.status == 415)
            }

            let (all, version) = try await client.list(resource, as: ProfilingPolicy.self)
            #expect(Set(all.compactMap(\.metadata.name)) == ["cpu", "mem"])
            #expect(!version.isEmpty)

            // Delete only what was read: a wrong uid precondition is refused.
            do {
                try await client.delete(resource, name: "cpu", preconditions: .init(uid: "someone-else"))
                Issue.record("deleted despite the precondition")
            } catch let error as KubernetesAPIError {
                guard case .conflict = error else { throw error }
            }
            try await client.delete(resource, name: "cpu", preconditions: .init(uid: created.metadata.uid))
            do {
                let _: ProfilingPolicy = try await client.get(resource, name: "cpu")
                Issue.record("still there")
            } catch let error as KubernetesAPIError {
                #expect(error.status == 404)
            }
        }
    }

    @Test func leasesAlreadyExistsAndInvalidCarryTheServersWords() async throws {
        try await Self.withClient { _, client in
            let lease: Lease = try await client.create(
                Lease.sample(holder: "node-a"), in: .leases, namespace: "kube-system")
            #expect(lease.metadata.namespace == "kube-system")
            do {
                let _: Lease = try await client.create(
                    Lease.sample(holder: "node-b"), in: .leases, namespace: "kube-system")
                Issue.record("created twice")
            } catch let error as KubernetesAPIError {
                guard case .alreadyExists = error else { throw error }
                #expect(error.description.contains("update it instead"))
            }
            do {
                let _: Lease = try await client.create(
                    Lease.sample(holder: "x", name: "Not_Valid"), in: .leases, namespace: "kube-system")
                Issue.record("an invalid name was accepted")
            } catch let error as KubernetesAPIError {
                guard case .invalid(_, let message) = error else { throw error }
                #expect(message.contains("metadata.name: Invalid value: \"Not_Valid\""))
            }
            // Names that are not one path segment never reach the server.
            await #expect(throws: KubernetesAPIError.self) {
                let _: Lease = try await client.get(.leases, name: "../pods", namespace: "kube-system")
            }
            let renewed: Lease = try await client.patch(
                .leases, name: "nodeprof", namespace: "kube-system",
                try .merge(encoding: ["spec": ["holderIdentity": "node-b"]]))
            #expect(renewed.spec?.holderIdentity == "node-b")
        }
    }

    @Test func forbiddenNamesTheRuleToGrant() async throws {
        try await Self.withClient { server, client in
            let resource = ProfilingPolicy.resource
            let created: ProfilingPolicy = try await client.create(
                ProfilingPolicy(metadata: ObjectMeta(name: "cpu"), spec: .init(frequency: 19)), in: resource)
            try await server.faults(#"{"forbid": [{"verb": "update", "resource": "profilingpolicies/status"}]}"#)
            do {
                let _: ProfilingPolicy = try await client.updateStatus(created, resource, name: "cpu")
                Issue.record("forbidden update accepted")
            } catch let error as KubernetesAPIError {
                #expect(
                    error
                        == .forbidden(
                            path: "/apis/nodeprof.dev/v1alpha1/profilingpolicies/cpu/status", verb: "update",
                            group: "nodeprof.dev", resource: "profilingpolicies/status", namespace: nil,
                            message: error.forbiddenMessage ?? ""))
                #expect(
                    error.description.contains(
                        #"{apiGroups: ["nodeprof.dev"], resources: ["profilingpolicies/status"], verbs: ["update"]}"#))
            }
        }
    }
}

extension KubernetesAPIError {
    /// The server's message of a 403.
    var forbiddenMessage: String? {
        if case .forbidden(_, _, _, _, _, let message) = self { return message }
        return nil
    }
}
