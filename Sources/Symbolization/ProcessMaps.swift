public import NodeprofCore

/// One line of `/proc/PID/maps`: an address range of a process and what backs it.
public struct MemoryMapping: Sendable, Hashable {
    /// The `rwxp` column.
    public struct Permissions: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let read = Permissions(rawValue: 1)
        public static let write = Permissions(rawValue: 2)
        public static let execute = Permissions(rawValue: 4)
        /// `s` instead of `p`: a shared mapping.
        public static let shared = Permissions(rawValue: 8)
    }

    /// First address (inclusive).
    public var start: UInt64
    /// End address (exclusive).
    public var end: UInt64
    public var permissions: Permissions
    /// Offset in the file the mapping starts at.
    public var offset: UInt64
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    /// 0 for anonymous and pseudo mappings.
    public var inode: UInt64
    /// The path without a trailing ` (deleted)`; empty for anonymous memory; `[vdso]`,
    /// `[heap]`, `[stack]`, `[anon:name]` for pseudo mappings; `/memfd:name` for memfds.
    public var path: String
    /// The kernel marked the file ` (deleted)`: unlinked or replaced since it was mapped.
    public var isDeleted: Bool

    public init(
        start: UInt64, end: UInt64, permissions: Permissions, offset: UInt64,
        deviceMajor: UInt32, deviceMinor: UInt32, inode: UInt64, path: String,
        isDeleted: Bool
    ) {
        self.start = start
        self.end = end
        self.permissions = permissions
        self.offset = offset
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.inode = inode
        self.path = path
        self.isDeleted = isDeleted
    }

    /// True when `address` lies in `[start, end)`.
    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// Backed by a file with a path (which may be in another mount namespace, or deleted).
    public var isFileBacked: Bool { path.hasPrefix("/") }

    /// The kernel's vDSO, mapped into every process.
    public var isVDSO: Bool { path == "[vdso]" }

    /// No path at all: anonymous memory (heap arenas, JIT code).
    public var isAnonymous: Bool { path.isEmpty }
}

/// The parsed `/proc/PID/maps` of a process, sorted by start address.
///
/// Parsing never fails: lines that do not have the kernel's shape are skipped and counted
/// in ``skippedLines``, so a surprise in one line does not lose the others.
public struct ProcessMaps: Sendable, Hashable {
    public var mappings: [MemoryMapping]
    public var skippedLines: Int

    /// Largest maps file read (a process with a million mappings is ~100 MiB; refuse that).
    static let maximumFileSize = 64 << 20

    public init(mappings: [MemoryMapping], skippedLines: Int = 0) {
        self.mappings = mappings.sorted { $0.start < $1.start }
        self.skippedLines = skippedLines
    }

    /// Parses the text of a maps file.
    public init(parsing text: String) {
        self.init(parsing: Array(text.utf8))
    }

    /// Parses the bytes of a maps file.
    public init(parsing bytes: [UInt8]) {
        var mappings: [MemoryMapping] = []
        var skipped = 0
        bytes.withUnsafeBufferPointer { buffer in
            var lineStart = 0
            while lineStart < buffer.count {
                var lineEnd = lineStart
                while lineEnd < buffer.count, buffer[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                let line = UnsafeBufferPointer(rebasing: buffer[lineStart..<lineEnd])
                if !line.isEmpty {
                    if let mapping = Self.parseLine(line) {
                        mappings.append(mapping)
                    } else {
                        skipped += 1
                    }
                }
                lineStart = lineEnd + 1
            }
        }
        self.init(mappings: mappings, skippedLines: skipped)
    }

    /// Reads and parses `<procRoot>/<pid>/maps`.
    public static func read(pid: Int32, procRoot: String = "/proc") throws(FileReadError)
        -> ProcessMaps
    {
        ProcessMaps(parsing: try FileContents.read("\(procRoot)/\(pid)/maps", limit: maximumFileSize))
    }

    /// The mapping containing `address`, by binary search, or nil.
    public func mapping(containing address: UInt64) -> MemoryMapping? {
        guard let index = Self.index(of: address, in: mappings) else { return nil }
        return mappings[index]
    }

    /// Index of the mapping in `sorted` containing `address`.
    static func index(of address: UInt64, in sorted: [MemoryMapping]) -> Int? {
        let low = sorted.countOfElements(withKeyAtMost: address) { $0.start }
        guard low > 0, sorted[low - 1].contains(address) else { return nil }
        return low - 1
    }

    // MARK: Line parsing

    /// `start-end perms offset major:minor inode [path]`, e.g.
    /// `7f1c2a000000-7f1c2a028000 r-xp 00028000 fd:01 1835043    /usr/lib/libc.so.6`.
    static func parseLine(_ line: UnsafeBufferPointer<UInt8>) -> MemoryMapping? {
        var cursor = 0
        func field() -> UnsafeBufferPointer<UInt8>? {
            while cursor < line.count, line[cursor] == UInt8(ascii: " ") { cursor += 1 }
            let start = cursor
            while cursor < line.count, line[cursor] != UInt8(ascii: " ") { cursor += 1 }
            return cursor > start ? UnsafeBufferPointer(rebasing: line[start..<cursor]) : nil
        }
        guard let range = field(), let permissionText = field(), let offsetText = field(),
            let deviceText = field(), let inodeText = field()
        else { return nil }

        guard let dash = range.firstIndex(of: UInt8(ascii: "-")),
            let start = parseHex(UnsafeBufferPointer(rebasing: range[..<dash])),
            let end = parseHex(UnsafeBufferPointer(rebasing: range[(dash + 1)...])),
            start < end
        else { return nil }

        guard permissionText.count == 4 else { return nil }
        var permissions: MemoryMapping.Permissions = []
        for (index, (set, flag)) in [
            (UInt8(ascii: "r"), MemoryMapping.Permissions.read),
            (UInt8(ascii: "w"), .write), (UInt8(ascii: "x"), .execute),
        ].enumerated() {
            switch permissionText[index] {
            case set: permissions.insert(flag)
            case UInt8(ascii: "-"): break
            default: return nil
            }
        }
        switch permissionText[3] {
        case UInt8(ascii: "s"): permissions.insert(.shared)
        case UInt8(ascii: "p"): break
        default: return nil
        }

        guard let offset = parseHex(offsetText),
            let colon = deviceText.firstIndex(of: UInt8(ascii: ":")),
            let major = parseHex(UnsafeBufferPointer(rebasing: deviceText[..<colon])),
            let minor = parseHex(UnsafeBufferPointer(rebasing: deviceText[(colon + 1)...])),
            let deviceMajor = UInt32(exactly: major), let deviceMinor = UInt32(exactly: minor),
            let inode = parseDecimal(inodeText)
        else { return nil }

        // The path is the rest of the line after the padding; it may contain spaces.
        while cursor < line.count, line[cursor] == UInt8(ascii: " ") { cursor += 1 }
        var pathBytes = Array(line[cursor...])
        let deletedSuffix = Array(" (deleted)".utf8)
        var isDeleted = false
        if pathBytes.count > deletedSuffix.count, pathBytes.suffix(deletedSuffix.count).elementsEqual(deletedSuffix) {
            pathBytes.removeLast(deletedSuffix.count)
            isDeleted = true
        }
        return MemoryMapping(
            start: start, end: end, permissions: permissions, offset: offset,
            deviceMajor: deviceMajor, deviceMinor: deviceMinor, inode: inode,
            path: unescapeNewlines(pathBytes), isDeleted: isDeleted)
    }

    /// The kernel prints a newline in a path as `\012`; undo that so the path can be opened.
    private static func unescapeNewlines(_ bytes: [UInt8]) -> String {
        let escape = Array("\\012".utf8)
        guard bytes.count >= escape.count, bytes.contains(UInt8(ascii: "\\")) else {
            return String(decoding: bytes, as: UTF8.self)
        }
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\"), index + escape.count <= bytes.count,
                bytes[index..<(index + escape.count)].elementsEqual(escape)
            {
                result.append(UInt8(ascii: "\n"))
                index += escape.count
            } else {
                result.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: result, as: UTF8.self)
    }
}

/// Parses 1 to 16 hex digits; nil for anything else.
func parseHex(_ digits: UnsafeBufferPointer<UInt8>) -> UInt64? {
    guard !digits.isEmpty, digits.count <= 16 else { return nil }
    var value: UInt64 = 0
    for digit in digits {
        let nibble: UInt8
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = digit - UInt8(ascii: "A") + 10
        default: return nil
        }
        value = value << 4 | UInt64(nibble)
    }
    return value
}

/// Parses 1 to 20 decimal digits without overflow; nil for anything else.
func parseDecimal(_ digits: UnsafeBufferPointer<UInt8>) -> UInt64? {
    guard !digits.isEmpty, digits.count <= 20 else { return nil }
    var value: UInt64 = 0
    for digit in digits {
        guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
        let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = shifted.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
        guard !overflow1, !overflow2 else { return nil }
        value = sum
    }
    return value
}
