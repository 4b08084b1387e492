public import KubernetesAPI

/// The ``JobOwnerLookup`` of the agent: one GET of the `batch/v1` Job (RBAC: get jobs).
public struct JobOwnersFromAPI: JobOwnerLookup {
    public let client: KubernetesClient

    public init(client: KubernetesClient) {
        self.client = client
    }

    struct Job: KubernetesObject {
        var metadata: ObjectMeta
    }

    public func ownerReferences(ofJob name: String, namespace: String) async throws -> [OwnerReference]? {
        do {
            let job = try await client.get(.jobs, name: name, namespace: namespace, as: Job.self)
            return job.metadata.ownerReferences ?? []
        } catch let error as KubernetesAPIError where error.status == 404 {
            return nil
        }
    }
}
