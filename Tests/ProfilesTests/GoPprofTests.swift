import Foundation
import NodeprofCore
import Profiles
import TestSupport
import Testing

/// Checks our pprof files with the reference reader, `go tool pprof`.
///
/// These tests need Go (`golang-go`); they fail rather than skip without it, because a
/// pprof file only the encoder's own tests can read proves little.
@Suite(.machineExclusive) struct GoPprofTests {
    static func profile(_ samples: [Profile.Sample]) -> Profile {
        var profile = Profile(
            startTimeNanos: 1_700_000_000_000_000_000, durationNanos: 5_000_000_000, frequencyHz: 99
        )
        for sample in samples {
            profile.add(sample)
        }
        return profile
    }

    @Test func topShowsFlatAndCumulativeShares() throws {
        let pprof = try GoPprof()
        defer { pprof.cleanUp() }
        let top = try pprof.top(Self.profile(ProfilesSyntheticStacks.basic))

        #expect(
            top["leaf_a"]
                == TopLine(flat: "200", flatPercent: "66.67%", cum: "200", cumPercent: "66.67%")
        )
        #expect(
            top["leaf_b"]
                == TopLine(flat: "100", flatPercent: "33.33%", cum: "100", cumPercent: "33.33%")
        )
        #expect(top["main"]?.cum == "300")
        #expect(top["main"]?.cumPercent == "100%")
        #expect(top["work_a"]?.cumPercent == "66.67%")
        // The unsymbolized frame is shown by its module, on the leaf_b path.
        #expect(top["[libsynth.so]"]?.cum == "100")
    }

    @Test func topShowsKernelAndUnsymbolizedFrames() throws {
        let pprof = try GoPprof()
        defer { pprof.cleanUp() }
        let top = try pprof.top(Self.profile(ProfilesSyntheticStacks.mixed))

        #expect(top["copy_user_generic_string"]?.flat == "40")
        #expect(top["do_syscall_64"]?.cum == "40")
        #expect(
            top["[libsynth.so]"]
                == TopLine(flat: "20", flatPercent: "5.41%", cum: "120", cumPercent: "32.43%"))
        #expect(
            top["fib"] == TopLine(flat: "10", flatPercent: "2.70%", cum: "10", cumPercent: "2.70%"))
        #expect(top["main"]?.cumPercent == "100%")
    }

    @Test func tagsShowTheLabels() throws {
        let pprof = try GoPprof()
        defer { pprof.cleanUp() }
        let tags = try pprof.run(
            ["-tags", "-sample_index=samples"], Self.profile(ProfilesSyntheticStacks.mixed))

        for expected in [
            "pid: Total 370", "tid: Total 370", "thread: Total 370", "process: Total 370",
        ] {
            #expect(tags.contains(expected), "missing '\(expected)' in:\n\(tags)")
        }
        for value in ["): 100", "): 101", "): 102", "): worker-a", "): worker-b", "): app"] {
            #expect(tags.contains(value), "missing '\(value)' in:\n\(tags)")
        }
    }

    @Test func tracesAreLeafFirst() throws {
        let pprof = try GoPprof()
        defer { pprof.cleanUp() }
        let traces = try pprof.run(["-traces"], Self.profile(ProfilesSyntheticStacks.mixed))
        let lines = traces.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let stack = [
            "copy_user_generic_string", "vfs_write", "do_syscall_64", "write", "work_b", "main",
        ]
        let start = try #require(lines.firstIndex { $0.hasSuffix(stack[0]) }, "\(traces)")
        #expect(
            lines[(start + 1)...].prefix(stack.count - 1).map { $0 } == Array(stack.dropFirst()))
    }
}

/// One line of `pprof -top`, as printed.
struct TopLine: Equatable {
    var flat: String
    var flatPercent: String
    var cum: String
    var cumPercent: String
}

/// Runs `go tool pprof` on profiles written to a private temporary directory.
struct GoPprof {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let go: String
    let directory: URL

    init() throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let candidates =
            path.split(separator: ":").map { "\($0)/go" } + ["/usr/bin/go", "/usr/local/go/bin/go"]
        guard let go = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw Failure(
                description:
                    "`go` not found on PATH; `go tool pprof` is needed to check pprof output: run hack/setup"
            )
        }
        self.go = go
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("nodeprof-go-pprof-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func cleanUp() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// `pprof -top` by sample count, keyed by the name column.
    func top(_ profile: Profile) throws -> [String: TopLine] {
        let output = try run(["-top", "-nodecount=20", "-sample_index=samples"], profile)
        var lines: [String: TopLine] = [:]
        var inTable = false
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(
                String.init)
            if fields.first == "flat" {
                inTable = true
                continue
            }
            guard inTable, fields.count >= 6 else { continue }
            let name = fields[5...].joined(separator: " ")
            lines[name] = TopLine(
                flat: fields[0], flatPercent: fields[1], cum: fields[3], cumPercent: fields[4])
        }
        return lines
    }

    /// Writes the profile and runs `go tool pprof <arguments> FILE`; returns stdout.
    func run(_ arguments: [String], _ profile: Profile) throws -> String {
        let file = directory.appendingPathComponent("profile-\(UUID().uuidString).pb.gz")
        try profile.writePprof(to: file.path)

        let stdout = directory.appendingPathComponent("stdout")
        let stderr = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: go)
        // -symbolize=none: the synthetic binaries do not exist; don't look for them.
        process.arguments = ["tool", "pprof", "-symbolize=none"] + arguments + [file.path]
        var environment = ProcessInfo.processInfo.environment
        for variable in ["HOME", "GOCACHE", "GOPATH", "PPROF_TMPDIR", "PPROF_BINARY_PATH"] {
            environment[variable] = directory.path
        }
        environment["GOFLAGS"] = nil
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
        process.waitUntilExit()

        let output = try String(contentsOf: stdout, encoding: .utf8)
        guard process.terminationStatus == 0 else {
            let errors = (try? String(contentsOf: stderr, encoding: .utf8)) ?? ""
            throw Failure(
                description: "go tool pprof \(arguments.joined(separator: " ")) exited with "
                    + "\(process.terminationStatus):\n\(errors)")
        }
        return output
    }
}
