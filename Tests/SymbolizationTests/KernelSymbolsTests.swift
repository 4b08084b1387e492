import Foundation
import NodeprofCore
import TestSupport
import Testing

@testable import Symbolization

@Suite(.machineExclusive) struct KernelSymbolsTests {
    /// The address of `name` as `grep ' T name$' /proc/kallsyms` finds it.
    func kallsymsAddress(of name: String) throws -> UInt64? {
        let line = try Tool.run("grep", ["-m1", " T \(name)$", "/proc/kallsyms"])
        return UInt64(line.prefix { $0 != " " }, radix: 16)
    }

    @Test func realKallsymsResolvesVfsRead() throws {
        let symbols = try KernelSymbols.load()
        #expect(symbols.count > 1000)
        let address = try #require(try kallsymsAddress(of: "vfs_read"))
        #expect(address != 0, "kallsyms addresses are hidden; the tests run as root")
        #expect(symbols.symbol(containing: address)?.name == "vfs_read")
        #expect(symbols.symbol(containing: address + 1)?.name == "vfs_read")
        #expect(symbols.symbol(containing: address)?.module == nil)
        #expect(symbols.symbol(containing: address - 1)?.name != "vfs_read")
    }

    @Test func symbolizerUsesKallsymsForKernelFrames() throws {
        let address = try #require(try kallsymsAddress(of: "vfs_read"))
        let symbolizer = Symbolizer()
        // A kernel thread-like sample: no user stack. The second frame is a return address.
        let symbolized = symbolizer.symbolize(
            StackSample(
                pid: 0, tid: 0, cpu: 1, threadName: "swapper/1", cgroupID: 0, timestampNanos: 1,
                kernelStack: [address + 4, address + 1], userStack: []))
        #expect(symbolized.frames.map(\.function) == ["vfs_read", "vfs_read"])
        #expect(symbolized.frames.allSatisfy { $0.kind == .kernel && $0.module == nil })
        #expect(symbolizer.statistics.kernelFramesSymbolized == 2)
        #expect(symbolizer.statistics.kernelSymbolCount > 1000)
    }

    @Test func moduleNamesAndHostileLines() throws {
        let text = """
            ffffffff81000000 T _stext
            ffffffff81000100 t helper_function
            ffffffff81000200 D some_data
            ffffffff81000300 W weak_function
            ffffffffc0001000 t ext4_fill_super\t[ext4]
            ffffffffc0001100 T ext4_read\t[ext4]
            not-hex T broken
            ffffffff81000400
            ffffffff81000500 TT two_letter_type
            ffffffff81000600 T unterminated\t[module
            ffffffffffffffffff T too_long_address
            ffffffff81000700 T a b c d e f
            \u{0}\u{1}\u{2}
            ffffffff81000800 ? questionable
            """
        let symbols = try KernelSymbols(parsing: text)
        #expect(symbols.skippedLines == 8)
        #expect(symbols.symbol(containing: 0xffff_ffff_8100_0150)?.name == "helper_function")
        // Data symbols are dropped, so the function before extends over them.
        #expect(symbols.symbol(containing: 0xffff_ffff_8100_0250)?.name == "helper_function")
        #expect(symbols.symbol(containing: 0xffff_ffff_8100_0300)?.name == "weak_function")
        let ext4 = try #require(symbols.symbol(containing: 0xffff_ffff_c000_1004))
        #expect(ext4.name == "ext4_fill_super")
        #expect(ext4.module == "ext4")
        #expect(symbols.symbol(containing: 0xffff_ffff_c000_1100)?.module == "ext4")
        #expect(symbols.symbol(containing: 0xffff_ffff_80ff_ffff) == nil)
        // Far past the last symbol resolves to nothing rather than to the last symbol.
        #expect(symbols.symbol(containing: 0xffff_ffff_c100_0000) == nil)
    }

    @Test func hiddenAddressesSayHowToFixIt() {
        let text = """
            0000000000000000 T _stext
            0000000000000000 T vfs_read
            0000000000000000 t ext4_fill_super\t[ext4]
            """
        #expect(throws: KernelSymbolsError.addressesHidden(path: "/proc/kallsyms")) {
            try KernelSymbols(parsing: text)
        }
        let message = KernelSymbolsError.addressesHidden(path: "/proc/kallsyms").description
        #expect(message.contains("kptr_restrict"))
        #expect(message.contains("root"))
    }

    @Test func emptyOrGarbageInputIsAnError() {
        #expect(throws: KernelSymbolsError.self) { try KernelSymbols(parsing: "") }
        #expect(throws: KernelSymbolsError.self) { try KernelSymbols(parsing: "garbage\n\n\u{7f}ELF") }
        #expect(throws: KernelSymbolsError.self) { try KernelSymbols.load(path: "/nonexistent/kallsyms") }
    }

    @Test func unavailableKernelSymbolsLeaveKernelFramesUnsymbolized() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try "0000000000000000 T vfs_read\n".write(toFile: directory.file("kallsyms"), atomically: true, encoding: .utf8)
        let symbolizer = Symbolizer(procRoot: directory.path)
        let symbolized = symbolizer.symbolize(
            StackSample(
                pid: 0, tid: 0, cpu: 0, threadName: "idle", cgroupID: 0, timestampNanos: 0,
                kernelStack: [0xffff_ffff_8100_0000], userStack: []))
        #expect(symbolized.frames.first?.function == nil)
        #expect(symbolizer.statistics.kernelSymbolsError?.contains("kptr_restrict") == true)
    }
}

@Suite struct KernelBuildIDTests {
    @Test func readsTheRunningKernelsBuildID() throws {
        let bytes = try FileContents.read("/sys/kernel/notes", limit: 1 << 16)
        // Independent scan: the 20 bytes after the first "GNU\0" of a type-3 note.
        var expected: String?
        var offset = 0
        while offset + 16 <= bytes.count {
            let word = { (at: Int) in bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | Int($1) } }
            let (nameSize, descriptorSize, type) = (word(offset), word(offset + 4), word(offset + 8))
            let descriptor = offset + 12 + (nameSize + 3) / 4 * 4
            if type == 3 && Array(bytes[offset + 12..<offset + 16]) == [0x47, 0x4e, 0x55, 0] {
                expected = bytes[descriptor..<descriptor + descriptorSize].map { String(format: "%02x", $0) }.joined()
                break
            }
            offset = descriptor + (descriptorSize + 3) / 4 * 4
        }
        #expect(expected != nil)
        #expect(KernelSymbols.buildID() == expected)
    }

    @Test func hostileNotesGiveNoBuildID() throws {
        let directory = try TemporaryDirectory()
        let cases: [[UInt8]] = [
            [],
            [0x04, 0, 0, 0],
            // namesz 4, descsz 0x7fffffff, type 3, "GNU\0": the descriptor does not fit.
            [0x04, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0x03, 0, 0, 0, 0x47, 0x4e, 0x55, 0, 1, 2],
            // namesz huge.
            [0xff, 0xff, 0xff, 0xff, 0x04, 0, 0, 0, 0x03, 0, 0, 0, 0x47, 0x4e, 0x55, 0, 1, 2, 3, 4],
            Array(repeating: 0xff, count: 4096),
        ]
        for (index, bytes) in cases.enumerated() {
            let path = directory.file("notes-\(index)")
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            #expect(KernelSymbols.buildID(notesPath: path) == nil)
        }
        #expect(KernelSymbols.buildID(notesPath: directory.file("missing")) == nil)
    }
}
