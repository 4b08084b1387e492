import Symbolization

/// Builds small, valid ELF64 files byte by byte, and records where each structure lies so
/// tests can corrupt exactly one field. The hostile seed files are produced from it.
struct SyntheticELF {
    struct Function {
        var name: String
        /// Offset from the load base.
        var offset: UInt64
        var size: UInt64
        /// STB_GLOBAL (1), STB_WEAK (2), STB_LOCAL (0).
        var binding: UInt8 = 1
        /// STT_FUNC (2), STT_GNU_IFUNC (10), STT_OBJECT (1).
        var type: UInt8 = 2
    }

    /// Where the parts of a built file are.
    struct Layout {
        var programHeaders = 0
        var note = 0
        var strings = 0
        var symbols = 0
        var sectionNames = 0
        var debugLink = 0
        var sectionHeaders = 0
        /// Section indices by name.
        var sections: [String: Int] = [:]

        /// File offset of field `fieldOffset` of section header `name`.
        func sectionField(_ name: String, _ fieldOffset: Int) -> Int {
            sectionHeaders + (sections[name] ?? 0) * 64 + fieldOffset
        }
    }

    var fileType: UInt16 = 3
    var functions: [Function] = [
        Function(name: "first_function", offset: 0x200, size: 0x40),
        Function(name: "second_function", offset: 0x240, size: 0x20),
        Function(name: "weak_alias", offset: 0x240, size: 0x20, binding: 2),
        Function(name: "zero_size_function", offset: 0x280, size: 0),
        Function(name: "resolver", offset: 0x2c0, size: 0x10, type: 10),
        Function(name: "a_variable", offset: 0x2d0, size: 0x8, type: 1),
    ]
    var buildID: [UInt8] = Array(0..<20).map { UInt8($0 * 7 + 1) }
    var debugLinkName = "synthetic.debug"

    var base: UInt64 { fileType == 2 ? 0x40_0000 : 0 }

    func build() -> (bytes: [UInt8], layout: Layout) {
        var bytes = [UInt8](repeating: 0, count: 64 + 2 * 56)
        var layout = Layout()
        layout.programHeaders = 64

        // Note: namesz, descsz, type, "GNU\0", descriptor.
        layout.note = bytes.count
        bytes.append(le32: 4)
        bytes.append(le32: UInt32(buildID.count))
        bytes.append(le32: 3)
        bytes.append(contentsOf: Array("GNU".utf8) + [0])
        bytes.append(contentsOf: buildID)
        bytes.pad(to: 4)
        let noteSize = bytes.count - layout.note

        layout.strings = bytes.count
        var nameOffsets: [Int] = []
        bytes.append(0)
        for function in functions {
            nameOffsets.append(bytes.count - layout.strings)
            bytes.append(contentsOf: Array(function.name.utf8) + [0])
        }
        let stringsSize = bytes.count - layout.strings

        bytes.pad(to: 8)
        layout.symbols = bytes.count
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 24))
        for (function, nameOffset) in zip(functions, nameOffsets) {
            bytes.append(le32: UInt32(nameOffset))
            bytes.append(function.binding << 4 | function.type)
            bytes.append(0)
            bytes.append(le16: 1)  // .text
            bytes.append(le64: base + function.offset)
            bytes.append(le64: function.size)
        }
        let symbolsSize = bytes.count - layout.symbols

        let sectionNames = ["", ".text", ".note.gnu.build-id", ".symtab", ".strtab", ".shstrtab", ".gnu_debuglink"]
        layout.sectionNames = bytes.count
        var sectionNameOffsets: [Int] = []
        for name in sectionNames {
            sectionNameOffsets.append(bytes.count - layout.sectionNames)
            bytes.append(contentsOf: Array(name.utf8) + [0])
        }
        let sectionNamesSize = bytes.count - layout.sectionNames

        bytes.pad(to: 4)
        layout.debugLink = bytes.count
        bytes.append(contentsOf: Array(debugLinkName.utf8) + [0])
        bytes.pad(to: 4)
        bytes.append(le32: 0xdead_beef)
        let debugLinkSize = bytes.count - layout.debugLink

        bytes.pad(to: 8)
        layout.sectionHeaders = bytes.count
        // Make room so .text (which spans the file) covers every function.
        let textSize = UInt64(max(bytes.count + sectionNames.count * 64, 0x300))
        for (index, name) in sectionNames.enumerated() { layout.sections[name] = index }
        func section(
            _ nameIndex: Int, type: UInt32, flags: UInt64, address: UInt64, offset: Int, size: Int,
            link: UInt32 = 0, info: UInt32 = 0, alignment: UInt64 = 1, entrySize: UInt64 = 0
        ) {
            bytes.append(le32: UInt32(sectionNameOffsets[nameIndex]))
            bytes.append(le32: type)
            bytes.append(le64: flags)
            bytes.append(le64: address)
            bytes.append(le64: UInt64(offset))
            bytes.append(le64: UInt64(size))
            bytes.append(le32: link)
            bytes.append(le32: info)
            bytes.append(le64: alignment)
            bytes.append(le64: entrySize)
        }
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 64))
        section(1, type: 1, flags: 6, address: base, offset: 0, size: Int(textSize), alignment: 16)
        section(
            2, type: 7, flags: 2, address: base + UInt64(layout.note), offset: layout.note, size: noteSize, alignment: 4
        )
        section(
            3, type: 2, flags: 0, address: 0, offset: layout.symbols, size: symbolsSize, link: 4, info: 1, alignment: 8,
            entrySize: 24)
        section(4, type: 3, flags: 0, address: 0, offset: layout.strings, size: stringsSize)
        section(5, type: 3, flags: 0, address: 0, offset: layout.sectionNames, size: sectionNamesSize)
        section(6, type: 1, flags: 0, address: 0, offset: layout.debugLink, size: debugLinkSize, alignment: 4)
        if bytes.count < Int(textSize) {
            bytes.append(contentsOf: [UInt8](repeating: 0xcc, count: Int(textSize) - bytes.count))
        }

        // ELF header.
        bytes.replace(at: 0, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0])
        bytes.put(le16: fileType, at: 16)
        bytes.put(le16: 62, at: 18)  // EM_X86_64
        bytes.put(le32: 1, at: 20)
        bytes.put(le64: base + 0x200, at: 24)
        bytes.put(le64: 64, at: 32)  // e_phoff
        bytes.put(le64: UInt64(layout.sectionHeaders), at: 40)
        bytes.put(le16: 64, at: 52)
        bytes.put(le16: 56, at: 54)
        bytes.put(le16: 2, at: 56)
        bytes.put(le16: 64, at: 58)
        bytes.put(le16: UInt16(sectionNames.count), at: 60)
        bytes.put(le16: 5, at: 62)

        // PT_LOAD (R+X) over the whole file, PT_NOTE over the note.
        let load = 64
        bytes.put(le32: 1, at: load)
        bytes.put(le32: 5, at: load + 4)
        bytes.put(le64: 0, at: load + 8)
        bytes.put(le64: base, at: load + 16)
        bytes.put(le64: base, at: load + 24)
        bytes.put(le64: UInt64(bytes.count), at: load + 32)
        bytes.put(le64: UInt64(bytes.count), at: load + 40)
        bytes.put(le64: 0x1000, at: load + 48)
        let note = 64 + 56
        bytes.put(le32: 4, at: note)
        bytes.put(le32: 4, at: note + 4)
        bytes.put(le64: UInt64(layout.note), at: note + 8)
        bytes.put(le64: base + UInt64(layout.note), at: note + 16)
        bytes.put(le64: base + UInt64(layout.note), at: note + 24)
        bytes.put(le64: UInt64(noteSize), at: note + 32)
        bytes.put(le64: UInt64(noteSize), at: note + 40)
        bytes.put(le64: 4, at: note + 48)
        return (bytes, layout)
    }
}

extension Array where Element == UInt8 {
    mutating func append(le16 value: UInt16) {
        append(contentsOf: Swift.withUnsafeBytes(of: value.littleEndian) { Array($0) })
    }
    mutating func append(le32 value: UInt32) {
        append(contentsOf: Swift.withUnsafeBytes(of: value.littleEndian) { Array($0) })
    }
    mutating func append(le64 value: UInt64) {
        append(contentsOf: Swift.withUnsafeBytes(of: value.littleEndian) { Array($0) })
    }
    mutating func pad(to alignment: Int) {
        while count % alignment != 0 { append(0) }
    }
    mutating func replace(at offset: Int, with bytes: [UInt8]) {
        for (index, byte) in bytes.enumerated() where offset + index < count { self[offset + index] = byte }
    }
    mutating func put(le16 value: UInt16, at offset: Int) {
        replace(at: offset, with: Swift.withUnsafeBytes(of: value.littleEndian) { Array($0) })
    }
    mutating func put(le32 value: UInt32, at offset: Int) {
        replace(at: offset, with: Swift.withUnsafeBytes(of: value.littleEndian) { Array($0) })
    }
    mutating func put(le64 value: UInt64, at offset: Int) {
        replace(at: offset, with: Swift.withUnsafeBytes(of: value.littleEndian) { Array($0) })
    }
}

/// Calls every reader entry point on `file`; the tests' and the fuzzer's notion of "use".
/// Returns how many symbol lookups succeeded, so the work cannot be optimized away.
@discardableResult
func exerciseEverything(_ file: ELFFile) -> Int {
    var found = 0
    _ = file.buildID?.hexString
    _ = file.debugLink
    _ = file.isPositionIndependent
    if let sections = try? file.sections() {
        for section in sections.prefix(64) {
            _ = try? file.bytes(of: section)
        }
        _ = file.section(named: ".text")
    }
    if let table = try? file.symbolTable() {
        _ = table.problems
        for index in stride(from: 0, to: table.count, by: max(1, table.count / 256)) {
            let start = table.address(at: index)
            for probe in [start, start &+ 1, start &+ table.size(at: index) &- 1, start &- 1] {
                if table.symbol(containing: probe) != nil { found += 1 }
            }
        }
        _ = table.allSymbols().count
    }
    for probe: UInt64 in [0, 1, 0x1000, 0x40_0000, UInt64.max, UInt64.max / 2] {
        if file.symbol(containing: probe) != nil { found += 1 }
        _ = file.virtualAddress(forFileOffset: probe)
        _ = file.virtualAddress(ofRuntimeAddress: probe, mappingStart: 0x1000, mappingOffset: probe)
        _ = file.virtualAddress(ofRuntimeAddress: UInt64.max, mappingStart: 0, mappingOffset: probe)
    }
    for segment in file.loadSegments {
        if let address = file.virtualAddress(forFileOffset: segment.offset), file.symbol(containing: address) != nil {
            found += 1
        }
        _ = file.loadSegment(containingFileOffset: segment.offset &+ segment.fileSize / 2)
    }
    return found
}
