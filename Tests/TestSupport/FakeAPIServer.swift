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
    private let process: Process
    private let logPath: String
    private let directory: TemporaryDirectory

    private init(process: Process, ready: [String: Any], logPath: String, directory: TemporaryDirectory) {
        self.process = process
        apiPort = ready["api_port"] as? Int ?? 0
        controlPort = ready["control_port"] as? Int ?? 0
        apiURL = ready["api_url"] as? String ?? ""
        self.logPath = logPath
        self.directory = directory
    }

    deinit { stop() }

    /// Starts a server on free ports and waits for its ready line. `tokens` are the accepted
    /// bearer tokens (none: every request is accepted); `tls` is a certificate and key file.
    public static func start(
        tokens: [String] = [], tls: (certificate: String, key: String)? = nil, bookmarkInterval: Double? = nil,
        history: Int? = nil
    ) async throws -> FakeAPIServer {
        let python = "\(repositoryRoot())/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw FixtureError("\(python) is missing; run hack/setup to create the Python environment")
        }
        let directory = try TemporaryDirectory(prefix: "nodeprof-apiserver")
        let logPath = directory.file("apiserver.log")
        FileManager.default.createFile(atPath: logPath, contents: nil)
        var arguments = ["\(repositoryRoot())/hack/fake-node/apiserver.py", "--port", "0", "--control-port", "0"]
        for token in tokens { arguments += ["--token", token] }
        if let tls { arguments += ["--tls-cert", tls.certificate, "--tls-key", tls.key] }
        if let bookmarkInterval { arguments += ["--bookmark-interval", String(bookmarkInterval)] }
        if let history { arguments += ["--history", String(history)] }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()

        // The ready line; EOF (an exit) instead means the server could not start. Read on a
        // thread of its own: the read blocks.
        let descriptor = stdout.fileHandleForReading.fileDescriptor
        let line = await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8], Never>) in
            Thread.detachNewThread {
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while read(descriptor, &byte, 1) == 1 && byte != UInt8(ascii: "\n") { line.append(byte) }
                continuation.resume(returning: line)
            }
        }
        guard let ready = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
            ready["api_port"] is Int, ready["control_port"] is Int
        else {
            process.terminate()
            process.waitUntilExit()
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw FixtureError("apiserver.py did not start: \(String(decoding: line, as: UTF8.self))\n\(log)")
        }
        return FakeAPIServer(process: process, ready: ready, logPath: logPath, directory: directory)
    }

    /// Stops the server: SIGTERM, then SIGKILL if it is still there after 5 s.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<50 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The server's stderr so far, for failure messages.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

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
        let python = "\(repositoryRoot())/.venv/bin/python"
        let arguments = ["-c", script, "http://127.0.0.1:\(controlPort)/objects"] + objectsJSON
        let (status, stderr) = try await Self.offload {
            let result = try runProgramCapturing(python, arguments)
            return (result.status, result.stderr)
        }
        guard status == 0 else { throw FixtureError("apiserver.py control POST /objects failed: \(stderr)") }
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
    /// otherwise hold a thread of the cooperative pool, and tests running in parallel would
    /// starve the code under test.
    @discardableResult
    public func control(_ method: String, _ path: String, body: String? = nil) async throws -> Data {
        try await Self.offload { [self] in try control(method, path, body: body) }
    }

    private static func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }
}
