import Foundation
import NodeprofCore
import Testing

@testable import Symbolization

@Suite struct KernelSymbolsTests {
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
