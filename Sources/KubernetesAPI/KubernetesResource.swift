/// A kind of Kubernetes object as the API addresses it: group, version, plural resource name
/// and scope. Built-in and custom resources alike; the client needs nothing else to read or
/// write them (no discovery).
///
/// Paths: `/api/v1/...` for the core group, `/apis/<group>/<version>/...` otherwise;
/// namespaced objects live under `namespaces/<namespace>/`.
public struct KubernetesResource: Sendable, Hashable, CustomStringConvertible {
    /// The API group; `""` is the core group (pods, namespaces, nodes).
    public var group: String
    public var version: String
    /// The plural resource name: `pods`, `leases`, `profilingpolicies`.
    public var plural: String
    /// Whether objects live in a namespace (pods, leases) or the cluster (nodes, CRDs that
    /// declare `scope: Cluster`).
    public var namespaced: Bool

    public init(group: String, version: String, plural: String, namespaced: Bool) {
        self.group = group
        self.version = version
        self.plural = plural
        self.namespaced = namespaced
    }

    public static let pods = KubernetesResource(group: "", version: "v1", plural: "pods", namespaced: true)
    public static let nodes = KubernetesResource(group: "", version: "v1", plural: "nodes", namespaced: false)
    public static let jobs = KubernetesResource(group: "batch", version: "v1", plural: "jobs", namespaced: true)
    /// Leader election and heartbeats.
    public static let leases = KubernetesResource(
        group: "coordination.k8s.io", version: "v1", plural: "leases", namespaced: true)

    /// `v1` or `<group>/<version>`: the `apiVersion` of the objects.
    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    public var description: String { group.isEmpty ? plural : "\(plural).\(group)" }

    /// The collection: every object of a cluster-scoped resource, the objects of `namespace`,
    /// or (nil) of every namespace.
    public func collectionPath(namespace: String?) throws(KubernetesAPIError) -> String {
        var path = root
        if let namespace {
            guard namespaced else {
                throw .invalidRequest(
                    path: path + "/" + plural, reason: "\(self) is cluster-scoped: it has no namespace \"\(namespace)\""
                )
            }
            path += "/namespaces/" + (try Self.segment(namespace, what: "namespace", path: path))
        }
        return path + "/" + plural
    }

    /// One object, or its `subresource` (`status`, `scale`).
    public func objectPath(
        name: String, namespace: String?, subresource: String? = nil
    ) throws(KubernetesAPIError) -> String {
        if namespaced && namespace == nil {
            throw .invalidRequest(
                path: root + "/" + plural, reason: "\(self) is namespaced: name the namespace of \"\(name)\"")
        }
        let collection = try collectionPath(namespace: namespace)
        var path = collection + "/" + (try Self.segment(name, what: "name", path: collection))
        if let subresource { path += "/" + (try Self.segment(subresource, what: "subresource", path: path)) }
        return path
    }

    private var root: String { group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)" }

    /// A name as one path segment. Kubernetes names are DNS subdomains or labels; anything
    /// that could change the path's meaning (empty, `.`, `..`, a `/`) is refused, and other
    /// characters outside the unreserved set are percent-encoded (the server then answers
    /// 404 or 422 with its reason).
    static func segment(_ text: String, what: String, path: String) throws(KubernetesAPIError) -> String {
        guard !text.isEmpty, text != ".", text != "..", !text.contains("/") else {
            throw .invalidRequest(
                path: path, reason: "the \(what) \"\(text.boundedForMessage(limit: 80))\" cannot be a path segment")
        }
        return KubernetesClient.percentEncoded(text)
    }
}
