public import KubernetesAPI

/// The fields of a Pod nodeprof reads to attribute samples. Decoding keeps only these, so
/// `managedFields`, the spec and the rest of a large object cost nothing after parsing.
public struct Pod: KubernetesObject, Codable, Hashable {
    public var metadata: ObjectMeta
    public var spec: Spec?
    public var status: Status?

    public init(metadata: ObjectMeta, spec: Spec? = nil, status: Status? = nil) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }

    public struct Spec: Codable, Sendable, Hashable {
        public var nodeName: String?
        public var containers: [Container]?
        public var initContainers: [Container]?
        public var ephemeralContainers: [Container]?

        public init(
            nodeName: String? = nil, containers: [Container]? = nil, initContainers: [Container]? = nil,
            ephemeralContainers: [Container]? = nil
        ) {
            self.nodeName = nodeName
            self.containers = containers
            self.initContainers = initContainers
            self.ephemeralContainers = ephemeralContainers
        }
    }

    public struct Container: Codable, Sendable, Hashable {
        public var name: String?
        public var image: String?

        public init(name: String? = nil, image: String? = nil) {
            self.name = name
            self.image = image
        }
    }

    public struct Status: Codable, Sendable, Hashable {
        public var phase: String?
        public var startTime: String?
        public var containerStatuses: [ContainerStatus]?
        public var initContainerStatuses: [ContainerStatus]?
        public var ephemeralContainerStatuses: [ContainerStatus]?

        public init(
            phase: String? = nil, startTime: String? = nil, containerStatuses: [ContainerStatus]? = nil,
            initContainerStatuses: [ContainerStatus]? = nil, ephemeralContainerStatuses: [ContainerStatus]? = nil
        ) {
            self.phase = phase
            self.startTime = startTime
            self.containerStatuses = containerStatuses
            self.initContainerStatuses = initContainerStatuses
            self.ephemeralContainerStatuses = ephemeralContainerStatuses
        }
    }

    public struct ContainerStatus: Codable, Sendable, Hashable {
        public var name: String?
        /// `<runtime>://<64 hex>`, e.g. `containerd://5dab…`; empty until the container starts.
        public var containerID: String?
        public var image: String?
        /// `docker-pullable://repo@sha256:…` or `repo@sha256:…`.
        public var imageID: String?
        public var restartCount: Int?

        public init(
            name: String? = nil, containerID: String? = nil, image: String? = nil, imageID: String? = nil,
            restartCount: Int? = nil
        ) {
            self.name = name
            self.containerID = containerID
            self.image = image
            self.imageID = imageID
            self.restartCount = restartCount
        }
    }
}
