public import Foundation

/// A test tool of `hack/` written in Python (the OTLP receiver, the fake API server, the fake
/// node), run by the venv's interpreter as a child process. Each prints one JSON ready line
/// on stdout once it listens, and logs to stderr, kept in a file for failure messages.
///
/// Unchecked Sendable: every stored property is immutable after ``start(script:arguments:)``;
/// `Process` is only asked `isRunning` and told to stop.
public final class PythonTool: @unchecked Sendable {
    /// The ready line, decoded.
    public let ready: [String: Any]
    public let logPath: String
    private let process: Process
    private let directory: TemporaryDirectory

    private init(process: Process, ready: [String: Any], logPath: String, directory: TemporaryDirectory) {
        self.process = process
        self.ready = ready
        self.logPath = logPath
        self.directory = directory
    }

    deinit { stop() }

    public static var python: String { "\(repositoryRoot())/.venv/bin/python" }

    /// Starts `script` (relative to the repository root) and waits for its ready line; a tool
    /// that exits instead fails with its log. `required` keys must be in the ready line.
    public static func start(script: String, arguments: [String], required: [String] = []) async throws
        -> PythonTool
    {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw FixtureError("\(python) is missing; run hack/setup to create the Python environment")
        }
        let name = URL(fileURLWithPath: script).lastPathComponent
        let directory = try TemporaryDirectory(prefix: "nodeprof-\(name)")
        let logPath = directory.file("\(name).log")
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["\(repositoryRoot())/\(script)"] + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()

        // EOF instead of a line means the tool exited. Read on a thread of its own: it blocks.
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
            required.allSatisfy({ ready[$0] != nil })
        else {
            process.terminate()
            process.waitUntilExit()
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw FixtureError("\(script) did not start: \(String(decoding: line, as: UTF8.self))\n\(log)")
        }
        return PythonTool(process: process, ready: ready, logPath: logPath, directory: directory)
    }

    /// An integer of the ready line (a port), 0 when absent.
    public func port(_ key: String) -> Int { ready[key] as? Int ?? 0 }

    /// SIGTERM, then SIGKILL if the tool is still there after `graceSeconds`.
    public func stop(graceSeconds: Double = 5) {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<Int(graceSeconds * 10) where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The tool's stderr so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// A request to the tool's plain-HTTP control API on `port` (see ``controlRequest(_:_:body:what:)``),
    /// made on a thread of its own so that the wait does not hold a thread of the cooperative pool.
    public func control(port: Int, _ method: String, _ path: String, body: String? = nil) async throws -> Data {
        let url = "http://127.0.0.1:\(port)\(path)"
        let name = URL(fileURLWithPath: process.arguments?.first ?? "tool").lastPathComponent
        return try await offloadBlocking { try controlRequest(method, url, body: body, what: name) }
    }
}

/// Runs blocking `work` (waiting for a child process) on a thread of its own.
public func offloadBlocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}
