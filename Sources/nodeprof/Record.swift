import Agent
import ArgumentParser
import Dispatch
import Foundation
import NodeprofCore
import Profiles
import Sampling
import Symbolization

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Profile this machine (or some processes) for a while and print where the CPU went.",
        discussion: """
            Samples every CPU (or only the processes given with --pid) at --frequency Hz, \
            with kernel and user stacks, then prints the top functions and, with --output, \
            writes the profile. Ctrl-C stops early and still writes the profile.

            Output formats, chosen by the file extension:
              .pb.gz   pprof (gzip protobuf): go tool pprof -http=: FILE

            Examples:
              nodeprof record                                  # whole machine, 10 s
              nodeprof record --duration 30s --output cpu.pb.gz
              nodeprof record --pid 1234 --pid 5678 --frequency 999 --top 40
            """)

    @Option(help: "How long to record: 10s, 1.5m, 500ms, 2h, or seconds.")
    var duration = DurationArgument(seconds: 10)

    @Option(help: "Samples per second on each CPU (1 to kernel.perf_event_max_sample_rate).")
    var frequency: UInt64 = 99

    @Option(name: .customLong("pid"), help: "Record only this process (repeatable). Default: the whole machine.")
    var pids: [Int32] = []

    @Option(
        help: ArgumentHelp(
            "Write the profile to FILE; the extension picks the format (.pb.gz = pprof).", valueName: "FILE"))
    var output: String?

    @Option(help: "Rows in the top-functions table (0 prints none).")
    var top = 20

    @Flag(help: "Keep samples of the idle task (swapper) instead of dropping and counting them.")
    var includeIdle = false

    @Option(
        name: .customLong("ring-buffer-mib"),
        help: ArgumentHelp(
            "Ring buffer size in MiB between the kernel and nodeprof (a power of two).", valueName: "MiB"))
    var ringBufferMiB: UInt32?

    func validate() throws {
        guard frequency >= 1 else { throw ValidationError("--frequency must be at least 1 Hz") }
        guard top >= 0 else { throw ValidationError("--top must be 0 or more") }
        if let mib = ringBufferMiB, mib < 1 || mib > 1024 || mib & (mib - 1) != 0 {
            throw ValidationError("--ring-buffer-mib must be a power of two between 1 and 1024")
        }
        for pid in pids {
            guard pid > 0 else { throw ValidationError("--pid \(pid): a process id is a positive number") }
            if kill(pid, 0) != 0 && errno == ESRCH {
                throw ValidationError("--pid \(pid): no such process; check the id with `ps -p \(pid)`")
            }
        }
        if let output {
            _ = try OutputFormat(path: output)
            // Check now, not after the recording: a profile that cannot be written is lost.
            let directory = URL(fileURLWithPath: output).deletingLastPathComponent().path
            if access(directory, W_OK) != 0 {
                throw ValidationError(
                    "--output \(output): cannot write to \(directory) (\(String(cString: strerror(errno)))); choose a writable directory"
                )
            }
        }
    }

    func run() throws {
        let format = try output.map(OutputFormat.init(path:))
        let stop = StopSignal()
        let signals = installStopSignals(stop)
        defer { signals.forEach { $0.cancel() } }

        let configuration = SamplerConfiguration(
            frequency: frequency, processIDs: pids.isEmpty ? nil : pids, dropIdle: !includeIdle,
            ringBufferBytes: ringBufferMiB.map { $0 << 20 })
        let recording = try Recording(durationSeconds: duration.seconds, sampler: configuration)
        let target = pids.isEmpty ? "the whole machine" : "pid " + pids.map(String.init).joined(separator: ", ")
        Terminal.status("recording \(target) at \(frequency) Hz for \(duration) (Ctrl-C stops early)")
        let result = try recording.run(stop: stop) { Terminal.progress($0) }
        Terminal.endProgress()
        var profile = result.profile
        profile.comments.insert("nodeprof record " + CommandLine.arguments.dropFirst(2).joined(separator: " "), at: 0)

        Terminal.status(Summary(result: result).text)
        if profile.sampleCount == 0 {
            Terminal.status(
                pids.isEmpty
                    ? "no samples: nothing but the idle task ran (--include-idle keeps idle samples)"
                    : "no samples: the selected processes did not run on a CPU while recording")
        } else if top > 0 {
            print(TopFunctions(profile: profile, limit: top).render())
        }
        if let output, let format {
            try format.write(profile, to: output)
            Terminal.status("wrote \(output): \(format.hint(output))")
        }
    }
}

/// Output file formats, by extension.
enum OutputFormat {
    case pprof

    init(path: String) throws {
        if path.hasSuffix(".pb.gz") {
            self = .pprof
        } else {
            throw ValidationError("--output \(path): unknown format; use a .pb.gz file name (pprof)")
        }
    }

    func write(_ profile: Profile, to path: String) throws {
        switch self {
        case .pprof: try PprofEncoder().write(profile, to: path)
        }
    }

    func hint(_ path: String) -> String {
        switch self {
        case .pprof: "open it with `go tool pprof -http=: \(path)`"
        }
    }
}

/// One-paragraph account of a recording: samples, processes, and every loss.
struct Summary {
    let result: RecordingResult

    var text: String {
        let c = result.counters
        let s = result.symbolization
        let seconds = Double(result.profile.durationNanos) / 1e9
        let processes = Set(result.profile.samples.map(\.pid)).count
        var parts = [
            "recorded \(result.profile.sampleCount) samples of \(processes) processes in \(String(format: "%.1f", seconds)) s"
        ]
        parts.append("lost \(c.lostRingBufferFull) (ring buffer full)")
        if c.malformedRecords > 0 { parts.append("malformed \(c.malformedRecords)") }
        if c.internalErrors > 0 { parts.append("lost to internal errors \(c.internalErrors) (please report)") }
        parts.append("idle dropped \(c.idleDropped)")
        var frames = 0
        var unsymbolized = 0
        for sample in result.profile.samples {
            frames += sample.frames.count
            unsymbolized += sample.frames.count { !$0.isSymbolized }
        }
        if frames > 0 {
            parts.append(String(format: "unsymbolized frames %.1f%%", 100 * Double(unsymbolized) / Double(frames)))
        }
        if result.samplesWithCutStacks > 0 {
            // Frame-pointer walks through code built without frame pointers.
            parts.append("\(result.samplesWithCutStacks) stacks cut at a broken frame-pointer chain")
        }
        if let error = s.kernelSymbolsError {
            parts.append("kernel frames unsymbolized: \(error)")
        }
        if s.processesUnknown > 0 {
            parts.append("\(s.processesUnknown) processes exited before their maps were read")
        }
        if result.stoppedEarly { parts.append("stopped early") }
        return parts.joined(separator: "; ")
    }
}

/// Ctrl-C and SIGTERM stop the recording; a second Ctrl-C exits at once.
func installStopSignals(_ stop: StopSignal) -> [any DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            if stop.isStopped { _exit(130) }
            stop.stop()
        }
        source.resume()
        return source
    }
}
