import CSampling
import Glibc
public import NodeprofCore

/// What to sample and how.
public struct SamplerConfiguration: Sendable {
    /// Samples per second per CPU.
    public var frequency: UInt64
    /// Processes to sample (tgids); nil samples the whole machine.
    public var processIDs: [Int32]?
    /// Drop samples of the idle task (they are counted, not recorded).
    public var dropIdle: Bool
    /// Ring buffer size in bytes: a power of two, at least one page; nil sizes it from the
    /// number of CPUs and the frequency (``defaultRingBufferBytes(cpus:frequency:)``).
    public var ringBufferBytes: UInt32?
    /// CPUs to sample; nil means every online CPU.
    public var cpus: [Int]?

    public init(
        frequency: UInt64 = 99, processIDs: [Int32]? = nil, dropIdle: Bool = true,
        ringBufferBytes: UInt32? = nil, cpus: [Int]? = nil
    ) {
        self.frequency = frequency
        self.processIDs = processIDs
        self.dropIdle = dropIdle
        self.ringBufferBytes = ringBufferBytes
        self.cpus = cpus
    }

    /// Half a second of samples at 1 KiB each (a record with ~120 frames; most are far
    /// smaller), rounded up to a power of two, between 256 KiB and 256 MiB. The reader
    /// drains every 100 ms and is woken early at a quarter full, so this leaves it ample
    /// slack while keeping a small machine's agent small (the ring is mapped twice).
    public static func defaultRingBufferBytes(cpus: Int, frequency: UInt64) -> UInt32 {
        let wanted = UInt64(max(cpus, 1)) &* frequency &* 1024 / 2
        var size: UInt64 = 256 << 10
        while size < wanted && size < 256 << 20 { size <<= 1 }
        return UInt32(size)
    }
}

/// Counters of every sample's fate. The BPF side's counters are per-CPU sums read from the
/// kernel; `malformedRecords` is counted while draining.
public struct SamplerCounters: Sendable, Hashable {
    /// Times the BPF program ran.
    public var seen: UInt64 = 0
    /// Records written to the ring buffer.
    public var submitted: UInt64 = 0
    /// Idle-task samples dropped on purpose.
    public var idleDropped: UInt64 = 0
    /// Samples of processes outside the selection.
    public var filteredOut: UInt64 = 0
    /// Samples lost because the ring buffer was full (user space fell behind).
    public var lostRingBufferFull: UInt64 = 0
    /// Samples whose kernel stack could not be read.
    public var kernelStackFailed: UInt64 = 0
    /// Samples whose user stack could not be read.
    public var userStackFailed: UInt64 = 0
    /// Samples lost to a branch of the BPF program that should never run (a bug if not 0).
    public var internalErrors: UInt64 = 0
    /// Submitted samples that carried a valid span record (OTEP 4947 thread context).
    public var threadContextsFound: UInt64 = 0
    /// Located thread-context variables or records the program could not read.
    public var threadContextsUnreadable: UInt64 = 0
    /// Samples whose thread had a record attached that was not marked valid (valid byte not 1):
    /// sent without a span.
    public var threadContextsInvalid: UInt64 = 0
    /// Sample records received from the ring buffer (process events are counted apart).
    public var received: UInt64 = 0
    /// Records rejected while decoding (wrong size or version).
    public var malformedRecords: UInt64 = 0
    /// Process events (exec, exit, context published) written by the kernel side, and lost
    /// because the ring buffer was full.
    public var processEvents: UInt64 = 0
    public var processEventsLost: UInt64 = 0

    public init() {}

    /// The counts since `earlier` (a snapshot of the same sampler), field by field.
    public func subtracting(_ earlier: SamplerCounters) -> SamplerCounters {
        var delta = SamplerCounters()
        delta.seen = seen &- earlier.seen
        delta.submitted = submitted &- earlier.submitted
        delta.idleDropped = idleDropped &- earlier.idleDropped
        delta.filteredOut = filteredOut &- earlier.filteredOut
        delta.lostRingBufferFull = lostRingBufferFull &- earlier.lostRingBufferFull
        delta.kernelStackFailed = kernelStackFailed &- earlier.kernelStackFailed
        delta.userStackFailed = userStackFailed &- earlier.userStackFailed
        delta.internalErrors = internalErrors &- earlier.internalErrors
        delta.threadContextsFound = threadContextsFound &- earlier.threadContextsFound
        delta.threadContextsUnreadable = threadContextsUnreadable &- earlier.threadContextsUnreadable
        delta.threadContextsInvalid = threadContextsInvalid &- earlier.threadContextsInvalid
        delta.received = received &- earlier.received
        delta.malformedRecords = malformedRecords &- earlier.malformedRecords
        delta.processEvents = processEvents &- earlier.processEvents
        delta.processEventsLost = processEventsLost &- earlier.processEventsLost
        return delta
    }
}

/// The BPF on-CPU sampler: loads the embedded program, opens a cpu-clock perf event per
/// CPU, and drains samples from the ring buffer.
///
/// Confined to one thread: create it, poll it and drop it from the same dedicated thread
/// (polling blocks, so never from the cooperative pool).
public final class Sampler {
    public let configuration: SamplerConfiguration
    /// CPUs a perf event is attached to.
    public let cpus: [Int]
    /// Why context publications (``ProcessEvent/Kind/contextPublished``) are not reported,
    /// nil when they are: they need the `syscalls/sys_enter_prctl` tracepoint's id from
    /// tracefs (mounted, or mountable with CAP_SYS_ADMIN). Without them a process that
    /// publishes after it was first seen is found by the process table's rescan.
    public let contextEventsUnavailable: String?
    private let handle: OpaquePointer
    private let drain: Drain
    private let clock: ClockTranslation

    /// Loads the program and starts sampling immediately.
    public init(configuration: SamplerConfiguration) throws(SamplerError) {
        self.configuration = configuration
        try Self.validate(configuration)
        guard access("/sys/kernel/btf/vmlinux", R_OK) == 0 else { throw .kernelWithoutBTF }
        let cpus: [Int]
        if let selected = configuration.cpus {
            cpus = selected
        } else {
            cpus = try Self.onlineCPUs()
        }
        let ringBufferBytes =
            configuration.ringBufferBytes
            ?? SamplerConfiguration.defaultRingBufferBytes(cpus: cpus.count, frequency: configuration.frequency)

        var config = nodeprof_config(
            drop_idle: configuration.dropIdle ? 1 : 0,
            filter_pids: configuration.processIDs == nil ? 0 : 1,
            wakeup_bytes: ringBufferBytes / 4,
            reserved: 0)
        var handle: OpaquePointer?
        var log = [CChar](repeating: 0, count: 4096)
        let rc = nodeprof_sampler_open(&config, ringBufferBytes, &handle, &log, log.count)
        guard rc == 0, let handle else {
            let text = log.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw Self.loadError(errno: -rc, log: text)
        }
        self.handle = handle
        self.drain = Drain()
        self.clock = ClockTranslation()

        do {
            for pid in configuration.processIDs ?? [] {
                let rc = nodeprof_sampler_select_pid(handle, UInt32(bitPattern: pid))
                guard rc == 0 else { throw SamplerError.system(operation: "select pid \(pid)", errno: -rc) }
            }
            let rc = nodeprof_sampler_set_consumer(
                handle,
                { context, record, size in
                    guard let context, let record else { return 0 }
                    Unmanaged<Drain>.fromOpaque(context).takeUnretainedValue().consume(record, size)
                    return 0
                }, Unmanaged.passUnretained(drain).toOpaque())
            guard rc == 0 else { throw SamplerError.system(operation: "ring_buffer__new", errno: -rc) }

            var contextError: Int32 = 0
            let events = nodeprof_sampler_attach_process_events(handle, &contextError)
            guard events == 0 else {
                throw SamplerError.system(operation: "attach the exec and exit raw tracepoints", errno: -events)
            }
            contextEventsUnavailable =
                contextError == 0
                ? nil
                : "the syscalls/sys_enter_prctl tracepoint could not be attached (\(SystemCall.errnoName(contextError))): mount tracefs at /sys/kernel/tracing or grant CAP_SYS_ADMIN"
            for cpu in cpus {
                let rc = nodeprof_sampler_attach_cpu(handle, Int32(cpu), configuration.frequency)
                guard rc == 0 else {
                    throw SamplerError.perfEventOpen(cpu: cpu, errno: -rc, frequency: configuration.frequency)
                }
            }
            self.cpus = cpus
        } catch let error as SamplerError {
            nodeprof_sampler_close(handle)
            throw error
        } catch {
            nodeprof_sampler_close(handle)
            throw .invalidConfiguration("\(error)")
        }
    }

    deinit {
        nodeprof_sampler_close(handle)
    }

    /// Waits up to `timeoutMilliseconds` for samples and hands each to `body`, in ring
    /// order. Returns the number of records drained.
    ///
    /// The BPF program wakes the reader only when a quarter of the ring buffer is full
    /// (a wakeup per sample costs microseconds in the kernel), so call this on a short
    /// period: the timeout is the latency of a sample in a quiet system.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32, _ body: (StackSample) -> Void) throws(SamplerError) -> Int {
        try poll(timeoutMilliseconds: timeoutMilliseconds, events: { _ in }, body)
    }

    /// Like ``poll(timeoutMilliseconds:_:)``, and hands each process event to `events`, in
    /// ring order with the samples (a process's exit comes after its samples).
    @discardableResult
    public func poll(
        timeoutMilliseconds: Int32, events: (ProcessEvent) -> Void, _ body: (StackSample) -> Void
    ) throws(SamplerError) -> Int {
        let clock = self.clock
        return try withoutActuallyEscaping(body) { (escapable) throws(SamplerError) -> Int in
            try withoutActuallyEscaping(events) { (escapableEvents) throws(SamplerError) -> Int in
                drain.deliver = { raw in
                    if raw.count >= 4, raw.loadUnaligned(as: UInt32.self) == NODEPROF_PROCESS_EVENT_VERSION {
                        guard let event = decodeProcessEvent(raw, clock: clock) else { return false }
                        escapableEvents(event)
                        return true
                    }
                    if let sample = decodeSample(raw, clock: clock) {
                        escapable(sample)
                        return true
                    }
                    return false
                }
                defer { drain.deliver = nil }
                let n = nodeprof_sampler_poll(handle, timeoutMilliseconds)
                guard n >= 0 else { throw .system(operation: "ring_buffer__poll", errno: -n) }
                return Int(n)
            }
        }
    }

    /// Tells the BPF program how `pid`'s threads reach their span record (nil: forget it).
    public func setThreadContextAccess(_ access: ThreadContextAccess?, pid: Int32) throws(SamplerError) {
        var info = nodeprof_thread_ctx_info()
        switch access {
        case .threadPointerOffset(let offset)?:
            info.kind = UInt32(NODEPROF_TLS_THREAD_POINTER_OFFSET)
            info.tp_offset = offset
        case .dynamicThreadVector(let moduleID, let offset)?:
            info.kind = UInt32(NODEPROF_TLS_DTV)
            info.dtv_module = moduleID
            info.dtv_offset = offset
        case nil:
            break
        }
        let rc =
            access == nil
            ? nodeprof_sampler_set_thread_ctx(handle, UInt32(bitPattern: pid), nil)
            : nodeprof_sampler_set_thread_ctx(handle, UInt32(bitPattern: pid), &info)
        guard rc == 0 else { throw .system(operation: "update the thread context map", errno: -rc) }
    }

    /// Reads every counter (BPF per-CPU sums plus user-space decode counts).
    public func counters() throws(SamplerError) -> SamplerCounters {
        var values = [UInt64](repeating: 0, count: Int(NODEPROF_COUNTER_MAX.rawValue))
        let rc = nodeprof_sampler_read_counters(handle, &values)
        guard rc == 0 else { throw .system(operation: "read counters map", errno: -rc) }
        var c = SamplerCounters()
        c.seen = values[Int(NODEPROF_COUNTER_SEEN.rawValue)]
        c.submitted = values[Int(NODEPROF_COUNTER_SUBMITTED.rawValue)]
        c.idleDropped = values[Int(NODEPROF_COUNTER_IDLE_DROPPED.rawValue)]
        c.filteredOut = values[Int(NODEPROF_COUNTER_FILTERED_OUT.rawValue)]
        c.lostRingBufferFull = values[Int(NODEPROF_COUNTER_RINGBUF_FULL.rawValue)]
        c.kernelStackFailed = values[Int(NODEPROF_COUNTER_KSTACK_FAILED.rawValue)]
        c.userStackFailed = values[Int(NODEPROF_COUNTER_USTACK_FAILED.rawValue)]
        c.internalErrors = values[Int(NODEPROF_COUNTER_INTERNAL_ERROR.rawValue)]
        c.threadContextsFound = values[Int(NODEPROF_COUNTER_THREAD_CTX_FOUND.rawValue)]
        c.threadContextsUnreadable = values[Int(NODEPROF_COUNTER_THREAD_CTX_UNREADABLE.rawValue)]
        c.threadContextsInvalid = values[Int(NODEPROF_COUNTER_THREAD_CTX_INVALID.rawValue)]
        c.processEvents = values[Int(NODEPROF_COUNTER_PROCESS_EVENTS.rawValue)]
        c.processEventsLost = values[Int(NODEPROF_COUNTER_PROCESS_EVENTS_LOST.rawValue)]
        c.received = drain.received
        c.malformedRecords = drain.malformed
        return c
    }

    /// Cumulative run time and run count of the BPF program. Both stay zero unless BPF
    /// statistics are enabled (``BPFStatistics`` or sysctl kernel.bpf_stats_enabled=1).
    public func programRunTime() throws(SamplerError) -> (nanoseconds: UInt64, runs: UInt64) {
        var time: UInt64 = 0
        var count: UInt64 = 0
        let rc = nodeprof_sampler_program_stats(handle, &time, &count)
        guard rc == 0 else { throw .system(operation: "bpf_obj_get_info_by_fd", errno: -rc) }
        return (time, count)
    }

    /// Every online CPU, from /sys/devices/system/cpu/online.
    public static func onlineCPUs() throws(SamplerError) -> [Int] {
        let text = try readSmallFile("/sys/devices/system/cpu/online")
        guard let cpus = parseCPUList(text) else {
            throw .invalidConfiguration("cannot parse /sys/devices/system/cpu/online: \(text)")
        }
        return cpus
    }

    private static func validate(_ configuration: SamplerConfiguration) throws(SamplerError) {
        guard configuration.frequency >= 1 else {
            throw .invalidConfiguration("sampling frequency must be at least 1 Hz")
        }
        if let max = maxSampleRate(), configuration.frequency > UInt64(max) {
            throw .invalidConfiguration(
                "sampling frequency \(configuration.frequency) Hz exceeds kernel.perf_event_max_sample_rate (\(max)); lower --frequency or raise the sysctl"
            )
        }
        if let size = configuration.ringBufferBytes {
            guard size >= 4096, size & (size - 1) == 0 else {
                throw .invalidConfiguration(
                    "ring buffer size must be a power of two of at least 4096 bytes, got \(size)")
            }
        }
        if let pids = configuration.processIDs {
            guard !pids.isEmpty else { throw .invalidConfiguration("the process selection is empty") }
            guard pids.count <= 4096 else { throw .invalidConfiguration("at most 4096 processes can be selected") }
        }
    }

    private static func loadError(errno code: Int32, log: String) -> SamplerError {
        if code == EPERM && geteuid() != 0 {
            return .notPermitted(operation: "loading the BPF sampler")
        }
        return .loadFailed(errno: code, log: log.trimmedWhitespace())
    }
}

/// Receives raw records from the C callback and forwards them to the current poll's body.
private final class Drain {
    var deliver: ((UnsafeRawBufferPointer) -> Bool)?
    /// Sample records, and process event records.
    var received: UInt64 = 0
    var eventsReceived: UInt64 = 0
    var malformed: UInt64 = 0

    func consume(_ record: UnsafeRawPointer, _ size: Int) {
        if size >= 4, record.loadUnaligned(as: UInt32.self) == NODEPROF_PROCESS_EVENT_VERSION {
            eventsReceived += 1
        } else {
            received += 1
        }
        guard let deliver, deliver(UnsafeRawBufferPointer(start: record, count: size)) else {
            malformed += 1
            return
        }
    }
}

/// Converts CLOCK_MONOTONIC (bpf_ktime_get_ns) to wall-clock nanoseconds.
struct ClockTranslation: Sendable {
    let offset: Int64

    init() {
        // Take the tightest of a few bracketing reads so the offset error stays ~1 us.
        var best: (gap: Int64, offset: Int64) = (.max, 0)
        for _ in 0..<5 {
            let m1 = Int64(monotonicNanoseconds())
            let r = Int64(wallClockNanoseconds())
            let m2 = Int64(monotonicNanoseconds())
            if m2 - m1 < best.gap { best = (m2 - m1, r - (m1 + (m2 - m1) / 2)) }
        }
        offset = best.offset
    }

    func wallClock(monotonic: UInt64) -> UInt64 {
        UInt64(clamping: Int64(clamping: monotonic) &+ offset)
    }
}

/// Byte offsets of `struct nodeprof_sample`'s fields, computed once (not per sample).
private enum RecordLayout {
    typealias Record = nodeprof_sample
    static let version = MemoryLayout<Record>.offset(of: \.version)!
    static let flags = MemoryLayout<Record>.offset(of: \.flags)!
    static let timestamp = MemoryLayout<Record>.offset(of: \.timestamp_ns)!
    static let cgroupID = MemoryLayout<Record>.offset(of: \.cgroup_id)!
    static let pid = MemoryLayout<Record>.offset(of: \.pid)!
    static let tid = MemoryLayout<Record>.offset(of: \.tid)!
    static let cpu = MemoryLayout<Record>.offset(of: \.cpu)!
    static let kernelLength = MemoryLayout<Record>.offset(of: \.kernel_stack_len)!
    static let userLength = MemoryLayout<Record>.offset(of: \.user_stack_len)!
    static let comm = MemoryLayout<Record>.offset(of: \.comm)!
    static let frames = MemoryLayout<Record>.offset(of: \.frames)!
    static let threadContextLength = MemoryLayout<Record>.offset(of: \.thread_ctx_len)!
}

/// Decodes one process event record; nil when its size or kind is wrong.
func decodeProcessEvent(_ raw: UnsafeRawBufferPointer, clock: ClockTranslation) -> ProcessEvent? {
    typealias Event = nodeprof_process_event
    guard raw.count == MemoryLayout<Event>.size else { return nil }
    let event = raw.loadUnaligned(as: Event.self)
    let kind: ProcessEvent.Kind
    switch Int32(event.kind) {
    case NODEPROF_PROCESS_EXEC: kind = .exec
    case NODEPROF_PROCESS_EXIT: kind = .exit
    case NODEPROF_PROCESS_CONTEXT: kind = .contextPublished
    default: return nil
    }
    return ProcessEvent(
        kind: kind, pid: Int32(bitPattern: event.pid), timestampNanos: clock.wallClock(monotonic: event.timestamp_ns))
}

/// Decodes one ring-buffer record: the header, then `kernel_stack_len` kernel frames and
/// `user_stack_len` user frames. Nil when its size or version is wrong.
func decodeSample(_ raw: UnsafeRawBufferPointer, clock: ClockTranslation) -> StackSample? {
    typealias L = RecordLayout
    func load<T>(_ offset: Int, as type: T.Type) -> T { raw.loadUnaligned(fromByteOffset: offset, as: type) }
    guard raw.count >= L.frames, load(L.version, as: UInt32.self) == NODEPROF_RECORD_VERSION else { return nil }
    let depth = Int(NODEPROF_MAX_STACK_DEPTH)
    let kernelCount = Int(load(L.kernelLength, as: UInt32.self))
    let userCount = Int(load(L.userLength, as: UInt32.self))
    let contextLength = Int(load(L.threadContextLength, as: UInt16.self))
    let contextStart = L.frames + (kernelCount + userCount) * 8
    guard kernelCount <= depth, userCount <= depth, contextLength <= Int(NODEPROF_THREAD_CTX_MAX),
        raw.count >= contextStart + contextLength
    else {
        return nil
    }
    func frames(from first: Int, count: Int) -> [UInt64] {
        (first..<first + count).map { load(L.frames + $0 * 8, as: UInt64.self) }
    }
    let commBytes = UnsafeRawBufferPointer(rebasing: raw[L.comm..<L.comm + 16])
    let commLength = commBytes.firstIndex(of: 0) ?? 16
    let flags = load(L.flags, as: UInt32.self)
    var errors: StackErrors = []
    if flags & NODEPROF_FLAG_KSTACK_FAILED != 0 { errors.insert(.kernelStackFailed) }
    if flags & NODEPROF_FLAG_USTACK_FAILED != 0 { errors.insert(.userStackFailed) }
    if flags & NODEPROF_FLAG_USTACK_TRUNCATED != 0 { errors.insert(.userStackTruncated) }
    if flags & NODEPROF_FLAG_KSTACK_TRUNCATED != 0 { errors.insert(.kernelStackTruncated) }

    return StackSample(
        pid: Int32(bitPattern: load(L.pid, as: UInt32.self)),
        tid: Int32(bitPattern: load(L.tid, as: UInt32.self)),
        cpu: load(L.cpu, as: UInt32.self),
        threadName: String(decoding: commBytes[..<commLength], as: UTF8.self),
        cgroupID: load(L.cgroupID, as: UInt64.self),
        timestampNanos: clock.wallClock(monotonic: load(L.timestamp, as: UInt64.self)),
        kernelStack: frames(from: 0, count: kernelCount),
        userStack: frames(from: kernelCount, count: userCount),
        stackErrors: errors,
        threadContextRecord: contextLength == 0 ? [] : Array(raw[contextStart..<contextStart + contextLength]))
}
