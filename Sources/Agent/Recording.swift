import Glibc
public import NodeprofCore
public import Profiles
public import Sampling
public import Symbolization
import Synchronization

/// A stop request that any thread or signal handler can raise.
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func stop() { flag.store(true, ordering: .relaxed) }
    public var isStopped: Bool { flag.load(ordering: .relaxed) }
}

/// Progress of a running recording, reported about once a second.
public struct RecordingProgress: Sendable {
    public var elapsedSeconds: Double
    public var plannedSeconds: Double?
    public var samples: Int
    public var processes: Int
    public var lost: UInt64
    /// The sampler's counters at this moment (nil when they could not be read).
    public var counters: SamplerCounters?
    /// Process and thread context read so far.
    public var processContexts: ProcessContextStatistics
}

/// What a finished recording produced.
public struct RecordingResult: Sendable {
    public var profile: Profile
    public var counters: SamplerCounters
    public var symbolization: SymbolizerStatistics
    /// Samples whose user stack was cut at a broken frame-pointer chain.
    public var samplesWithCutStacks: Int
    /// True when the recording ended early because a stop was requested.
    public var stoppedEarly: Bool
    /// Process and thread context read (OTEP 4719, 4947).
    public var processContexts: ProcessContextStatistics
}

/// `nodeprof record`: samples for a duration, symbolizes each sample as it arrives (while
/// its process is most likely still alive), and collects a ``Profile``.
///
/// The sampler starts in `init`; ``run(stop:progress:)`` blocks the calling thread until
/// the duration has passed or `stop` is raised, so call it from a dedicated thread.
public final class Recording {
    public let durationSeconds: Double?
    private let sampler: Sampler
    private let symbolizer: Symbolizer
    private let startNanos: UInt64

    public init(durationSeconds: Double?, sampler configuration: SamplerConfiguration) throws(SamplerError) {
        try Preflight.checkPrivileges()
        try Preflight.checkBTF()
        self.durationSeconds = durationSeconds
        self.symbolizer = Symbolizer()
        // Snapshot the selected processes' maps before the first sample arrives; any other
        // process is snapshotted by the symbolizer when its first sample is symbolized.
        for pid in configuration.processIDs ?? [] { symbolizer.observe(pid: pid) }
        self.startNanos = wallClockNanoseconds()
        self.sampler = try Sampler(configuration: configuration)
    }

    /// Records until the duration has passed or `stop` is raised.
    ///
    /// With `window`, the recording is cut into windows of `window.seconds`: each closed
    /// window's profile (its samples, its share of the drop counters, attributes of its
    /// processes) goes to `window.handler` on this thread as soon as it closes, the last
    /// one when the recording stops; the result still holds the whole recording.
    ///
    /// `observeProcess` sees each process's first sample in each window (pid and cgroup id),
    /// on this thread, while the process most likely still runs: the place to read what
    /// /proc says about it.
    public func run(
        stop: StopSignal, window: RecordingWindow? = nil,
        observeProcess: (_ pid: Int32, _ cgroupID: UInt64) -> Void = { _, _ in },
        progress: (RecordingProgress) -> Void
    ) throws(SamplerError) -> RecordingResult {
        let started = monotonicNanoseconds()
        let frequency = sampler.configuration.frequency
        var current = Profile(startTimeNanos: startNanos, frequencyHz: frequency)
        // Windows that only stream (the agent's) keep no whole recording: it would grow forever.
        var total: Profile? =
            window.map { $0.keepsWholeRecording } == true
            ? Profile(startTimeNanos: startNanos, frequencyHz: frequency) : nil
        var windowStarted = started
        var lastReport = started
        var countersAtWindowStart = SamplerCounters()
        let symbolizer = self.symbolizer

        var stacks = SymbolizedStackCache()
        var executables = ExecutablePaths()
        let contexts = ProcessContexts()
        let sampler = self.sampler
        var samplesWithCutStacks = 0
        var samplesRecorded = 0
        func consume(_ sample: StackSample) {
            let entry = stacks.entry(for: sample) {
                // A miss is certain on a process's first sample in this profile (the cache
                // starts empty with each profile): describe the process once, here.
                if current.processAttributes[sample.pid] == nil {
                    // What the process says of itself comes first: the first value of a key
                    // wins in the OTLP resource (docs/kubernetes.md, "Precedence").
                    current.processAttributes[sample.pid] =
                        contexts.observe(pid: sample.pid, sampler: sampler) + executables.attributes(pid: sample.pid)
                    observeProcess(sample.pid, sample.cgroupID)
                }
                let symbolized = symbolizer.symbolize(sample)
                // The symbolizer emits a frame per address unless it cut a broken chain.
                let cut = symbolized.frames.count < sample.kernelStack.count + sample.userStack.count
                return SymbolizedStackCache.Entry(
                    processName: symbolized.processName, stack: current.intern(stack: symbolized.frames), cut: cut)
            }
            if entry.cut { samplesWithCutStacks += 1 }
            samplesRecorded += 1
            current.add(
                stack: entry.stack, pid: sample.pid, tid: sample.tid, threadName: sample.threadName,
                processName: entry.processName, cgroupID: sample.cgroupID, timestampNanos: sample.timestampNanos,
                traceContext: contexts.traceContext(record: sample.threadContextRecord, pid: sample.pid))
        }

        // Closes the current window: duration, its share of the losses, hand-off.
        func closeWindow() throws(SamplerError) -> Profile {
            let counters = try sampler.counters()
            let end = wallClockNanoseconds()
            current.durationNanos = end &- current.startTimeNanos
            Self.recordDrops(counters.subtracting(countersAtWindowStart), in: &current)
            countersAtWindowStart = counters
            let closed = current
            current = Profile(startTimeNanos: end, frequencyHz: frequency)
            stacks = SymbolizedStackCache()  // its entries refer to the closed profile's stacks
            return closed
        }

        while !stop.isStopped {
            let elapsed = Double(monotonicNanoseconds() - started) / 1e9
            if let durationSeconds, elapsed >= durationSeconds { break }
            let remaining = durationSeconds.map { max(0, $0 - elapsed) } ?? 1
            // 100 ms: how late a sample may be drained, and so how soon a short-lived
            // process's maps are read after its first sample.
            let timeout = Int32(min(100, max(1, remaining * 1000)))
            try sampler.poll(timeoutMilliseconds: timeout, consume)
            let now = monotonicNanoseconds()
            if let window, Double(now - windowStarted) / 1e9 >= window.seconds {
                windowStarted = now
                let closed = try closeWindow()
                window.handler(closed)
                total?.append(contentsOf: closed)
            }
            if now - lastReport >= 1_000_000_000 {
                lastReport = now
                let counters = try? sampler.counters()
                progress(
                    .init(
                        elapsedSeconds: Double(now - started) / 1e9, plannedSeconds: durationSeconds,
                        samples: samplesRecorded,
                        processes: symbolizer.statistics.processesTracked, lost: counters?.lostRingBufferFull ?? 0,
                        counters: counters, processContexts: contexts.statistics))
            }
        }
        // Samples already in the ring buffer belong to the recording window: drain them, for
        // at most 2 s (a consumer slower than the producers would never see it empty).
        let drainDeadline = monotonicNanoseconds() &+ 2_000_000_000
        while try sampler.poll(timeoutMilliseconds: 0, consume) > 0, monotonicNanoseconds() < drainDeadline {}

        let last = try closeWindow()
        let counters = countersAtWindowStart  // read by closeWindow, as the recording ended
        var profile: Profile
        if let window {
            window.handler(last)
            if var total {
                total.append(contentsOf: last)
                profile = total
            } else {
                profile = last
            }
        } else {
            profile = last
        }
        profile.comments.append("idle samples dropped: \(counters.idleDropped)")
        let stats = symbolizer.statistics
        return RecordingResult(
            profile: profile, counters: counters, symbolization: stats,
            samplesWithCutStacks: samplesWithCutStacks, stoppedEarly: stop.isStopped,
            processContexts: contexts.statistics)
    }

    private static func recordDrops(_ counters: SamplerCounters, in profile: inout Profile) {
        profile.recordDrops(counters.lostRingBufferFull, reason: "lost: ring buffer full")
        profile.recordDrops(counters.malformedRecords, reason: "malformed records")
        profile.recordDrops(counters.internalErrors, reason: "internal error in the BPF sampler")
    }
}

/// How ``Recording/run(stop:window:progress:)`` cuts a recording into windows.
public struct RecordingWindow: Sendable {
    /// Length of a window in seconds.
    public var seconds: Double
    /// Receives each closed window's profile, on the recording thread.
    public var handler: @Sendable (Profile) -> Void
    /// Whether ``RecordingResult/profile`` holds the whole recording (every window) or only
    /// the last window: a recording that runs for days keeps only its windows.
    public var keepsWholeRecording: Bool

    public init(seconds: Double, keepsWholeRecording: Bool = true, handler: @escaping @Sendable (Profile) -> Void) {
        self.seconds = seconds
        self.keepsWholeRecording = keepsWholeRecording
        self.handler = handler
    }
}

/// `process.executable.path` of each process, read once from /proc/PID/exe. Bounded: the
/// table is cleared when it holds 65,536 processes (pids are reused anyway).
struct ExecutablePaths {
    private var paths: [Int32: String?] = [:]
    static let maximumEntries = 65_536

    mutating func attributes(pid: Int32) -> [Attribute] {
        let path: String?
        if let known = paths[pid] {
            path = known
        } else {
            if paths.count >= Self.maximumEntries { paths.removeAll(keepingCapacity: true) }
            // Fails for kernel threads and processes that already exited: no attribute.
            path = FileContents.readLink("/proc/\(pid)/exe")
            paths[pid] = path
        }
        return path.map { [Attribute("process.executable.path", .string($0))] } ?? []
    }
}

/// Symbolized stacks by raw stack: a busy process repeats a few stacks, and looking the raw
/// addresses up here is far cheaper than symbolizing them again. Entries are dropped every
/// two seconds (and when 16,384 pile up), so a process that execs or unloads a library is
/// symbolized afresh soon after. Entries hold ``Profile/StackID``s: one cache per profile.
struct SymbolizedStackCache {
    struct Key: Hashable {
        var pid: Int32
        var kernel: [UInt64]
        var user: [UInt64]
    }

    struct Entry {
        var processName: String?
        var stack: Profile.StackID
        /// The symbolizer cut this stack at a broken frame-pointer chain.
        var cut: Bool
    }

    private var entries: [Key: Entry] = [:]
    private var clearedAt = monotonicNanoseconds()
    static let maximumEntries = 16_384
    static let lifetimeNanos: UInt64 = 2_000_000_000

    mutating func entry(for sample: StackSample, symbolize: () -> Entry) -> Entry {
        let key = Key(pid: sample.pid, kernel: sample.kernelStack, user: sample.userStack)
        if let entry = entries[key] { return entry }
        let now = monotonicNanoseconds()
        if entries.count >= Self.maximumEntries || now &- clearedAt >= Self.lifetimeNanos {
            entries.removeAll(keepingCapacity: true)
            clearedAt = now
        }
        let entry = symbolize()
        entries[key] = entry
        return entry
    }
}
