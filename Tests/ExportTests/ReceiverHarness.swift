import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NodeprofCore
import Profiles
import TestSupport
import Testing

/// `hack/otlp/receiver.py` run as a subprocess: a real OTLP profiles receiver (gRPC and
/// HTTP) with a control API for faults and outages (see hack/otlp/README.md).
/// Unchecked: every stored property is immutable after `start`; `Process` is used for
/// `terminate` and `isRunning` only.
final class TestReceiver: @unchecked Sendable {
    /// One export the receiver saw (a record of `GET /requests`).
    struct Record: Decodable, Sendable {
        struct Summary: Decodable, Sendable {
            var profiles: Int
            /// Sample messages (merged samples count once).
            var samples: Int
            /// Samples counted one per timestamp, as ``OTLPEncodedRequest/sampleCount`` does.
            var totalWeight: Int
        }

        var index: Int
        var transport: String
        /// Arrival, Unix seconds.
        var time: Double
        var wireBytes: Int?
        var messageBytes: Int?
        var gzip: Bool
        var tls: Bool
        var clientCertCn: String?
        var headers: [String: String]
        var outcome: String
        var decodeError: String?
        var summary: Summary?
        var violations: [String]

        enum CodingKeys: String, CodingKey {
            case index, time, wireBytes, messageBytes, gzip, tls, clientCertCn, headers, outcome, decodeError
            case summary, violations
            case transport = "protocol"
        }
    }

    struct Status: Decodable, Sendable {
        var ingestUp: Bool
        var requestsRecorded: Int
    }

    /// Certificate files for the receiver's TLS listeners.
    struct TLSFiles: Sendable {
        var certificate: String
        var key: String
        var clientCertificateAuthority: String?
    }

    let grpcPort: Int
    let httpPort: Int
    let controlPort: Int
    private let process: Process
    private let logPath: String
    private let directory: TemporaryDirectory

    static var repositoryRoot: String {
        // Tests/ExportTests/TestReceiver.swift -> the repository
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    private init(process: Process, ports: [String: Int], logPath: String, directory: TemporaryDirectory) {
        self.process = process
        grpcPort = ports["grpc_port"] ?? 0
        httpPort = ports["http_port"] ?? 0
        controlPort = ports["control_port"] ?? 0
        self.logPath = logPath
        self.directory = directory
    }

    /// Starts a receiver on free ports and waits for its ready line.
    static func start(tls: TLSFiles? = nil) async throws -> TestReceiver {
        let root = repositoryRoot
        let python = "\(root)/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw FixtureError("\(python) is missing; run hack/setup to create the Python environment")
        }
        let directory = try TemporaryDirectory(prefix: "nodeprof-receiver")
        let logPath = directory.file("receiver.log")
        FileManager.default.createFile(atPath: logPath, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        var arguments = [
            "\(root)/hack/otlp/receiver.py", "--grpc-port", "0", "--http-port", "0", "--control-port", "0",
        ]
        if let tls {
            arguments += ["--tls-cert", tls.certificate, "--tls-key", tls.key]
            if let authority = tls.clientCertificateAuthority { arguments += ["--tls-client-ca", authority] }
        }
        process.arguments = arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()

        // The ready line; EOF (an exit) instead means the receiver could not start.
        let descriptor = stdout.fileHandleForReading.fileDescriptor
        let line = await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8], Never>) in
            Thread.detachNewThread {
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while read(descriptor, &byte, 1) == 1 && byte != UInt8(ascii: "\n") { line.append(byte) }
                continuation.resume(returning: line)
            }
        }
        guard let ports = try? JSONDecoder().decode([String: Int].self, from: Data(line)) else {
            process.terminate()
            process.waitUntilExit()
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw FixtureError("receiver.py did not start: \(String(decoding: line, as: UTF8.self))\n\(log)")
        }
        return TestReceiver(process: process, ports: ports, logPath: logPath, directory: directory)
    }

    /// Stops the receiver (SIGTERM; it exits at once).
    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// The receiver's stderr so far, for failure messages.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    // MARK: Control API

    func records() async throws -> [Record] {
        try Self.decoder.decode([Record].self, from: try await control(.GET, "/requests"))
    }

    func status() async throws -> Status {
        try Self.decoder.decode(Status.self, from: try await control(.GET, "/status"))
    }

    /// Queues faults, consumed in order by incoming exports.
    func addFaults(_ json: String) async throws {
        _ = try await control(.POST, "/faults", body: json)
    }

    /// Closes the ingest listeners; they reopen after `seconds`.
    func down(seconds: Double) async throws {
        _ = try await control(.POST, "/down", body: "{\"seconds\": \(seconds)}")
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }()

    private func control(_ method: HTTPMethod, _ path: String, body: String? = nil) async throws -> Data {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(controlPort)\(path)")
        request.method = method
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 64 << 20)
        let data = Data(buffer.readableBytesView)
        guard response.status == .ok else {
            throw FixtureError(
                "receiver \(method) \(path): \(response.status): \(String(decoding: data, as: UTF8.self))")
        }
        return data
    }
}

/// Runs `body` with a fresh receiver, stopping it afterwards (also when `body` throws).
func withReceiver<T: Sendable>(
    tls: TestReceiver.TLSFiles? = nil, _ body: (TestReceiver) async throws -> T
) async throws -> T {
    let receiver = try await TestReceiver.start(tls: tls)
    do {
        let result = try await body(receiver)
        receiver.stop()
        return result
    } catch {
        receiver.stop()
        Issue.record("receiver log:\n\(receiver.log.suffix(4000))")
        throw error
    }
}

/// Valid OTLP profile requests, built by the project's OTLP builder from synthetic stacks.
enum TestRequests {
    static let start: UInt64 = 1_700_000_000_000_000_000

    /// A request with `samples` samples (distinct timestamps 10 ms apart) over a few stacks
    /// and threads: the size grows by about 10 bytes per sample.
    static func make(samples: Int) throws -> OTLPEncodedRequest {
        let stacks = [
            [ProfilesSyntheticStacks.leafA, ProfilesSyntheticStacks.workA, ProfilesSyntheticStacks.main],
            [ProfilesSyntheticStacks.leafB, ProfilesSyntheticStacks.workB, ProfilesSyntheticStacks.main],
            [
                ProfilesSyntheticStacks.fibInner, ProfilesSyntheticStacks.fibOuter, ProfilesSyntheticStacks.fibOuter,
                ProfilesSyntheticStacks.main,
            ],
        ]
        var profile = Profile(
            startTimeNanos: start, durationNanos: UInt64(samples + 1) * 10_000_000, frequencyHz: 100)
        for index in 0..<samples {
            let tid = Int32(101 + index % 3)
            profile.add(
                SymbolizedSample(
                    pid: ProfilesSyntheticStacks.pid, tid: tid, threadName: "worker-\(tid)",
                    processName: ProfilesSyntheticStacks.processName, cgroupID: 1,
                    timestampNanos: start + UInt64(index) * 10_000_000, frames: stacks[index % stacks.count]))
        }
        let builder = OTLPBuilder(configuration: .init(hostName: "export-test-node"))
        return try builder.encodeSingleRequest(profile)
    }
}
