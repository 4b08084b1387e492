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
    private let process: Process
    private let logPath: String
    private let directory: TemporaryDirectory

    private init(process: Process, ready: [String: Any], logPath: String, directory: TemporaryDirectory) {
        self.process = process
        apiPort = ready["api_port"] as? Int ?? 0
        controlPort = ready["control_port"] as? Int ?? 0
        apiURL = ready["api_url"] as? String ?? ""
        nodeName = ready["node_name"] as? String ?? ""
        kubeconfig = ready["kubeconfig"] as? String
        self.logPath = logPath
        self.directory = directory
    }

    deinit { stop() }

    /// Starts a fake node on free ports, writing a kubeconfig, and waits for its ready line.
    public static func start(nodeName: String = "fake-node-1", extraArguments: [String] = []) async throws -> FakeNode {
        let python = "\(repositoryRoot())/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw FixtureError("\(python) is missing; run hack/setup to create the Python environment")
        }
        let directory = try TemporaryDirectory(prefix: "nodeprof-fake-node")
        let logPath = directory.file("fake-node.log")
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments =
            [
                "\(repositoryRoot())/hack/fake-node/fake-node", "--api-port", "0", "--control-port", "0",
                "--node-name", nodeName, "--kubeconfig-out", directory.file("kubeconfig"),
            ] + extraArguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()

        let descriptor = stdout.fileHandleForReading.fileDescriptor
        let line = await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8], Never>) in
            Thread.detachNewThread {
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while read(descriptor, &byte, 1) == 1 && byte != UInt8(ascii: "\n") { line.append(byte) }
                continuation.resume(returning: line)
            }
        }
        guard let ready = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
            process.terminate()
            process.waitUntilExit()
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw FixtureError("fake-node did not start: \(String(decoding: line, as: UTF8.self))\n\(log)")
        }
        return FakeNode(process: process, ready: ready, logPath: logPath, directory: directory)
    }

    /// Stops the node (it kills its processes and removes its cgroups): SIGTERM, then
    /// SIGKILL after 10 s.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<100 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

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
        try controlRequest(method, "http://127.0.0.1:\(controlPort)\(path)", body: body, what: "fake-node")
    }
}
