import Glibc
public import NodeprofCore
public import ProcessContext
public import Symbolization

/// Where the table hands a process's thread-context location (OTEP 4947): the BPF sampler's
/// map, which the program reads at sample time. Called on the table's thread.
public protocol ThreadContextAccessSink: AnyObject {
    /// Tells the sampler how `pid`'s threads reach their span record (nil: forget it).
    func setThreadContextAccess(_ access: ThreadContextAccess?, pid: Int32) throws
}

/// One live process as the table knows it. Everything was read once, when the process was
/// first sampled (or after it exec'd), from one maps read and one readlink.
public struct ProcessEntry: Sendable {
    public let pid: Int32
    /// Changes whenever what the process says of itself changes (it exec'd, or republished
    /// its context): samples taken under one version share one description in a profile.
    public fileprivate(set) var version: UInt64
    /// `/proc/PID/exe`'s target, nil for kernel threads and processes that had exited.
    public fileprivate(set) var executablePath: String?
    /// Executable mappings and name, for the symbolizer.
    public fileprivate(set) var image: ProcessImage
    /// The OTEP 4719 process context it publishes, if any.
    public fileprivate(set) var context: ProcessContext?
    /// The container its cgroup names (``ProcessTable/Configuration/identifiesContainers``).
    public fileprivate(set) var container: ContainerIdentity?
    /// The cgroup v2 id of its first sample.
    public fileprivate(set) var cgroupID: UInt64

    fileprivate var contextAddress: UInt64?
    fileprivate var mapsReadAtNanos: UInt64
    fileprivate var contextCheckedAtNanos: UInt64
    fileprivate var threadContext = ThreadContextState.notAnnounced
    /// A record used a key index beyond the map: the context was read again once.
    fileprivate var keyMapRefreshed = false
    /// Events were lost since this entry was made: check it is still this process.
    fileprivate var needsRevalidation = false
    fileprivate var lastUse: UInt64

    fileprivate enum ThreadContextState {
        case notAnnounced, located, failed
    }

    /// What the process says of itself, as OTLP resource attributes, first value of a key
    /// winning: its published resource and attributes, then `process.executable.path`.
    public var attributes: [Attribute] {
        var attributes = (context?.resource ?? []) + (context?.attributes ?? [])
        if let executablePath {
            attributes.append(Attribute("process.executable.path", .string(executablePath)))
        }
        return attributes
    }
}

/// Counts of what the process table read and what became of it.
public struct ProcessTableStatistics: Sendable, Hashable {
    /// Processes in the table now.
    public var processes = 0
    /// Entries created (first samples, and first samples after exec).
    public var processesAdded = 0
    /// Pids whose maps could not be read on their first sample (already exited).
    public var processesUnreadable = 0
    /// Entries removed: the process exited, exec'd, or the table was full.
    public var evictedOnExit = 0
    public var evictedOnExec = 0
    public var evictedWhenFull = 0
    /// `/proc/PID/maps` reads, `/proc/PID/exe` readlinks, `/proc/PID/comm` reads.
    public var mapsReads = 0
    public var mapsRefreshes = 0
    public var mapsLinesSkipped = 0
    public var executableReads = 0
    public var commReads = 0
    /// Process events received from the kernel, by kind.
    public var execEvents = 0
    public var exitEvents = 0
    public var contextEvents = 0
    /// New versions of an entry because its published context changed.
    public var contextChanges = 0
    /// Times the kernel lost process events and every entry was marked to be checked, the
    /// checks made, and the entries they found to be another program (read afresh).
    public var resynchronizations = 0
    public var revalidations = 0
    public var evictedOnRevalidation = 0
    /// Samples of a process taken after its exit was reported (in the kernel's exit path):
    /// they keep the pid but get no entry.
    public var samplesAfterExit = 0
    /// Process and thread context read so far.
    public var contexts = ProcessContextStatistics()
    /// The cgroup id cache (``CgroupAttribution``).
    public var cgroups = CgroupAttribution.Statistics()
    public var cgroupCacheEntries = 0

    public init() {}
}

/// What the table read of the contexts processes publish: the reader's counts (lookups,
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

/// One entry per live process, read once and shared by every consumer: the symbolizer (its
/// executable mappings and name), trace correlation (its published context and where its
/// threads keep their span records), attribution (its container), and later the policy
/// selector and the unwinder.
///
/// A process is read on its first sample: one `/proc/PID/maps` read (the executable
/// mappings, the `OTEL_CTX` mapping, the modules that may hold `otel_thread_ctx_v1`), one
/// `/proc/PID/exe` readlink, `/proc/PID/cgroup` only for a cgroup the table has not seen,
/// and the context's header and payload from the process's memory. Kernel events keep it
/// current (``handle(_:)``): an exec drops the entry, so the next sample reads the new
/// program; an exit evicts it at once (it arrives after the process's last samples); a
/// context publication or update is read when it happens. Where the kernel cannot report
/// publications, a process without a context is looked at again every
/// ``Configuration/rescanNanos``. A publisher's header is re-read at most every
/// ``Configuration/contextRecheckNanos``, so an update that skipped its prctl is seen too.
///
/// Bounded at ``Configuration/maximumProcesses`` entries (the least recently used quarter
/// goes when full). Confined to one thread: the sampling thread.
public final class ProcessTable: ProcessImageSource {
    public struct Configuration: Sendable {
        /// Where procfs is mounted (the host's procfs inside a container).
        public var procRoot: String
        /// Most entries kept.
        public var maximumProcesses: Int
        /// Find each process's container from its cgroup (the agent does; `record` does not).
        public var identifiesContainers: Bool
        /// The kernel reports context publications (``ProcessEvent/Kind/contextPublished``):
        /// no rescans of processes without a context are needed.
        public var contextEventsAvailable: Bool
        /// How often a process without a context is looked at again when the kernel does not
        /// report publications (each look is a maps read).
        public var rescanNanos: UInt64
        /// How often a publisher's context header is re-read on its samples (a 32-byte read).
        public var contextRecheckNanos: UInt64
        /// Minimum time between two maps re-reads caused by uncovered addresses.
        public var minimumRefreshIntervalNanos: UInt64
        /// How long a pid whose maps could not be read is not tried again.
        public var unreadableRetryNanos: UInt64

        public init(
            procRoot: String = "/proc", maximumProcesses: Int = 16_384, identifiesContainers: Bool = false,
            contextEventsAvailable: Bool = false, rescanNanos: UInt64 = 30_000_000_000,
            contextRecheckNanos: UInt64 = 1_000_000_000, minimumRefreshIntervalNanos: UInt64 = 100_000_000,
            unreadableRetryNanos: UInt64 = 1_000_000_000
        ) {
            self.procRoot = procRoot
            self.maximumProcesses = max(1, maximumProcesses)
            self.identifiesContainers = identifiesContainers
            self.contextEventsAvailable = contextEventsAvailable
            self.rescanNanos = rescanNanos
            self.contextRecheckNanos = contextRecheckNanos
            self.minimumRefreshIntervalNanos = minimumRefreshIntervalNanos
            self.unreadableRetryNanos = unreadableRetryNanos
        }
    }

    /// Schema versions whose span records this table decodes.
    public static let threadSchemas: Set<String> = ["tlsdesc_v1_dev", "tls_v1"]
    static let maximumUnreadable = 65_536
    /// How long after its exit a pid gets no new entry (unless it execs): pids are not
    /// reused this soon (pid_max is 4,194,304 on 64-bit).
    static let exitedNanos: UInt64 = 1_000_000_000

    public var configuration: Configuration
    private let reader: ProcessContextReader
    /// Reads each module file once across processes (a fleet of one image costs one parse).
    private let locator: ThreadContextLocator
    private var threadContextSink: (any ThreadContextAccessSink)?
    private var cgroups: CgroupAttribution?
    private var entries: [Int32: ProcessEntry] = [:]
    private var unreadable: [Int32: UInt64] = [:]
    /// Pids whose exit was reported, and when: a sample the kernel took while the process
    /// was already exiting (in do_exit, after the event) must not bring back an entry.
    private var exited: [Int32: UInt64] = [:]
    private var counts = ProcessTableStatistics()
    private var clock: UInt64 = 0
    private var nextVersion: UInt64 = 1

    /// - Parameters:
    ///   - threadContextSink: receives each process's thread-context location (the sampler).
    ///   - cgroups: the cgroup id cache to use; nil makes one reading the host when
    ///     ``Configuration/identifiesContainers`` is set.
    public init(
        configuration: Configuration = Configuration(), threadContextSink: (any ThreadContextAccessSink)? = nil,
        cgroups: CgroupAttribution? = nil
    ) {
        self.configuration = configuration
        self.reader = ProcessContextReader(procRoot: configuration.procRoot)
        self.locator = ThreadContextLocator(procRoot: configuration.procRoot)
        self.threadContextSink = threadContextSink
        if configuration.identifiesContainers {
            self.cgroups = cgroups ?? CgroupAttribution(procRoot: configuration.procRoot)
        }
    }

    /// Sets where thread-context locations go (the sampler, once it is loaded), and hands it
    /// the processes already read that announce thread context.
    public func setThreadContextSink(_ sink: (any ThreadContextAccessSink)?) {
        threadContextSink = sink
        for pid in entries.keys {
            guard var entry = entries[pid], entry.threadContext == .notAnnounced, entry.context != nil else { continue }
            update(&entry, context: entry.context, maps: nil)
            entries[pid] = entry
        }
    }

    /// Counts and sizes.
    public var statistics: ProcessTableStatistics {
        var statistics = counts
        statistics.processes = entries.count
        statistics.contexts.reader = reader.statistics
        statistics.contexts.processesWithContext = entries.values.reduce(0) { $0 + ($1.context == nil ? 0 : 1) }
        if let cgroups {
            statistics.cgroups = cgroups.statistics
            statistics.cgroupCacheEntries = cgroups.count
        }
        return statistics
    }

    /// The entry of `pid` as it is now, nil when the table has none (not sampled yet).
    public func existingEntry(pid: Int32) -> ProcessEntry? { entries[pid] }

    // MARK: Per sample

    /// The entry of `pid`, read on its first sample (nil when it could not be read: the
    /// process had exited, or it is the idle task). `cgroupID` is the sample's cgroup.
    public func entry(pid: Int32, cgroupID: UInt64 = 0) -> ProcessEntry? {
        guard pid > 0 else { return nil }
        clock &+= 1
        guard let index = entries.index(forKey: pid) else { return add(pid: pid, cgroupID: cgroupID) }
        // Called for every sample: the usual case touches the entry in place and reads no
        // clock (a process without a context, where the kernel reports publications).
        entries.values[index].lastUse = clock
        let current = entries.values[index]
        guard current.needsRevalidation || current.context != nil || !configuration.contextEventsAvailable else {
            return current
        }
        let now = monotonicNanoseconds()
        let due =
            current.context != nil
            ? now &- current.contextCheckedAtNanos >= configuration.contextRecheckNanos
            : !configuration.contextEventsAvailable && now &- current.contextCheckedAtNanos >= configuration.rescanNanos
        guard current.needsRevalidation || due else { return current }
        return refresh(pid: pid, cgroupID: cgroupID, now: now)
    }

    /// The slow path of ``entry(pid:cgroupID:)``: checks an entry after lost events, re-reads
    /// a publisher's header, or looks for a context again where the kernel cannot report one.
    private func refresh(pid: Int32, cgroupID: UInt64, now: UInt64) -> ProcessEntry? {
        guard var entry = entries[pid] else { return add(pid: pid, cgroupID: cgroupID) }
        if entry.needsRevalidation {
            counts.executableReads += 1
            counts.revalidations += 1
            guard FileContents.readLink("\(configuration.procRoot)/\(pid)/exe") == entry.executablePath else {
                remove(pid: pid)
                counts.evictedOnRevalidation += 1
                return add(pid: pid, cgroupID: cgroupID)
            }
            entry.needsRevalidation = false
        }
        if entry.context != nil {
            if now &- entry.contextCheckedAtNanos >= configuration.contextRecheckNanos {
                recheckContext(&entry, now: now)
            }
        } else if !configuration.contextEventsAvailable, now &- entry.contextCheckedAtNanos >= configuration.rescanNanos
        {
            // The kernel cannot tell when it publishes: look again, now and then.
            rereadMaps(&entry, now: now)
        }
        entries[pid] = entry
        return entry
    }

    /// The span of a sample's record, named through its process's key map.
    public func traceContext(record: [UInt8], pid: Int32) -> TraceContext? {
        guard !record.isEmpty, var entry = entries[pid], let context = entry.context else { return nil }
        var keyMap = context.attributeKeyMap ?? []
        // A key index past the map: the process appended keys since it was read.
        if !entry.keyMapRefreshed, TraceContext.maximumKeyIndex(record) >= keyMap.count {
            entry.keyMapRefreshed = true
            counts.contexts.keyMapRefreshes += 1
            recheckContext(&entry, now: monotonicNanoseconds())
            entries[pid] = entry
            keyMap = entry.context?.attributeKeyMap ?? keyMap
        }
        guard let decoded = TraceContext(record: record, keyMap: keyMap) else {
            counts.contexts.recordsInvalid += 1
            return nil
        }
        counts.contexts.recordsDecoded += 1
        return decoded
    }

    // MARK: Kernel events

    /// Applies one process event from the kernel.
    public func handle(_ event: ProcessEvent) {
        switch event.kind {
        case .exec:
            counts.execEvents += 1
            if remove(pid: event.pid) { counts.evictedOnExec += 1 }
            unreadable[event.pid] = nil
            exited[event.pid] = nil
        case .exit:
            counts.exitEvents += 1
            if remove(pid: event.pid) { counts.evictedOnExit += 1 }
            unreadable[event.pid] = nil
            if exited.count >= Self.maximumUnreadable { exited.removeAll(keepingCapacity: true) }
            exited[event.pid] = monotonicNanoseconds()
        case .contextPublished:
            counts.contextEvents += 1
            guard var entry = entries[event.pid] else { return }  // read on its first sample
            let now = monotonicNanoseconds()
            if entry.contextAddress != nil {
                recheckContext(&entry, now: now)
            } else {
                rereadMaps(&entry, now: now)
            }
            entries[event.pid] = entry
        }
    }

    /// What to do when the kernel lost process events (the ring buffer was full): an entry
    /// may then describe a process that exec'd or exited and whose pid was reused. Each entry
    /// is checked on its next sample (its executable read again, one readlink) and read
    /// afresh only if it changed, so live processes keep what was handed to BPF.
    public func resynchronize() {
        for pid in entries.keys { entries[pid]?.needsRevalidation = true }
        exited.removeAll()
        counts.resynchronizations += 1
    }

    // MARK: ProcessImageSource

    public func image(of pid: Int32) -> ProcessImage? {
        entry(pid: pid)?.image
    }

    public func refreshedImage(of pid: Int32) -> ProcessImage? {
        guard var entry = entries[pid] else { return nil }
        let now = monotonicNanoseconds()
        guard now &- entry.mapsReadAtNanos >= configuration.minimumRefreshIntervalNanos else { return nil }
        let before = entry.image
        guard rereadMaps(&entry, now: now) else {
            entries[pid] = entry
            return nil
        }
        counts.mapsRefreshes += 1
        entries[pid] = entry
        return entry.image == before ? nil : entry.image
    }

    public var imageStatistics: ProcessImageStatistics {
        var statistics = ProcessImageStatistics()
        statistics.processesTracked = entries.count
        statistics.processesUnknown = counts.processesUnreadable
        statistics.mapsReads = counts.mapsReads
        statistics.mapsRefreshes = counts.mapsRefreshes
        statistics.mapsLinesSkipped = counts.mapsLinesSkipped
        return statistics
    }

    // MARK: Reading a process

    private func add(pid: Int32, cgroupID: UInt64) -> ProcessEntry? {
        let now = monotonicNanoseconds()
        if let exitedAt = exited[pid] {
            guard now &- exitedAt >= Self.exitedNanos else {
                counts.samplesAfterExit += 1
                return nil
            }
            exited[pid] = nil
        }
        if let failedAt = unreadable[pid], now &- failedAt < configuration.unreadableRetryNanos { return nil }
        guard let maps = readMaps(pid: pid) else {
            counts.processesUnreadable += 1
            if unreadable.count >= Self.maximumUnreadable { unreadable.removeAll(keepingCapacity: true) }
            unreadable[pid] = now
            return nil
        }
        unreadable[pid] = nil
        counts.executableReads += 1
        let procRoot = configuration.procRoot
        let executablePath = FileContents.readLink("\(procRoot)/\(pid)/exe")
        let name = ProcessImage.executableName(executablePath: executablePath) {
            self.counts.commReads += 1
            return (try? FileContents.read("\(procRoot)/\(pid)/comm", limit: 4096)).map {
                String(decoding: $0, as: UTF8.self)
            }
        }
        var entry = ProcessEntry(
            pid: pid, version: takeVersion(), executablePath: executablePath,
            image: ProcessImage(mappings: maps.mappings, executableName: name), context: nil,
            container: cgroupID == 0 ? nil : cgroups?.identity(cgroupID: cgroupID, pid: pid), cgroupID: cgroupID,
            contextAddress: nil, mapsReadAtNanos: now, contextCheckedAtNanos: now, lastUse: clock)
        readContext(&entry, maps: maps, now: now)
        makeRoom()
        counts.processesAdded += 1
        entries[pid] = entry
        return entry
    }

    private func readMaps(pid: Int32) -> ProcessMaps? {
        guard let maps = try? ProcessMaps.read(pid: pid, procRoot: configuration.procRoot) else { return nil }
        counts.mapsReads += 1
        counts.mapsLinesSkipped += maps.skippedLines
        return maps
    }

    /// Reads the maps again: the image, and the context if one appeared. False when the
    /// maps could not be read (the process is gone).
    @discardableResult
    private func rereadMaps(_ entry: inout ProcessEntry, now: UInt64) -> Bool {
        entry.mapsReadAtNanos = now
        entry.contextCheckedAtNanos = now
        guard let maps = readMaps(pid: entry.pid) else { return false }
        entry.image = ProcessImage(mappings: maps.mappings, executableName: entry.image.executableName)
        readContext(&entry, maps: maps, now: now)
        return true
    }

    /// The context in the maps just read, and the thread-context location it announces.
    private func readContext(_ entry: inout ProcessEntry, maps: ProcessMaps, now: UInt64) {
        entry.contextCheckedAtNanos = now
        let address = try? ProcessContextReader.contextMapping(in: maps)
        entry.contextAddress = address
        let context: ProcessContext?
        do {
            context = try reader.context(for: entry.pid, mappingAt: address)
        } catch {
            context = nil
        }
        update(&entry, context: context, maps: maps)
    }

    /// Reads the header at the known mapping (the payload only when it changed); when no
    /// context is there any more (moved, withdrawn, refused), the maps say what became of it.
    private func recheckContext(_ entry: inout ProcessEntry, now: UInt64) {
        entry.contextCheckedAtNanos = now
        guard let context = try? reader.cachedContext(for: entry.pid) else {
            rereadMaps(&entry, now: now)
            return
        }
        update(&entry, context: context, maps: nil)
    }

    /// Sets the entry's context; a change makes a new version, and a newly announced thread
    /// context is located (in `maps` when at hand, else read).
    private func update(_ entry: inout ProcessEntry, context: ProcessContext?, maps: ProcessMaps?) {
        if context != entry.context {
            if entry.context != nil { counts.contextChanges += 1 }
            entry.version = takeVersion()
            if context == nil, entry.threadContext == .located {
                try? threadContextSink?.setThreadContextAccess(nil, pid: entry.pid)
                entry.threadContext = .notAnnounced
            }
            if context?.threadSchemaVersion != entry.context?.threadSchemaVersion, entry.threadContext == .failed {
                entry.threadContext = .notAnnounced  // republished: try again
            }
            entry.context = context
            entry.keyMapRefreshed = false
        }
        guard let schema = context?.threadSchemaVersion, Self.threadSchemas.contains(schema),
            entry.threadContext == .notAnnounced, let sink = threadContextSink
        else { return }
        do {
            let location: ThreadContextLocation
            if let maps {
                location = try locator.locate(pid: entry.pid, maps: maps)
            } else {
                guard let maps = readMaps(pid: entry.pid) else { return }
                location = try locator.locate(pid: entry.pid, maps: maps)
            }
            do {
                try sink.setThreadContextAccess(location.access, pid: entry.pid)
                entry.threadContext = .located
                counts.contexts.threadContextsLocated += 1
            } catch {
                counts.contexts.mapUpdateFailures += 1
                entry.threadContext = .failed
            }
        } catch {
            // Not loaded yet, or a model the sampler does not follow: tried again only when
            // the process republishes.
            counts.contexts.locateFailures += 1
            entry.threadContext = .failed
        }
    }

    private func takeVersion() -> UInt64 {
        defer { nextVersion &+= 1 }
        return nextVersion
    }

    /// Removes `pid`'s entry and what was handed out for it; true when there was one.
    @discardableResult
    private func remove(pid: Int32) -> Bool {
        guard let entry = entries.removeValue(forKey: pid) else { return false }
        if entry.threadContext == .located { try? threadContextSink?.setThreadContextAccess(nil, pid: pid) }
        reader.forget(pid: pid)
        return true
    }

    private func makeRoom() {
        guard entries.count >= configuration.maximumProcesses else { return }
        // The least recently used quarter in one go keeps eviction rare.
        let victims = entries.values.sorted { $0.lastUse < $1.lastUse }.prefix(max(1, entries.count / 4))
        for victim in victims {
            remove(pid: victim.pid)
            counts.evictedWhenFull += 1
        }
    }
}
