import Glibc
import NodeprofCore

/// What ``CgroupAttribution`` reads from the system. A protocol so the cache's logic can be
/// tested without /proc or a cgroup file system.
///
/// Contract: both calls are cheap enough to make on every cache miss, never throw, and
/// answer nil for anything that cannot be read (an exited process, a removed cgroup).
public protocol CgroupFiles: Sendable {
    /// The bytes of `/proc/PID/cgroup`, at most a small bound, or nil when it cannot be
    /// read (the process has exited, or the file is over the bound).
    func procCgroup(pid: Int32) -> [UInt8]?
    /// The inode number of the directory at `path`, or nil when it cannot be stat'ed.
    func inode(ofDirectory path: String) -> UInt64?
}

/// The real files: `<procRoot>/PID/cgroup` and `stat(2)`.
public struct SystemCgroupFiles: CgroupFiles {
    /// Largest `/proc/PID/cgroup` read: one line per hierarchy (about 16), each path at most
    /// PATH_MAX (the kernel fails the read beyond that).
    static let maximumFileSize = 128 * 1024

    public var procRoot: String

    public init(procRoot: String = "/proc") {
        self.procRoot = procRoot
    }

    public func procCgroup(pid: Int32) -> [UInt8]? {
        try? FileContents.read("\(procRoot)/\(pid)/cgroup", limit: Self.maximumFileSize)
    }

    public func inode(ofDirectory path: String) -> UInt64? {
        var status = stat()
        guard stat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return UInt64(status.st_ino)
    }

    /// The cgroup2 mounts of this process's mount namespace, from `/proc/self/mountinfo`:
    /// empty on a cgroup v1 only host, or when the file cannot be read.
    public static func cgroup2Mounts(mountInfoPath: String = "/proc/self/mountinfo") -> [Cgroup2Mount] {
        guard let bytes = try? FileContents.read(mountInfoPath, limit: 16 << 20) else { return [] }
        return Cgroup2Mount.parseMountInfo(String(decoding: bytes, as: UTF8.self))
    }
}

/// A cache from cgroup v2 id (the inode of the cgroup's directory, which the BPF sampler
/// records per sample with `bpf_get_current_cgroup_id()`) to the container in that cgroup,
/// or to nil for a cgroup that holds no container (node services, user sessions).
///
/// On a miss it reads `/proc/PID/cgroup` of the sampled process and parses it
/// (``ProcCgroup``). Because the process may have moved to another cgroup since the sample
/// (a runtime moves each new container process out of its own cgroup) or exited and had its
/// pid reused, an answer is cached only once the process's v2 path is confirmed to be the
/// sampled cgroup: `stat(mount + path).st_ino == cgroupID`. Otherwise:
/// - the process is gone (`/proc/PID` unreadable): nil, not cached, so a later sample from
///   a live process of that cgroup can still teach it (``Statistics/unreadable``);
/// - the inode differs or the directory is gone: nil, not cached; the parse describes
///   another cgroup than the sampled one (``Statistics/mismatches``);
/// - no cgroup2 mount shows the path (a cgroup v1 only host, or a path relative to a cgroup
///   namespace outside every mount): the parsed container, not cached
///   (``Statistics/unverifiable``);
/// - the v2 path names no container but a v1 hierarchy places the process (hybrid host,
///   cgroupfs driver): the v1 lines' container or nil, not cached, because then one v2
///   cgroup holds node services and containers alike (``Statistics/decidedByV1``).
///
/// Pass the sampled thread's id as `pid` when threads of a process may sit in different
/// cgroups (cgroup v2 threaded mode): `/proc/TID/cgroup` exists for every thread.
///
/// The cache holds at most ``capacity`` entries and is emptied when full (cgroups of
/// exited containers are never removed otherwise). A value type: the sampler's consumer
/// owns one and calls it from one task.
public struct CgroupAttribution: Sendable {
    /// Counters since creation.
    public struct Statistics: Sendable, Hashable {
        /// Lookups answered from the cache.
        public var hits = 0
        /// Lookups that read `/proc/PID/cgroup`.
        public var misses = 0
        /// Entries added to the cache (containers and nil alike).
        public var learned = 0
        /// Misses whose `/proc/PID/cgroup` could not be read (the process had exited).
        public var unreadable = 0
        /// Misses where the process's v2 cgroup was not the sampled one (moved, pid reused,
        /// cgroup removed): answered nil.
        public var mismatches = 0
        /// Misses answered from the parse without caching: no cgroup2 mount shows the path.
        public var unverifiable = 0
        /// Misses answered from the cgroup v1 lines without caching (hybrid host).
        public var decidedByV1 = 0
        /// Times the cache reached its capacity and was emptied.
        public var clears = 0

        public init() {}
    }

    public static let defaultCapacity = 65_536

    /// The most entries kept; reaching it empties the cache.
    public let capacity: Int
    /// The cgroup2 mounts used to find a cgroup's directory.
    public let cgroup2Mounts: [Cgroup2Mount]
    public private(set) var statistics = Statistics()

    private let files: any CgroupFiles
    private var identities: [UInt64: ContainerIdentity?] = [:]

    /// Entries cached now.
    public var count: Int { identities.count }

    /// A cache reading `files`, finding cgroup directories under `cgroup2Mounts`.
    public init(files: any CgroupFiles, cgroup2Mounts: [Cgroup2Mount], capacity: Int = defaultCapacity) {
        precondition(capacity > 0, "capacity must be positive")
        self.files = files
        self.cgroup2Mounts = cgroup2Mounts
        self.capacity = capacity
    }

    /// A cache reading the host: `<procRoot>/PID/cgroup`, and the cgroup2 mounts listed in
    /// `/proc/self/mountinfo`.
    public init(procRoot: String = "/proc", capacity: Int = defaultCapacity) {
        self.init(
            files: SystemCgroupFiles(procRoot: procRoot), cgroup2Mounts: SystemCgroupFiles.cgroup2Mounts(),
            capacity: capacity)
    }

    /// The container of cgroup `cgroupID`, learning it from process `pid` (a process seen in
    /// that cgroup) on a miss; nil for a cgroup without a container, or when it cannot be
    /// told now (see the type's documentation for which answers are cached).
    public mutating func identity(cgroupID: UInt64, pid: Int32) -> ContainerIdentity? {
        if let cached = identities[cgroupID] {
            statistics.hits += 1
            return cached
        }
        statistics.misses += 1
        guard let bytes = files.procCgroup(pid: pid) else {
            statistics.unreadable += 1
            return nil
        }
        let parsed = ProcCgroup(parsing: bytes)
        guard let path = parsed.v2Path, let directory = directory(ofCgroupPath: path) else {
            statistics.unverifiable += 1
            return parsed.container
        }
        guard files.inode(ofDirectory: directory) == cgroupID else {
            statistics.mismatches += 1
            return nil
        }
        if parsed.v2Container == nil, parsed.hasV1Placement {
            statistics.decidedByV1 += 1
            return parsed.v1Container
        }
        remember(parsed.v2Container, for: cgroupID)
        return parsed.v2Container
    }

    /// Forgets everything cached (statistics are kept).
    public mutating func removeAll() {
        identities.removeAll(keepingCapacity: true)
    }

    private func directory(ofCgroupPath path: String) -> String? {
        for mount in cgroup2Mounts {
            if let directory = mount.directory(ofCgroupPath: path) { return directory }
        }
        return nil
    }

    private mutating func remember(_ identity: ContainerIdentity?, for cgroupID: UInt64) {
        if identities.count >= capacity {
            identities.removeAll(keepingCapacity: true)
            statistics.clears += 1
        }
        identities[cgroupID] = .some(identity)
        statistics.learned += 1
    }
}
