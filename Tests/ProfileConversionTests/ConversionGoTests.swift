import Foundation
import NodeprofCore
import TestSupport
import Testing

@testable import ProfileConversion

/// A profile written by another tool (Go's runtime/pprof, then `go tool pprof -proto`)
/// survives pprof -> OTLP -> pprof, and `go tool pprof` reads the result.
///
/// Needs Go (`golang-go`); fails rather than skips without it, like GoPprofTests.
@Suite(.serialized, .machineExclusive) struct ConversionGoTests {
    /// Burns CPU in two goroutines with pprof labels for about a second of CPU time and
    /// writes a CPU profile to the path in its first argument.
    static let program = #"""
        package main

        import (
        	"context"
        	"os"
        	"runtime/pprof"
        	"sync"
        	"time"
        )

        //go:noinline
        func spin(n int) int {
        	s := 0
        	for i := 0; i < n; i++ {
        		s += i * i % 7
        	}
        	return s
        }

        //go:noinline
        func hotLoop(deadline time.Time) int {
        	total := 0
        	for time.Now().Before(deadline) {
        		total += spin(200000)
        	}
        	return total
        }

        //go:noinline
        func coolLoop(deadline time.Time) int {
        	total := 0
        	for time.Now().Before(deadline) {
        		total += spin(20000)
        		time.Sleep(time.Millisecond)
        	}
        	return total
        }

        func main() {
        	f, err := os.Create(os.Args[1])
        	if err != nil {
        		panic(err)
        	}
        	if err := pprof.StartCPUProfile(f); err != nil {
        		panic(err)
        	}
        	deadline := time.Now().Add(800 * time.Millisecond)
        	var wg sync.WaitGroup
        	results := make([]int, 2)
        	wg.Add(2)
        	go pprof.Do(context.Background(), pprof.Labels("worker", "hot"), func(context.Context) {
        		defer wg.Done()
        		results[0] = hotLoop(deadline)
        	})
        	go pprof.Do(context.Background(), pprof.Labels("worker", "cool"), func(context.Context) {
        		defer wg.Done()
        		results[1] = coolLoop(deadline)
        	})
        	wg.Wait()
        	pprof.StopCPUProfile()
        	f.Close()
        	if results[0] == 42 {
        		println(results[1])
        	}
        }
        """#

    /// The Go program's profile, built and run once per test run.
    final class GoProfile: @unchecked Sendable {  // immutable after init
        let directory: TemporaryDirectory
        let environment: [String: String]
        let go: String
        /// The runtime's own file.
        let runtimeProfile: String
        /// The same after `go tool pprof -proto` (symbolized by pprof, main binary by path).
        let pprofProfile: String

        init() throws {
            go = try goTool()
            directory = try TemporaryDirectory(prefix: "nodeprof-convert-go")
            var environment = ProcessInfo.processInfo.environment
            for (variable, name) in [("HOME", "home"), ("GOCACHE", "gocache"), ("GOPATH", "gopath")] {
                environment[variable] = directory.file(name)
                try FileManager.default.createDirectory(
                    atPath: directory.file(name), withIntermediateDirectories: true)
            }
            environment["PPROF_TMPDIR"] = directory.file("home")
            environment["GOFLAGS"] = "-mod=mod"
            environment["GOTOOLCHAIN"] = "local"
            environment["GOPROXY"] = "off"
            self.environment = environment

            try ConversionGoTests.program.write(toFile: directory.file("main.go"), atomically: true, encoding: .utf8)
            try "module burn\n\ngo 1.19\n".write(toFile: directory.file("go.mod"), atomically: true, encoding: .utf8)
            let binary = directory.file("burn")
            _ = try runProgram(
                "/bin/sh", ["-c", #"cd "$0" && "$1" build -o "$2" ."#, directory.path, go, binary],
                environment: environment)
            runtimeProfile = directory.file("cpu.prof")
            _ = try runProgram(binary, [runtimeProfile], environment: environment)
            // -proto writes the profile to standard output; the binary's absolute path becomes
            // the main mapping's file name.
            pprofProfile = directory.file("out.pb.gz")
            _ = try runProgram(
                "/bin/sh",
                ["-c", #""$0" tool pprof -proto "$1" "$2" > "$3""#, go, binary, runtimeProfile, pprofProfile],
                environment: environment)
        }

        func pprof(_ arguments: [String], _ file: String) throws -> String {
            try runProgram(go, ["tool", "pprof"] + arguments + [file], environment: environment)
        }

        /// Writes `bytes` next to the profiles and returns the path.
        func write(_ bytes: [UInt8], _ name: String) throws -> String {
            let path = directory.file(name)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
    }

    static let shared = Result { try GoProfile() }

    @Test(arguments: ["runtime", "go tool pprof -proto"])
    func goProfileSurvivesTheRoundTrip(source: String) throws {
        let go = try Self.shared.get()
        let path = source == "runtime" ? go.runtimeProfile : go.pprofProfile
        let input = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let original = try CanonicalPprof(pprofBytes: input)
        #expect(original.samples.count > 0, "the Go program recorded no samples")
        #expect(original.sampleTypes.map(\.type) == ["samples", "cpu"])

        let otlp = try PprofOTLPConversion.otlpRequest(fromPprof: input)
        let back = try PprofOTLPConversion.pprof(fromOTLPRequest: otlp)
        original.expectEqual(try CanonicalPprof(pprofBytes: back))

        // The worker labels of pprof.Do survive as labels.
        let labels = Set(original.samples.flatMap(\.labels).filter { $0.key == "worker" }.compactMap(\.string))
        #expect(labels.isSubset(of: ["hot", "cool"]) && labels.contains("hot"))
    }

    @Test func goToolPprofReadsTheRoundTrip() throws {
        let go = try Self.shared.get()
        let input = try [UInt8](Data(contentsOf: URL(fileURLWithPath: go.pprofProfile)))
        let back = try go.write(
            PprofOTLPConversion.pprof(fromOTLPRequest: PprofOTLPConversion.otlpRequest(fromPprof: input)),
            "roundtrip.pb.gz")

        let before = try Self.table(go.pprof(["-top", "-nodecount=10", "-symbolize=none"], go.pprofProfile))
        let after = try Self.table(go.pprof(["-top", "-nodecount=10", "-symbolize=none"], back))
        #expect(after.first == before.first)
        #expect(after.first?.hasSuffix("main.spin") == true, "top function: \(after.first ?? "none")")
        #expect(after == before)

        let tags = try go.pprof(["-tags", "-symbolize=none"], back)
        #expect(tags.contains("worker:"), "\(tags)")
        #expect(tags.contains("hot"), "\(tags)")
    }

    @Test func convertedGoProfileConforms() throws {
        let go = try Self.shared.get()
        for path in [go.runtimeProfile, go.pprofProfile] {
            let input = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let request = try PprofOTLPConversion.otlpRequest(fromPprof: input)
            let report = try conformanceCheck(request)
            // The only violation allowed: a sample in [vdso], whose mapping has nothing to hash.
            #expect(report.unexpectedViolations(in: try decodeRequest(request)) == [], "\(path): \(report.output)")
            #expect(report.status == 0 || !report.violations.isEmpty, "\(report.output)")
        }
    }

    /// The rows of a `pprof -top` table (everything after the header line).
    static func table(_ output: String) -> [String] {
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let header = lines.firstIndex(where: { $0.hasPrefix("flat") }) else { return [] }
        return Array(lines[(header + 1)...])
    }
}
