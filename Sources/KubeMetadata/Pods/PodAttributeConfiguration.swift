/// Which pod attributes the agent emits beyond the fixed semantic-convention set.
public struct PodAttributeConfiguration: Sendable, Hashable {
    /// `k8s.node.name` on every pod's attributes (the pods are this node's).
    public var nodeName: String
    /// Pod label keys copied as `k8s.pod.label.<key>`. A key ending in `*` matches by prefix.
    public var labelKeys: [String]
    /// Pod annotation keys copied as `k8s.pod.annotation.<key>`. A key ending in `*` matches
    /// by prefix.
    public var annotationKeys: [String]

    public init(nodeName: String, labelKeys: [String] = [], annotationKeys: [String] = []) {
        self.nodeName = nodeName
        self.labelKeys = labelKeys
        self.annotationKeys = annotationKeys
    }

    func selects(_ key: String, in patterns: [String]) -> Bool {
        patterns.contains { pattern in
            if pattern.hasSuffix("*") { return key.hasPrefix(pattern.dropLast()) }
            return key == pattern
        }
    }
}

/// Label and annotation keys with a meaning of their own in the attribute rules.
enum WellKnownKeys {
    /// On the mirror pod of a static pod: the config hash, the static pod's uid in its cgroup.
    static let mirrorAnnotation = "kubernetes.io/config.mirror"
    static let resourceAnnotationPrefix = "resource.opentelemetry.io/"
    static let instanceLabel = "app.kubernetes.io/instance"
    static let nameLabel = "app.kubernetes.io/name"
    static let versionLabel = "app.kubernetes.io/version"
    static let podTemplateHashLabel = "pod-template-hash"
}
