import Foundation
import TestSupport
import Testing

/// `nodeprof record --otlp-endpoint` against the real receiver (hack/otlp/receiver.py:
/// official opentelemetry-proto decoding plus the conformance checker), over both protocols.
@Suite(.serialized, .machineExclusive) struct OTLPExportEndToEndTests {
    enum Transport: String, CaseIterable, Sendable {
        case grpc, http
    }

    @Test(arguments: Transport.allCases)
    func recordExportsWhileRecordingWithZeroViolations(transport: Transport) async throws {
        let receiver = try await OTLPTestReceiver.start()
        defer { receiver.stop() }
        let nodeprof = try builtProduct("nodeprof")
        let dir = try TemporaryDirectory()
        let workload = try ChildProcess(try buildCallTreeWorkload(in: dir))
        defer { workload.kill() }
        let output = dir.file("cpu.pb.gz")
        let endpoint: [String] =
            switch transport {
            case .grpc: ["--otlp-endpoint", receiver.grpcEndpoint, "--otlp-protocol", "grpc"]
            // No path and no protocol flag: http/protobuf, /v1development/profiles appended.
            case .http: ["--otlp-endpoint", receiver.httpEndpoint]
            }
        let run = try runProgramCapturing(
            nodeprof,
            [
                "record", "--pid", "\(workload.pid)", "--duration", "4s", "--frequency", "499",
                "--export-interval", "1s", "--otlp-header", "x-tenant=team a", "--output", output, "--top", "3",
            ] + endpoint)
        workload.kill()
        #expect(run.status == 0, "nodeprof record failed: \(run.stderr)")

        let records = try await receiver.records()
        #expect(records.count >= 3, "one request per 1 s window over 4 s; got \(records.count)")
        for record in records {
            #expect(record.transport == transport.rawValue)
            #expect(record.outcome == "ok")
            #expect(record.violations == [], "request \(record.index): \(record.violations)")
            #expect(record.gzip)
            #expect(record.headers["x-tenant"] == "team a")
        }

        // Every recorded sample arrived exactly once: the summary's count equals the sum of
        // what the receiver decoded.
        let recorded = try #require(
            run.stderr.firstMatch(of: /recorded (\d+) samples/).flatMap { Int($0.1) }, "summary: \(run.stderr)")
        #expect(records.map { $0.summary?.totalWeight ?? 0 }.reduce(0, +) == recorded)
        #expect(run.stderr.contains("exported \(recorded) samples"), "\(run.stderr)")

        // The receiver's hottest leaf function is pprof's.
        var weights: [String: Int] = [:]
        for record in records {
            for function in record.summary?.topFunctions ?? [] { weights[function.name, default: 0] += function.weight }
        }
        let receiverTop = try #require(weights.max { $0.value < $1.value }?.key)
        let top = try goToolPprof(["-top", "-nodecount=1", output])
        let pprofTop = try #require(
            top.split(separator: "\n").last { $0.contains("%") && !$0.contains("flat%") }?.split(separator: " ").last
                .map(String.init), "go tool pprof -top:\n\(top)")
        #expect(receiverTop == pprofTop)
        #expect(receiverTop == "leaf_a")
    }

    /// --output FILE.otlp writes one request that the official decoder and the checker accept,
    /// with timestamps and, smaller, with --no-timestamps.
    @Test func outputOTLPFilePassesTheConformanceChecker() throws {
        let nodeprof = try builtProduct("nodeprof")
        let dir = try TemporaryDirectory()
        let workload = try ChildProcess(try buildCallTreeWorkload(in: dir))
        defer { workload.kill() }
        // Two recordings of one workload sample differently on a loaded machine: compare the
        // bytes per recorded sample.
        var sizes: [Double] = []
        for extra in [[], ["--no-timestamps"]] {
            let output = dir.file("cpu\(extra.count).otlp")
            let run = try runProgramCapturing(
                nodeprof,
                ["record", "--pid", "\(workload.pid)", "--duration", "2s", "--output", output, "--top", "0"] + extra)
            #expect(run.status == 0, "nodeprof record failed: \(run.stderr)")
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
            #expect(!bytes.isEmpty)
            let check = try otlpCheck(bytes)
            #expect(check.violations == [])
            #expect(check.recordedSamples > 0)
            sizes.append(Double(bytes.count) / Double(max(1, check.recordedSamples)))
        }
        #expect(sizes[1] < sizes[0], "bytes per sample, --no-timestamps second: \(sizes)")
    }

    @Test func badEndpointFlagsAreOneLineErrors() throws {
        let nodeprof = try builtProduct("nodeprof")
        for (arguments, expected) in [
            (["--otlp-endpoint", "not a url"], "not a URL"),
            (
                ["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-protocol", "carrier-pigeon"],
                "grpc or http/protobuf"
            ),
            (["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-header", "novalue"], "key=value"),
            (["--otlp-endpoint", "http://127.0.0.1:4318", "--export-interval", "100ms"], "at least 1s"),
        ] {
            let run = try runProgramCapturing(nodeprof, ["record", "--duration", "1s"] + arguments)
            #expect(run.status != 0)
            #expect(run.stderr.contains(expected), "\(arguments): \(run.stderr)")
        }
    }
}
