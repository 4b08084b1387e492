import NodeprofCore
public import ProcessContext
import Sampling

/// What instrumented processes publish, for a recording: their process context (resource
/// attributes, the thread attribute key map) and, once a process announces thread context,
/// where its `otel_thread_ctx_v1` is, handed to the BPF sampler. Used on the sampling thread
/// only.
///
/// A publishing process is looked at on its first sample of every window: a header read when
/// its context is unchanged (the reader caches by publication time), so a republished context
/// is seen within a window. A process without one is looked at again every 30 s.
final class ProcessContexts {
    private let reader = ProcessContextReader()
    /// Reads each module file once across processes (a fleet of one image costs one parse).
    private let locator = ThreadContextLocator()
    /// Per pid: the key map of its context, and whether its TLS variable was handed to BPF.
    private var known: [Int32: Entry] = [:]
    /// When each process last had no context to read (monotonic ns).
    private var withoutContext: [Int32: UInt64] = [:]
    private var counts = ProcessContextStatistics()
    /// What was read and found so far.
    var statistics: ProcessContextStatistics {
        var statistics = counts
        statistics.reader = reader.statistics
        statistics.processesWithContext = known.count
        return statistics
    }
    static let maximumProcesses = 16_384
    /// How often a process without a context is looked at again.
    static let rescanNanos: UInt64 = 30_000_000_000

    private struct Entry {
        /// The process's start time (clock ticks since boot): a different one under the same
        /// pid is another process, whose variable must be located afresh.
        var startTime: UInt64?
        var keyMap: [String]
        var located = false
        var locateFailed = false
        /// A record used a key index beyond the map: the context is read again once.
        var refreshed = false
    }

    /// Schema versions whose records this reader decodes.
    static let threadSchemas: Set<String> = ["tlsdesc_v1_dev", "tls_v1"]

    /// The process's published resource and extra attributes (empty without a context); on
    /// the way, hands the process's thread-context location to `sampler` when it announces one.
    func observe(pid: Int32, sampler: Sampler) -> [Attribute] {
        // Most processes publish nothing: finding that out reads their whole maps file, so
        // it is asked again only every `rescanNanos`, not in every window.
        let now = monotonicNanoseconds()
        if let checked = withoutContext[pid], now &- checked < Self.rescanNanos { return [] }
        guard let context = try? reader.context(for: pid) else {
            // A process that stops publishing (or a new one under a reused pid) keeps no
            // thread-context access in BPF.
            if known[pid]?.located == true { try? sampler.setThreadContextAccess(nil, pid: pid) }
            known[pid] = nil
            if withoutContext.count >= Self.maximumProcesses { withoutContext.removeAll(keepingCapacity: true) }
            withoutContext[pid] = now
            return []
        }
        withoutContext[pid] = nil
        if known.count >= Self.maximumProcesses, known[pid] == nil { known.removeAll(keepingCapacity: true) }
        let startTime = Self.startTime(pid: pid)
        var entry = known[pid] ?? Entry(startTime: startTime, keyMap: [])
        if entry.startTime != startTime {  // the pid was reused
            if entry.located { try? sampler.setThreadContextAccess(nil, pid: pid) }
            reader.forget(pid: pid)
            entry = Entry(startTime: startTime, keyMap: [])
        }
        entry.keyMap = context.attributeKeyMap ?? []
        entry.refreshed = false
        if let schema = context.threadSchemaVersion, Self.threadSchemas.contains(schema), !entry.located,
            !entry.locateFailed
        {
            do {
                let location = try locator.locate(pid: pid)
                try sampler.setThreadContextAccess(location.access, pid: pid)
                entry.located = true
                counts.threadContextsLocated += 1
            } catch is SamplerError {
                counts.mapUpdateFailures += 1
                entry.locateFailed = true
            } catch {
                // Not loaded yet, or a model this reader does not follow: tried again only
                // when the process republishes (a new entry).
                counts.locateFailures += 1
                entry.locateFailed = true
            }
        }
        known[pid] = entry
        return context.resource + context.attributes
    }

    /// The span of a sample's record, named through its process's key map.
    func traceContext(record: [UInt8], pid: Int32) -> TraceContext? {
        guard !record.isEmpty else { return nil }
        guard var entry = known[pid] else { return nil }
        // A key index past the map: the process appended keys since it was read.
        if !entry.refreshed, Self.maximumKeyIndex(record) >= entry.keyMap.count,
            let context = try? reader.context(for: pid)
        {
            entry.keyMap = context.attributeKeyMap ?? entry.keyMap
            entry.refreshed = true
            counts.keyMapRefreshes += 1
            known[pid] = entry
        }
        guard let context = TraceContext(record: record, keyMap: entry.keyMap) else {
            counts.recordsInvalid += 1
            return nil
        }
        counts.recordsDecoded += 1
        return context
    }

    /// Field 22 of /proc/PID/stat (start time in clock ticks since boot), nil if unreadable.
    static func startTime(pid: Int32) -> UInt64? {
        guard let stat = try? FileContents.read("/proc/\(pid)/stat", limit: 4096),
            let close = stat.lastIndex(of: UInt8(ascii: ")"))
        else { return nil }
        // After "pid (comm)": state is field 3, start time field 22.
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count > 19 else { return nil }
        return UInt64(String(decoding: fields[19], as: UTF8.self))
    }

    /// The largest key index a record uses (-1 for none).
    static func maximumKeyIndex(_ record: [UInt8]) -> Int {
        let header = TraceContext.RecordLayout.headerSize
        guard record.count >= header else { return -1 }
        var largest = -1
        var position = header
        while position + 2 <= record.count {
            let length = Int(record[position + 1])
            guard position + 2 + length <= record.count else { break }
            largest = max(largest, Int(record[position]))
            position += 2 + length
        }
        return largest
    }
}

/// What a recording read of the contexts processes publish: the reader's counts (lookups,
/// reads, every way a context was refused) and what became of thread context.
public struct ProcessContextStatistics: Sendable, Hashable {
    /// Lookups, reads and refusals by reason (``ProcessContextReader/Statistics``).
    public var reader = ProcessContextReader.Statistics()
    /// Processes currently known to publish a context.
    public var processesWithContext = 0
    /// Processes whose `otel_thread_ctx_v1` was located and handed to the BPF sampler.
    public var threadContextsLocated = 0
    /// Processes that announced thread context but whose variable could not be located or
    /// uses an access the sampler does not follow.
    public var locateFailures = 0
    /// The BPF map refused the process's entry.
    public var mapUpdateFailures = 0
    /// Span records decoded, and records refused (no trace id, too short).
    public var recordsDecoded = 0
    public var recordsInvalid = 0
    /// Contexts read again because a record used a key index beyond the known map.
    public var keyMapRefreshes = 0

    public init() {}
}
