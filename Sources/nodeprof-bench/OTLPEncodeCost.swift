import Agent
import ArgumentParser
import Foundation
import Gzip
import NodeprofCore
import Profiles
import Recording
import Sampling
import Symbolization

/// Encoding cost and size of one profile as pprof and as OTLP, from a real recording of
/// this machine or from a synthetic 200-process node.
///
/// Per format, every run times the two stages separately and the report gives the median of
/// each (and of their sum): pprof is `PprofEncoder.serialize` then gzip level 6 (a .pb.gz
/// file); OTLP is `OTLPBuilder.encode` then gzip level 6 of each request (what the HTTP
/// exporter sends). Sizes are deterministic except the random profile ids.
struct OTLPEncodeCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otlp-encode", abstract: "Measure OTLP and pprof encoding of one profile (prints JSON).")

    enum Source: String, ExpressibleByArgument, CaseIterable {
        case recording, synthetic
    }

    @Option(help: "recording: this machine, recorded now with BPF (needs root); synthetic: a generated node.")
    var source: Source = .synthetic
    @Option(help: "Seconds recorded (recording) or covered by the samples (synthetic).") var seconds = 60.0
    @Option(help: "Sampling frequency per CPU.") var frequency: UInt64 = 99
    @Option(help: "Encoding runs per measurement; the median is reported.") var repeats = 7
    @Option(help: "Synthetic: processes on the node.") var processes = 200
    @Option(help: "Synthetic: busy CPUs.") var cpus = 16
    @Option(help: "Synthetic: generator seed.") var seed: UInt64 = 1
    @Flag(help: "After recording, print 'recorded' on stderr and wait for a line on stdin before measuring.")
    var holdAfterRecording = false
    @Option(help: "Write the encoded requests and the pprof file into this directory (for check.py).")
    var writeRequests: String?

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        guard (1...1_000_000_000).contains(frequency) else { throw ValidationError("--frequency: 1 Hz to 1 GHz") }
        guard processes >= 1, cpus >= 1 else { throw ValidationError("--processes and --cpus must be at least 1") }
    }

    func run() throws {
        var report: [String: Any] = ["source": source.rawValue, "seconds": seconds, "frequency": frequency]
        let profile: Profile
        switch source {
        case .recording:
            let recording = try Recording(durationSeconds: seconds, sampler: SamplerConfiguration(frequency: frequency))
            let result = try recording.run(stop: StopSignal()) { _ in }
            profile = result.profile
            report["lost_samples"] = result.counters.lostRingBufferFull
            if holdAfterRecording {
                FileHandle.standardError.write(Data("recorded\n".utf8))
                _ = readLine()
            }
        case .synthetic:
            let node = SyntheticNode(
                parameters: .init(processes: processes, cpus: cpus, frequencyHz: frequency, seed: seed))
            profile = node.profile(startTimeNanos: wallClockNanoseconds(), seconds: seconds)
            report["cpus"] = cpus
        }
        report.merge(Self.describe(profile)) { _, new in new }
        report["repeats"] = repeats

        let builder = OTLPBuilder(
            configuration: .init(hostName: Measurement.hostName(), kernelBuildID: KernelSymbols.buildID()))
        let pprof = try measurePprof(profile)
        let otlp = try measureOTLP(profile, builder: builder)
        report["pprof"] = pprof.report(samples: profile.sampleCount)
        report["otlp"] = otlp.report(samples: profile.sampleCount)
        // Under hack/bench-support/alloc-count.c (LD_PRELOAD): heap allocations of one encode each.
        if let counter = Self.allocationCounter() {
            let beforeOTLP = counter()
            _ = try builder.encode(profile)
            let beforePprof = counter()
            _ = try PprofEncoder().serialize(profile)
            let end = counter()
            report["allocations"] = ["otlp_encode": beforePprof - beforeOTLP, "pprof_serialize": end - beforePprof]
        }
        report["otlp_gzip_within_pprof_gzip"] = otlp.gzipBytes <= pprof.gzipBytes

        // Without timestamps: the builder's count-per-sample mode (pprof's information).
        var counting = builder
        counting.configuration.sampleTimestamps = false
        let counted = try counting.encode(profile).map(\.bytes)
        let countedBytes = counted.reduce(0) { $0 + $1.count }
        let countedGzipBytes = try counted.reduce(0) { $0 + (try Gzip.compress($1, level: 6).count) }
        report["otlp_without_timestamps"] = [
            "raw_bytes": countedBytes, "gzip_bytes": countedGzipBytes,
            "raw_bytes_per_sample": Double(countedBytes) / Double(profile.sampleCount),
            "gzip_bytes_per_sample": Double(countedGzipBytes) / Double(profile.sampleCount),
        ]

        // One resource for the whole profile instead of one per process: samples in recorded
        // order, and grouped by process (as the builder orders them when it groups).
        var oneResource: [String: Any] = [:]
        var oneResourceRequests: [OTLPEncodedRequest] = []
        for groupedByProcess in [false, true] {
            let requests = try builder.encode(Self.asOneProcess(profile, groupedByProcess: groupedByProcess))
            let rawBytes = requests.reduce(0) { $0 + $1.bytes.count }
            let gzipBytes = try requests.reduce(0) { $0 + (try Gzip.compress($1.bytes, level: 6).count) }
            oneResource[groupedByProcess ? "grouped_by_process" : "recorded_order"] = [
                "raw_bytes": rawBytes, "gzip_bytes": gzipBytes, "requests": requests.count,
            ]
            if groupedByProcess { oneResourceRequests = requests }
        }
        report["otlp_one_resource"] = oneResource

        if let directory = writeRequests {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            func write(_ bytes: [UInt8], _ name: String) throws {
                try Data(bytes).write(to: URL(fileURLWithPath: directory).appendingPathComponent(name))
            }
            for (index, request) in otlp.requests.enumerated() { try write(request.bytes, "otlp-\(index).bin") }
            for (index, bytes) in counted.enumerated() { try write(bytes, "otlp-no-timestamps-\(index).bin") }
            for (index, request) in oneResourceRequests.enumerated() {
                try write(request.bytes, "otlp-one-resource-\(index).bin")
            }
            try write(pprof.gzipOutput, "profile.pb.gz")
        }
        try Measurement.printJSON(report)
    }

    // MARK: Measurements

    /// Medians of two timed stages, and of their sum, over the runs.
    struct StageTimes {
        var first: [Double] = []
        var second: [Double] = []

        mutating func add(_ first: Duration, _ second: Duration) {
            self.first.append(Measurement.milliseconds(first))
            self.second.append(Measurement.milliseconds(second))
        }

        var firstMedian: Double { Measurement.median(first) }
        var secondMedian: Double { Measurement.median(second) }
        var totalMedian: Double { Measurement.median(zip(first, second).map(+)) }
    }

    struct PprofResult {
        var times: StageTimes
        var rawBytes: Int
        var gzipBytes: Int
        var gzipOutput: [UInt8]

        func report(samples: Int) -> [String: Any] {
            [
                "serialize_ms": times.firstMedian, "gzip_ms": times.secondMedian, "total_ms": times.totalMedian,
                "raw_bytes": rawBytes, "gzip_bytes": gzipBytes,
                "samples_per_second": Double(samples) / (times.totalMedian / 1000),
                "raw_bytes_per_sample": Double(rawBytes) / Double(samples),
                "gzip_bytes_per_sample": Double(gzipBytes) / Double(samples),
            ]
        }
    }

    struct OTLPResult {
        var times: StageTimes
        var requests: [OTLPEncodedRequest]
        var rawBytes: Int
        var gzipBytes: Int

        func report(samples: Int) -> [String: Any] {
            [
                "encode_ms": times.firstMedian, "gzip_ms": times.secondMedian, "total_ms": times.totalMedian,
                "requests": requests.count, "resource_profiles": requests.reduce(0) { $0 + $1.profileCount },
                "raw_bytes": rawBytes, "gzip_bytes": gzipBytes,
                "samples_per_second": Double(samples) / (times.totalMedian / 1000),
                "encode_samples_per_second": Double(samples) / (times.firstMedian / 1000),
                "raw_bytes_per_sample": Double(rawBytes) / Double(samples),
                "gzip_bytes_per_sample": Double(gzipBytes) / Double(samples),
            ]
        }
    }

    func measurePprof(_ profile: Profile) throws -> PprofResult {
        let encoder = PprofEncoder(compressionLevel: 6)
        let clock = ContinuousClock()
        var times = StageTimes()
        var raw: [UInt8] = []
        var compressed: [UInt8] = []
        for _ in 0..<repeats {
            let start = clock.now
            raw = try encoder.serialize(profile)
            let serialized = clock.now
            compressed = try Gzip.compress(raw, level: 6)
            times.add(serialized - start, clock.now - serialized)
        }
        return PprofResult(times: times, rawBytes: raw.count, gzipBytes: compressed.count, gzipOutput: compressed)
    }

    func measureOTLP(_ profile: Profile, builder: OTLPBuilder) throws -> OTLPResult {
        let clock = ContinuousClock()
        var times = StageTimes()
        var requests: [OTLPEncodedRequest] = []
        var gzipBytes = 0
        for _ in 0..<repeats {
            let start = clock.now
            requests = try builder.encode(profile)
            let encoded = clock.now
            gzipBytes = 0
            for request in requests { gzipBytes += try Gzip.compress(request.bytes, level: 6).count }
            times.add(encoded - start, clock.now - encoded)
        }
        return OTLPResult(
            times: times, requests: requests, rawBytes: requests.reduce(0) { $0 + $1.bytes.count },
            gzipBytes: gzipBytes)
    }

    // MARK: Profiles

    /// What the profile holds, for the report.
    static func describe(_ profile: Profile) -> [String: Any] {
        var samplesByProcess: [Int32: Int] = [:]
        var threads: Set<Int32> = []
        var withKernelFrames = 0
        var frames = 0
        var modules: Set<String> = []
        var functions: Set<String> = []
        for sample in profile.samples {
            samplesByProcess[sample.pid, default: 0] += 1
            threads.insert(sample.tid)
            frames += sample.frames.count
            if sample.frames.first?.kind == .kernel { withKernelFrames += 1 }
        }
        // Distinct files and function names over the distinct stacks.
        var seenStacks: Set<[Frame]> = []
        for sample in profile.samples where seenStacks.insert(sample.frames).inserted {
            for frame in sample.frames {
                if let module = frame.module { modules.insert(module.buildID ?? module.path) }
                if let function = frame.function { functions.insert(function) }
            }
        }
        let samples = max(profile.sampleCount, 1)
        return [
            "samples": profile.sampleCount, "processes": samplesByProcess.count, "threads": threads.count,
            "busiest_process_share": Double(samplesByProcess.values.max() ?? 0) / Double(samples),
            "distinct_stacks": profile.distinctStackCount, "files": modules.count, "function_names": functions.count,
            "mean_stack_depth": Double(frames) / Double(samples),
            "kernel_sample_share": Double(withKernelFrames) / Double(samples),
        ]
    }

    /// A copy of `profile` in which every sample belongs to one process, so the builder makes
    /// one resource for everything: an approximation of "one resource per node or container"
    /// that drops per-process attribution (pid, executable name and path). Samples keep their
    /// recorded order, or with `groupedByProcess` are ordered by process (processes in order
    /// of first appearance), the order the builder writes them in when it groups by process.
    static func asOneProcess(_ profile: Profile, groupedByProcess: Bool) -> Profile {
        var copy = Profile(
            startTimeNanos: profile.startTimeNanos, durationNanos: profile.durationNanos,
            frequencyHz: profile.frequencyHz)
        var order = Array(profile.samples.indices)
        if groupedByProcess {
            var rank: [Int32: Int] = [:]
            let ranks = profile.samples.map { sample in
                if let known = rank[sample.pid] { return known }
                rank[sample.pid] = rank.count
                return rank.count - 1
            }
            order.sort { (ranks[$0], $0) < (ranks[$1], $1) }
        }
        for index in order {
            var sample = profile.samples[index]
            sample.pid = 1
            sample.processName = nil
            copy.add(sample)
        }
        return copy
    }

    /// The allocation counter of hack/bench-support/alloc-count.c when it is preloaded.
    static func allocationCounter() -> (@convention(c) () -> UInt64)? {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "nodeprof_alloc_count") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) () -> UInt64).self)
    }
}
