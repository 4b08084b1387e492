// libFuzzer entry point for the ELF reader (Sources/Symbolization/ELF).
//
// Built by hack/fuzz-elf together with exactly the ELF reader's sources, so it needs
// nothing but the standard library and Glibc. Each input is parsed as an in-memory ELF
// image (the same parsing code the mmap path feeds) and every entry point is exercised:
// section headers, symbol tables and lookups, the build id, .gnu_debuglink and address
// translation. A crash, a sanitizer report, a leak or an allocation over -rss_limit_mb is
// a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buffer = UnsafeRawBufferPointer(start: data, count: size)
    let file: ELFFile
    do {
        file = try ELFFile(copying: buffer, name: "fuzz-input")
    } catch {
        _ = error.description
        return 0
    }
    exercise(file)
    return 0
}

private func exercise(_ file: ELFFile) {
    _ = file.buildID?.hexString
    _ = file.debugLink
    _ = file.isPositionIndependent
    _ = file.fileType
    do {
        let sections = try file.sections()
        for section in sections.prefix(32) {
            _ = try? file.bytes(of: section)
        }
        _ = file.section(named: ".text")
    } catch {
        _ = error.description
    }

    do {
        let table = try file.symbolTable()
        for problem in table.problems { _ = problem.description }
        let step = max(1, table.count / 128)
        for index in stride(from: 0, to: table.count, by: step) {
            let start = table.address(at: index)
            let size = table.size(at: index)
            for probe in [start, start &+ 1, start &+ size &- 1, start &+ size, start &- 1] {
                if let symbol = table.symbol(containing: probe) {
                    // A found symbol must contain the probe.
                    precondition(probe >= symbol.address && probe - symbol.address < symbol.size)
                }
            }
            _ = table.name(at: index)
        }
    } catch {
        _ = error.description
    }

    for probe: UInt64 in [0, 1, 0x1000, 0x40_0000, UInt64.max, UInt64.max / 2] {
        _ = file.symbol(containing: probe)
        _ = file.virtualAddress(forFileOffset: probe)
        _ = file.virtualAddress(ofRuntimeAddress: probe, mappingStart: 0x1000, mappingOffset: probe)
        _ = file.virtualAddress(ofRuntimeAddress: UInt64.max, mappingStart: 0, mappingOffset: probe)
    }
    for segment in file.loadSegments.prefix(64) {
        _ = file.loadSegment(containingFileOffset: segment.offset &+ segment.fileSize / 2)
        if let address = file.virtualAddress(forFileOffset: segment.offset) {
            _ = file.symbol(containing: address)
        }
    }
}
