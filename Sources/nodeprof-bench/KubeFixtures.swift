import Foundation
import TestSupport

/// The pods of one busy node as a real cluster has them, deterministic for a seed: what the
/// Kubernetes benchmarks feed the pod cache, the fake API server and the simulated node.
///
/// The mix follows a typical 110-pod worker: six DaemonSet pods (kube-proxy, a CNI agent with
/// init containers, a CSI node plugin with three containers, node-exporter, fluent-bit,
/// nodeprof), eight StatefulSet pods, three pods of CronJob runs and Deployment pods for the
/// rest, about 40% of them with an Istio sidecar (a second container and an init container).
/// Every pod carries the labels Helm charts set (`app.kubernetes.io/{name,instance,version,
/// component,part-of,managed-by}`, `helm.sh/chart`, `team`, `pod-template-hash` for
/// Deployments), 5 to 10 annotations among them a `kubectl.kubernetes.io/last-applied-configuration`
/// of about 2 KiB and `prometheus.io/*`, a full spec (env, probes, resources, volumes, security
/// context), a Running status with container ids and image digests, ownerReferences and
/// managedFields derived from the object's own fields, as the API server records them.
struct KubePodFixtures {
    /// One pod's identity and workload, shared by its JSON object and a fake-node request.
    struct Plan {
        enum Workload: String {
            case deployment = "Deployment"
            case statefulSet = "StatefulSet"
            case daemonSet = "DaemonSet"
            case cronJob = "CronJob"
        }

        struct Container {
            var name: String
            var image: String
            var id: String
            var imageDigest: String
            var restarts: Int
            var sidecar: Bool
        }

        var name: String
        var namespace: String
        var uid: String
        var workload: Workload
        /// The Deployment, StatefulSet, DaemonSet or CronJob.
        var workloadName: String
        /// The direct owner: the ReplicaSet or Job for Deployments and CronJobs.
        var ownerName: String
        var ownerUID: String
        var templateHash: String?
        var labels: [String: String]
        var annotations: [String: String]
        var containers: [Container]
        var initContainers: [Container]
        var podIP: String
        var startTime: String
    }

    let nodeName: String
    private(set) var plans: [Plan] = []

    private static let namespaces = [
        "shop", "payments", "search", "accounts", "catalog", "notifications", "analytics", "platform",
    ]
    private static let apps = [
        "checkout", "cart", "catalog-api", "frontend", "recommendation", "payment-gateway", "fraud-detector",
        "search-api", "indexer", "user-service", "session-store", "notification-dispatcher", "email-sender",
        "pricing-engine", "inventory", "shipping-quotes", "ledger", "reporting-api", "api-gateway", "graphql-edge",
        "image-resizer", "feature-flags", "audit-log", "webhook-relay",
    ]
    private static let components = ["backend", "api", "worker", "frontend", "consumer"]
    private static let teams = ["payments", "storefront", "search", "identity", "growth", "platform", "data"]
    private static let statefulSets: [(name: String, namespace: String, image: String)] = [
        ("postgres", "data", "docker.io/bitnami/postgresql:16.3.0-debian-12-r14"),
        ("redis-master", "shop", "docker.io/bitnami/redis:7.2.5-debian-12-r0"),
        ("kafka", "data", "docker.io/bitnami/kafka:3.7.0-debian-12-r7"),
        ("zookeeper", "data", "docker.io/bitnami/zookeeper:3.9.2-debian-12-r4"),
        ("elasticsearch-data", "logging", "docker.elastic.co/elasticsearch/elasticsearch:8.14.1"),
        ("rabbitmq", "notifications", "docker.io/bitnami/rabbitmq:3.13.3-debian-12-r2"),
        ("mongodb", "accounts", "docker.io/bitnami/mongodb:7.0.11-debian-12-r2"),
        ("prometheus-k8s", "monitoring", "quay.io/prometheus/prometheus:v2.53.0"),
    ]
    private static let daemonSets: [(name: String, namespace: String, containers: [String], inits: [String])] = [
        ("kube-proxy", "kube-system", ["registry.k8s.io/kube-proxy:v1.30.2"], []),
        (
            "cilium", "kube-system", ["quay.io/cilium/cilium:v1.15.6"],
            ["quay.io/cilium/cilium:v1.15.6", "quay.io/cilium/cilium:v1.15.6", "quay.io/cilium/cilium:v1.15.6"]
        ),
        (
            "ebs-csi-node", "kube-system",
            [
                "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.32.0",
                "public.ecr.aws/eks-distro/kubernetes-csi/node-driver-registrar:v2.11.0-eks-1-30-8",
                "public.ecr.aws/eks-distro/kubernetes-csi/livenessprobe:v2.13.0-eks-1-30-8",
            ], []
        ),
        ("node-exporter", "monitoring", ["quay.io/prometheus/node-exporter:v1.8.1"], []),
        ("fluent-bit", "logging", ["cr.fluentbit.io/fluent/fluent-bit:3.0.7"], []),
        ("nodeprof", "observability", ["ghcr.io/example/nodeprof:0.9.0"], []),
    ]
    private static let cronJobs: [(name: String, namespace: String)] = [
        ("nightly-report", "analytics"), ("db-backup", "data"), ("cache-warmer", "shop"),
    ]

    /// Plans `count` pods of `nodeName` (at least the DaemonSet, StatefulSet and CronJob pods).
    init(nodeName: String, count: Int, seed: UInt64 = 1) {
        self.nodeName = nodeName
        var random = SplitMix64(seed: seed)
        var ip = 2
        func nextIP() -> String {
            defer { ip += 1 }
            return "10.244.3.\(ip)"
        }
        func uid() -> String {
            let hex = random.hex(bytes: 16)
            let parts = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { range in
                String(hex.dropFirst(range.lowerBound).prefix(range.count))
            }
            return parts.joined(separator: "-")
        }
        func suffix(_ length: Int) -> String {
            let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
            return String((0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &random)] })
        }
        func time(minutesAgo: Int) -> String {
            let date = Date(timeIntervalSince1970: 1_795_000_000 - Double(minutesAgo * 60))
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime]
            return formatter.string(from: date)
        }
        func container(_ name: String, _ image: String, sidecar: Bool = false) -> Plan.Container {
            Plan.Container(
                name: name, image: image, id: random.hex(bytes: 32), imageDigest: random.hex(bytes: 32),
                restarts: Int.random(in: 0..<10, using: &random) == 0 ? Int.random(in: 1...4, using: &random) : 0,
                sidecar: sidecar)
        }

        var plans: [Plan] = []
        for daemonSet in Self.daemonSets where plans.count < count {
            let names = ["cilium": "cilium-agent", "ebs-csi-node": "ebs-plugin"]
            var containers: [Plan.Container] = []
            for (index, image) in daemonSet.containers.enumerated() {
                let fallback = image.split(separator: "/").last.map { String($0.split(separator: ":")[0]) } ?? "c"
                containers.append(container(index == 0 ? names[daemonSet.name] ?? daemonSet.name : fallback, image))
            }
            let initNames = ["mount-cgroup", "apply-sysctl-overwrites", "clean-cilium-state"]
            let inits = daemonSet.inits.enumerated().map { container(initNames[$0.offset], $0.element) }
            plans.append(
                Plan(
                    name: "\(daemonSet.name)-\(suffix(5))", namespace: daemonSet.namespace, uid: uid(),
                    workload: .daemonSet, workloadName: daemonSet.name, ownerName: daemonSet.name, ownerUID: uid(),
                    templateHash: nil, labels: [:], annotations: [:], containers: containers, initContainers: inits,
                    podIP: nextIP(), startTime: time(minutesAgo: 60 * 24 * 9)))
        }
        for (index, statefulSet) in Self.statefulSets.enumerated() where plans.count < count {
            var containers = [container(statefulSet.name.split(separator: "-")[0].description, statefulSet.image)]
            if index % 2 == 0 {
                containers.append(container("metrics", "docker.io/bitnami/\(statefulSet.name)-exporter:0.15.0"))
            }
            plans.append(
                Plan(
                    name: "\(statefulSet.name)-\(index % 3)", namespace: statefulSet.namespace, uid: uid(),
                    workload: .statefulSet, workloadName: statefulSet.name, ownerName: statefulSet.name,
                    ownerUID: uid(), templateHash: nil, labels: [:], annotations: [:], containers: containers,
                    initContainers: [], podIP: nextIP(), startTime: time(minutesAgo: 60 * 24 * 3 + index * 7)))
        }
        for (index, cronJob) in Self.cronJobs.enumerated() where plans.count < count {
            // `<cronjob>-<minutes since the epoch>`, as the CronJob controller names its Jobs.
            let job = "\(cronJob.name)-\(29_916_000 + index * 15)"
            plans.append(
                Plan(
                    name: "\(job)-\(suffix(5))", namespace: cronJob.namespace, uid: uid(), workload: .cronJob,
                    workloadName: cronJob.name, ownerName: job, ownerUID: uid(), templateHash: nil, labels: [:],
                    annotations: [:],
                    containers: [
                        container(cronJob.name, "registry.example.com/batch/\(cronJob.name):2024.11.\(index)")
                    ],
                    initContainers: [], podIP: nextIP(), startTime: time(minutesAgo: 3 + index)))
        }
        var deployments: [(app: String, namespace: String, hash: String, uid: String, istio: Bool, version: String)] =
            []
        while plans.count < count {
            if deployments.isEmpty || Int.random(in: 0..<3, using: &random) == 0 {
                let app = Self.apps[deployments.count % Self.apps.count]
                let name = deployments.count < Self.apps.count ? app : "\(app)-\(deployments.count / Self.apps.count)"
                let version =
                    "\(Int.random(in: 1...4, using: &random)).\(Int.random(in: 0...20, using: &random)).\(Int.random(in: 0...9, using: &random))"
                deployments.append(
                    (
                        name, Self.namespaces[deployments.count % Self.namespaces.count], suffix(9), uid(),
                        Int.random(in: 0..<10, using: &random) < 4, version
                    ))
            }
            let deployment = deployments[Int.random(in: 0..<deployments.count, using: &random)]
            var containers = [
                container(
                    "app", "registry.example.com/\(deployment.namespace)/\(deployment.app):\(deployment.version)")
            ]
            var inits: [Plan.Container] = []
            if deployment.istio {
                containers.append(container("istio-proxy", "docker.io/istio/proxyv2:1.22.3", sidecar: true))
                inits.append(container("istio-init", "docker.io/istio/proxyv2:1.22.3", sidecar: true))
            }
            if Int.random(in: 0..<8, using: &random) == 0 {
                containers.append(container("log-shipper", "cr.fluentbit.io/fluent/fluent-bit:3.0.7", sidecar: true))
            }
            plans.append(
                Plan(
                    name: "\(deployment.app)-\(deployment.hash)-\(suffix(5))", namespace: deployment.namespace,
                    uid: uid(), workload: .deployment, workloadName: deployment.app,
                    ownerName: "\(deployment.app)-\(deployment.hash)", ownerUID: deployment.uid,
                    templateHash: deployment.hash, labels: [:], annotations: [:], containers: containers,
                    initContainers: inits, podIP: nextIP(),
                    startTime: time(minutesAgo: Int.random(in: 30...(60 * 24 * 20), using: &random))))
        }
        for index in plans.indices {
            Self.addMetadata(&plans[index], using: &random)
        }
        self.plans = plans
    }

    /// Labels and annotations of a pod, as its chart and the cluster's controllers set them.
    private static func addMetadata(_ plan: inout Plan, using random: inout SplitMix64) {
        let team = teams[Int.random(in: 0..<teams.count, using: &random)]
        let version = plan.containers[0].image.split(separator: ":").last.map(String.init) ?? "1.0.0"
        let component = components[Int.random(in: 0..<components.count, using: &random)]
        var labels: [String: String] = [
            "app.kubernetes.io/name": plan.workloadName,
            "app.kubernetes.io/instance": "\(plan.workloadName)-prod",
            "app.kubernetes.io/version": version,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": plan.namespace,
            "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart":
                "\(plan.workloadName)-\(Int.random(in: 1...9, using: &random)).\(Int.random(in: 0...30, using: &random)).\(Int.random(in: 0...9, using: &random))",
            "team": team,
        ]
        switch plan.workload {
        case .deployment:
            labels["pod-template-hash"] = plan.templateHash
        case .statefulSet:
            labels["controller-revision-hash"] = "\(plan.workloadName)-\(random.hex(bytes: 5))"
            labels["statefulset.kubernetes.io/pod-name"] = plan.name
            labels["apps.kubernetes.io/pod-index"] = String(plan.name.split(separator: "-").last ?? "0")
        case .daemonSet:
            labels["controller-revision-hash"] = random.hex(bytes: 5)
            labels["pod-template-generation"] = String(Int.random(in: 1...12, using: &random))
        case .cronJob:
            labels["batch.kubernetes.io/job-name"] = plan.ownerName
            labels["job-name"] = plan.ownerName
            labels["batch.kubernetes.io/controller-uid"] = plan.ownerUID
            labels["controller-uid"] = plan.ownerUID
        }
        if plan.containers.contains(where: { $0.name == "istio-proxy" }) {
            labels["security.istio.io/tlsMode"] = "istio"
            labels["service.istio.io/canonical-name"] = plan.workloadName
            labels["service.istio.io/canonical-revision"] = version
        }

        var annotations: [String: String] = [
            "kubectl.kubernetes.io/last-applied-configuration": lastApplied(plan, labels: labels),
            "prometheus.io/scrape": "true",
            "prometheus.io/port": String([8080, 9090, 9102, 9187][Int.random(in: 0..<4, using: &random)]),
            "prometheus.io/path": "/metrics",
            "checksum/config": random.hex(bytes: 32),
        ]
        if Int.random(in: 0..<2, using: &random) == 0 {
            annotations["kubectl.kubernetes.io/restartedAt"] =
                "2026-11-0\(Int.random(in: 1...9, using: &random))T09:14:27Z"
        }
        if Int.random(in: 0..<3, using: &random) == 0 {
            annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] = "true"
        }
        if plan.containers.count > 1 {
            annotations["kubectl.kubernetes.io/default-container"] = plan.containers[0].name
        }
        if plan.containers.contains(where: { $0.name == "istio-proxy" }) {
            annotations["sidecar.istio.io/status"] =
                #"{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}"#
            annotations["istio.io/rev"] = "default"
            annotations["prometheus.io/port"] = "15020"
            annotations["prometheus.io/path"] = "/stats/prometheus"
        }
        plan.labels = labels
        plan.annotations = annotations
    }

    /// A `kubectl apply` record of about 2 KiB: the applied manifest, compact JSON.
    private static func lastApplied(_ plan: Plan, labels: [String: String]) -> String {
        let container = plan.containers[0]
        let manifest: [String: Any] = [
            "apiVersion": "v1", "kind": "Pod",
            "metadata": [
                "annotations": ["prometheus.io/scrape": "true", "prometheus.io/path": "/metrics"],
                "labels": labels, "name": plan.name, "namespace": plan.namespace,
            ],
            "spec": [
                "containers": [
                    [
                        "name": container.name, "image": container.image,
                        "env": (0..<12).map {
                            ["name": "SETTING_\($0)", "value": "value-\($0)-of-\(plan.workloadName)"]
                        },
                        "volumeMounts": [
                            ["name": "config", "mountPath": "/etc/\(plan.workloadName)", "readOnly": true]
                        ],
                        "ports": [
                            ["containerPort": 8080, "name": "http"], ["containerPort": 9090, "name": "metrics"],
                        ],
                        "resources": [
                            "requests": ["cpu": "100m", "memory": "256Mi"], "limits": ["memory": "512Mi"],
                        ],
                        "readinessProbe": ["httpGet": ["path": "/ready", "port": "http"], "periodSeconds": 10],
                        "livenessProbe": ["httpGet": ["path": "/healthz", "port": "http"], "periodSeconds": 10],
                    ]
                ],
                "serviceAccountName": plan.workloadName,
                "volumes": [["name": "config", "configMap": ["name": "\(plan.workloadName)-config"]]],
            ],
        ]
        return jsonText(manifest)
    }

    // MARK: API objects

    /// The Pod as a LIST item or watch event object carries it (without kind/apiVersion in a
    /// list), with managedFields.
    func object(_ plan: Plan, resourceVersion: Int, kindAndVersion: Bool = false) -> [String: Any] {
        func containerSpec(_ container: Plan.Container, index: Int) -> [String: Any] {
            var env: [[String: Any]] = [
                ["name": "POD_NAME", "valueFrom": ["fieldRef": ["apiVersion": "v1", "fieldPath": "metadata.name"]]],
                [
                    "name": "POD_NAMESPACE",
                    "valueFrom": ["fieldRef": ["apiVersion": "v1", "fieldPath": "metadata.namespace"]],
                ],
                ["name": "LOG_LEVEL", "value": "info"],
                ["name": "OTEL_SERVICE_NAME", "value": plan.workloadName],
            ]
            let extra = container.sidecar ? 14 : 4 + (plan.name.utf8.count % 6)
            for variable in 0..<extra {
                env.append([
                    "name": "CONFIG_\(container.name.uppercased())_\(variable)", "value": "setting-\(variable)",
                ])
            }
            if !container.sidecar {
                env.append([
                    "name": "DATABASE_PASSWORD",
                    "valueFrom": ["secretKeyRef": ["name": "\(plan.workloadName)-db", "key": "password"]],
                ])
            }
            return [
                "name": container.name, "image": container.image, "imagePullPolicy": "IfNotPresent",
                "env": env,
                "ports": [
                    ["name": "http", "containerPort": 8080 + index, "protocol": "TCP"],
                    ["name": "metrics", "containerPort": 9090 + index, "protocol": "TCP"],
                ],
                "resources": ["requests": ["cpu": "100m", "memory": "256Mi"], "limits": ["memory": "512Mi"]],
                "livenessProbe": [
                    "httpGet": ["path": "/healthz", "port": "http", "scheme": "HTTP"], "initialDelaySeconds": 10,
                    "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
                ],
                "readinessProbe": [
                    "httpGet": ["path": "/ready", "port": "http", "scheme": "HTTP"], "periodSeconds": 5,
                    "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
                ],
                "volumeMounts": [
                    ["name": "config", "mountPath": "/etc/\(plan.workloadName)", "readOnly": true],
                    [
                        "name": "kube-api-access-\(plan.uid.prefix(5))",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true,
                    ],
                ],
                "securityContext": [
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                    "runAsUser": 10001, "capabilities": ["drop": ["ALL"]],
                ],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            ]
        }
        func status(_ container: Plan.Container, initContainer: Bool) -> [String: Any] {
            let repository = String(container.image.split(separator: ":").dropLast().joined(separator: ":"))
            var entry: [String: Any] = [
                "name": container.name, "image": container.image,
                "imageID": "\(repository)@sha256:\(container.imageDigest)",
                "containerID": "containerd://\(container.id)", "ready": true,
                "restartCount": container.restarts, "started": !initContainer, "lastState": [String: Any](),
            ]
            if initContainer {
                entry["state"] = [
                    "terminated": [
                        "exitCode": 0, "reason": "Completed", "startedAt": plan.startTime,
                        "finishedAt": plan.startTime, "containerID": "containerd://\(container.id)",
                    ]
                ]
            } else {
                entry["state"] = ["running": ["startedAt": plan.startTime]]
                if container.restarts > 0 {
                    entry["lastState"] = [
                        "terminated": [
                            "exitCode": 137, "reason": "OOMKilled", "startedAt": plan.startTime,
                            "finishedAt": plan.startTime,
                            "containerID": "containerd://\(String(container.id.reversed()))",
                        ]
                    ]
                }
            }
            return entry
        }

        let ownerKind: String
        let ownerVersion: String
        switch plan.workload {
        case .deployment: (ownerKind, ownerVersion) = ("ReplicaSet", "apps/v1")
        case .statefulSet: (ownerKind, ownerVersion) = ("StatefulSet", "apps/v1")
        case .daemonSet: (ownerKind, ownerVersion) = ("DaemonSet", "apps/v1")
        case .cronJob: (ownerKind, ownerVersion) = ("Job", "batch/v1")
        }
        var metadata: [String: Any] = [
            "name": plan.name, "namespace": plan.namespace, "uid": plan.uid,
            "resourceVersion": String(resourceVersion), "creationTimestamp": plan.startTime,
            "labels": plan.labels, "annotations": plan.annotations,
            "ownerReferences": [
                [
                    "apiVersion": ownerVersion, "kind": ownerKind, "name": plan.ownerName, "uid": plan.ownerUID,
                    "controller": true, "blockOwnerDeletion": true,
                ]
            ],
        ]
        if plan.workload != .statefulSet { metadata["generateName"] = String(plan.name.dropLast(5)) }
        let tokenVolume = "kube-api-access-\(plan.uid.prefix(5))"
        var volumes: [[String: Any]] = [
            ["name": "config", "configMap": ["name": "\(plan.workloadName)-config", "defaultMode": 420]],
            [
                "name": tokenVolume,
                "projected": [
                    "defaultMode": 420,
                    "sources": [
                        ["serviceAccountToken": ["expirationSeconds": 3607, "path": "token"]],
                        ["configMap": ["name": "kube-root-ca.crt", "items": [["key": "ca.crt", "path": "ca.crt"]]]],
                        [
                            "downwardAPI": [
                                "items": [
                                    [
                                        "path": "namespace",
                                        "fieldRef": ["apiVersion": "v1", "fieldPath": "metadata.namespace"],
                                    ]
                                ]
                            ]
                        ],
                    ],
                ],
            ],
        ]
        if plan.containers.contains(where: { $0.name == "istio-proxy" }) {
            for name in ["workload-socket", "credential-socket", "workload-certs", "istio-envoy", "istio-data"] {
                volumes.append(["name": name, "emptyDir": [String: Any]()])
            }
        }
        let qos = plan.workload == .cronJob ? "BestEffort" : "Burstable"
        let conditions: [[String: Any]] = [
            "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled",
        ]
        .map { ["type": $0, "status": "True", "lastProbeTime": NSNull(), "lastTransitionTime": plan.startTime] }
        let spec: [String: Any] = [
            "containers": plan.containers.enumerated().map { containerSpec($0.element, index: $0.offset) },
            "initContainers": plan.initContainers.enumerated().map { containerSpec($0.element, index: $0.offset) },
            "volumes": volumes, "nodeName": nodeName,
            "restartPolicy": plan.workload == .cronJob ? "OnFailure" : "Always",
            "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": plan.workloadName, "serviceAccount": plan.workloadName,
            "securityContext": ["fsGroup": 10001], "schedulerName": "default-scheduler", "priority": 0,
            "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                [
                    "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 300,
                ],
                [
                    "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 300,
                ],
            ],
        ]
        let statusObject: [String: Any] = [
            "phase": "Running", "conditions": conditions, "hostIP": "10.0.3.17", "hostIPs": [["ip": "10.0.3.17"]],
            "podIP": plan.podIP, "podIPs": [["ip": plan.podIP]], "startTime": plan.startTime, "qosClass": qos,
            "containerStatuses": plan.containers.map { status($0, initContainer: false) },
            "initContainerStatuses": plan.initContainers.map { status($0, initContainer: true) },
        ]
        var withoutManaged: [String: Any] = ["metadata": metadata, "spec": spec, "status": statusObject]
        metadata["managedFields"] = [
            [
                "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                "time": plan.startTime, "fieldsType": "FieldsV1",
                "fieldsV1": Self.fields(of: ["metadata": metadata, "spec": spec]),
            ],
            [
                "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": plan.startTime,
                "fieldsType": "FieldsV1", "subresource": "status",
                "fieldsV1": Self.fields(of: ["status": statusObject]),
            ],
        ]
        withoutManaged["metadata"] = metadata
        if kindAndVersion {
            withoutManaged["kind"] = "Pod"
            withoutManaged["apiVersion"] = "v1"
        }
        return withoutManaged
    }

    /// The `fieldsV1` set of an object: `f:<field>` per key, `k:{"name":...}` per named list
    /// item, `.` for the owned parent, as server-side apply records them.
    static func fields(of value: Any) -> Any {
        if let dictionary = value as? [String: Any] {
            var result: [String: Any] = [:]
            for (key, child) in dictionary where key != "managedFields" && key != "uid" && key != "resourceVersion" {
                result["f:\(key)"] = fields(of: child)
            }
            if !result.isEmpty { result["."] = [String: Any]() }
            return result
        }
        if let array = value as? [Any] {
            var result: [String: Any] = [:]
            for item in array {
                guard let entry = item as? [String: Any] else { continue }
                let key: String
                if let name = entry["name"] as? String {
                    key = #"k:{"name":"\#(name)"}"#
                } else if let type = entry["type"] as? String {
                    key = #"k:{"type":"\#(type)"}"#
                } else if let ip = entry["ip"] as? String {
                    key = #"k:{"ip":"\#(ip)"}"#
                } else if let port = entry["containerPort"] as? Int {
                    key = #"k:{"containerPort":\#(port),"protocol":"TCP"}"#
                } else {
                    continue
                }
                result[key] = fields(of: entry)
            }
            if !result.isEmpty { result["."] = [String: Any]() }
            return result
        }
        return [String: Any]()
    }

    /// A LIST reply (`PodList`) of these pods, as the API server writes it.
    func listReply(resourceVersion: Int) -> [UInt8] {
        let items = plans.enumerated().map {
            object($0.element, resourceVersion: resourceVersion - plans.count + $0.offset)
        }
        let list: [String: Any] = [
            "kind": "PodList", "apiVersion": "v1", "metadata": ["resourceVersion": String(resourceVersion)],
            "items": items,
        ]
        return Array(jsonText(list).utf8)
    }
}

/// Compact JSON text (keys sorted, so runs are byte-identical).
func jsonText(_ object: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}
