import Foundation
import TestSupport
import Testing

@testable import Symbolization

/// Hostile and damaged ELF files: every case gives a typed error or a usable partial result.
@Suite struct HostileELFTests {
    static let clean = SyntheticELF().build()

    /// `clean` with `change` applied.
    static func corrupted(_ change: (inout [UInt8], SyntheticELF.Layout) -> Void) -> [UInt8] {
        var bytes = clean.bytes
        change(&bytes, clean.layout)
        return bytes
    }

    /// The hostile cases, by seed file name. Each is also committed under `Hostile/`.
    static let cases: [(name: String, bytes: [UInt8])] = [
        ("synthetic-valid.elf", clean.bytes),
        ("empty.bin", []),
        ("not-elf.bin", Array("#!/bin/sh\necho not an ELF file\n".utf8)),
        ("magic-only.elf", [0x7f, 0x45, 0x4c, 0x46]),
        ("truncated-header.elf", Array(clean.bytes.prefix(40))),
        ("elf32.elf", corrupted { bytes, _ in bytes[4] = 1 }),
        ("big-endian.elf", corrupted { bytes, _ in bytes[5] = 2 }),
        ("phnum-huge.elf", corrupted { bytes, _ in bytes.put(le16: 0xfff0, at: 56) }),
        ("phentsize-small.elf", corrupted { bytes, _ in bytes.put(le16: 8, at: 54) }),
        (
            "phnum-xnum-without-sections.elf",
            corrupted { bytes, _ in
                bytes.put(le16: 0xffff, at: 56)
                bytes.put(le64: 0, at: 40)
            }
        ),
        ("shoff-past-eof.elf", corrupted { bytes, _ in bytes.put(le64: 0x7fff_ffff_0000, at: 40) }),
        ("shoff-overflow.elf", corrupted { bytes, _ in bytes.put(le64: UInt64.max - 10, at: 40) }),
        ("shnum-65535.elf", corrupted { bytes, _ in bytes.put(le16: 0xffff, at: 60) }),
        ("shentsize-zero.elf", corrupted { bytes, _ in bytes.put(le16: 0, at: 58) }),
        ("shstrndx-out-of-range.elf", corrupted { bytes, _ in bytes.put(le16: 0xfeff, at: 62) }),
        (
            "symtab-huge-size.elf",
            corrupted { bytes, layout in
                bytes.put(le64: 0xffff_ffff_ffff_fff0, at: layout.sectionField(".symtab", 32))
            }
        ),
        (
            "symtab-entsize-zero.elf",
            corrupted { bytes, layout in
                bytes.put(le64: 0, at: layout.sectionField(".symtab", 56))
            }
        ),
        (
            "symtab-links-itself.elf",
            corrupted { bytes, layout in
                bytes.put(le32: UInt32(layout.sections[".symtab"] ?? 0), at: layout.sectionField(".symtab", 40))
            }
        ),
        (
            "symtab-links-to-note.elf",
            corrupted { bytes, layout in
                bytes.put(
                    le32: UInt32(layout.sections[".note.gnu.build-id"] ?? 0), at: layout.sectionField(".symtab", 40))
            }
        ),
        (
            "string-tables-link-in-a-cycle.elf",
            corrupted { bytes, layout in
                // .strtab and .shstrtab point at each other and at .symtab; links of string
                // tables are never followed, so this must not matter.
                bytes.put(le32: 5, at: layout.sectionField(".strtab", 40))
                bytes.put(le32: 4, at: layout.sectionField(".shstrtab", 40))
            }
        ),
        (
            "symbol-names-out-of-range.elf",
            corrupted { bytes, layout in
                for index in 1...3 { bytes.put(le32: 0xffff_fff0, at: layout.symbols + index * 24) }
            }
        ),
        (
            "string-table-without-nul.elf",
            corrupted { bytes, layout in
                let size = Int(layout.symbols - layout.strings)
                for offset in layout.strings..<(layout.strings + size) where bytes[offset] == 0 { bytes[offset] = 0x41 }
            }
        ),
        (
            "overlapping-load-segments.elf",
            corrupted { bytes, layout in
                // Turn PT_NOTE into a second, writable PT_LOAD overlapping the first at a far address.
                let second = layout.programHeaders + 56
                bytes.put(le32: 1, at: second)
                bytes.put(le32: 6, at: second + 4)
                bytes.put(le64: 0, at: second + 8)
                bytes.put(le64: 0xffff_ffff_ffff_f000, at: second + 16)
                bytes.put(le64: UInt64.max, at: second + 32)
            }
        ),
        (
            "load-segment-absurd.elf",
            corrupted { bytes, layout in
                bytes.put(le64: UInt64.max - 5, at: layout.programHeaders + 8)
                bytes.put(le64: UInt64.max, at: layout.programHeaders + 16)
                bytes.put(le64: UInt64.max, at: layout.programHeaders + 32)
            }
        ),
        ("note-huge-namesz.elf", corrupted { bytes, layout in bytes.put(le32: 0xffff_fff0, at: layout.note) }),
        ("note-huge-descsz.elf", corrupted { bytes, layout in bytes.put(le32: 0xffff_ffff, at: layout.note + 4) }),
        (
            "note-segment-past-eof.elf",
            corrupted { bytes, layout in
                bytes.put(le64: UInt64.max - 100, at: layout.programHeaders + 56 + 8)
            }
        ),
        (
            "debuglink-unterminated.elf",
            corrupted { bytes, layout in
                for offset in layout.debugLink..<layout.sectionHeaders { bytes[offset] = 0x42 }
            }
        ),
    ]

    @Test func cleanSyntheticFileParses() throws {
        let file = try ELFFile(bytes: Self.clean.bytes)
        #expect(file.fileType == .sharedObject)
        #expect(file.buildID?.bytes == SyntheticELF().buildID)
        #expect(file.debugLink == ELFDebugLink(fileName: "synthetic.debug", crc32: 0xdead_beef))
        #expect(try file.sections().map(\.name).contains(".symtab"))
        let table = try file.symbolTable()
        // a_variable is an object; weak_alias collapses into second_function.
        #expect(table.count == 4)
        #expect(file.symbol(containing: 0x200)?.name == "first_function")
        #expect(file.symbol(containing: 0x23f)?.name == "first_function")
        #expect(file.symbol(containing: 0x240)?.name == "second_function")
        // Zero size: extends to the next symbol.
        #expect(file.symbol(containing: 0x2bf)?.name == "zero_size_function")
        #expect(file.symbol(containing: 0x2c5)?.name == "resolver")
        #expect(file.symbol(containing: 0x2d0) == nil)
        #expect(file.symbol(containing: 0x1ff) == nil)
    }

    func expectTruncated(_ what: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected a truncated error about \(what)")
        } catch let error as ELFError {
            guard case .truncated = error else {
                Issue.record("expected truncated, got \(error)")
                return
            }
            #expect(error.description.contains(what))
            #expect(error.description.contains("past end of file"))
        } catch {
            Issue.record("untyped error \(error)")
        }
    }

    func file(_ name: String) throws -> ELFFile {
        let bytes = try #require(Self.cases.first { $0.name == name }?.bytes)
        return try ELFFile(bytes: bytes, name: name)
    }

    @Test func headerLevelErrorsAreTyped() throws {
        #expect(throws: ELFError.emptyFile) { try file("empty.bin") }
        #expect(throws: ELFError.self) { try file("not-elf.bin") }
        #expect(throws: ELFError.self) { try file("magic-only.elf") }
        #expect(throws: ELFError.unsupportedClass(1)) { try file("elf32.elf") }
        #expect(throws: ELFError.unsupportedByteOrder(2)) { try file("big-endian.elf") }
        expectTruncated("ELF header") { _ = try file("truncated-header.elf") }
        expectTruncated("program header table") { _ = try file("phnum-huge.elf") }
        #expect(throws: ELFError.self) { try file("phentsize-small.elf") }
        #expect(throws: ELFError.self) { try file("phnum-xnum-without-sections.elf") }
        let notELF = try #require(Self.cases.first { $0.name == "not-elf.bin" }?.bytes)
        do {
            _ = try ELFFile(bytes: notELF)
        } catch {
            #expect(error.description.contains("23 21 2f 62"))
        }
        #expect(ELFError.unsupportedClass(1).description.contains("32-bit"))
        #expect(ELFError.unsupportedByteOrder(2).description.contains("big-endian"))
    }

    @Test func sectionLevelErrorsLeaveTheRestUsable() throws {
        for name in ["shoff-past-eof.elf", "shoff-overflow.elf", "shnum-65535.elf"] {
            let file = try file(name)
            expectTruncated("section header table") { _ = try file.sections() }
            #expect(throws: ELFError.self) { try file.symbolTable() }
            // Program headers still work: the build id comes from PT_NOTE and addresses translate.
            #expect(file.buildID?.bytes == SyntheticELF().buildID)
            #expect(file.virtualAddress(forFileOffset: 0x210) == 0x210)
            #expect(file.symbol(containing: 0x210) == nil)
        }
        #expect(throws: ELFError.self) { try file("shentsize-zero.elf").sections() }

        let unnamed = try file("shstrndx-out-of-range.elf")
        #expect(try unnamed.sections().allSatisfy { $0.name.isEmpty })
        #expect(unnamed.symbol(containing: 0x210)?.name == "first_function")
        #expect(unnamed.debugLink == nil)

        expectTruncated("symbol table .symtab") { _ = try file("symtab-huge-size.elf").symbolTable() }
        for name in ["symtab-entsize-zero.elf", "symtab-links-itself.elf", "symtab-links-to-note.elf"] {
            let damaged = try file(name)
            do {
                _ = try damaged.symbolTable()
                Issue.record("\(name): expected an error")
            } catch {
                guard case .malformed = error else {
                    Issue.record("\(name): expected malformed, got \(error)")
                    continue
                }
            }
        }
        #expect(try file("string-tables-link-in-a-cycle.elf").symbol(containing: 0x210)?.name == "first_function")

        let badNames = try file("symbol-names-out-of-range.elf")
        let table = try badNames.symbolTable()
        #expect(table.symbolsWithInvalidNames == 3)
        #expect(badNames.symbol(containing: 0x2c5)?.name == "resolver")

        let noNul = try file("string-table-without-nul.elf")
        #expect(noNul.symbol(containing: 0x210) == nil)
    }

    @Test func segmentsAndNotesNeverCrash() throws {
        let overlapping = try file("overlapping-load-segments.elf")
        #expect(overlapping.loadSegments.count == 2)
        // Both segments hold offset 0x210; the executable one wins.
        #expect(overlapping.virtualAddress(forFileOffset: 0x210) == 0x210)
        #expect(
            overlapping.virtualAddress(ofRuntimeAddress: 0x7000_0210, mappingStart: 0x7000_0000, mappingOffset: 0)
                == 0x210)

        let absurd = try file("load-segment-absurd.elf")
        #expect(absurd.virtualAddress(forFileOffset: UInt64.max - 1) == nil)
        #expect(absurd.virtualAddress(forFileOffset: 0x210) == nil)

        for name in ["note-huge-namesz.elf", "note-huge-descsz.elf"] {
            #expect(try file(name).buildID == nil)
        }
        // The section copy of the note is still intact when only PT_NOTE is bad.
        #expect(try file("note-segment-past-eof.elf").buildID?.bytes == SyntheticELF().buildID)
        #expect(try file("debuglink-unterminated.elf").debugLink == nil)
    }

    @Test func everyTruncationIsHandled() throws {
        for length in 0...Self.clean.bytes.count {
            let prefix = Array(Self.clean.bytes.prefix(length))
            do {
                exerciseEverything(try ELFFile(bytes: prefix))
            } catch {
                // Typed by construction; also exercise the description.
                #expect(!error.description.isEmpty)
            }
        }
    }

    @Test func randomMutationsNeverCrash() {
        var generator = SplitMix64(seed: 0x5eed)
        let fieldOffsets: [Int] = Array(0..<64) + Array(Self.clean.layout.sectionHeaders..<Self.clean.bytes.count)
        for _ in 0..<3_000 {
            var bytes = Self.clean.bytes
            for _ in 0..<(1 + Int(generator.next() % 4)) {
                let useField = generator.next() % 2 == 0
                let offset =
                    useField
                    ? fieldOffsets[Int(generator.next() % UInt64(fieldOffsets.count))]
                    : Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 3 {
                case 0: bytes[offset] = UInt8(truncatingIfNeeded: generator.next())
                case 1: bytes.put(le64: generator.next(), at: offset)
                default: bytes.put(le32: UInt32(truncatingIfNeeded: generator.next() % 0x2000), at: offset)
                }
            }
            if let file = try? ELFFile(bytes: bytes) { exerciseEverything(file) }
        }
    }

    /// Also exercises the mmap path on each committed seed.
    @Test func committedSeedsMatchTheGeneratorAndParseFromDisk() throws {
        let directory = try #require(Bundle.module.url(forResource: "Hostile", withExtension: nil))
        if let target = ProcessInfo.processInfo.environment["NODEPROF_WRITE_HOSTILE_SEEDS"] {
            for (name, bytes) in Self.cases {
                try Data(bytes).write(to: URL(fileURLWithPath: target).appendingPathComponent(name))
            }
        }
        for (name, bytes) in Self.cases {
            let path = directory.appendingPathComponent(name).path
            let onDisk = try #require(FileManager.default.contents(atPath: path), "missing seed \(name)")
            #expect([UInt8](onDisk) == bytes, "seed \(name) differs from the generator; regenerate it")
            #expect(bytes.count < 64 * 1024)
            do {
                exerciseEverything(try ELFFile(path: path))
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }
}
