import Foundation
import NodeprofCore
import TestSupport
import Testing

@testable import Symbolization

/// A C program, a library it links and a plugin it dlopens on request; it prints the
/// runtime addresses of their functions.
struct TargetProgram {
    static let librarySource = """
        __attribute__((noinline)) int library_function(int x) { return x * 11 + 3; }
        """
    static let pluginSource = """
        __attribute__((noinline)) int plugin_function(int x) { return x * 13 + 5; }
        """
    static let programSource = """
        #include <dlfcn.h>
        #include <stdio.h>
        #include <string.h>
        extern int library_function(int);
        __attribute__((noinline)) int executable_function(int x) { return x * 7 + 1; }
        int main(int argc, char **argv) {
            printf("executable_function=%p\\n", (void *)executable_function);
        #ifdef WITH_LIBRARY
            printf("library_function=%p\\n", (void *)library_function);
            printf("printf=%p\\n", (void *)printf);
        #endif
            printf("ready\\n");
            fflush(stdout);
            char line[256];
            while (fgets(line, sizeof line, stdin)) {
                if (strncmp(line, "load", 4) == 0 && argc > 1) {
                    void *handle = dlopen(argv[1], RTLD_NOW);
                    void *function = handle ? dlsym(handle, "plugin_function") : NULL;
                    printf("plugin_function=%p\\n", function);
                    printf("ready\\n");
                    fflush(stdout);
                }
            }
            return 0;
        }
        """

    let directory: TemporaryDirectory
    let executable: String
    let plugin: String

    /// Builds the program (PIE, linked with the library) or a non-PIE variant without it.
    init(pie: Bool) throws {
        directory = try TemporaryDirectory()
        executable = directory.file(pie ? "target-pie" : "target-nopie")
        plugin = directory.file("libplugin.so")
        let library = directory.file("libtarget.so")
        try Tool.compileC(Self.librarySource, output: library, flags: ["-O1", "-shared", "-fPIC"])
        try Tool.compileC(Self.pluginSource, output: plugin, flags: ["-O1", "-shared", "-fPIC"])
        if pie {
            try Tool.compileC(
                Self.programSource, output: executable,
                flags: ["-O1", "-pie", "-fPIE", "-DWITH_LIBRARY", "-Wl,-rpath," + directory.path],
                libraries: ["-L", directory.path, "-ltarget", "-ldl"])
        } else {
            try Tool.compileC(
                Self.programSource, output: executable, flags: ["-O1", "-no-pie", "-fno-pie"], libraries: ["-ldl"])
        }
    }
}

/// A running child whose stdout lines are read as `name=0x...` pairs.
final class RunningTarget {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffered = Data()
    private(set) var addresses: [String: UInt64] = [:]

    init(_ executable: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        try readUntilReady()
    }

    var pid: Int32 { process.processIdentifier }

    func send(_ line: String) throws {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
        try readUntilReady()
    }

    private func readUntilReady() throws {
        while true {
            while let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffered[buffered.startIndex..<newline], as: UTF8.self)
                buffered = Data(buffered[(newline + 1)...])
                if line == "ready" { return }
                let parts = line.split(separator: "=")
                if parts.count == 2, let value = UInt64(parts[1].dropFirst(2), radix: 16) {
                    addresses[String(parts[0])] = value
                }
            }
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw ToolFailure(description: "target exited early") }
            buffered.append(chunk)
        }
    }

    func kill() {
        Foundation.kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { kill() }
    }
}

func sample(pid: Int32, user: [UInt64], kernel: [UInt64] = []) -> StackSample {
    StackSample(
        pid: pid, tid: pid, cpu: 0, threadName: "target", cgroupID: 1, timestampNanos: 42,
        kernelStack: kernel, userStack: user)
}

@Suite(.machineExclusive) struct SymbolizerTests {
    /// The libc names `nm -D` lists at the address `symbol` resolves to in libc.
    func libcNames(at address: UInt64) throws -> Set<String> {
        let symbols = NMSymbol.parse(try Tool.run("nm", ["-D", "--defined-only", libcPath]))
        return Set(symbols.filter { $0.address == address }.map(\.name))
    }

    @Test func pieProcessWithLibrariesSymbolizesBeforeAndAfterExit() throws {
        let program = try TargetProgram(pie: true)
        defer { program.directory.remove() }
        let target = try RunningTarget(program.executable, arguments: [program.plugin])
        defer { target.kill() }
        let executableFunction = try #require(target.addresses["executable_function"])
        let libraryFunction = try #require(target.addresses["library_function"])
        let printfAddress = try #require(target.addresses["printf"])

        // Our own maps parser sees the three files.
        let maps = try ProcessMaps.read(pid: target.pid)
        #expect(maps.skippedLines == 0)
        #expect(maps.mapping(containing: executableFunction)?.path == program.executable)
        #expect(maps.mapping(containing: libraryFunction)?.path == program.directory.file("libtarget.so"))
        #expect(maps.mapping(containing: printfAddress)?.path.hasSuffix("libc.so.6") == true)

        let symbolizer = Symbolizer()
        symbolizer.observe(pid: target.pid)
        // Leaf first; the callers are return addresses, one byte into their function.
        let stack = [executableFunction, libraryFunction + 1, printfAddress + 1]
        let live = symbolizer.symbolize(sample(pid: target.pid, user: stack))
        #expect(live.processName == "target-pie")
        try expectFrames(live, stack: stack, program: program)

        // A second symbolizer only observes; its files are opened after the process exits.
        let late = Symbolizer()
        late.observe(pid: target.pid)
        target.kill()
        let afterExit = late.symbolize(sample(pid: target.pid, user: stack))
        #expect(afterExit.processName == "target-pie")
        try expectFrames(afterExit, stack: stack, program: program)
        #expect(late.statistics.elfFilesLoaded == 3)
        #expect(late.statistics.framesSymbolized == 3)
        #expect(late.statistics.processesUnknown == 0)

        // The first symbolizer still answers from its snapshot and caches.
        try expectFrames(symbolizer.symbolize(sample(pid: target.pid, user: stack)), stack: stack, program: program)
    }

    func expectFrames(_ symbolized: SymbolizedStack, stack: [UInt64], program: TargetProgram) throws {
        try #require(symbolized.frames.count == 3)
        #expect(symbolized.frames.map(\.address) == stack)
        #expect(symbolized.frames.allSatisfy { $0.kind == .native })
        #expect(symbolized.frames[0].function == "executable_function")
        #expect(symbolized.frames[1].function == "library_function")
        let libcFunction = try #require(symbolized.frames[2].function)
        let libc = try ELFFile(path: libcPath)
        let libcSymbol = try #require(libc.symbolTable().allSymbols().first { $0.name == libcFunction })
        #expect(try libcNames(at: libcSymbol.address).contains("printf"))

        let executableModule = try #require(symbolized.frames[0].module)
        #expect(executableModule.path == program.executable)
        #expect(try executableModule.buildID == readelfBuildID(program.executable))
        #expect(executableModule.start <= stack[0] && stack[0] < executableModule.limit)
        #expect(symbolized.frames[1].module?.name == "libtarget.so")
        #expect(try symbolized.frames[2].module?.buildID == readelfBuildID(libcPath))
    }

    @Test func nonPIEExecutableSymbolizes() throws {
        let program = try TargetProgram(pie: false)
        defer { program.directory.remove() }
        let target = try RunningTarget(program.executable, arguments: [])
        defer { target.kill() }
        let function = try #require(target.addresses["executable_function"])
        #expect(try ELFFile(path: program.executable).fileType == .executable)

        let symbolizer = Symbolizer()
        let symbolized = symbolizer.symbolize(sample(pid: target.pid, user: [function + 2, function + 1]))
        #expect(symbolized.frames.map(\.function) == ["executable_function", "executable_function"])
        #expect(symbolized.frames.first?.module?.path == program.executable)
    }

    @Test func dlopenedLibraryIsFoundByRereadingMaps() throws {
        let program = try TargetProgram(pie: true)
        defer { program.directory.remove() }
        let target = try RunningTarget(program.executable, arguments: [program.plugin])
        defer { target.kill() }

        let images = ProcessImages()
        images.minimumRefreshIntervalNanos = 0
        let symbolizer = Symbolizer(processes: images)
        symbolizer.observe(pid: target.pid)
        try target.send("load")
        let plugin = try #require(target.addresses["plugin_function"])
        #expect(plugin != 0)
        let symbolized = symbolizer.symbolize(sample(pid: target.pid, user: [plugin]))
        #expect(symbolized.frames.first?.function == "plugin_function")
        #expect(symbolized.frames.first?.module?.path == program.plugin)
        #expect(symbolizer.statistics.mapsRefreshes == 1)
    }

    @Test func returnAddressesLookUpTheCallInstruction() throws {
        let program = try TargetProgram(pie: true)
        defer { program.directory.remove() }
        let target = try RunningTarget(program.executable, arguments: [])
        defer { target.kill() }
        let library = try #require(target.addresses["library_function"])
        let symbolizer = Symbolizer()
        // As a leaf the start of library_function is library_function; as a return address
        // it is the byte before, which belongs to whatever precedes it.
        let frames = symbolizer.symbolize(sample(pid: target.pid, user: [library, library])).frames
        #expect(frames[0].function == "library_function")
        #expect(frames[1].function != "library_function")
    }

    @Test func vdsoFramesAreSymbolizedFromOurOwnImage() throws {
        let symbolizer = Symbolizer()
        let pid = getpid()
        let maps = try ProcessMaps.read(pid: pid)
        let vdso = try #require(maps.mappings.first { $0.isVDSO })
        let image = try ELFFile(
            copying: UnsafeRawBufferPointer(
                start: UnsafeRawPointer(bitPattern: UInt(vdso.start)), count: Int(vdso.end - vdso.start)))
        let symbol = try #require(try image.symbolTable().allSymbols().first { $0.name.contains("clock_gettime") })
        let frames = symbolizer.symbolize(sample(pid: pid, user: [vdso.start + symbol.address + 1])).frames
        #expect(frames.first?.function == symbol.name)
        #expect(frames.first?.module?.path == "[vdso]")
    }

    @Test func unknownProcessCountsAndLeavesFramesUnsymbolized() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let symbolizer = Symbolizer(procRoot: directory.path)
        let symbolized = symbolizer.symbolize(sample(pid: 4242, user: [0x1000, 0x2000]))
        #expect(symbolized.frames.count == 2)
        #expect(symbolized.frames.allSatisfy { $0.function == nil && $0.module == nil })
        #expect(symbolized.processName == nil)
        let statistics = symbolizer.statistics
        #expect(statistics.processesUnknown == 1)
        #expect(statistics.framesUnsymbolized == 2)
        // Repeated samples of the same dead pid do not count it again.
        _ = symbolizer.symbolize(sample(pid: 4242, user: [0x1000]))
        #expect(symbolizer.statistics.processesUnknown == 1)
    }

    @Test func fakeProcRootWithHostileMapsAndReplacedFile() throws {
        // A procfs look-alike: maps lines pointing at libc, one with the wrong inode on the
        // right device (a replaced file), plus garbage lines.
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let libc = try ELFFile(path: libcPath)
        let status = try #require(libc.fileStatus)
        let text = try #require(libc.loadSegments.first { $0.flags.contains(.execute) })
        let pageOffset = text.offset & ~0xfff
        let device = "\(String(status.deviceMajor, radix: 16)):\(String(status.deviceMinor, radix: 16))"
        let maps = """
            garbage line
            7f0000000000-7f0000400000 r-xp \(String(pageOffset, radix: 16)) \(device) \(status.inode) \(libcPath)
            7f1000000000-7f1000400000 r-xp \(String(pageOffset, radix: 16)) \(device) \(status.inode &+ 1) \(libcPath) (deleted)
            zzzz-1 r-xp 0 0:0 0
            """
        try FileManager.default.createDirectory(atPath: directory.file("77"), withIntermediateDirectories: true)
        try maps.write(toFile: directory.file("77/maps"), atomically: true, encoding: .utf8)

        let symbolizer = Symbolizer(procRoot: directory.path)
        let nm = NMSymbol.parse(try Tool.run("nm", ["-D", "--defined-only", libcPath]))
        let write = try #require(nm.first { $0.name == "write" })
        let writeNames = Set(nm.filter { $0.address == write.address }.map(\.name))
        let runtime = { (base: UInt64) in base + (write.address - text.virtualAddress + text.offset - pageOffset) + 1 }
        let frames = symbolizer.symbolize(
            sample(pid: 77, user: [runtime(0x7f00_0000_0000), runtime(0x7f10_0000_0000)])
        ).frames
        #expect(frames[0].function.map(writeNames.contains) == true)
        #expect(frames[0].module?.buildID == libc.buildID?.hexString)
        #expect(frames[1].function == nil)
        #expect(frames[1].module?.path == libcPath)
        let statistics = symbolizer.statistics
        #expect(statistics.mapsLinesSkipped == 2)
        #expect(statistics.elfFileErrors == 1)
        #expect(statistics.lastELFError?.contains("replaced") == true)
        // Both maps lines name the same file identity: one libc in the cache.
        #expect(statistics.openELFFiles == 1)
    }

    /// A return address outside every executable mapping means the frame-pointer chain broke:
    /// the stack is cut there and the cut frames are counted, not reported as frames.
    @Test func brokenFramePointerChainIsCut() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let addresses = try fakeProcess(mapping: [libcPath], symbolName: "malloc", in: directory)
        let libcAddress = try #require(addresses.first)
        let maps = try String(contentsOfFile: directory.file("88/maps"), encoding: .utf8)
        try (maps + "\n5600000000-5600100000 rw-p 00000000 00:00 0 [heap]\n")
            .write(toFile: directory.file("88/maps"), atomically: true, encoding: .utf8)
        let symbolizer = Symbolizer(procRoot: directory.path)
        symbolizer.observe(pid: 88)

        // leaf in libc, return address into the heap (not executable), then garbage
        let intoHeap = symbolizer.symbolize(sample(pid: 88, user: [libcAddress, 0x56_0000_1000, libcAddress, 0x3]))
        #expect(intoHeap.frames.count == 1)
        #expect(intoHeap.frames.first?.function != nil)
        // two good frames, then an address in no mapping at all
        let unmapped = symbolizer.symbolize(sample(pid: 88, user: [libcAddress, libcAddress, 0x3, libcAddress]))
        #expect(unmapped.frames.count == 2)
        // a leaf outside any mapping (JIT code torn down, say) is kept, unsymbolized
        let oddLeaf = symbolizer.symbolize(sample(pid: 88, user: [0x3, libcAddress]))
        #expect(oddLeaf.frames.count == 2)
        #expect(oddLeaf.frames[0].function == nil && oddLeaf.frames[1].function != nil)

        let statistics = symbolizer.statistics
        #expect(statistics.stacksCut == 2)
        #expect(statistics.framesDiscarded == 3 + 2)
        #expect(statistics.framesUnsymbolized == 1)
    }

    /// A fake procfs whose process 88 maps the text segment of each file in `paths` at
    /// 0x7f0000000000, 0x7f1000000000, ...; returns the runtime address of `symbolName + 1`
    /// in each mapping.
    func fakeProcess(mapping paths: [String], symbolName: String, in directory: TemporaryDirectory) throws -> [UInt64] {
        var lines: [String] = []
        var addresses: [UInt64] = []
        for (index, path) in paths.enumerated() {
            let file = try ELFFile(path: path)
            let status = try #require(file.fileStatus)
            let text = try #require(file.loadSegments.first { $0.flags.contains(.execute) })
            let pageOffset = text.offset & ~0xfff
            let base = 0x7f00_0000_0000 + UInt64(index) * 0x10_0000_0000
            let device = "\(String(status.deviceMajor, radix: 16)):\(String(status.deviceMinor, radix: 16))"
            lines.append(
                "\(String(base, radix: 16))-\(String(base + 0x40_0000, radix: 16)) r-xp \(String(pageOffset, radix: 16)) \(device) \(status.inode) \(path)"
            )
            let symbol = try #require(file.symbolTable().allSymbols().first { $0.name == symbolName })
            addresses.append(base + (symbol.address - text.virtualAddress + text.offset - pageOffset) + 1)
        }
        try FileManager.default.createDirectory(atPath: directory.file("88"), withIntermediateDirectories: true)
        try lines.joined(separator: "\n").write(toFile: directory.file("88/maps"), atomically: true, encoding: .utf8)
        return addresses
    }

    @Test func filesWithOneBuildIDShareOneCacheEntry() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // Two copies of libc: two inodes, one build id (as in two containers).
        let copy = directory.file("libc-copy.so.6")
        try FileManager.default.copyItem(atPath: libcPath, toPath: copy)
        let addresses = try fakeProcess(mapping: [libcPath, copy], symbolName: "malloc", in: directory)
        let symbolizer = Symbolizer(procRoot: directory.path)
        let frames = symbolizer.symbolize(sample(pid: 88, user: [0] + addresses)).frames
        #expect(frames.dropFirst().allSatisfy { $0.function != nil })
        #expect(frames[1].function == frames[2].function)
        #expect(frames[1].module?.path == libcPath && frames[2].module?.path == copy)
        #expect(frames[1].module?.buildID == frames[2].module?.buildID)
        let statistics = symbolizer.statistics
        #expect(statistics.openELFFiles == 1)
        #expect(statistics.elfFilesLoaded == 1)
        #expect(statistics.framesUnsymbolized == 1)  // the 0 address
    }

    @Test func openFilesAreBoundedAndEvictedFilesReload() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let program = try TargetProgram(pie: false)
        defer { program.directory.remove() }
        let libcAddress = try fakeProcess(mapping: [libcPath], symbolName: "malloc", in: directory)[0]
        let images = ProcessImages(procRoot: directory.path)
        let symbolizer = Symbolizer(procRoot: directory.path, processes: images)
        symbolizer.maximumOpenFiles = 1
        let first = symbolizer.symbolize(sample(pid: 88, user: [libcAddress])).frames[0].function
        #expect(first != nil)

        // A second file in another fake process evicts libc; libc then loads again.
        let executableAddress = try fakeProcess(
            mapping: [program.executable], symbolName: "executable_function", in: directory)[0]
        images.forget(pid: 88)
        #expect(
            symbolizer.symbolize(sample(pid: 88, user: [executableAddress])).frames[0].function == "executable_function"
        )
        #expect(symbolizer.statistics.openELFFiles == 1)
        #expect(symbolizer.statistics.elfFilesEvicted == 1)
        _ = try fakeProcess(mapping: [libcPath], symbolName: "malloc", in: directory)
        images.forget(pid: 88)
        #expect(symbolizer.symbolize(sample(pid: 88, user: [libcAddress])).frames[0].function == first)
        #expect(symbolizer.statistics.elfFilesLoaded == 3)
        #expect(symbolizer.statistics.elfFilesEvicted == 2)
    }

    @Test func processSnapshotsAreBounded() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try fakeProcess(mapping: [libcPath], symbolName: "malloc", in: directory)
        for pid in 1000..<1010 {
            try FileManager.default.copyItem(atPath: directory.file("88"), toPath: directory.file("\(pid)"))
        }
        let images = ProcessImages(procRoot: directory.path)
        images.maximumProcesses = 4
        let symbolizer = Symbolizer(procRoot: directory.path, processes: images)
        for pid in Int32(1000)..<1010 { symbolizer.observe(pid: pid) }
        #expect(symbolizer.statistics.processesTracked <= 4)
        #expect(symbolizer.statistics.mapsSnapshots == 10)
    }
}
