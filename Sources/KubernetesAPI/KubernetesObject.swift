/// The parts of Kubernetes object metadata nodeprof reads (`metadata` of any object).
///
/// Every field is optional: an API reply is untrusted input, and a missing field is a case
/// for the consumer to count and skip, never a decoding failure of the whole stream.
public struct ObjectMeta: Codable, Sendable, Hashable {
    public var name: String?
    public var namespace: String?
    public var uid: String?
    /// Opaque: compare for equality only, never parse as a number.
    public var resourceVersion: String?
    public var generation: Int64?
    public var creationTimestamp: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var ownerReferences: [OwnerReference]?

    public init(
        name: String? = nil, namespace: String? = nil, uid: String? = nil, resourceVersion: String? = nil,
        generation: Int64? = nil, creationTimestamp: String? = nil, labels: [String: String]? = nil,
        annotations: [String: String]? = nil, ownerReferences: [OwnerReference]? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.generation = generation
        self.creationTimestamp = creationTimestamp
        self.labels = labels
        self.annotations = annotations
        self.ownerReferences = ownerReferences
    }
}

/// `metadata.ownerReferences[]`.
public struct OwnerReference: Codable, Sendable, Hashable {
    public var apiVersion: String?
    public var kind: String?
    public var name: String?
    public var uid: String?
    public var controller: Bool?

    public init(
        apiVersion: String? = nil, kind: String? = nil, name: String? = nil, uid: String? = nil, controller: Bool? = nil
    ) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.uid = uid
        self.controller = controller
    }
}

/// An API object nodeprof lists and watches.
public protocol KubernetesObject: Decodable, Sendable {
    var metadata: ObjectMeta { get }
}

/// The list metadata of a LIST reply (`metadata` of a `PodList`).
public struct ListMeta: Codable, Sendable, Hashable {
    public var resourceVersion: String?
    /// The paging token; an empty or missing value means the last page.
    public var `continue`: String?
    public var remainingItemCount: Int64?

    public init(resourceVersion: String? = nil, continue: String? = nil, remainingItemCount: Int64? = nil) {
        self.resourceVersion = resourceVersion
        self.continue = `continue`
        self.remainingItemCount = remainingItemCount
    }
}

/// A `Status` object: the body of API errors and of watch `ERROR` events.
public struct APIStatus: Codable, Sendable, Hashable, Error {
    public var status: String?
    public var message: String?
    /// `Expired`, `Gone`, `Unauthorized`, `NotFound`, ...
    public var reason: String?
    public var code: Int?

    public init(status: String? = nil, message: String? = nil, reason: String? = nil, code: Int? = nil) {
        self.status = status
        self.message = message
        self.reason = reason
        self.code = code
    }
}
