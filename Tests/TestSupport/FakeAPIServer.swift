public import Foundation

/// `hack/fake-node/apiserver.py` run as a child process: a fake Kubernetes API server (LIST,
/// WATCH, paging, bookmarks, 410 after compaction) on free ports, with its control API to
/// change objects and inject faults (see hack/fake-node/README.md).
///
/// Unchecked Sendable: every stored property is immutable after `start`; `Process` is only
/// asked `isRunning` and told to stop.
public final class FakeAPIServer: @unchecked Sendable {
    /// One API request the server saw (`GET /requests`).
    public struct Request: Decodable, Sendable {
        public var method: String
        public var path: String
        /// The last value of each query parameter.
        public var query: [String: String]
        /// `nil` while the request is pending.
        public var status: Int?
        public var watch: Bool
        /// Arrival, Unix seconds.
        public var time: Double
        /// True when the server closed the connection instead of answering (the
        /// `keepalive_close_on_reuse` fault).
        public var dropped: Bool?
    }

    /// `GET /state`.
    public struct State: Decodable, Sendable {
        /// The current resourceVersion (a decimal string on this server).
        public var resourceVersion: String
        public var objects: Int
        public var openWatches: Int
        /// The oldest resourceVersion a watch can resume from.
        public var oldestHistoryRv: String
    }

    public let apiPort: Int
    public let controlPort: Int
    /// `http://127.0.0.1:PORT`, or `https://` with TLS.
    public let apiURL: String
    private let tool: PythonTool

    private init(tool: PythonTool) {
        self.tool = tool
        apiPort = tool.port("api_port")
        controlPort = tool.port("control_port")
        apiURL = tool.ready["api_url"] as? String ?? ""
    }

    /// Starts a server on free ports and waits for its ready line. `tokens` are the accepted
    /// bearer tokens (none: every request is accepted); `tls` is a certificate and key file.
    public static func start(
        tokens: [String] = [], tls: (certificate: String, key: String)? = nil, bookmarkInterval: Double? = nil,
        history: Int? = nil
    ) async throws -> FakeAPIServer {
        var arguments = ["--port", "0", "--control-port", "0"]
        for token in tokens { arguments += ["--token", token] }
        if let tls { arguments += ["--tls-cert", tls.certificate, "--tls-key", tls.key] }
        if let bookmarkInterval { arguments += ["--bookmark-interval", String(bookmarkInterval)] }
        if let history { arguments += ["--history", String(history)] }
        return FakeAPIServer(
            tool: try await PythonTool.start(
                script: "hack/fake-node/apiserver.py", arguments: arguments, required: ["api_port", "control_port"]))
    }

    /// Stops the server: SIGTERM, then SIGKILL if it is still there after 5 s.
    public func stop() { tool.stop() }

    /// The server's stderr so far, for failure messages.
    public var log: String { tool.log }

    // MARK: Control API

    /// Creates or replaces an object (`POST /objects`, the full object as JSON); answers the
    /// stored object with its resourceVersion and uid.
    @discardableResult
    public func put(_ objectJSON: String) async throws -> [String: Any] {
        let data = try await control("POST", "/objects", body: objectJSON)
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    /// Creates or replaces many objects in order, with one control process (faster than one
    /// ``put(_:)`` each).
    public func putAll(_ objectsJSON: [String]) async throws {
        guard !objectsJSON.isEmpty else { return }
        let script = """
            import sys, urllib.request
            for body in sys.argv[2:]:
                request = urllib.request.Request(sys.argv[1], data=body.encode(), method="POST",
                                                 headers={"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=30).read()
            """
        let python = PythonTool.python
        let arguments = ["-c", script, "http://127.0.0.1:\(controlPort)/objects"] + objectsJSON
        let (status, stderr) = try await offloadBlocking {
            let result = try runProgramCapturing(python, arguments)
            return (result.status, result.stderr)
        }
        guard status == 0 else { throw FixtureError("apiserver.py control POST /objects failed: \(stderr)") }
    }

    /// Creates or replaces many objects in one control request (`POST /objects` with a JSON
    /// array): thousands of pods in a second.
    public func putMany(_ objectsJSON: [String]) async throws {
        guard !objectsJSON.isEmpty else { return }
        // Megabytes do not fit on a command line: the body goes through a file.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("nodeprof-objects-\(UUID()).json")
        try Data(("[" + objectsJSON.joined(separator: ",") + "]").utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = """
            import sys, urllib.request
            with open(sys.argv[2], "rb") as f:
                body = f.read()
            request = urllib.request.Request(sys.argv[1], data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=120).read()
            """
        let python = PythonTool.python
        let arguments = ["-c", script, "http://127.0.0.1:\(controlPort)/objects", file.path]
        let (status, stderr) = try await offloadBlocking {
            let result = try runProgramCapturing(python, arguments)
            return (result.status, result.stderr)
        }
        guard status == 0 else { throw FixtureError("apiserver.py control POST /objects (bulk) failed: \(stderr)") }
    }

    /// Deletes an object (`POST /delete`).
    public func delete(apiVersion: String = "v1", kind: String = "Pod", namespace: String?, name: String)
        async throws
    {
        var body: [String: String] = ["apiVersion": apiVersion, "kind": kind, "name": name]
        if let namespace { body["namespace"] = namespace }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
        try await control("POST", "/delete", body: json)
    }

    /// `POST /faults` with a JSON object of fault keys (see the README); answers the reply.
    @discardableResult
    public func faults(_ json: String) async throws -> [String: Any] {
        let data = try await control("POST", "/faults", body: json)
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    /// Every API request so far.
    public func requests() async throws -> [Request] {
        try JSONDecoder().decode([Request].self, from: try await control("GET", "/requests"))
    }

    public func resetRequests() async throws {
        try await control("POST", "/reset-requests")
    }

    public func state() async throws -> State {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(State.self, from: try await control("GET", "/state"))
    }

    /// A control request, made synchronously (for callbacks that cannot await).
    @discardableResult
    public func control(_ method: String, _ path: String, body: String? = nil) throws -> Data {
        try controlRequest(method, "http://127.0.0.1:\(controlPort)\(path)", body: body, what: "apiserver.py")
    }

    /// A control request made on a thread of its own: the child process it waits for would
    /// otherwise hold a thread of the cooperative pool.
    @discardableResult
    public func control(_ method: String, _ path: String, body: String? = nil) async throws -> Data {
        try await tool.control(port: controlPort, method, path, body: body)
    }
}
