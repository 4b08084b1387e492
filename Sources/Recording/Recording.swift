import Glibc
public import NodeprofCore
public import ProcessTable
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
    /// What the process table read so far, and its size.
    public var processTable: ProcessTableStatistics
    /// Process and thread context read so far.
    public var processContexts: ProcessContextStatistics { processTable.contexts }
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
    /// What the process table read, and what the kernel reported of processes.
    public var processTable: ProcessTableStatistics
    /// Process and thread context read (OTEP 4719, 4947).
    public var processContexts: ProcessContextStatistics { processTable.contexts }
}

/// The pipeline from the sampler to profiles, for `nodeprof record` and `nodeprof agent`:
/// samples and process events are drained on one thread; each sample's process is looked
/// up in the ``ProcessTable`` (read once per process, kept current by the kernel's exec,
/// exit and context events), symbolized while the process most likely still runs, and
/// added to the current window's ``Profile`` under the description its process had then.
///
/// The sampler starts in `init`; ``run(stop:window:progress:)`` blocks the calling thread
/// until the duration has passed or `stop` is raised, so call it from a dedicated thread.
public final class Recording {
    public let durationSeconds: Double?
    private let sampler: Sampler
    private let table: ProcessTable
    private let symbolizer: Symbolizer
    private let startNanos: UInt64

    /// - Parameters:
    ///   - processTable: how the process table reads processes (container identity for the
    ///     agent); whether the kernel reports context publications is found out here.
    public init(
        durationSeconds: Double?, sampler configuration: SamplerConfiguration,
        processTable: ProcessTable.Configuration = ProcessTable.Configuration()
    ) throws(SamplerError) {
        try Preflight.checkPrivileges()
        try Preflight.checkBTF()
        self.durationSeconds = durationSeconds
        let table = ProcessTable(configuration: processTable)
        self.table = table
        self.symbolizer = Symbolizer(processes: table)
        // Read the selected processes before the first sample arrives; any other process is
        // read on its first sample.
        for pid in configuration.processIDs ?? [] { _ = table.entry(pid: pid) }
        self.startNanos = wallClockNanoseconds()
        let sampler = try Sampler(configuration: configuration)
        self.sampler = sampler
        table.configuration.contextEventsAvailable = sampler.contextEventsUnavailable == nil
        table.setThreadContextSink(SamplerThreadContextSink(sampler: sampler))
    }

    /// Why the kernel does not report context publications (nil when it does).
    public var contextEventsUnavailable: String? { sampler.contextEventsUnavailable }

    /// Records until the duration has passed or `stop` is raised.
    ///
    /// With `window`, the recording is cut into windows of `window.seconds`: each closed
    /// window's profile (its samples, its share of the drop counters, attributes of its
    /// processes) goes to `window.handler` on this thread as soon as it closes, the last
    /// one when the recording stops; the result still holds the whole recording.
    ///
    public func run(
        stop: StopSignal, window: RecordingWindow? = nil, progress: (RecordingProgress) -> Void
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
        // Each process version's description in the current profile.
        var described: [ProcessVersion: Profile.ProcessID] = [:]
        let table = self.table
        var samplesWithCutStacks = 0
        var samplesRecorded = 0
        var processEventsLost: UInt64 = 0
        func consume(_ sample: StackSample) {
            let process = table.entry(pid: sample.pid, cgroupID: sample.cgroupID)
            let version = ProcessVersion(pid: sample.pid, version: process?.version ?? 0)
            let processID: Profile.ProcessID
            if let known = described[version] {
                processID = known
            } else {
                processID = current.intern(process: Self.describe(process, pid: sample.pid))
                described[version] = processID
            }
            let entry = stacks.entry(for: sample) {
                let symbolized = symbolizer.symbolize(sample)
                // The symbolizer emits a frame per address unless it cut a broken chain.
                let cut = symbolized.frames.count < sample.kernelStack.count + sample.userStack.count
                return SymbolizedStackCache.Entry(stack: current.intern(stack: symbolized.frames), cut: cut)
            }
            if entry.cut { samplesWithCutStacks += 1 }
            samplesRecorded += 1
            current.add(
                stack: entry.stack, process: processID, tid: sample.tid, threadName: sample.threadName,
                cgroupID: sample.cgroupID, timestampNanos: sample.timestampNanos,
                traceContext: table.traceContext(record: sample.threadContextRecord, pid: sample.pid))
        }
        func handle(_ event: ProcessEvent) { table.handle(event) }

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
            described = [:]
            return closed
        }

        while !stop.isStopped {
            let elapsed = Double(monotonicNanoseconds() - started) / 1e9
            if let durationSeconds, elapsed >= durationSeconds { break }
            let remaining = durationSeconds.map { max(0, $0 - elapsed) } ?? 1
            // 100 ms: how late a sample may be drained, and so how soon a short-lived
            // process's maps are read after its first sample.
            let timeout = Int32(min(100, max(1, remaining * 1000)))
            try sampler.poll(timeoutMilliseconds: timeout, events: handle, consume)
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
                if let lost = counters?.processEventsLost, lost > processEventsLost {
                    // An exit may be among them: a reused pid would keep the old description.
                    processEventsLost = lost
                    table.resynchronize()
                }
                progress(
                    .init(
                        elapsedSeconds: Double(now - started) / 1e9, plannedSeconds: durationSeconds,
                        samples: samplesRecorded, processes: table.statistics.processes,
                        lost: counters?.lostRingBufferFull ?? 0, counters: counters, processTable: table.statistics))
            }
        }
        // Samples already in the ring buffer belong to the recording window: drain them, for
        // at most 2 s (a consumer slower than the producers would never see it empty).
        let drainDeadline = monotonicNanoseconds() &+ 2_000_000_000
        while try sampler.poll(timeoutMilliseconds: 0, events: handle, consume) > 0,
            monotonicNanoseconds() < drainDeadline
        {}

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
            processTable: table.statistics)
    }

    /// A process as the profile describes it: what it says of itself first (the first value
    /// of a key wins in the OTLP resource, docs/kubernetes.md "Precedence"), and its container.
    static func describe(_ entry: ProcessEntry?, pid: Int32) -> ProcessDescription {
        guard let entry else { return ProcessDescription(pid: pid, name: nil) }
        return ProcessDescription(
            pid: pid, name: entry.image.executableName, attributes: entry.attributes,
            containerID: entry.container?.containerID, podUID: entry.container?.podUID)
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

/// A process under one description (``ProcessEntry/version``): the key of its description
/// in a profile.
struct ProcessVersion: Hashable {
    var pid: Int32
    var version: UInt64
}

/// Hands thread-context locations from the process table to the BPF sampler's map.
final class SamplerThreadContextSink: ThreadContextAccessSink {
    let sampler: Sampler
    init(sampler: Sampler) { self.sampler = sampler }
    func setThreadContextAccess(_ access: ThreadContextAccess?, pid: Int32) throws {
        try sampler.setThreadContextAccess(access, pid: pid)
    }
}
