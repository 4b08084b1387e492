/// A 64-bit little-endian ELF file (x86-64, arm64, ...), read without libelf.
///
/// Contract:
/// - Initialization reads only the ELF header and the program headers; section headers,
///   symbol tables, the build id and `.gnu_debuglink` are parsed on first use and cached.
/// - Every offset, size and count taken from the file is checked against the file's length
///   with overflow-safe arithmetic before it is used; counts are validated against the bytes
///   that would hold them before anything is allocated, so memory use is bounded by the
///   file's size. Hostile input gives an ``ELFError`` or a partial result, never a trap.
/// - The file is mapped read-only (`open` + `fstat` + `mmap`) and unmapped when the
///   `ELFFile` is released. ``init(copying:name:)`` parses a memory buffer with the same code.
/// - Not thread-safe (lazy caches): confine an instance to one thread or task.
///
/// Typical use, e.g. from a benchmark:
/// ```swift
/// let file = try ELFFile(path: "/lib/x86_64-linux-gnu/libc.so.6")
/// let names = addresses.map { file.symbol(containing: $0)?.name }
/// ```
public final class ELFFile {
    /// The path the file was opened from, or the name given to an in-memory image.
    public let name: String
    /// `e_type`. ``ELFFileType/sharedObject`` covers PIE executables as well as libraries.
    public let fileType: ELFFileType
    /// `e_machine` (62 is x86-64, 183 is AArch64).
    public let machine: UInt16
    /// `e_entry`.
    public let entryPoint: UInt64
    /// All program headers, in file order.
    public let programHeaders: [ELFSegment]
    /// The PT_LOAD program headers, in file order.
    public let loadSegments: [ELFSegment]
    /// True when the file has a PT_DYNAMIC segment (dynamically linked).
    public let hasDynamicSegment: Bool

    let image: ELFImage
    private let sectionHeaderOffset: UInt64
    private let sectionHeaderEntrySize: UInt64
    private let sectionCountField: UInt16
    private let sectionNamesIndexField: UInt16

    private var cachedSections: Result<[ELFSection], ELFError>?
    private var cachedSymbolTable: Result<ELFSymbolTable, ELFError>?
    private var cachedBuildID: ELFBuildID??
    private var cachedDebugLink: ELFDebugLink??

    /// Maps and parses the file at `path`.
    public convenience init(path: String) throws(ELFError) {
        try self.init(image: ELFImage(path: path), name: path)
    }

    /// Parses a copy of `bytes` (the fuzzer's and the vDSO's entry point).
    public convenience init(copying bytes: UnsafeRawBufferPointer, name: String = "<memory>")
        throws(ELFError)
    {
        try self.init(image: ELFImage(copying: bytes), name: name)
    }

    /// Parses a copy of `bytes`.
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws(ELFError) {
        let image = bytes.withUnsafeBytes { buffer in
            Result { () throws(ELFError) in try ELFImage(copying: buffer) }
        }
        try self.init(image: image.get(), name: name)
    }

    init(image: ELFImage, name: String) throws(ELFError) {
        self.image = image
        self.name = name

        // Check the identification bytes one at a time so that short files get the most
        // specific error (a 20-byte 32-bit file is "32-bit", not "truncated").
        let whole = ELFRecord(pointer: image.base, length: image.count)
        let magic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]
        guard image.count >= 4, whole.bytes(0, count: 4) == magic else {
            throw .notELF(firstBytes: whole.bytes(0, count: min(image.count, 16)) ?? [])
        }
        guard image.count > 5 else {
            throw .truncated(what: "ELF identification", offset: 0, size: 16, fileSize: image.size)
        }
        let elfClass = whole.u8(4)
        guard elfClass == 2 else { throw .unsupportedClass(elfClass) }
        let encoding = whole.u8(5)
        guard encoding == 1 else { throw .unsupportedByteOrder(encoding) }

        let header = try image.record(offset: 0, length: 64, what: "ELF header")
        fileType = ELFFileType(rawValue: header.u16(16))
        machine = header.u16(18)
        entryPoint = header.u64(24)
        let programHeaderOffset = header.u64(32)
        sectionHeaderOffset = header.u64(40)
        let programHeaderEntrySize = UInt64(header.u16(54))
        var programHeaderCount = UInt64(header.u16(56))
        sectionHeaderEntrySize = UInt64(header.u16(58))
        sectionCountField = header.u16(60)
        sectionNamesIndexField = header.u16(62)

        // PN_XNUM: the real count lives in sh_info of section header 0.
        if programHeaderCount == 0xffff {
            guard sectionHeaderOffset != 0, sectionHeaderEntrySize >= 64 else {
                throw .malformed(
                    "e_phnum is PN_XNUM (0xffff) but there is no section header 0 holding the count")
            }
            let first = try image.record(
                offset: sectionHeaderOffset, length: 64, what: "section header 0")
            programHeaderCount = UInt64(first.u32(44))
        }

        var headers: [ELFSegment] = []
        if programHeaderCount > 0 {
            guard programHeaderEntrySize >= 56 else {
                throw .malformed(
                    "e_phentsize \(programHeaderEntrySize) is smaller than an Elf64_Phdr (56 bytes)")
            }
            let table = try image.table(
                offset: programHeaderOffset, count: programHeaderCount,
                entrySize: programHeaderEntrySize, what: "program header table")
            // The table fits in the file, so the count is bounded by the file size.
            headers.reserveCapacity(Int(programHeaderCount))
            for index in 0..<Int(programHeaderCount) {
                let entry = table.entry(index, size: Int(programHeaderEntrySize))
                headers.append(
                    ELFSegment(
                        type: entry.u32(0), flags: ELFSegmentFlags(rawValue: entry.u32(4)),
                        offset: entry.u64(8), virtualAddress: entry.u64(16),
                        fileSize: entry.u64(32), memorySize: entry.u64(40),
                        alignment: entry.u64(48)))
            }
        }
        programHeaders = headers
        loadSegments = headers.filter { $0.type == ELFSegment.typeLoad }
        hasDynamicSegment = headers.contains { $0.type == ELFSegment.typeDynamic }
    }

    /// Size of the file in bytes.
    public var byteCount: Int { image.count }

    /// `fstat` of the file, nil for in-memory images.
    public var fileStatus: ELFFileStatus? { image.fileStatus }

    /// True for ET_DYN files (shared libraries and PIE executables), which are loaded at a
    /// bias chosen at run time.
    public var isPositionIndependent: Bool { fileType == .sharedObject }

    // MARK: Sections

    /// The section headers. Parsed on first call; an empty array when the file has none.
    /// Throws when the section header table does not fit in the file. Section names are
    /// empty when the name string table is missing or damaged (a partial result).
    public func sections() throws(ELFError) -> [ELFSection] {
        if let cachedSections { return try cachedSections.get() }
        let result: Result<[ELFSection], ELFError>
        do {
            result = .success(try parseSections())
        } catch {
            result = .failure(error)
        }
        cachedSections = result
        return try result.get()
    }

    /// The first section called `name`, or nil (also when the sections cannot be read).
    public func section(named name: String) -> ELFSection? {
        guard let sections = try? sections() else { return nil }
        return sections.first { $0.name == name }
    }

    /// A copy of a section's bytes (empty for SHT_NOBITS).
    public func bytes(of section: ELFSection) throws(ELFError) -> [UInt8] {
        guard section.hasFileData else { return [] }
        return try bytes(atOffset: section.offset, count: section.size, what: "section \(section.name)")
    }

    /// A copy of `count` bytes at file offset `offset`.
    public func bytes(atOffset offset: UInt64, count: UInt64, what: String = "requested range")
        throws(ELFError) -> [UInt8]
    {
        let record = try image.record(offset: offset, length: count, what: what)
        return record.bytes(0, count: record.length) ?? []
    }

    private func parseSections() throws(ELFError) -> [ELFSection] {
        guard sectionHeaderOffset != 0 else { return [] }
        guard sectionHeaderEntrySize >= 64 else {
            throw .malformed("e_shentsize \(sectionHeaderEntrySize) is smaller than an Elf64_Shdr (64 bytes)")
        }
        var count = UInt64(sectionCountField)
        var namesIndex = UInt64(sectionNamesIndexField)
        if count == 0 || namesIndex == 0xffff {
            // Extended numbering (more than 0xff00 sections): header 0 holds the real values.
            let first = try image.record(offset: sectionHeaderOffset, length: 64, what: "section header 0")
            if count == 0 { count = first.u64(32) }
            if namesIndex == 0xffff { namesIndex = UInt64(first.u32(40)) }
        }
        guard count > 0 else { return [] }
        let table = try image.table(
            offset: sectionHeaderOffset, count: count, entrySize: sectionHeaderEntrySize,
            what: "section header table")
        let entrySize = Int(sectionHeaderEntrySize)

        var sections: [ELFSection] = []
        sections.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let entry = table.entry(index, size: entrySize)
            sections.append(
                ELFSection(
                    index: index, name: "", type: entry.u32(4), flags: entry.u64(8),
                    address: entry.u64(16), offset: entry.u64(24), size: entry.u64(32),
                    link: entry.u32(40), info: entry.u32(44), alignment: entry.u64(48),
                    entrySize: entry.u64(56)))
        }

        // Names are a convenience: a bad name table leaves them empty rather than failing.
        if namesIndex != 0, namesIndex < count {
            let names = sections[Int(namesIndex)]
            if names.type == ELFSection.typeStringTable, names.hasFileData,
                let nameTable = try? image.record(offset: names.offset, length: names.size, what: "")
            {
                for index in sections.indices {
                    let nameOffset = Int(table.entry(index, size: entrySize).u32(0))
                    sections[index].name = nameTable.cString(nameOffset, maximumLength: 256) ?? ""
                }
            }
        }
        return sections
    }

    // MARK: Symbols

    /// The function symbols of `.symtab` and `.dynsym`, merged and sorted by address.
    /// Built on first call. Throws when the section headers cannot be read, or when every
    /// symbol table in the file is damaged; a damaged table next to a good one is skipped
    /// and listed in ``ELFSymbolTable/problems``. A file without symbol tables gives an
    /// empty table.
    public func symbolTable() throws(ELFError) -> ELFSymbolTable {
        if let cachedSymbolTable { return try cachedSymbolTable.get() }
        let result: Result<ELFSymbolTable, ELFError>
        do {
            result = .success(try ELFSymbolTable(image: image, sections: sections()))
        } catch {
            result = .failure(error)
        }
        cachedSymbolTable = result
        return try result.get()
    }

    /// The function symbol whose range contains the ELF virtual address `address`, or nil
    /// (also when the symbol tables cannot be read; call ``symbolTable()`` for the error).
    public func symbol(containing address: UInt64) -> ELFSymbol? {
        guard let table = try? symbolTable() else { return nil }
        return table.symbol(containing: address)
    }

    // MARK: Notes

    /// The GNU build id, from a PT_NOTE segment or else from an SHT_NOTE section; nil when
    /// the file has none or the notes are damaged.
    public var buildID: ELFBuildID? {
        if let cachedBuildID { return cachedBuildID }
        let found = findBuildID()
        cachedBuildID = .some(found)
        return found
    }

    private func findBuildID() -> ELFBuildID? {
        for segment in programHeaders where segment.type == ELFSegment.typeNote {
            if let id = ELFNotes.buildID(
                image: image, offset: segment.offset, size: segment.fileSize,
                alignment: segment.alignment)
            {
                return id
            }
        }
        guard let sections = try? sections() else { return nil }
        for section in sections where section.type == ELFSection.typeNote {
            if let id = ELFNotes.buildID(
                image: image, offset: section.offset, size: section.size,
                alignment: section.alignment)
            {
                return id
            }
        }
        return nil
    }

    /// The `.gnu_debuglink` section's file name and CRC, or nil when absent or damaged.
    public var debugLink: ELFDebugLink? {
        if let cachedDebugLink { return cachedDebugLink }
        var found: ELFDebugLink? = nil
        if let section = section(named: ".gnu_debuglink"), section.hasFileData,
            let record = try? image.record(offset: section.offset, length: section.size, what: ""),
            let bytes = record.cStringBytes(0), bytes.count > 0
        {
            // The name is NUL-terminated and padded to 4 bytes; the CRC32 follows.
            let crcOffset = (bytes.count + 1 + 3) & ~3
            if crcOffset <= record.length - 4 {
                found = ELFDebugLink(
                    fileName: String(decoding: bytes, as: UTF8.self), crc32: record.u32(crcOffset))
            }
        }
        cachedDebugLink = .some(found)
        return found
    }

    // MARK: Address translation

    /// The PT_LOAD segment whose file bytes contain `fileOffset`. When hostile or unusual
    /// files have several, an executable one wins, else the first in file order.
    public func loadSegment(containingFileOffset fileOffset: UInt64) -> ELFSegment? {
        var firstMatch: ELFSegment? = nil
        for segment in loadSegments where segment.contains(fileOffset: fileOffset) {
            if segment.flags.contains(.execute) { return segment }
            if firstMatch == nil { firstMatch = segment }
        }
        return firstMatch
    }

    /// The ELF virtual address (the address space of the symbol table) of the byte at
    /// `fileOffset`, or nil when no PT_LOAD segment maps that offset.
    public func virtualAddress(forFileOffset fileOffset: UInt64) -> UInt64? {
        guard let segment = loadSegment(containingFileOffset: fileOffset) else { return nil }
        let (address, overflow) = segment.virtualAddress.addingReportingOverflow(
            fileOffset - segment.offset)
        return overflow ? nil : address
    }

    /// Translates an address of a running process into this file's virtual addresses.
    ///
    /// `mappingStart` and `mappingOffset` come from the `/proc/PID/maps` line that contains
    /// `runtimeAddress`. The file offset of the address is
    /// `runtimeAddress - mappingStart + mappingOffset`; the PT_LOAD segment holding that
    /// offset gives `offset - p_offset + p_vaddr`. This one rule covers non-PIE executables,
    /// PIE executables and shared libraries, whatever their load bias. Nil when the address
    /// is below the mapping or no segment maps it.
    public func virtualAddress(
        ofRuntimeAddress runtimeAddress: UInt64, mappingStart: UInt64, mappingOffset: UInt64
    ) -> UInt64? {
        guard runtimeAddress >= mappingStart else { return nil }
        let (fileOffset, overflow) = (runtimeAddress - mappingStart).addingReportingOverflow(
            mappingOffset)
        guard !overflow else { return nil }
        return virtualAddress(forFileOffset: fileOffset)
    }
}
