import CProcessContext
import Glibc
import NodeprofCore
public import Symbolization

/// Reads the process contexts of other processes (OTEP 4719 reading protocol: a seqlock keyed
/// on the header's timestamp) and caches the decoded result per pid.
///
/// Meant for one thread (the agent's sampling or discovery thread): it blocks in
/// process_vm_readv and /proc reads and is not synchronised. Every size, retry and cache is
/// bounded, and no byte or pointer from the other process is trusted.
///
/// A nil result (no `OTEL_CTX` mapping) is not cached: call ``context(for:)`` when a process
/// is discovered and again from time to time, since the context may appear later.
public final class ProcessContextReader {
    /// What happened to the reads, for metrics. Every field only grows.
    public struct Statistics: Sendable, Hashable {
        /// Calls of ``ProcessContextReader/context(for:)``.
        public var lookups = 0
        /// Lookups that found no `OTEL_CTX` mapping.
        public var withoutContext = 0
        /// Payloads read and decoded (cache misses that succeeded).
        public var reads = 0
        /// Lookups answered from the cache after reading only the 32-byte header.
        public var cacheHits = 0
        /// Header reads (32 bytes) and payload reads, attempted.
        public var headerReads = 0
        public var payloadReads = 0
        /// The timestamp stayed 0 through every attempt.
        public var notPublished = 0
        /// Attempts repeated because the timestamp was 0 or changed during the read.
        public var retries = 0
        /// Lookups that gave up because the timestamp changed during every attempt.
        public var torn = 0
        public var badSignature = 0
        public var badVersion = 0
        public var badSize = 0
        /// process_vm_readv failed or came short (EFAULT, EPERM, a mapping too small).
        public var unreadableMemory = 0
        public var decodeErrors = 0
        public var processesGone = 0
        /// Cache entries dropped to stay within the capacity.
        public var evictions = 0

        public init() {}
    }

    /// The 32-byte header at the start of the mapping.
    struct Header {
        static let size = 32
        static let signature: [UInt8] = Array("OTEL_CTX".utf8)
        static let timestampOffset: UInt64 = 16

        var signature: [UInt8]
        var version: UInt32
        var payloadSize: UInt32
        var publishedAt: UInt64
        var payload: UInt64

        init(_ bytes: [UInt8]) {
            func load<T: FixedWidthInteger>(_ offset: Int, as type: T.Type) -> T {
                var value: T = 0
                for index in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + index]) << (8 * index) }
                return T(littleEndian: value)
            }
            signature = Array(bytes[0..<8])
            version = load(8, as: UInt32.self)
            payloadSize = load(12, as: UInt32.self)
            publishedAt = load(16, as: UInt64.self)
            payload = load(24, as: UInt64.self)
        }
    }

    /// Mapping names a writer may produce (compared by prefix: ` (deleted)` is normal).
    public static let mappingNamePrefixes = ["[anon_shmem:OTEL_CTX]", "[anon:OTEL_CTX]", "/memfd:OTEL_CTX"]
    /// Largest payload accepted (the reference reader's limit).
    public static let maximumPayloadSize: UInt32 = 65536
    /// Attempts per lookup while the timestamp is 0 or changes under the read.
    public static let maximumAttempts = 3

    private struct CacheEntry {
        var mappingAddress: UInt64
        var publishedAt: UInt64
        var context: ProcessContext
    }

    public private(set) var statistics = Statistics()
    private var cache: [Int32: CacheEntry] = [:]
    private let cacheCapacity: Int
    private let procRoot: String
    private let retryDelayMicroseconds: UInt32

    /// - Parameters:
    ///   - cacheCapacity: pids whose decoded context is kept; beyond it an arbitrary entry is
    ///     evicted (it is re-read on its next lookup).
    ///   - retryDelayMicroseconds: sleep between attempts while a writer is mid-update.
    public init(procRoot: String = "/proc", cacheCapacity: Int = 16384, retryDelayMicroseconds: UInt32 = 100) {
        self.procRoot = procRoot
        self.cacheCapacity = max(1, cacheCapacity)
        self.retryDelayMicroseconds = retryDelayMicroseconds
    }

    /// Pids with a cached context (at most the capacity).
    public var cachedProcessCount: Int { cache.count }

    /// Forget a process (call when it exits, so a reused pid starts fresh).
    public func forget(pid: Int32) { cache[pid] = nil }

    /// The process context `pid` publishes, nil when it publishes none. Errors are counted in
    /// ``statistics``; the caller keeps profiling the process without a context.
    public func context(for pid: Int32) throws(ProcessContextError) -> ProcessContext? {
        statistics.lookups += 1
        do {
            return try lookUp(pid: pid)
        } catch {
            count(error)
            if error == .processGone { cache[pid] = nil }
            throw error
        }
    }

    /// The process context `pid` publishes in the mapping at `mappingAddress`, found by the
    /// caller in maps it read anyway (``contextMapping(in:)``); nil address: the maps had
    /// none. Reads no maps file. Errors are counted as with ``context(for:)``.
    public func context(for pid: Int32, mappingAt mappingAddress: UInt64?) throws(ProcessContextError)
        -> ProcessContext?
    {
        statistics.lookups += 1
        guard let mappingAddress else {
            cache[pid] = nil
            statistics.withoutContext += 1
            return nil
        }
        do {
            let cached = cache[pid].flatMap { $0.mappingAddress == mappingAddress ? $0 : nil }
            return try read(pid: pid, at: mappingAddress, cached: cached)
        } catch {
            count(error)
            cache[pid] = nil
            throw error
        }
    }

    /// Reads only the header at the cached mapping of `pid`: the context when unchanged or
    /// republished in place, nil when nothing is cached or the mapping no longer holds a
    /// context there (then the caller reads the maps again).
    public func cachedContext(for pid: Int32) throws(ProcessContextError) -> ProcessContext? {
        guard let entry = cache[pid] else { return nil }
        statistics.lookups += 1
        do {
            return try read(pid: pid, at: entry.mappingAddress, cached: entry)
        } catch {
            cache[pid] = nil
            switch error {
            case .badSignature, .badVersion, .unreadableMemory: return nil  // moved or gone
            default:
                count(error)
                throw error
            }
        }
    }

    /// Start address of the first non-executable mapping named `OTEL_CTX` in `maps`, or nil.
    public static func contextMapping(in maps: ProcessMaps) throws(ProcessContextError) -> UInt64? {
        for mapping in maps.mappings where !mapping.permissions.contains(.execute) {
            guard mappingNamePrefixes.contains(where: { mapping.path.hasPrefix($0) }) else { continue }
            // A mapping smaller than the header cannot hold one (pages make this rare).
            guard mapping.end - mapping.start >= UInt64(Header.size) else {
                throw .unreadableMemory(address: mapping.start, errno: EFAULT)
            }
            return mapping.start
        }
        return nil
    }

    private func lookUp(pid: Int32) throws(ProcessContextError) -> ProcessContext? {
        if let entry = cache[pid] {
            do {
                return try read(pid: pid, at: entry.mappingAddress, cached: entry)
            } catch {
                switch error {
                case .badSignature, .badVersion, .unreadableMemory:
                    // The mapping moved or vanished (or this pid was reused): look it up again.
                    cache[pid] = nil
                default:
                    throw error
                }
            }
        }
        guard let address = try findMapping(pid: pid) else {
            statistics.withoutContext += 1
            return nil
        }
        return try read(pid: pid, at: address, cached: nil)
    }

    private func count(_ error: ProcessContextError) {
        switch error {
        case .truncated, .malformedVarint, .unsupportedWireType, .nestingTooDeep, .tooManyValues,
            .stringTooLong, .invalidUTF8:
            statistics.decodeErrors += 1
        case .processGone: statistics.processesGone += 1
        case .badSignature: statistics.badSignature += 1
        case .badVersion: statistics.badVersion += 1
        case .badPayloadSize: statistics.badSize += 1
        case .notPublished: statistics.notPublished += 1
        case .torn: statistics.torn += 1
        case .unreadableMemory: statistics.unreadableMemory += 1
        }
    }

    /// Start address of the first non-executable mapping named `OTEL_CTX`, or nil.
    private func findMapping(pid: Int32) throws(ProcessContextError) -> UInt64? {
        let maps: ProcessMaps
        do {
            maps = try ProcessMaps.read(pid: pid, procRoot: procRoot)
        } catch {
            if error.isNotFound { throw .processGone }
            if case .systemCall(_, _, let errno) = error { throw .unreadableMemory(address: 0, errno: errno) }
            throw .unreadableMemory(address: 0, errno: EFBIG)
        }
        return try Self.contextMapping(in: maps)
    }

    /// The seqlock read at `address`; with `cached`, an unchanged timestamp returns the cached
    /// context after reading only the header.
    private func read(pid: Int32, at address: UInt64, cached: CacheEntry?) throws(ProcessContextError)
        -> ProcessContext
    {
        var sawUpdateInProgress = false
        for attempt in 0..<Self.maximumAttempts {
            if attempt > 0 {
                statistics.retries += 1
                usleep(retryDelayMicroseconds)
            }
            statistics.headerReads += 1
            let header = Header(try readMemory(pid: pid, address: address, length: Header.size))
            guard header.signature == Header.signature else { throw .badSignature }
            guard header.version == 2 || header.version == 1 else { throw .badVersion(header.version) }
            guard header.publishedAt != 0 else {
                sawUpdateInProgress = true
                continue
            }
            if let cached, cached.publishedAt == header.publishedAt {
                statistics.cacheHits += 1
                return cached.context
            }
            guard header.payloadSize >= 1, header.payloadSize <= Self.maximumPayloadSize else {
                throw .badPayloadSize(header.payloadSize)
            }
            statistics.payloadReads += 1
            let payload = try readMemory(pid: pid, address: header.payload, length: Int(header.payloadSize))
            let after = try readMemory(pid: pid, address: address + Header.timestampOffset, length: 8)
            guard Header.timestamp(after) == header.publishedAt else {
                sawUpdateInProgress = false
                continue
            }
            let context = try ProcessContextPayload.decode(payload)
            statistics.reads += 1
            store(pid: pid, CacheEntry(mappingAddress: address, publishedAt: header.publishedAt, context: context))
            return context
        }
        throw sawUpdateInProgress ? .notPublished : .torn
    }

    private func store(pid: Int32, _ entry: CacheEntry) {
        if cache[pid] == nil, cache.count >= cacheCapacity {
            cache.remove(at: cache.startIndex)
            statistics.evictions += 1
        }
        cache[pid] = entry
    }

    /// Exactly `length` bytes at `address` in `pid`, or an error; short reads are errors.
    private func readMemory(pid: Int32, address: UInt64, length: Int) throws(ProcessContextError) -> [UInt8] {
        do {
            return try ProcessMemory.read(pid: pid, address: address, count: length)
        } catch {
            if error.errno == ESRCH { throw .processGone }
            throw .unreadableMemory(address: address, errno: error.errno)
        }
    }
}

extension ProcessContextReader.Header {
    static func timestamp(_ bytes: [UInt8]) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[index]) << UInt64(8 * index) }
        return value
    }
}
