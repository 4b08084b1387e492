import Agent
import ArgumentParser
import Dispatch
import Export
import Foundation
import Logging
import NodeprofCore
import ProfileConversion
import Profiles
import Recording
import Sampling
import Symbolization

struct Record: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Profile this machine (or some processes) for a while and print where the CPU went.",
        discussion: """
            Samples every CPU (or only the processes given with --pid) at --frequency Hz, \
            with kernel and user stacks, then prints the top functions and, with --output, \
            writes the profile. Ctrl-C stops early and still writes the profile.

            Output formats, chosen by the file extension:
              .pb.gz   pprof (gzip protobuf): go tool pprof -http=: FILE
              .otlp    one OTLP ExportProfilesServiceRequest (binary protobuf)
              .json    the same request in the OTLP/JSON mapping, for humans

            Exporting to an OpenTelemetry collector (OTLP profiles):
              --otlp-endpoint URL exports while recording, every
              --export-interval. gRPC or HTTP/protobuf: --otlp-protocol, else
              grpc for port 4317, else http/protobuf (a URL without a path
              gets /v1development/profiles). http:// is plaintext, https://
              TLS. The OTEL_EXPORTER_OTLP_* variables (ENDPOINT, PROTOCOL,
              HEADERS, TIMEOUT, COMPRESSION, CERTIFICATE, CLIENT_CERTIFICATE,
              CLIENT_KEY, INSECURE, and their PROFILES_ forms) apply; flags
              win, and a set ENDPOINT variable turns exporting on.

            Examples:
              nodeprof record                                  # whole machine, 10 s
              nodeprof record --duration 30s --output cpu.pb.gz
              nodeprof record --pid 1234 --pid 5678 --frequency 999 --top 40
              nodeprof record --duration 5m --otlp-endpoint http://collector:4317
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

    @OptionGroup(title: "OTLP export")
    var otlp: OTLPOptions

    @Option(help: "How often to export while recording (with --otlp-endpoint).")
    var exportInterval = DurationArgument(seconds: 10)

    @Flag(
        help: ArgumentHelp(
            "OTLP (export, .otlp, .json) without per-sample timestamps: a count per stack and thread, as pprof.",
            discussion: "About a quarter of the size; backends lose the timeline (see BENCHMARKS.md)."))
    var noTimestamps = false

    func validate() throws {
        guard frequency >= 1 else { throw ValidationError("--frequency must be at least 1 Hz") }
        guard top >= 0 else { throw ValidationError("--top must be 0 or more") }
        guard exportInterval.seconds >= 1 else {
            throw ValidationError("--export-interval must be at least 1s (each interval sends its own request)")
        }
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
                    "--output \(output): cannot write to \(directory) (\(SystemCall.errnoName(errno))); choose a writable directory"
                )
            }
        }
    }

    func run() async throws {
        let format = try output.map(OutputFormat.init(path:))
        let exportConfiguration = try otlp.exporterConfiguration()
        let stop = StopSignal()
        let signals = installStopSignals(stop)
        defer { signals.forEach { $0.cancel() } }

        let configuration = SamplerConfiguration(
            frequency: frequency, processIDs: pids.isEmpty ? nil : pids, dropIdle: !includeIdle,
            ringBufferBytes: ringBufferMiB.map { $0 << 20 })
        let builder = OTLPBuilder(
            configuration: .init(
                hostName: hostName(), kernelBuildID: KernelSymbols.buildID(), scopeVersion: NodeprofVersion.string,
                sampleTimestamps: !noTimestamps))
        let export = try exportConfiguration.map { configuration throws in
            ProfileExport(
                builder: builder, exporter: try OTLPExporter(configuration: configuration, logger: Self.logger),
                logger: Self.logger)
        }
        let target = pids.isEmpty ? "the whole machine" : "pid " + pids.map(String.init).joined(separator: ", ")
        let announcement = "recording \(target) at \(frequency) Hz for \(duration) (Ctrl-C stops early)"
        if let export {
            Terminal.status(
                "exporting to \(export.exporter.configuration.endpoint) "
                    + "(\(export.exporter.configuration.transportProtocol)) every \(exportInterval)")
        }
        // Closed windows leave the recording thread through a bounded stream (two wait; more
        // are dropped and counted) to the task that encodes and enqueues them.
        let (windows, windowInput) = AsyncStream.makeStream(of: Profile.self, bufferingPolicy: .bufferingOldest(2))
        let window = export.map { _ in
            RecordingWindow(seconds: exportInterval.seconds) { windowInput.yield($0) }
        }
        // The sampler is confined to one thread that blocks in ring-buffer polls: create,
        // run and drop it on a dedicated thread, off the async pool.
        let seconds = duration.seconds
        let record = { @Sendable () async throws -> RecordingResult in
            defer { windowInput.finish() }
            return try await runOnDedicatedThread {
                let recording = try Recording(durationSeconds: seconds, sampler: configuration)
                Terminal.status(announcement)
                return try recording.run(stop: stop, window: window) { Terminal.progress($0) }
            }
        }
        let result: RecordingResult
        if let export {
            result = try await withThrowingTaskGroup(of: RecordingResult?.self) { group in
                group.addTask {
                    try await export.exporter.run()
                    return nil
                }
                async let submitted: Void = { for await profile in windows { await export.submit(profile) } }()
                let result = try await record()
                await submitted
                Terminal.endProgress()
                Terminal.status("sending the last profiles (up to 10 s)")
                _ = await export.exporter.flush(timeout: .seconds(10))
                group.cancelAll()
                try await group.waitForAll()
                Terminal.status(ExportSummary(statistics: await export.exporter.statistics).text)
                return result
            }
        } else {
            windowInput.finish()
            result = try await record()
            Terminal.endProgress()
        }
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
            try format.write(profile, to: output, builder: builder)
            Terminal.status("wrote \(output): \(format.hint(output))")
        }
    }

    static let logger: Logger = {
        var logger = Logger(label: "nodeprof.export")
        logger.logLevel = .warning
        return logger
    }()
}

/// This machine's name (`host.name`).
func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    return String(cString: buffer)
}

/// One line on what the exporter did.
struct ExportSummary {
    let statistics: OTLPExporterStatistics

    var text: String {
        let s = statistics
        var parts = [
            "exported \(s.succeeded.samples + s.partiallySucceeded.samples) samples in "
                + "\(s.succeeded.requests + s.partiallySucceeded.requests) requests"
        ]
        if s.retries > 0 { parts.append("\(s.retries) retries") }
        if s.partiallySucceeded.requests > 0 {
            parts.append("receiver rejected \(s.rejectedProfiles) profiles (partial success)")
        }
        for (reason, counts) in s.dropped.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where counts.requests > 0 {
            parts.append("dropped \(counts.samples) samples (\(counts.requests) requests, \(reason))")
        }
        // What flush left behind is dropped at shutdown and counted above as "shutdown".
        if let error = s.lastError { parts.append("last error: \(error)") }
        return parts.joined(separator: "; ")
    }
}

/// Output file formats, by extension.
enum OutputFormat {
    case pprof
    case otlp
    case otlpJSON

    init(path: String) throws {
        if path.hasSuffix(".pb.gz") {
            self = .pprof
        } else if path.hasSuffix(".otlp") {
            self = .otlp
        } else if path.hasSuffix(".json") {
            self = .otlpJSON
        } else {
            throw ValidationError(
                "--output \(path): unknown format; use .pb.gz (pprof), .otlp (OTLP protobuf) or .json (OTLP JSON)")
        }
    }

    func write(_ profile: Profile, to path: String, builder: OTLPBuilder) throws {
        switch self {
        case .pprof:
            try PprofEncoder().write(profile, to: path)
        case .otlp:
            try writeAtomically(builder.encodeSingleRequest(profile).bytes, to: path)
        case .otlpJSON:
            let request = try builder.encodeSingleRequest(profile)
            try writeAtomically(OTLPJSON.json(fromOTLPRequest: request.bytes), to: path)
        }
    }

    func hint(_ path: String) -> String {
        switch self {
        case .pprof: "open it with `go tool pprof -http=: \(path)`"
        case .otlp: "one OTLP profiles request; `nodeprof convert \(path) cpu.pb.gz` makes a pprof of it"
        case .otlpJSON: "the OTLP/JSON mapping of the request"
        }
    }

    private func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ValidationError("cannot write \(path): \(error.localizedDescription)")
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
