public import NodeprofCore

/// Why kernel symbols could not be loaded.
public enum KernelSymbolsError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Reading the file failed.
    case cannotRead(FileReadError)
    /// Every address is 0: the kernel hides them from this reader (kptr_restrict).
    case addressesHidden(path: String)
    /// No text symbol could be parsed.
    case noSymbols(path: String, skippedLines: Int)

    public var description: String {
        switch self {
        case .cannotRead(let error):
            return "cannot load kernel symbols: \(error)"
        case .addressesHidden(let path):
            return
                "cannot load kernel symbols: every address in \(path) is 0 because the kernel hides "
                + "them (kernel.kptr_restrict); run as root (CAP_SYSLOG) or set "
                + "`sysctl kernel.kptr_restrict=0`"
        case .noSymbols(let path, let skippedLines):
            return
                "cannot load kernel symbols: \(path) has no text symbols (\(skippedLines) lines not understood)"
        }
    }
}

/// A kernel function found by address.
public struct KernelSymbol: Hashable, Sendable {
    public var name: String
    /// Start address of the function.
    public var address: UInt64
    /// The module without brackets (`ext4`), nil for the kernel image itself.
    public var module: String?
}

/// The kernel's text symbols from `/proc/kallsyms`, sorted by address, with binary-search
/// lookup.
///
/// kallsyms has no sizes: a symbol covers the addresses up to the next symbol, at most
/// ``maximumSymbolSize`` bytes, so an address in a hole far from any function resolves to
/// nothing. Only text symbols (`t`, `T`, `w`, `W`) are kept; names live in one byte buffer
/// to keep the ~150k entries of a distribution kernel compact.
public struct KernelSymbols: Sendable {
    struct Entry {
        var address: UInt64
        var nameOffset: UInt32
        var nameLength: UInt16
        /// 0 for the kernel image, else index + 1 in `modules`.
        var module: UInt16
    }

    /// Largest distance from a symbol's start that still resolves to it.
    public static let maximumSymbolSize: UInt64 = 1 << 20
    static let maximumFileSize = 256 << 20

    private let entries: [Entry]
    private let names: [UInt8]
    private let modules: [String]
    /// Lines that did not parse (malformed, or a name or module too long).
    public let skippedLines: Int

    /// Reads and parses `path` (default `/proc/kallsyms`).
    public static func load(path: String = "/proc/kallsyms") throws(KernelSymbolsError)
        -> KernelSymbols
    {
        let bytes: [UInt8]
        do {
            bytes = try FileContents.read(path, limit: maximumFileSize)
        } catch {
            throw .cannotRead(error)
        }
        return try KernelSymbols(parsing: bytes, path: path)
    }

    /// Parses kallsyms text: `address type name [module]` per line.
    public init(parsing text: String, path: String = "/proc/kallsyms") throws(KernelSymbolsError) {
        try self.init(parsing: Array(text.utf8), path: path)
    }

    /// Parses kallsyms bytes. `path` only names the source in errors.
    public init(parsing bytes: [UInt8], path: String = "/proc/kallsyms") throws(KernelSymbolsError) {
        var entries: [Entry] = []
        var names: [UInt8] = []
        var modules: [String] = []
        var moduleIndex: [ArraySlice<UInt8>: UInt16] = [:]
        var skipped = 0
        var sawZeroAddress = false

        var lineStart = 0
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            guard lineEnd > lineStart else { continue }
            guard let line = Self.parseLine(bytes[lineStart..<lineEnd]) else {
                skipped += 1
                continue
            }
            guard line.isText else { continue }
            guard line.address != 0 else {
                sawZeroAddress = true
                continue
            }
            guard line.name.count <= Int(UInt16.max), names.count + line.name.count <= Int(UInt32.max)
            else {
                skipped += 1
                continue
            }
            var module: UInt16 = 0
            if let moduleName = line.module {
                if let known = moduleIndex[moduleName] {
                    module = known
                } else if modules.count < Int(UInt16.max) - 1 {
                    modules.append(String(decoding: moduleName, as: UTF8.self))
                    module = UInt16(modules.count)
                    moduleIndex[moduleName] = module
                }
            }
            entries.append(
                Entry(
                    address: line.address, nameOffset: UInt32(names.count),
                    nameLength: UInt16(line.name.count), module: module))
            names.append(contentsOf: line.name)
        }

        if entries.isEmpty {
            if sawZeroAddress { throw .addressesHidden(path: path) }
            throw .noSymbols(path: path, skippedLines: skipped)
        }
        // Stable order, so of several names at one address the first one listed wins and
        // the result does not depend on the sort algorithm.
        let sorted = entries.enumerated().sorted { a, b in
            a.element.address != b.element.address
                ? a.element.address < b.element.address : a.offset < b.offset
        }
        var unique: [Entry] = []
        unique.reserveCapacity(sorted.count)
        for (_, entry) in sorted where unique.last?.address != entry.address {
            unique.append(entry)
        }
        self.entries = unique
        self.names = names
        self.modules = modules
        self.skippedLines = skipped
    }

    /// Number of distinct symbol addresses.
    public var count: Int { entries.count }

    /// The function containing `address`, or nil.
    public func symbol(containing address: UInt64) -> KernelSymbol? {
        let low = entries.countOfElements(withKeyAtMost: address) { $0.address }
        guard low > 0 else { return nil }
        let entry = entries[low - 1]
        var limit = entry.address &+ Self.maximumSymbolSize
        if limit < entry.address { limit = .max }
        if low < entries.count { limit = min(limit, entries[low].address) }
        guard address < limit else { return nil }
        let start = Int(entry.nameOffset)
        let name = String(decoding: names[start..<(start + Int(entry.nameLength))], as: UTF8.self)
        let module = entry.module == 0 ? nil : modules[Int(entry.module) - 1]
        return KernelSymbol(name: name, address: entry.address, module: module)
    }

    private struct Line {
        var address: UInt64
        var isText: Bool
        var name: ArraySlice<UInt8>
        var module: ArraySlice<UInt8>?
    }

    /// `ffffffff816b89f0 T vfs_read` or `ffffffffc0a01000 t ext4_fill_super\t[ext4]`.
    private static func parseLine(_ line: ArraySlice<UInt8>) -> Line? {
        var fields: [ArraySlice<UInt8>] = []
        var cursor = line.startIndex
        while cursor < line.endIndex, fields.count < 5 {
            while cursor < line.endIndex, line[cursor] == UInt8(ascii: " ") || line[cursor] == UInt8(ascii: "\t") {
                cursor += 1
            }
            let start = cursor
            while cursor < line.endIndex, line[cursor] != UInt8(ascii: " "), line[cursor] != UInt8(ascii: "\t") {
                cursor += 1
            }
            if cursor > start { fields.append(line[start..<cursor]) }
        }
        guard fields.count == 3 || fields.count == 4 else { return nil }
        let address = fields[0].withUnsafeBufferPointer { parseHex($0) }
        guard let address, fields[1].count == 1, let type = fields[1].first else { return nil }
        guard
            (type >= UInt8(ascii: "a") && type <= UInt8(ascii: "z"))
                || (type >= UInt8(ascii: "A") && type <= UInt8(ascii: "Z"))
        else { return nil }
        var module: ArraySlice<UInt8>? = nil
        if fields.count == 4 {
            let text = fields[3]
            guard text.count > 2, text.first == UInt8(ascii: "["), text.last == UInt8(ascii: "]") else {
                return nil
            }
            module = text.dropFirst().dropLast()
        }
        let isText = [UInt8(ascii: "t"), UInt8(ascii: "T"), UInt8(ascii: "w"), UInt8(ascii: "W")].contains(type)
        return Line(address: address, isText: isText, name: fields[2], module: module)
    }
}

extension KernelSymbols {
    /// The running kernel's GNU build id (lowercase hex) from `/sys/kernel/notes`, the note
    /// list the kernel exports; nil when the file is unreadable or has no build-id note.
    /// OTLP identifies the kernel mapping by it.
    public static func buildID(notesPath: String = "/sys/kernel/notes") -> String? {
        guard let bytes = try? FileContents.read(notesPath, limit: 64 << 10), !bytes.isEmpty,
            let image = try? bytes.withUnsafeBytes({ buffer throws(ELFError) in try ELFImage(copying: buffer) })
        else { return nil }
        return ELFNotes.buildID(image: image, offset: 0, size: UInt64(bytes.count), alignment: 4)?.hexString
    }
}
