import KubernetesAPI

/// The fields of a Pod these tests read: the API client is generic, and the pod cache's own
/// `Pod` type lives in KubeMetadata, above it.
struct Pod: KubernetesObject, Codable, Hashable {
    struct Spec: Codable, Hashable {
        var nodeName: String?
    }

    struct Status: Codable, Hashable {
        var phase: String?
    }

    var metadata: ObjectMeta
    var spec: Spec?
    var status: Status?
}
