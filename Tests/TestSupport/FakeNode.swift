public import Foundation

/// `hack/fake-node/fake-node` run as a child process: a fake Kubernetes API server plus real
/// cgroup v2 directories shaped like kubelet's, with real processes in them (see
/// hack/fake-node/README.md). Needs root, as the kernel tests do.
///
/// Unchecked Sendable: every stored property is immutable after `start`.
public final class FakeNode: @unchecked Sendable {
    /// A pod the fake node created: its uid and, per container, the process and cgroup.
    public struct CreatedPod: Decodable, Sendable {
        public struct Container: Decodable, Sendable {
            public var name: String
            public var containerId: String
            public var pid: Int32
            public var cgroupPath: String
            public var cgroupId: UInt64
        }
        public var uid: String
        public var containers: [Container]
    }

    public let apiPort: Int
    public let controlPort: Int
    public let apiURL: String
    public let nodeName: String
    public let kubeconfig: String?
    private let tool: PythonTool
    private let directory: TemporaryDirectory

    private init(tool: PythonTool, directory: TemporaryDirectory) {
        self.tool = tool
        self.directory = directory
        apiPort = tool.port("api_port")
        controlPort = tool.port("control_port")
        apiURL = tool.ready["api_url"] as? String ?? ""
        nodeName = tool.ready["node_name"] as? String ?? ""
        kubeconfig = tool.ready["kubeconfig"] as? String
    }

    /// Starts a fake node on free ports, writing a kubeconfig, and waits for its ready line.
    public static func start(nodeName: String = "fake-node-1", extraArguments: [String] = []) async throws -> FakeNode {
        let directory = try TemporaryDirectory(prefix: "nodeprof-fake-node")
        let tool = try await PythonTool.start(
            script: "hack/fake-node/fake-node",
            arguments: [
                "--api-port", "0", "--control-port", "0", "--node-name", nodeName, "--kubeconfig-out",
                directory.file("kubeconfig"),
            ] + extraArguments, required: ["api_port", "control_port", "kubeconfig"])
        return FakeNode(tool: tool, directory: directory)
    }

    /// Stops the node (it kills its processes and removes its cgroups): SIGTERM, then
    /// SIGKILL after 10 s.
    public func stop() { tool.stop(graceSeconds: 10) }

    public var log: String { tool.log }

    // MARK: Control API

    /// Creates a pod (owner objects, cgroups, processes, the Pod object); `json` is the body
    /// of `POST /node/pods`.
    public func createPod(_ json: String) async throws -> CreatedPod {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(CreatedPod.self, from: try await control("POST", "/node/pods", body: json))
    }

    /// Deletes a pod: kills its processes, removes its cgroups, deletes the Pod object.
    public func deletePod(namespace: String, name: String) async throws {
        _ = try await control("DELETE", "/node/pods/\(namespace)/\(name)")
    }

    /// `POST /faults` of the API server (see hack/fake-node/README.md).
    public func faults(_ json: String) async throws {
        _ = try await control("POST", "/faults", body: json)
    }

    /// API requests the server answered, as JSON objects.
    public func requests() async throws -> [[String: Any]] {
        let data = try await control("GET", "/requests")
        return try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
    }

    @discardableResult
    public func control(_ method: String, _ path: String, body: String? = nil) async throws -> Data {
        try await tool.control(port: controlPort, method, path, body: body)
    }
}
