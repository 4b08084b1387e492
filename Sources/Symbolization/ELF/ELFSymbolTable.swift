/// A function symbol found by address.
public struct ELFSymbol: Hashable, Sendable {
    /// The name as stored in the file (mangled).
    public var name: String
    /// `st_value`: the ELF virtual address of the first instruction.
    public var address: UInt64
    /// The extent used for lookups: `st_size`, or for a zero-size symbol the distance to the
    /// next symbol, bounded by the end of its section.
    public var size: UInt64

    public init(name: String, address: UInt64, size: UInt64) {
        self.name = name
        self.address = address
        self.size = size
    }
}

/// The function symbols of one ELF file (`.symtab` and `.dynsym` merged), sorted by address,
/// with binary-search lookup.
///
/// Only STT_FUNC and STT_GNU_IFUNC symbols that are defined and have a non-zero address are
/// kept. Aliases (several names at one address) collapse to one entry, preferring a global
/// name over a weak one over a local one, so `write` wins over `__GI___libc_write`. Names
/// stay in the file's string tables until asked for. The table keeps the file's bytes
/// alive.
public struct ELFSymbolTable {
    struct Entry {
        var start: UInt64
        var size: UInt64
        var nameOffset: UInt32
        var stringTable: UInt8
        /// Lower is preferred when aliases collapse.
        var rank: UInt8
        var section: UInt16
    }

    /// How many earlier entries a lookup checks when the nearest one does not contain the
    /// address; covers functions that enclose smaller symbols (local labels typed FUNC).
    static let enclosingSearchLimit = 16
    /// Bound on the extent inferred for a zero-size symbol whose section is unknown.
    static let maximumInferredSize: UInt64 = 1 << 16
    /// Longest symbol name read; longer ones (no NUL within reach) count as unreadable.
    /// Real C++ and Swift names stay well below this.
    static let maximumNameLength = 1 << 16

    private let image: ELFImage
    private let stringTables: [ELFRecord]
    private let entries: [Entry]
    /// Symbol tables that could not be read; the table holds the symbols of the others.
    public let problems: [ELFError]
    /// Function symbols dropped because their name offset is outside the string table.
    public let symbolsWithInvalidNames: Int

    init(image: ELFImage, sections: [ELFSection]) throws(ELFError) {
        self.image = image
        // At most one table of each kind (the gABI allows no more), so a hostile file
        // listing the same bytes as a thousand tables cannot multiply the work.
        // .symtab first: on alias ties its richer names come before .dynsym's.
        let tables = [
            sections.first { $0.type == ELFSection.typeSymbolTable },
            sections.first { $0.type == ELFSection.typeDynamicSymbolTable },
        ].compactMap { $0 }

        var problems: [ELFError] = []
        var stringTables: [ELFRecord] = []
        var entries: [Entry] = []
        var invalidNames = 0
        for table in tables {
            do {
                try Self.load(
                    table, sections: sections, image: image, tableIndex: UInt8(stringTables.count),
                    into: &entries, stringTables: &stringTables, invalidNames: &invalidNames)
            } catch {
                problems.append(error)
            }
        }
        if !tables.isEmpty, problems.count == tables.count, let first = problems.first {
            throw first
        }
        self.problems = problems
        self.stringTables = stringTables
        self.symbolsWithInvalidNames = invalidNames
        self.entries = Self.normalize(entries, sections: sections)
    }

    private static func load(
        _ table: ELFSection, sections: [ELFSection], image: ELFImage, tableIndex: UInt8,
        into entries: inout [Entry], stringTables: inout [ELFRecord], invalidNames: inout Int
    ) throws(ELFError) {
        // Separate debug files keep .dynsym as SHT_NOBITS: nothing to read.
        guard table.hasFileData else { return }
        let what = "symbol table \(table.name.isEmpty ? "#\(table.index)" : table.name)"
        guard table.entrySize >= 24, table.entrySize <= 4096 else {
            throw .malformed("\(what) has sh_entsize \(table.entrySize); an Elf64_Sym is 24 bytes")
        }
        let count = table.size / table.entrySize
        let symbols = try image.table(
            offset: table.offset, count: count, entrySize: table.entrySize, what: what)
        guard table.link != table.index, Int(exactly: table.link).map({ $0 < sections.count }) == true
        else {
            throw .malformed(
                "\(what) links to string table section \(table.link), which is itself or out of range (\(sections.count) sections)"
            )
        }
        let stringSection = sections[Int(table.link)]
        guard stringSection.type == ELFSection.typeStringTable, stringSection.hasFileData else {
            throw .malformed(
                "\(what) links to section \(table.link) of type \(stringSection.type), not a string table")
        }
        let strings = try image.record(
            offset: stringSection.offset, length: stringSection.size,
            what: "string table of \(what)")
        stringTables.append(strings)

        // `count` is bounded by the file size because the table fits in the file.
        let entrySize = Int(table.entrySize)
        entries.reserveCapacity(entries.count + Int(count))
        for index in 1..<max(Int(count), 1) {
            let symbol = symbols.entry(index, size: entrySize)
            let info = symbol.u8(4)
            let type = info & 0xf
            // STT_FUNC and STT_GNU_IFUNC; the latter are resolvers named like the function.
            guard type == 2 || type == 10 else { continue }
            let section = symbol.u16(6)
            let value = symbol.u64(8)
            guard section != 0, value != 0 else { continue }  // undefined or unplaced
            let nameOffset = symbol.u32(0)
            guard nameOffset != 0, Int(nameOffset) < strings.length else {
                invalidNames += 1
                continue
            }
            let binding = info >> 4
            let rank: UInt8 = binding == 1 ? 0 : (binding == 2 ? 1 : 2)
            entries.append(
                Entry(
                    start: value, size: symbol.u64(16), nameOffset: nameOffset,
                    stringTable: tableIndex, rank: rank, section: section))
        }
    }

    /// Sorts, collapses aliases and gives zero-size symbols an extent.
    private static func normalize(_ input: [Entry], sections: [ELFSection]) -> [Entry] {
        let sorted = input.sorted { a, b in
            if a.start != b.start { return a.start < b.start }
            if a.rank != b.rank { return a.rank < b.rank }
            if (a.size == 0) != (b.size == 0) { return a.size != 0 }
            return a.stringTable < b.stringTable
        }
        var entries: [Entry] = []
        entries.reserveCapacity(sorted.count)
        for entry in sorted {
            if let last = entries.last, last.start == entry.start {
                entries[entries.count - 1].size = max(last.size, entry.size)
            } else {
                entries.append(entry)
            }
        }
        for index in entries.indices where entries[index].size == 0 {
            let start = entries[index].start
            var end = UInt64.max
            if index + 1 < entries.count { end = entries[index + 1].start }
            var bounded = false
            let sectionIndex = Int(entries[index].section)
            if entries[index].section < 0xff00, sectionIndex < sections.count {
                let section = sections[sectionIndex]
                let (sectionEnd, overflow) = section.address.addingReportingOverflow(section.size)
                if !overflow, section.address <= start, sectionEnd > start {
                    end = min(end, sectionEnd)
                    bounded = true
                }
            }
            var size = end == .max ? 1 : end - start
            if !bounded { size = min(size, maximumInferredSize) }
            entries[index].size = max(size, 1)
        }
        return entries
    }

    /// Number of (collapsed) function symbols.
    public var count: Int { entries.count }

    /// Index of the symbol whose range contains `address`, or nil.
    public func index(containing address: UInt64) -> Int? {
        let low = entries.countOfElements(withKeyAtMost: address) { $0.start }
        var index = low - 1
        let lowest = max(0, low - Self.enclosingSearchLimit)
        while index >= lowest {
            let entry = entries[index]
            if address - entry.start < entry.size { return index }
            index -= 1
        }
        return nil
    }

    /// The address of symbol `index` (0 ..< count).
    public func address(at index: Int) -> UInt64 { entries[index].start }

    /// The lookup extent of symbol `index` (0 ..< count).
    public func size(at index: Int) -> UInt64 { entries[index].size }

    /// The name of symbol `index` (0 ..< count), or nil when the string table has no NUL
    /// after it.
    public func name(at index: Int) -> String? {
        let entry = entries[index]
        return stringTables[Int(entry.stringTable)].cString(
            Int(entry.nameOffset), maximumLength: Self.maximumNameLength)
    }

    /// The symbol whose range contains `address`, or nil.
    public func symbol(containing address: UInt64) -> ELFSymbol? {
        guard let index = index(containing: address), let name = name(at: index) else { return nil }
        return ELFSymbol(name: name, address: entries[index].start, size: entries[index].size)
    }

    /// All symbols in address order (for tests and tools; materializes every name).
    public func allSymbols() -> [ELFSymbol] {
        entries.indices.compactMap { index in
            name(at: index).map { ELFSymbol(name: $0, address: entries[index].start, size: entries[index].size) }
        }
    }
}
