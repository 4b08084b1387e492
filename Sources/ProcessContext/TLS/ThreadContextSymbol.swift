public import Symbolization

/// How code reaches a thread-local variable, as the linker decided it (OTEP 4947 lists the
/// four a reader must support).
public enum TLSAccessModel: String, Sendable, Hashable, CustomStringConvertible {
    /// TLS descriptors (`-mtls-dialect=gnu2`, the recommended one): R_X86_64_TLSDESC /
    /// R_AARCH64_TLSDESC. The resolved descriptor's second word is the offset from the thread
    /// pointer when the module is in static TLS.
    case tlsDescriptor = "TLSDESC"
    /// Legacy general dynamic: a DTPMOD64 + DTPOFF64 pair in the GOT (module id, offset),
    /// read through the thread's DTV.
    case generalDynamic = "general dynamic"
    /// Initial exec: TPOFF64 in the GOT holds the offset from the thread pointer.
    case initialExec = "initial exec"
    /// Local exec: the symbol is in the executable and no relocation is needed; the offset
    /// follows from the symbol value and the executable's PT_TLS segment.
    case localExec = "local exec"

    public var description: String { rawValue }
}

/// What one ELF module says about `otel_thread_ctx_v1`: where it is in the module's TLS
/// block and how the module's code reaches it. Static analysis of the file; the run-time
/// part (GOT contents, the thread pointer) comes from the process.
public struct ThreadContextSymbol: Sendable, Hashable {
    public static let name = "otel_thread_ctx_v1"

    /// Offset of the variable in its module's TLS block (`st_value`), when this module
    /// defines it.
    public var offsetInBlock: UInt64?
    /// The module's PT_TLS segment: size in memory and alignment (nil without one).
    public var tlsBlockSize: UInt64?
    public var tlsBlockAlignment: UInt64?
    /// True for a main executable (ET_EXEC, or ET_DYN with a PT_INTERP).
    public var isExecutable: Bool
    public var machine: UInt16
    /// The GOT slots that relocations against the symbol fill at load time (link-time
    /// addresses: add the module's load bias), by access model.
    public var relocations: [Relocation]

    public struct Relocation: Sendable, Hashable {
        public var model: TLSAccessModel
        /// Address of the GOT slot (the descriptor, the module id, or the offset).
        public var slotAddress: UInt64
    }

    /// The model the module's code uses: the relocations decide; a symbol defined in the
    /// executable without any is local exec.
    public var accessModel: TLSAccessModel? {
        for model in [TLSAccessModel.tlsDescriptor, .generalDynamic, .initialExec]
        where relocations.contains(where: { $0.model == model }) {
            return model
        }
        return isExecutable && offsetInBlock != nil ? .localExec : nil
    }

    /// For local exec: the variable's offset from the thread pointer. x86_64 (TLS variant
    /// II): the executable's block ends at the thread pointer, so the offset is negative;
    /// aarch64 (variant I): the block starts 16 bytes after it, aligned.
    public var localExecThreadPointerOffset: Int64? {
        guard isExecutable, let offset = offsetInBlock, let size = tlsBlockSize else { return nil }
        let alignment = max(1, tlsBlockAlignment ?? 1)
        switch machine {
        case ELFMachine.x86_64:
            let blockSize = (size + alignment - 1) / alignment * alignment
            return Int64(bitPattern: offset) - Int64(bitPattern: blockSize)
        case ELFMachine.aarch64:
            let start = (16 + alignment - 1) / alignment * alignment
            return Int64(bitPattern: start + offset)
        default:
            return nil
        }
    }

    /// Reads the symbol's definition and the relocations against it in `file`. Nil when the
    /// module neither defines nor references `otel_thread_ctx_v1` as a TLS symbol.
    public static func locate(in file: ELFFile) throws(ELFError) -> ThreadContextSymbol? {
        let sections = try file.sections()
        guard let dynsym = sections.first(where: { $0.type == ELFSection.typeDynamicSymbolTable }),
            Int(dynsym.link) < sections.count
        else { return nil }
        let strings = try file.bytes(of: sections[Int(dynsym.link)])
        let symbols = try file.bytes(of: dynsym)
        let entrySize = 24
        // Symbol indices of every STT_TLS entry named otel_thread_ctx_v1 (defined or not).
        var indices: Set<UInt64> = []
        var offsetInBlock: UInt64?
        let count = symbols.count / entrySize
        for index in 0..<count {
            let base = index * entrySize
            let info = symbols[base + 4]
            guard info & 0xF == 6 else { continue }  // STT_TLS
            let nameOffset = Int(readLE32(symbols, base))
            guard nameMatches(strings, at: nameOffset, Self.name) else { continue }
            indices.insert(UInt64(index))
            let sectionIndex = UInt16(symbols[base + 6]) | UInt16(symbols[base + 7]) << 8
            if sectionIndex != 0 { offsetInBlock = readLE64(symbols, base + 8) }
        }
        guard !indices.isEmpty else { return nil }

        var relocations: [Relocation] = []
        for section in sections where section.type == 4 && section.link == UInt32(dynsym.index) {  // SHT_RELA
            let bytes = try file.bytes(of: section)
            for base in stride(from: 0, to: bytes.count - 23, by: 24) {
                let info = readLE64(bytes, base + 8)
                guard indices.contains(info >> 32),
                    let model = Self.model(relocationType: UInt32(truncatingIfNeeded: info), machine: file.machine)
                else { continue }
                relocations.append(Relocation(model: model, slotAddress: readLE64(bytes, base)))
            }
        }
        let tls = file.programHeaders.first { $0.type == 7 }  // PT_TLS
        let hasInterpreter = file.programHeaders.contains { $0.type == 3 }  // PT_INTERP
        return ThreadContextSymbol(
            offsetInBlock: offsetInBlock, tlsBlockSize: tls?.memorySize, tlsBlockAlignment: tls?.alignment,
            isExecutable: file.fileType == .executable || (file.fileType == .sharedObject && hasInterpreter),
            machine: file.machine, relocations: relocations)
    }

    /// The access model of a relocation type; nil for types that are not TLS GOT slots
    /// (DTPOFF64 travels with DTPMOD64 and is counted through it).
    static func model(relocationType: UInt32, machine: UInt16) -> TLSAccessModel? {
        switch (machine, relocationType) {
        case (ELFMachine.x86_64, 36), (ELFMachine.aarch64, 1031): return .tlsDescriptor
        case (ELFMachine.x86_64, 16), (ELFMachine.aarch64, 1028): return .generalDynamic
        case (ELFMachine.x86_64, 18), (ELFMachine.aarch64, 1030): return .initialExec
        default: return nil
        }
    }
}

/// ELF `e_machine` values nodeprof knows.
public enum ELFMachine {
    public static let x86_64: UInt16 = 62
    public static let aarch64: UInt16 = 183
}

private func readLE32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    guard offset >= 0, offset + 4 <= bytes.count else { return 0 }
    var value: UInt32 = 0
    for index in (0..<4).reversed() { value = value << 8 | UInt32(bytes[offset + index]) }
    return value
}

private func readLE64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    guard offset >= 0, offset + 8 <= bytes.count else { return 0 }
    var value: UInt64 = 0
    for index in (0..<8).reversed() { value = value << 8 | UInt64(bytes[offset + index]) }
    return value
}

/// True when the NUL-terminated string at `offset` of a string table is `name`.
private func nameMatches(_ strings: [UInt8], at offset: Int, _ name: String) -> Bool {
    let utf8 = Array(name.utf8)
    guard offset >= 0, offset + utf8.count < strings.count else { return false }
    for (index, byte) in utf8.enumerated() where strings[offset + index] != byte { return false }
    return strings[offset + utf8.count] == 0
}
