import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// hack/otlp/receiver.py as a child process (see hack/otlp/README.md), and its control API.
final class OTLPTestReceiver {
    /// `GET /status`, the fields used here.
    struct Status: Decodable {
        var ingestUp: Bool
        /// Unix time at which a `/down` with seconds reopens ingest.
        var upAt: Double?
    }

    /// One entry of `GET /requests`, the fields used here.
    struct Record: Decodable {
        var index: Int
        /// Unix time the request arrived.
        var time: Double
        var outcome: String
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let grpcPort: Int
    let httpPort: Int
    let controlPort: Int
    private let process: Process

    /// Starts the receiver on free ports and waits for the line that names them.
    ///
    /// - Parameter logPath: where the receiver's log (stderr) goes; nil discards it.
    init(python: String, script: String, logPath: String?) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, "--grpc-port", "0", "--http-port", "0", "--control-port", "0"]
        let output = Pipe()
        process.standardOutput = output
        if let logPath {
            FileManager.default.createFile(atPath: logPath, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: logPath)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()

        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else {
                throw Failure(description: "\(script) exited before printing its ports (see its log)")
            }
            line.append(chunk)
        }
        struct Ports: Decodable {
            var grpcPort: Int
            var httpPort: Int
            var controlPort: Int
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let ports = try decoder.decode(Ports.self, from: line.prefix { $0 != UInt8(ascii: "\n") })
        grpcPort = ports.grpcPort
        httpPort = ports.httpPort
        controlPort = ports.controlPort
    }

    deinit {
        stop()
    }

    /// Closes the ingest ports for `seconds` (`POST /down`).
    func down(seconds: Double) async throws -> Status {
        try await call("POST", "/down", body: Data("{\"seconds\": \(seconds)}".utf8))
    }

    /// Every request received so far (`GET /requests`).
    func requests() async throws -> [Record] {
        try await call("GET", "/requests", body: nil)
    }

    /// Stops the receiver (SIGTERM) and waits for it to exit.
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    private func call<Answer: Decodable>(_ method: String, _ path: String, body: Data?) async throws -> Answer {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(controlPort)\(path)")!)
        request.httpMethod = method
        request.httpBody = body
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let status = (response as? HTTPURLResponse)?.statusCode, status == 200 else {
            throw Failure(description: "receiver \(method) \(path) failed: \(String(decoding: data, as: UTF8.self))")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Answer.self, from: data)
    }
}
