public import Foundation

/// The real OTLP profiles receiver of the tests (`hack/otlp/receiver.py`: grpcio and the
/// official opentelemetry-proto code, a conformance check of every request), run as a child
/// process on free ports, with its control API (see hack/otlp/README.md).
public final class OTLPTestReceiver: @unchecked Sendable {
    public let grpcPort: Int
    public let httpPort: Int
    public let controlPort: Int
    private let process: Process

    /// One export the receiver saw, as its control API reports it.
    public struct Record: Sendable {
        public var index: Int
        public var proto: String
        public var time: Double
        public var outcome: String
        public var gzip: Bool
        public var headers: [String: String]
        public var violations: [String]
        /// Sample messages (merged samples count once).
        public var samples: Int
        /// Samples they stand for (values, or one per timestamp).
        public var weight: Int
        /// Leaf functions by weight, heaviest first.
        public var topFunctions: [(name: String, weight: Int)]
    }

    /// Starts the receiver and waits until it listens. Extra arguments (TLS) are passed on.
    public init(arguments: [String] = []) throws {
        let root = repositoryRoot()
        let python = "\(root)/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw FixtureError(
                "\(python) missing: run hack/setup (it creates .venv with grpcio and opentelemetry-proto)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments =
            ["\(root)/hack/otlp/receiver.py", "--grpc-port", "0", "--http-port", "0", "--control-port", "0"]
            + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.standardError
        try process.run()
        self.process = process

        // The first stdout line is {"grpc_port": ..., "http_port": ..., "control_port": ...}.
        var line = Data()
        let handle = stdout.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty {
                process.terminate()
                throw FixtureError("hack/otlp/receiver.py exited before listening")
            }
            line.append(chunk)
        }
        guard let ports = try JSONSerialization.jsonObject(with: line) as? [String: Any],
            let grpc = ports["grpc_port"] as? Int, let http = ports["http_port"] as? Int,
            let control = ports["control_port"] as? Int
        else {
            process.terminate()
            throw FixtureError("receiver.py printed \(String(decoding: line, as: UTF8.self))")
        }
        grpcPort = grpc
        httpPort = http
        controlPort = control
    }

    deinit { stop() }

    /// Stops the receiver: SIGTERM, then SIGKILL if it is still there after 5 s.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<50 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    public var grpcEndpoint: String { "http://127.0.0.1:\(grpcPort)" }
    public var httpEndpoint: String { "http://127.0.0.1:\(httpPort)" }

    /// Sends a control request and returns the response body. Uses the venv's Python
    /// (urllib) as the HTTP client: small, and independent of the code under test.
    @discardableResult
    public func control(_ method: String, _ path: String, json body: String? = nil) async throws -> Data {
        let script = """
            import sys, urllib.request
            body = sys.argv[3].encode() if len(sys.argv) > 3 else None
            request = urllib.request.Request(sys.argv[2], data=body, method=sys.argv[1],
                                             headers={"Content-Type": "application/json"})
            sys.stdout.buffer.write(urllib.request.urlopen(request, timeout=30).read())
            """
        let url = "http://127.0.0.1:\(controlPort)\(path)"
        let result = try runProgramCapturing(
            "\(repositoryRoot())/.venv/bin/python", ["-c", script, method, url] + (body.map { [$0] } ?? []))
        guard result.status == 0 else {
            throw FixtureError("receiver control \(method) \(path) failed: \(result.stderr)")
        }
        return Data(result.stdout.utf8)
    }

    /// Queues faults (a JSON list, see hack/otlp/README.md) for the next exports.
    public func injectFaults(_ json: String) async throws {
        try await control("POST", "/faults", json: json)
    }

    /// Every export recorded so far.
    public func records() async throws -> [Record] {
        let data = try await control("GET", "/requests")
        guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw FixtureError("receiver /requests is not a JSON list")
        }
        return list.map { object in
            let summary = object["summary"] as? [String: Any] ?? [:]
            let top = (summary["top_functions"] as? [[Any]] ?? []).compactMap { pair -> (String, Int)? in
                guard pair.count == 2, let name = pair[0] as? String else { return nil }
                return (name, (pair[1] as? NSNumber)?.intValue ?? 0)
            }
            return Record(
                index: object["index"] as? Int ?? -1, proto: object["protocol"] as? String ?? "",
                time: object["time"] as? Double ?? 0, outcome: object["outcome"] as? String ?? "",
                gzip: object["gzip"] as? Bool ?? false, headers: object["headers"] as? [String: String] ?? [:],
                violations: object["violations"] as? [String] ?? [],
                samples: (summary["samples"] as? NSNumber)?.intValue ?? 0,
                weight: (summary["total_weight"] as? NSNumber)?.intValue ?? 0,
                topFunctions: top.map { (name: $0.0, weight: $0.1) })
        }
    }
}
