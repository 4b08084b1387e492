/// Where a frame's code lives.
public enum FrameKind: String, Sendable, Hashable, Codable {
    /// Kernel code, symbolized from /proc/kallsyms.
    case kernel
    /// Native user-space code (ELF executables and shared libraries).
    case native
}

/// The file a user frame's code was loaded from, as mapped in the process.
///
/// This is what pprof calls a Mapping and OTLP a Mapping: an address range of the
/// process backed by a file at an offset.
public struct Module: Sendable, Hashable {
    /// Start of the executable mapping in the process (inclusive).
    public var start: UInt64
    /// End of the executable mapping in the process (exclusive).
    public var limit: UInt64
    /// File offset the mapping starts at.
    public var fileOffset: UInt64
    /// Path as the process saw it (`/usr/lib/x86_64-linux-gnu/libc.so.6`, `[vdso]`, ...).
    public var path: String
    /// GNU build id as lowercase hex, when the file carries one.
    public var buildID: String?
    /// The file's OpenTelemetry `htlhash` (see ``htlHash(head:tail:length:)``), when the
    /// file could be read.
    public var htlHash: String?

    public init(
        start: UInt64, limit: UInt64, fileOffset: UInt64, path: String, buildID: String?, htlHash: String? = nil
    ) {
        self.start = start
        self.limit = limit
        self.fileOffset = fileOffset
        self.path = path
        self.buildID = buildID
        self.htlHash = htlHash
    }

    /// The last path component, for tables ("libc.so.6").
    public var name: String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}

/// One symbolized stack frame.
public struct Frame: Sendable, Hashable {
    public var kind: FrameKind
    /// The address as sampled (absolute, in the process or kernel address space).
    public var address: UInt64
    /// Demangled function name, or nil when no symbol covers the address.
    public var function: String?
    /// The file the code belongs to; nil for kernel frames and unmapped addresses.
    public var module: Module?

    public init(kind: FrameKind, address: UInt64, function: String?, module: Module?) {
        self.kind = kind
        self.address = address
        self.function = function
        self.module = module
    }

    /// True when the frame has a function name.
    public var isSymbolized: Bool { function != nil }

    /// Hashes the address and kind only: equal frames have equal addresses, and hashing the
    /// module's path and build id strings for every frame of every sample (profiles intern
    /// stacks) cost more than the rest of the lookup. Equality still compares every field.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(address)
        hasher.combine(kind)
    }
}
