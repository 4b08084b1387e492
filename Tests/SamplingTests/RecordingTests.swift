import Agent
import Foundation
import Glibc
import NodeprofCore
import ProcessTable
import Profiles
import Recording
import Sampling
import TestSupport
import Testing

/// End to end on the real kernel: record real processes and check what the profile says.
@Suite(.serialized, .machineExclusive)
struct RecordingTests {
    func record(pid: Int32, seconds: Double, frequency: UInt64 = 999) throws -> RecordingResult {
        let recording = try Recording(
            durationSeconds: seconds, sampler: .init(frequency: frequency, processIDs: [pid]))
        return try recording.run(stop: StopSignal()) { _ in }
    }

    /// main -> work_a -> leaf_a burns 2/3, main -> work_b -> leaf_b 1/3 of the CPU time.
    @Test func callTreeRatioAndCallers() throws {
        let dir = try TemporaryDirectory()
        let workload = try ChildProcess(try buildCallTreeWorkload(in: dir))
        let result = try record(pid: workload.pid, seconds: 4)
        workload.kill()

        let samples = result.profile.samples
        #expect(samples.count > 1000, "999 Hz for 4 s of a busy thread: got \(samples.count) samples")
        var a = 0, b = 0
        for sample in samples {
            let user = sample.frames.filter { $0.kind == .native }.compactMap(\.function)
            guard user.count >= 3 else { continue }
            if Array(user.prefix(3)) == ["leaf_a", "work_a", "main"] { a += 1 }
            if Array(user.prefix(3)) == ["leaf_b", "work_b", "main"] { b += 1 }
        }
        let inLeaves = Double(a + b) / Double(samples.count)
        #expect(inLeaves >= 0.9, "samples ending in leaf_a/leaf_b with the right callers: \(a + b)/\(samples.count)")
        let ratio = Double(a) / Double(max(b, 1))
        #expect(abs(ratio - 2) <= 0.2, "leaf_a:leaf_b should be 2:1 within 10%, got \(a):\(b) = \(ratio)")
        #expect(result.counters.lostRingBufferFull == 0)
    }

    /// 40 frames of 512 bytes: past the BPF walker's bulk stack copy, walked record by record.
    @Test func deepStackWithLargeFramesReachesMain() throws {
        let dir = try TemporaryDirectory()
        let workload = try ChildProcess(try buildDeepStackWorkload(in: dir))
        let result = try record(pid: workload.pid, seconds: 2, frequency: 499)
        workload.kill()

        let samples = result.profile.samples
        try #require(samples.count > 200)
        let complete = samples.filter { sample in
            let user = sample.frames.filter { $0.kind == .native }.map { $0.function ?? "?" }
            guard user.first == "spin", let main = user.firstIndex(of: "main") else { return false }
            return user[1..<main].count == 40 && user[1..<main].allSatisfy { $0 == "descend" }
        }
        #expect(
            Double(complete.count) >= 0.9 * Double(samples.count),
            "spin <- 40 x descend <- main in \(complete.count)/\(samples.count)")
    }

    /// A process living in read(2) shows kernel frames symbolized from /proc/kallsyms.
    @Test func syscallWorkloadHasKernelFrames() throws {
        let dir = try TemporaryDirectory()
        let workload = try ChildProcess(try buildSyscallWorkload(in: dir))
        let result = try record(pid: workload.pid, seconds: 2, frequency: 499)
        workload.kill()

        let samples = result.profile.samples
        try #require(samples.count > 200)
        let withKernel = samples.filter { $0.frames.contains { $0.kind == .kernel } }
        #expect(
            Double(withKernel.count) >= 0.5 * Double(samples.count),
            "kernel frames in \(withKernel.count)/\(samples.count)")
        let kernelNames = Set(withKernel.flatMap { $0.frames.filter { $0.kind == .kernel }.compactMap(\.function) })
        let readPath = ["vfs_read", "ksys_read", "__x64_sys_read", "read_iter_zero", "read_zero"]
        #expect(
            readPath.contains { kernelNames.contains($0) },
            "expected the read(2) path among \(kernelNames.sorted().prefix(30))")
        // Kernel frames come first (leaf first), then the user frames of the same sample.
        for sample in withKernel.prefix(50) {
            let kinds = sample.frames.map(\.kind)
            if let firstUser = kinds.firstIndex(of: .native) {
                #expect(!kinds[firstUser...].contains(.kernel))
            }
        }
        // The user stack of a sample taken in the kernel starts from the task's saved user
        // registers: its leaf is libc's read(2) wrapper. (That wrapper sets up no frame, so a
        // frame-pointer walk skips its caller, main: the DWARF unwinder's job.)
        let wrappers: Set<String> = ["read", "__libc_read", "__read", "__GI___libc_read"]
        let fromRegisters = withKernel.filter { sample in
            sample.frames.first { $0.kind == .native }?.function.map(wrappers.contains) ?? false
        }
        #expect(
            Double(fromRegisters.count) >= 0.9 * Double(withKernel.count),
            "user leaf is read(2) in \(fromRegisters.count)/\(withKernel.count)")
        let kernelFrames = withKernel.flatMap { $0.frames.filter { $0.kind == .kernel } }
        let symbolized = kernelFrames.filter(\.isSymbolized).count
        #expect(
            Double(symbolized) >= 0.99 * Double(kernelFrames.count),
            "kernel frames symbolized: \(symbolized)/\(kernelFrames.count)")
    }

    /// The CLI end to end: record a PID, print the table, write pprof that go tool pprof reads.
    @Test func cliWritesPprofThatGoToolPprofReads() throws {
        let nodeprof = try builtProduct("nodeprof")
        let dir = try TemporaryDirectory()
        let workload = try ChildProcess(try buildCallTreeWorkload(in: dir))
        let output = dir.file("cpu.pb.gz")
        let run = try runProgramCapturing(
            nodeprof,
            [
                "record", "--pid", "\(workload.pid)", "--duration", "3s", "--frequency", "499", "--output", output,
                "--top", "5",
            ])
        workload.kill()
        #expect(run.status == 0, "nodeprof record failed: \(run.stderr)")
        #expect(run.stdout.contains("leaf_a") && run.stdout.contains("leaf_b"), "top table:\n\(run.stdout)")
        #expect(run.stderr.contains("wrote \(output)"))

        let top = try goToolPprof(["-top", "-nodecount=10", output])
        let flat = pprofFlatPercent(top)
        let a = try #require(flat["leaf_a"], "go tool pprof -top:\n\(top)")
        let b = try #require(flat["leaf_b"], "go tool pprof -top:\n\(top)")
        #expect(a > 55 && a < 75, "leaf_a flat% \(a)")
        #expect(b > 25 && b < 40, "leaf_b flat% \(b)")
        let traces = try goToolPprof(["-traces", output])
        #expect(traces.contains("work_a") && traces.contains("main"))
    }

    /// Ctrl-C ends a long recording early and the profile is still written.
    @Test func interruptStopsEarlyAndStillWrites() throws {
        let nodeprof = try builtProduct("nodeprof")
        let dir = try TemporaryDirectory()
        let output = dir.file("early.pb.gz")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: nodeprof)
        process.arguments = ["record", "--duration", "120s", "--output", output, "--top", "3"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let started = Date()
        try process.run()
        sleep(2)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(Date().timeIntervalSince(started) < 30, "SIGINT must end the recording promptly")
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        #expect(size > 0, "the profile must be written after Ctrl-C")
        let top = try goToolPprof(["-top", "-nodecount=3", output])
        #expect(top.contains("Total samples") || top.contains("Showing nodes"), "\(top)")
    }

    @Test func cliErrorsAreOneLineWithTheFix() throws {
        let nodeprof = try builtProduct("nodeprof")
        // An unused pid: the highest pid_max value is never handed out before wrap-around.
        let unknown = try runProgramCapturing(nodeprof, ["record", "--pid", "4194303", "--duration", "1s"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("no such process"), "\(unknown.stderr)")

        let format = try runProgramCapturing(nodeprof, ["record", "--output", "/tmp/x.txt"])
        #expect(format.status != 0)
        #expect(format.stderr.contains(".pb.gz"), "\(format.stderr)")

        let directory = try runProgramCapturing(nodeprof, ["record", "--output", "/nonexistent/dir/cpu.pb.gz"])
        #expect(directory.status != 0)
        #expect(directory.stderr.contains("cannot write to /nonexistent/dir"), "\(directory.stderr)")

        let frequency = try runProgramCapturing(nodeprof, ["record", "--frequency", "10000000", "--duration", "1s"])
        #expect(frequency.status != 0)
        #expect(frequency.stderr.contains("perf_event_max_sample_rate"), "\(frequency.stderr)")

        // Drop root: the privilege check must say what to do, not crash in libbpf. The binary
        // is copied where user nobody can reach it, wherever the checkout lives.
        let reachable = try TemporaryDirectory()
        chmod(reachable.path, 0o755)
        let copy = reachable.file("nodeprof")
        try FileManager.default.copyItem(atPath: nodeprof, toPath: copy)
        let unprivileged = try runProgramCapturing(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", copy, "record", "--duration", "1s"])
        #expect(unprivileged.status != 0)
        #expect(unprivileged.stderr.contains("run as root"), "\(unprivileged.stderr)")
    }

    @Test func preflightMessages() throws {
        #expect(throws: SamplerError.self) { try Preflight.checkBTF(path: "/nonexistent/vmlinux") }
        #expect(SamplerError.kernelWithoutBTF.description.contains("CONFIG_DEBUG_INFO_BTF"))
        let refused = SamplerError.perfEventOpen(cpu: 3, errno: EACCES, frequency: 99).description
        #expect(refused.contains("CPU 3") && refused.contains("EACCES") && refused.contains("CAP_PERFMON"))
    }

    /// Parses `go tool pprof -top` rows: "flat flat% sum% cum cum% name".
    func pprofFlatPercent(_ text: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1].hasSuffix("%"), let pct = Double(fields[1].dropLast()) else { continue }
            result[fields[5...].joined(separator: " "), default: 0] += pct
        }
        return result
    }
}
