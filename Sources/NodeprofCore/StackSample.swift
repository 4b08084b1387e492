/// The record one sample produces, as it leaves the sampler.
///
/// Addresses are raw instruction pointers: kernel addresses as the kernel reports them,
/// user addresses in the sampled process's virtual address space. Both stacks are ordered
/// leaf first. Nothing here is symbolized; the next stage (Symbolization) turns addresses
/// into ``Frame`` values, so a later unwinder only has to fill the same record.
public struct StackSample: Sendable, Hashable {
    /// Process id (the kernel's tgid).
    public var pid: Int32
    /// Thread id (the kernel's pid).
    public var tid: Int32
    /// CPU the sample was taken on.
    public var cpu: UInt32
    /// Thread name (`comm`) at sample time, at most 15 bytes.
    public var threadName: String
    /// Cgroup v2 id of the task (the inode number of its cgroup directory).
    public var cgroupID: UInt64
    /// Wall-clock time of the sample, nanoseconds since the Unix epoch.
    public var timestampNanos: UInt64
    /// Kernel stack, leaf first. Empty when the sample hit user mode.
    public var kernelStack: [UInt64]
    /// User stack, leaf first. Empty for kernel threads.
    public var userStack: [UInt64]
    /// What went wrong while collecting the stacks, if anything.
    public var stackErrors: StackErrors
    /// The thread's OTEP 4947 span record as the sampler copied it (28-byte header, then
    /// attributes), when the process publishes thread context and the record was valid;
    /// empty otherwise. Decoded with the process's key map into a ``TraceContext``.
    public var threadContextRecord: [UInt8]

    public init(
        pid: Int32, tid: Int32, cpu: UInt32, threadName: String, cgroupID: UInt64,
        timestampNanos: UInt64, kernelStack: [UInt64], userStack: [UInt64],
        stackErrors: StackErrors = [], threadContextRecord: [UInt8] = []
    ) {
        self.threadContextRecord = threadContextRecord
        self.pid = pid
        self.tid = tid
        self.cpu = cpu
        self.threadName = threadName
        self.cgroupID = cgroupID
        self.timestampNanos = timestampNanos
        self.kernelStack = kernelStack
        self.userStack = userStack
        self.stackErrors = stackErrors
    }
}

/// Failures of the stack walk reported with a sample (the sample is still kept).
public struct StackErrors: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The kernel stack could not be read.
    public static let kernelStackFailed = StackErrors(rawValue: 1 << 0)
    /// The user stack could not be read (no frame pointers, or unreadable memory).
    public static let userStackFailed = StackErrors(rawValue: 1 << 1)
    /// The user stack hit the depth limit and was cut.
    public static let userStackTruncated = StackErrors(rawValue: 1 << 2)
    /// The kernel stack hit the depth limit and was cut.
    public static let kernelStackTruncated = StackErrors(rawValue: 1 << 3)
}
