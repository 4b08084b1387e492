public import NodeprofCore

/// The workload objects above a pod, as far as the cache knows them.
struct OwnerChain: Sendable, Hashable {
    struct Named: Sendable, Hashable {
        var name: String
        var uid: String?
    }
    var replicaSet: Named?
    var deployment: Named?
    var statefulSet: Named?
    var daemonSet: Named?
    var job: Named?
    var cronJob: Named?

    /// The chain from the pod's controller. A ReplicaSet's Deployment is its name without the
    /// `-<pod-template-hash>` suffix (the Deployment controller names it so): no API call. A
    /// Job's CronJob comes from `cronJobOfJob`, which the cache fills from the Job's owner
    /// references.
    init(pod: PodRecord, cronJobOfJob: Named?) {
        guard let owner = pod.owner else { return }
        let named = Named(name: owner.name, uid: owner.uid)
        switch owner.kind {
        case "ReplicaSet":
            replicaSet = named
            if let hash = pod.label(WellKnownKeys.podTemplateHashLabel), !hash.isEmpty,
                owner.name.hasSuffix("-" + hash), owner.name.utf8.count > hash.utf8.count + 1
            {
                deployment = Named(name: String(owner.name.dropLast(hash.count + 1)), uid: nil)
            }
        case "StatefulSet": statefulSet = named
        case "DaemonSet": daemonSet = named
        case "Job":
            job = named
            cronJob = cronJobOfJob
        default: break
        }
    }
}

/// The OpenTelemetry semantic-convention resource attributes of one container of a pod, as
/// the collector's k8sattributesprocessor names them, plus `service.*` by the rules in
/// docs/kubernetes.md. `containerID` names the container when the pod's status does not
/// know it yet (taken from the cgroup path).
func podAttributes(
    pod: PodRecord, container: PodRecord.ContainerRecord?, containerID: String?, owners: OwnerChain,
    configuration: PodAttributeConfiguration
) -> [Attribute] {
    var attributes: [Attribute] = []
    attributes.reserveCapacity(24)
    // The first value of a key wins; later sources of the same key are skipped.
    var keys: Set<String> = []
    func add(_ key: String, _ value: String?) {
        if let value, !value.isEmpty, keys.insert(key).inserted { attributes.append(Attribute(key, .string(value))) }
    }

    // `resource.opentelemetry.io/<key>` annotations are the pod owner's word: they come
    // first, and the OTLP builder keeps the first value of a key.
    for annotation in pod.annotations where annotation.key.hasPrefix(WellKnownKeys.resourceAnnotationPrefix) {
        let key = String(annotation.key.dropFirst(WellKnownKeys.resourceAnnotationPrefix.count))
        if !key.isEmpty { add(key, annotation.value) }
    }

    add("k8s.namespace.name", pod.namespace)
    add("k8s.pod.name", pod.name)
    add("k8s.pod.uid", pod.uid)
    add("k8s.pod.start_time", pod.startTime)
    add("k8s.node.name", configuration.nodeName)
    add("k8s.container.name", container?.name)
    add("container.id", container?.id ?? containerID)
    let image = container?.image.flatMap(ImageReference.init)
    add("container.image.name", image?.name)
    add("container.image.tag", image?.tag)
    if let digest = container?.imageID.flatMap(repoDigest(imageID:)),
        keys.insert("container.image.repo_digests").inserted
    {
        attributes.append(Attribute("container.image.repo_digests", .array([.string(digest)])))
    }

    for (kind, owner) in [
        ("replicaset", owners.replicaSet), ("deployment", owners.deployment), ("statefulset", owners.statefulSet),
        ("daemonset", owners.daemonSet), ("job", owners.job), ("cronjob", owners.cronJob),
    ] {
        guard let owner else { continue }
        add("k8s.\(kind).name", owner.name)
        add("k8s.\(kind).uid", owner.uid)
    }

    for label in pod.labels where configuration.selects(label.key, in: configuration.labelKeys) {
        add("k8s.pod.label.\(label.key)", label.value)
    }
    for annotation in pod.annotations where configuration.selects(annotation.key, in: configuration.annotationKeys) {
        add("k8s.pod.annotation.\(annotation.key)", annotation.value)
    }

    // service.*: the first source found wins (annotations were added above already).
    let serviceName =
        pod.label(WellKnownKeys.instanceLabel) ?? pod.label(WellKnownKeys.nameLabel) ?? owners.deployment?.name
        ?? owners.replicaSet?.name ?? owners.statefulSet?.name ?? owners.daemonSet?.name ?? owners.cronJob?.name
        ?? owners.job?.name ?? pod.name
    add("service.name", serviceName)
    add("service.namespace", pod.namespace)
    add("service.version", pod.label(WellKnownKeys.versionLabel) ?? image?.tag)
    if let container {
        add("service.instance.id", "\(pod.namespace).\(pod.name).\(container.name)")
    }
    return attributes
}
