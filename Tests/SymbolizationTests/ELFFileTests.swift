import Foundation
import Testing

@testable import Symbolization

/// The ELF reader against real binaries, checked against binutils at test time.
@Suite struct ELFFileTests {
    /// Every sampled function symbol `nm` lists resolves, at its start and at its last
    /// byte, to a name `nm` lists at that address (aliases collapse to one name).
    func expectAgreement(_ file: ELFFile, nmOutput: String, maximumChecks: Int = 600) throws {
        let all = NMSymbol.parse(nmOutput)
        var namesByAddress: [UInt64: Set<String>] = [:]
        for symbol in all { namesByAddress[symbol.address, default: []].insert(symbol.name) }
        let functions = all.filter { symbol in
            "TtiWw".contains(symbol.type) && (symbol.size ?? 0) > 0
        }.sorted { $0.address < $1.address }
        try #require(functions.count > 0, "nm listed no sized functions")
        let starts = functions.map(\.address)

        let step = max(1, functions.count / maximumChecks)
        var checked = 0
        for index in stride(from: 0, to: functions.count, by: step) {
            let function = functions[index]
            guard let size = function.size else { continue }
            var probes = [function.address]
            // Probe the last byte only when no other function starts inside this one.
            let end = function.address + size
            let nextStart = starts[(index + 1)...].first { $0 != function.address }
            if nextStart.map({ $0 >= end }) ?? true { probes.append(end - 1) }
            for probe in probes {
                let found = file.symbol(containing: probe)
                let expected = namesByAddress[function.address] ?? []
                #expect(
                    found.map { expected.contains($0.name) } == true,
                    "0x\(String(probe, radix: 16)) in \(function.name): got \(found?.name ?? "nil"), expected one of \(expected.sorted().prefix(5))"
                )
                #expect(found?.address == function.address)
                checked += 1
            }
        }
        #expect(checked > 0)
    }

    @Test func libcDynamicSymbolsAgreeWithNm() throws {
        let file = try ELFFile(path: libcPath)
        #expect(file.fileType == .sharedObject)
        #expect(file.hasDynamicSegment)
        try expectAgreement(file, nmOutput: Tool.run("nm", ["-D", "-S", "--defined-only", libcPath]))
    }

    @Test func swiftRuntimeSymbolsAgreeWithNm() throws {
        let file = try ELFFile(path: swiftCorePath)
        try expectAgreement(file, nmOutput: Tool.run("nm", ["-S", "--defined-only", swiftCorePath]))
        // addr2line agrees for a few Swift functions too.
        let table = try file.symbolTable()
        let picks = stride(from: 0, to: table.count, by: max(1, table.count / 12)).map { table.address(at: $0) }
        try expectAddr2lineAgreement(file, path: swiftCorePath, addresses: picks)
    }

    func expectAddr2lineAgreement(_ file: ELFFile, path: String, addresses: [UInt64]) throws {
        let output = try Tool.run(
            "addr2line", ["-f", "-e", path] + addresses.map { "0x" + String($0, radix: 16) })
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(lines.count >= addresses.count * 2)
        for (index, address) in addresses.enumerated() {
            let expected = lines[index * 2]
            #expect(
                file.symbol(containing: address)?.name == expected,
                "addr2line says \(expected) at 0x\(String(address, radix: 16))")
        }
    }

    @Test(arguments: [["-no-pie", "-fno-pie"], ["-pie", "-fPIE"]])
    func compiledExecutableAgreesWithBinutils(flags: [String]) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("known")
        try Tool.compileC(knownFunctionsSource, output: path, flags: flags + ["-O1", "-Wl,--build-id=sha1"])

        let file = try ELFFile(path: path)
        #expect(file.fileType == (flags[0] == "-pie" ? .sharedObject : .executable))
        #expect(file.isPositionIndependent == (flags[0] == "-pie"))

        let nmOutput = try Tool.run("nm", ["-n", "-S", "--defined-only", path])
        try expectAgreement(file, nmOutput: nmOutput)
        let symbols = NMSymbol.parse(nmOutput)
        for name in ["alpha_function", "beta_function", "gamma_local", "main"] {
            let symbol = try #require(symbols.first { $0.name == name })
            #expect(file.symbol(containing: symbol.address + 1)?.name == name)
        }
        let addresses = symbols.filter { "Tt".contains($0.type) && ($0.size ?? 0) > 1 }.map { $0.address + 1 }
        try expectAddr2lineAgreement(file, path: path, addresses: addresses)
        #expect(try file.buildID?.hexString == readelfBuildID(path))
        try expectLoadSegmentsAgreeWithReadelf(file, path: path)
    }

    @Test func strippedExecutableFallsBackToDynamicSymbols() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("stripped")
        try Tool.compileC(knownFunctionsSource, output: path, flags: ["-O1", "-pie", "-fPIE", "-rdynamic"])
        try Tool.run("strip", [path])

        let file = try ELFFile(path: path)
        let sections = try file.sections()
        #expect(!sections.contains { $0.type == ELFSection.typeSymbolTable })
        #expect(sections.contains { $0.name == ".dynsym" })
        try expectAgreement(file, nmOutput: Tool.run("nm", ["-D", "-S", "--defined-only", path]))
        // Exported by -rdynamic; the static function is gone with .symtab.
        let dynamic = NMSymbol.parse(try Tool.run("nm", ["-D", "--defined-only", path]))
        let alpha = try #require(dynamic.first { $0.name == "alpha_function" })
        #expect(file.symbol(containing: alpha.address + 2)?.name == "alpha_function")
    }

    @Test(arguments: ["/usr/bin/ls", libcPath])
    func systemBinaryWithOnlyDynamicSymbols(path: String) throws {
        let file = try ELFFile(path: path)
        let sections = try file.sections()
        #expect(!sections.contains { $0.type == ELFSection.typeSymbolTable })
        let table = try file.symbolTable()
        #expect(table.count > 0)
        try expectAgreement(file, nmOutput: Tool.run("nm", ["-D", "-S", "--defined-only", path]))
    }

    @Test(arguments: [libcPath, swiftCorePath, "/usr/bin/ls"])
    func buildIDMatchesReadelf(path: String) throws {
        let file = try ELFFile(path: path)
        let expected = try #require(try readelfBuildID(path))
        #expect(file.buildID?.hexString == expected)
    }

    @Test func debugLinkMatchesReadelf() throws {
        let file = try ELFFile(path: libcPath)
        let output = try Tool.run("readelf", ["-p", ".gnu_debuglink", libcPath])
        let line = try #require(output.split(separator: "\n").first { $0.contains("[     0]") })
        let expected = try #require(line.split(separator: " ").last.map(String.init))
        #expect(file.debugLink?.fileName == expected)
    }

    @Test(arguments: [libcPath, swiftCorePath])
    func loadSegmentsOfLibrariesAgreeWithReadelf(path: String) throws {
        try expectLoadSegmentsAgreeWithReadelf(ELFFile(path: path), path: path)
    }

    func expectLoadSegmentsAgreeWithReadelf(_ file: ELFFile, path: String) throws {
        let output = try Tool.run("readelf", ["-lW", path])
        let loads = output.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("LOAD") }
        #expect(loads.count == file.loadSegments.count)
        for (line, segment) in zip(loads, file.loadSegments) {
            let fields = line.split(separator: " ")
            #expect(UInt64(fields[1].dropFirst(2), radix: 16) == segment.offset)
            #expect(UInt64(fields[2].dropFirst(2), radix: 16) == segment.virtualAddress)
            #expect(UInt64(fields[4].dropFirst(2), radix: 16) == segment.fileSize)
            #expect(UInt64(fields[5].dropFirst(2), radix: 16) == segment.memorySize)
            #expect(line.contains(" E ") == segment.flags.contains(.execute))
        }
    }

    @Test func inMemoryParsingMatchesFileParsing() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: libcPath))
        let fromMemory = try ELFFile(bytes: [UInt8](data))
        let fromFile = try ELFFile(path: libcPath)
        #expect(fromMemory.buildID == fromFile.buildID)
        #expect(fromMemory.loadSegments == fromFile.loadSegments)
        #expect(try fromMemory.symbolTable().count == fromFile.symbolTable().count)
        #expect(fromFile.fileStatus?.size == Int64(data.count))
        #expect(fromMemory.fileStatus == nil)
    }

    @Test func fileTranslationFollowsLoadSegments() throws {
        let file = try ELFFile(path: libcPath)
        let text = try #require(file.loadSegments.first { $0.flags.contains(.execute) })
        let offset = text.offset + 0x10
        #expect(file.virtualAddress(forFileOffset: offset) == text.virtualAddress + 0x10)
        // A mapping of the text segment at an arbitrary base with its page-aligned offset.
        let mappingOffset = text.offset & ~0xfff
        let base: UInt64 = 0x7f00_0000_0000
        let runtime = base + (offset - mappingOffset)
        #expect(
            file.virtualAddress(ofRuntimeAddress: runtime, mappingStart: base, mappingOffset: mappingOffset)
                == text.virtualAddress + 0x10)
        #expect(file.virtualAddress(ofRuntimeAddress: base - 1, mappingStart: base, mappingOffset: 0) == nil)
        #expect(file.virtualAddress(forFileOffset: UInt64(file.byteCount) + 0x100000) == nil)
    }

    @Test func openErrorsSayWhatToDo() {
        #expect(throws: ELFError.self) { try ELFFile(path: "/nonexistent/nodeprof-test") }
        do {
            _ = try ELFFile(path: "/nonexistent/nodeprof-test")
        } catch {
            #expect(error.description.contains("/nonexistent/nodeprof-test"))
            #expect(error.description.contains("open"))
        }
        #expect(throws: ELFError.notRegularFile(path: "/tmp")) { try ELFFile(path: "/tmp") }
    }
}
