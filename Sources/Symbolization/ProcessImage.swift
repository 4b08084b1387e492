public import NodeprofCore

/// What the symbolizer needs of a process: its executable mappings and its name.
public struct ProcessImage: Sendable, Hashable {
    /// Executable mappings only, sorted by start address.
    public var mappings: [MemoryMapping]
    /// The executable's file name (`comm` for kernel threads), the profile's process name.
    public var executableName: String?

    public init(mappings: [MemoryMapping], executableName: String?) {
        self.mappings = mappings.filter { $0.permissions.contains(.execute) }.sorted { $0.start < $1.start }
        self.executableName = executableName
    }

    /// The mapping that holds `address`, if any.
    public func mapping(containing address: UInt64) -> MemoryMapping? {
        ProcessMaps.index(of: address, in: mappings).map { mappings[$0] }
    }

    /// The name a process goes by: the file name of `/proc/PID/exe`'s target (what
    /// `readlink` returned, ` (deleted)` removed), else its `comm` (kernel threads have no
    /// executable).
    public static func executableName(executablePath: String?, comm: () -> String?) -> String? {
        if var target = executablePath {
            if target.hasSuffix(" (deleted)") { target.removeLast(" (deleted)".count) }
            if let slash = target.lastIndex(of: "/") {
                let name = String(target[target.index(after: slash)...])
                if !name.isEmpty { return name }
            }
        }
        guard var name = comm() else { return nil }
        while name.last == "\n" { name.removeLast() }
        return name.isEmpty ? nil : name
    }
}

/// Counts of a ``ProcessImageSource``'s reads, for the symbolizer's statistics.
public struct ProcessImageStatistics: Sendable, Hashable {
    /// Processes with an image.
    public var processesTracked = 0
    /// Processes whose maps could not be read when first needed (exited before).
    public var processesUnknown = 0
    /// `/proc/PID/maps` reads (first sight and refreshes).
    public var mapsReads = 0
    /// Reads made because an address was not covered (dlopen, pid reuse).
    public var mapsRefreshes = 0
    /// Maps lines that did not parse.
    public var mapsLinesSkipped = 0

    public init() {}
}

/// Where the ``Symbolizer`` gets each process's image. The agent's process table is one
/// (it reads a process's maps once for every consumer); ``ProcessImages`` is the stand-alone
/// one. Called on the symbolizer's thread only.
public protocol ProcessImageSource: AnyObject {
    /// The image of `pid`, read on first use while the process lives; nil when it could not
    /// be read (the process had exited).
    func image(of pid: Int32) -> ProcessImage?
    /// The image of `pid` read again because an address was not covered (a library loaded
    /// since): nil when it was not re-read (too soon after the last read, or the process is
    /// gone). Implementations bound how often this reads.
    func refreshedImage(of pid: Int32) -> ProcessImage?
    /// Reads made so far.
    var imageStatistics: ProcessImageStatistics { get }
}

/// A stand-alone ``ProcessImageSource``: reads `/proc/PID/maps` and the executable name the
/// first time a pid is asked for and keeps them (at most ``maximumProcesses``; the least
/// recently used quarter goes when full), so samples can be symbolized after the process
/// exits. Not thread-safe.
public final class ProcessImages: ProcessImageSource {
    /// Largest number of images kept.
    public var maximumProcesses = 16_384
    /// Minimum time between two re-reads of one process's maps caused by uncovered
    /// addresses; bounds the cost of garbage addresses in broken stacks.
    public var minimumRefreshIntervalNanos: UInt64 = 100_000_000
    /// How long a pid whose maps could not be read is remembered before it is retried
    /// (the pid may be reused by a new process).
    public var unknownProcessRetryNanos: UInt64 = 1_000_000_000
    static let maximumUnknownProcesses = 65_536

    private struct Entry {
        var image: ProcessImage
        var readAtNanos: UInt64
        var lastUse: UInt64
    }

    private let procRoot: String
    private var entries: [Int32: Entry] = [:]
    private var unknown: [Int32: UInt64] = [:]
    private var counters = ProcessImageStatistics()
    private var clock: UInt64 = 0

    public init(procRoot: String = "/proc") {
        self.procRoot = procRoot
    }

    public var imageStatistics: ProcessImageStatistics {
        var statistics = counters
        statistics.processesTracked = entries.count
        return statistics
    }

    /// Drops the image of `pid` (once its exit is known and its samples are done).
    public func forget(pid: Int32) {
        entries[pid] = nil
    }

    public func image(of pid: Int32) -> ProcessImage? {
        guard pid > 0 else { return nil }
        clock &+= 1
        if entries[pid] != nil {
            entries[pid]?.lastUse = clock
            return entries[pid]?.image
        }
        let now = monotonicNanoseconds()
        if let failedAt = unknown[pid], now &- failedAt < unknownProcessRetryNanos { return nil }
        guard let image = read(pid: pid) else {
            if unknown[pid] == nil { counters.processesUnknown += 1 }
            if unknown.count >= Self.maximumUnknownProcesses { unknown.removeAll() }
            unknown[pid] = now
            return nil
        }
        unknown[pid] = nil
        store(Entry(image: image, readAtNanos: now, lastUse: clock), for: pid)
        return image
    }

    public func refreshedImage(of pid: Int32) -> ProcessImage? {
        let now = monotonicNanoseconds()
        if let old = entries[pid], now &- old.readAtNanos < minimumRefreshIntervalNanos { return nil }
        guard let image = read(pid: pid) else {
            // Exited: keep the old image, but do not try again for a while.
            entries[pid]?.readAtNanos = now
            return nil
        }
        counters.mapsRefreshes += 1
        store(Entry(image: image, readAtNanos: now, lastUse: clock), for: pid)
        return image
    }

    private func read(pid: Int32) -> ProcessImage? {
        guard let maps = try? ProcessMaps.read(pid: pid, procRoot: procRoot) else { return nil }
        counters.mapsReads += 1
        counters.mapsLinesSkipped += maps.skippedLines
        let procRoot = self.procRoot
        return ProcessImage(
            mappings: maps.mappings,
            executableName: ProcessImage.executableName(
                executablePath: FileContents.readLink("\(procRoot)/\(pid)/exe"),
                comm: {
                    (try? FileContents.read("\(procRoot)/\(pid)/comm", limit: 4096)).map {
                        String(decoding: $0, as: UTF8.self)
                    }
                }))
    }

    private func store(_ entry: Entry, for pid: Int32) {
        if entries[pid] == nil, entries.count >= maximumProcesses {
            // Drop the least recently used quarter in one go to keep eviction rare.
            let victims = entries.sorted { $0.value.lastUse < $1.value.lastUse }.prefix(max(1, entries.count / 4))
            for (victim, _) in victims { entries[victim] = nil }
        }
        entries[pid] = entry
    }
}
