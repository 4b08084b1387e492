/// What the kernel tells about a process's life, as it leaves the sampler: the events that
/// keep the process table current without polling /proc.
///
/// Events travel in the same ring buffer as the samples, so an event arrives after every
/// sample the process had before it: evicting a process on its exit loses none of its samples.
public struct ProcessEvent: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// The process replaced its program (execve): new maps, executable and context.
        case exec
        /// The process's last thread exited.
        case exit
        /// The process published or updated its OTEP 4719 process context (its writer's
        /// `prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ..., "OTEL_CTX")`).
        case contextPublished
    }

    public var kind: Kind
    /// Process id (the kernel's tgid).
    public var pid: Int32
    /// Wall-clock time of the event, nanoseconds since the Unix epoch.
    public var timestampNanos: UInt64

    public init(kind: Kind, pid: Int32, timestampNanos: UInt64) {
        self.kind = kind
        self.pid = pid
        self.timestampNanos = timestampNanos
    }
}
