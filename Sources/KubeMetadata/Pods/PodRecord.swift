import KubernetesAPI

/// What the pod cache keeps of a Pod: only what attributes are made of, so a node's pods cost
/// a few KiB each however large their API objects are.
struct PodRecord: Sendable {
    var uid: String
    var name: String
    var namespace: String
    var startTime: String?
    /// The labels the attribute rules read (configured ones and `app.kubernetes.io/*` used by
    /// service.name / service.version), sorted by key.
    var labels: [KeyValue]
    /// Configured annotations and every `resource.opentelemetry.io/*` one, sorted by key.
    var annotations: [KeyValue]
    /// The controlling owner (`ownerReferences[]` with `controller: true`, else the first).
    var owner: Owner?
    var containers: [ContainerRecord]
    /// For the mirror pod of a static pod: the `kubernetes.io/config.mirror` annotation, the
    /// kubelet's config hash, which the static pod's cgroup path uses as its pod uid (the
    /// mirror pod's own uid is another). Lowercased; nil for other pods.
    var staticPodHash: String?

    struct KeyValue: Sendable, Hashable {
        var key: String
        var value: String
    }

    struct Owner: Sendable, Hashable {
        var kind: String
        var name: String
        var uid: String?
    }

    struct ContainerRecord: Sendable, Hashable {
        var name: String
        /// 64 lowercase hex; nil until the container has started.
        var id: String?
        var image: String?
        var imageID: String?
    }

    /// Longest label or annotation value kept; longer ones are dropped (and counted): an
    /// attribute is not the place for a 1 MiB annotation.
    static let maximumValueBytes = 4096

    /// Why a Pod could not be cached.
    enum Rejection: Error, Equatable {
        case missingUID, missingName, missingNamespace
    }

    /// Builds a record from an API object; `droppedValues` counts values over the size cap.
    init(pod: Pod, configuration: PodAttributeConfiguration, droppedValues: inout Int) throws(Rejection) {
        guard let uid = pod.metadata.uid, !uid.isEmpty else { throw .missingUID }
        guard let name = pod.metadata.name, !name.isEmpty else { throw .missingName }
        guard let namespace = pod.metadata.namespace, !namespace.isEmpty else { throw .missingNamespace }
        self.uid = uid
        self.name = name
        self.namespace = namespace
        startTime = pod.status?.startTime ?? pod.metadata.creationTimestamp

        var labels: [KeyValue] = []
        for (key, value) in pod.metadata.labels ?? [:]
        where key == WellKnownKeys.instanceLabel || key == WellKnownKeys.nameLabel
            || key == WellKnownKeys.versionLabel || key == WellKnownKeys.podTemplateHashLabel
            || configuration.selects(key, in: configuration.labelKeys)
        {
            guard value.utf8.count <= Self.maximumValueBytes else {
                droppedValues += 1
                continue
            }
            labels.append(KeyValue(key: key, value: value))
        }
        self.labels = labels.sorted { $0.key < $1.key }

        var annotations: [KeyValue] = []
        for (key, value) in pod.metadata.annotations ?? [:]
        where key.hasPrefix(WellKnownKeys.resourceAnnotationPrefix)
            || configuration.selects(key, in: configuration.annotationKeys)
        {
            guard value.utf8.count <= Self.maximumValueBytes else {
                droppedValues += 1
                continue
            }
            annotations.append(KeyValue(key: key, value: value))
        }
        self.annotations = annotations.sorted { $0.key < $1.key }
        staticPodHash = Self.staticPodHash(pod.metadata.annotations?[WellKnownKeys.mirrorAnnotation])

        let references = pod.metadata.ownerReferences ?? []
        if let reference = references.first(where: { $0.controller == true }) ?? references.first,
            let kind = reference.kind, let ownerName = reference.name
        {
            owner = Owner(kind: kind, name: ownerName, uid: reference.uid)
        } else {
            owner = nil
        }

        // Containers by name: the spec gives the image asked for, the status the id and the
        // image digest actually run. Init and ephemeral containers burn CPU too.
        var containers: [ContainerRecord] = []
        let specs =
            (pod.spec?.containers ?? []) + (pod.spec?.initContainers ?? [])
            + (pod.spec?.ephemeralContainers ?? [])
        let statuses =
            (pod.status?.containerStatuses ?? []) + (pod.status?.initContainerStatuses ?? [])
            + (pod.status?.ephemeralContainerStatuses ?? [])
        for spec in specs {
            guard let containerName = spec.name, !containers.contains(where: { $0.name == containerName }) else {
                continue
            }
            containers.append(ContainerRecord(name: containerName, id: nil, image: spec.image, imageID: nil))
        }
        for status in statuses {
            guard let containerName = status.name else { continue }
            let id = status.containerID.flatMap(containerID(fromStatus:))
            if let index = containers.firstIndex(where: { $0.name == containerName }) {
                containers[index].id = id ?? containers[index].id
                containers[index].imageID = status.imageID ?? containers[index].imageID
                if containers[index].image == nil { containers[index].image = status.image }
            } else {
                containers.append(
                    ContainerRecord(name: containerName, id: id, image: status.image, imageID: status.imageID))
            }
        }
        self.containers = containers
    }

    func label(_ key: String) -> String? { labels.first { $0.key == key }?.value }

    /// The config hash of a mirror annotation, when it can be a cgroup's pod uid: 1 to 64
    /// characters of hex digits and dashes (the kubelet writes 32 hex digits).
    static func staticPodHash(_ annotation: String?) -> String? {
        guard let value = annotation?.lowercased(), (1...64).contains(value.utf8.count),
            value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || $0 == 0x2d })
        else { return nil }
        return value
    }
    func annotation(_ key: String) -> String? { annotations.first { $0.key == key }?.value }
}
