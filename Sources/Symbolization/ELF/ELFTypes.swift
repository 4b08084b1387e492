#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `e_type`: what kind of object the file is.
public enum ELFFileType: Hashable, Sendable {
    /// ET_REL: an object file.
    case relocatable
    /// ET_EXEC: a non-PIE executable, loaded at the addresses in its program headers.
    case executable
    /// ET_DYN: a shared library or a PIE executable, loaded at a bias chosen at run time.
    case sharedObject
    /// ET_CORE: a core dump.
    case core
    case other(UInt16)

    init(rawValue: UInt16) {
        switch rawValue {
        case 1: self = .relocatable
        case 2: self = .executable
        case 3: self = .sharedObject
        case 4: self = .core
        default: self = .other(rawValue)
        }
    }
}

/// Segment permissions (`p_flags`).
public struct ELFSegmentFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let execute = ELFSegmentFlags(rawValue: 1)
    public static let write = ELFSegmentFlags(rawValue: 2)
    public static let read = ELFSegmentFlags(rawValue: 4)
}

/// One program header.
public struct ELFSegment: Hashable, Sendable {
    public static let typeLoad: UInt32 = 1
    public static let typeDynamic: UInt32 = 2
    public static let typeNote: UInt32 = 4
    public static let typeTLS: UInt32 = 7

    /// `p_type` (PT_LOAD is 1).
    public var type: UInt32
    public var flags: ELFSegmentFlags
    /// `p_offset`: where the segment's bytes start in the file.
    public var offset: UInt64
    /// `p_vaddr`: where the segment is linked to run (before any load bias).
    public var virtualAddress: UInt64
    /// `p_filesz`: bytes backed by the file.
    public var fileSize: UInt64
    /// `p_memsz`: bytes in memory (larger than `fileSize` for .bss).
    public var memorySize: UInt64
    /// `p_align`.
    public var alignment: UInt64

    public init(
        type: UInt32, flags: ELFSegmentFlags, offset: UInt64, virtualAddress: UInt64,
        fileSize: UInt64, memorySize: UInt64, alignment: UInt64
    ) {
        self.type = type
        self.flags = flags
        self.offset = offset
        self.virtualAddress = virtualAddress
        self.fileSize = fileSize
        self.memorySize = memorySize
        self.alignment = alignment
    }

    /// True when `fileOffset` lies in `[offset, offset + fileSize)`.
    public func contains(fileOffset: UInt64) -> Bool {
        fileOffset >= offset && fileOffset - offset < fileSize
    }
}

/// One section header, with its name resolved through the section name string table.
public struct ELFSection: Hashable, Sendable {
    public static let typeSymbolTable: UInt32 = 2
    public static let typeStringTable: UInt32 = 3
    public static let typeNote: UInt32 = 7
    public static let typeNoBits: UInt32 = 8
    public static let typeDynamicSymbolTable: UInt32 = 11
    /// SHF_ALLOC: the section occupies memory at run time.
    public static let flagAlloc: UInt64 = 2

    public var index: Int
    /// Empty when the section name string table is missing or the name is out of range.
    public var name: String
    public var type: UInt32
    public var flags: UInt64
    public var address: UInt64
    public var offset: UInt64
    public var size: UInt64
    public var link: UInt32
    public var info: UInt32
    public var alignment: UInt64
    public var entrySize: UInt64

    /// True when the section has bytes in the file (anything but SHT_NOBITS).
    public var hasFileData: Bool { type != Self.typeNoBits }
}

/// The GNU build id (`NT_GNU_BUILD_ID`): a hash the linker stores in the file, the stable
/// identity of a binary across paths, containers and hosts.
public struct ELFBuildID: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// Lowercase hex, as `readelf -n` and debuginfod print it.
    public var hexString: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    public var description: String { hexString }
}

/// The `.gnu_debuglink` section: the file name of the separate debug file and its CRC32.
public struct ELFDebugLink: Hashable, Sendable {
    public var fileName: String
    public var crc32: UInt32

    public init(fileName: String, crc32: UInt32) {
        self.fileName = fileName
        self.crc32 = crc32
    }
}

/// What `fstat` said about a mapped file: the identity used when there is no build id, and
/// what is checked against the device and inode of a `/proc/PID/maps` line.
public struct ELFFileStatus: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modificationTimeNanos: Int64

    public init(device: UInt64, inode: UInt64, size: Int64, modificationTimeNanos: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modificationTimeNanos = modificationTimeNanos
    }

    init(_ status: stat) {
        #if canImport(Darwin)
            let seconds = Int64(status.st_mtimespec.tv_sec)
            let nanos = Int64(status.st_mtimespec.tv_nsec)
        #else
            let seconds = Int64(status.st_mtim.tv_sec)
            let nanos = Int64(status.st_mtim.tv_nsec)
        #endif
        self.init(
            device: UInt64(truncatingIfNeeded: status.st_dev),
            inode: UInt64(truncatingIfNeeded: status.st_ino),
            size: Int64(status.st_size),
            modificationTimeNanos: seconds &* 1_000_000_000 &+ nanos)
    }

    /// Major device number, decoded the way glibc's `major()` does.
    public var deviceMajor: UInt32 {
        UInt32(truncatingIfNeeded: ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff)))
    }

    /// Minor device number, decoded the way glibc's `minor()` does.
    public var deviceMinor: UInt32 {
        UInt32(truncatingIfNeeded: (device & 0xff) | ((device >> 12) & ~UInt64(0xff)))
    }
}
