import CProcessContext
import Glibc
public import NodeprofCore
public import Symbolization

/// Where, in one running process, a thread finds its `otel_thread_ctx_v1`: what the BPF
/// sampler needs to follow from a thread pointer to the record pointer.
public struct ThreadContextLocation: Sendable, Hashable {
    public typealias Access = ThreadContextAccess

    /// The module that holds the access (the library or executable whose code reaches the
    /// variable).
    public var modulePath: String
    public var model: TLSAccessModel
    public var access: Access
}

/// Why a process's thread context cannot be located.
public enum ThreadContextLocationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No module of the process defines or references `otel_thread_ctx_v1`.
    case notFound
    /// The module reaches the variable in a way this reader does not follow (such as a
    /// TLSDESC resolved to dynamic TLS).
    case unsupported(module: String, reason: String)
    /// The process's maps or memory could not be read.
    case unreadable(String)

    public var description: String {
        switch self {
        case .notFound: return "no loaded module defines or uses otel_thread_ctx_v1"
        case .unsupported(let module, let reason): return "\(module): \(reason)"
        case .unreadable(let reason): return reason
        }
    }
}

extension ThreadContextLocation {
    /// Finds `otel_thread_ctx_v1` among the process's file-backed modules and resolves its
    /// access from the GOT slots the dynamic linker filled (read from the process's memory).
    /// Modules are read through `/proc/PID/root`, so paths inside containers work.
    public static func locate(pid: Int32, procRoot: String = "/proc") throws(ThreadContextLocationError)
        -> ThreadContextLocation
    {
        let maps: ProcessMaps
        do {
            maps = ProcessMaps(parsing: try FileContents.read("\(procRoot)/\(pid)/maps", limit: 64 << 20))
        } catch {
            throw .unreadable("cannot read the maps of process \(pid): \(error)")
        }
        var seen: Set<String> = []
        var candidates: [(path: String, file: ELFFile, symbol: ThreadContextSymbol, mapping: MemoryMapping)] = []
        for mapping in maps.mappings where mapping.isFileBacked && mapping.offset == 0 {
            guard seen.insert(mapping.path).inserted else { continue }
            guard let file = try? ELFFile(path: "\(procRoot)/\(pid)/root\(mapping.path)"),
                let symbol = try? ThreadContextSymbol.locate(in: file), symbol.accessModel != nil
            else { continue }
            candidates.append((mapping.path, file, symbol, mapping))
        }
        // Prefer the module that defines the variable; any user of it reaches the same one.
        guard
            let chosen = candidates.first(where: { $0.symbol.offsetInBlock != nil && !$0.symbol.relocations.isEmpty })
                ?? candidates.first(where: { $0.symbol.offsetInBlock != nil }) ?? candidates.first,
            let model = chosen.symbol.accessModel
        else { throw .notFound }
        let bias = chosen.mapping.start &- (chosen.file.virtualAddress(forFileOffset: 0) ?? 0)

        func slot(_ model: TLSAccessModel) -> UInt64? {
            chosen.symbol.relocations.first { $0.model == model }.map { bias &+ $0.slotAddress }
        }
        switch model {
        case .localExec:
            guard let offset = chosen.symbol.localExecThreadPointerOffset else {
                throw .unsupported(module: chosen.path, reason: "no PT_TLS segment for a local-exec variable")
            }
            return ThreadContextLocation(modulePath: chosen.path, model: model, access: .threadPointerOffset(offset))
        case .initialExec:
            let value = try readWord(pid: pid, address: slot(.initialExec) ?? 0, what: "its TPOFF64 GOT slot")
            return ThreadContextLocation(
                modulePath: chosen.path, model: model, access: .threadPointerOffset(Int64(bitPattern: value)))
        case .generalDynamic:
            let address = slot(.generalDynamic) ?? 0
            let moduleID = try readWord(pid: pid, address: address, what: "its DTPMOD64 GOT slot")
            // DTPOFF64 sits in the next GOT word for a symbol reference.
            let offset = try readWord(pid: pid, address: address &+ 8, what: "its DTPOFF64 GOT slot")
            return ThreadContextLocation(
                modulePath: chosen.path, model: model, access: .dynamicThreadVector(moduleID: moduleID, offset: offset))
        case .tlsDescriptor:
            // A resolved descriptor is (resolver, argument). For static TLS (every module
            // loaded at start-up) glibc's resolver returns the argument: the offset from the
            // thread pointer, small and negative on x86_64. Anything else is a pointer to a
            // dynamic-TLS structure, which this reader does not follow yet.
            let argument = Int64(
                bitPattern: try readWord(
                    pid: pid, address: (slot(.tlsDescriptor) ?? 0) &+ 8, what: "its TLS descriptor"))
            guard argument < 0, argument > -(1 << 32) else {
                throw .unsupported(
                    module: chosen.path,
                    reason: "the TLS descriptor resolves to dynamic TLS (a library loaded with dlopen)")
            }
            return ThreadContextLocation(modulePath: chosen.path, model: model, access: .threadPointerOffset(argument))
        }
    }

    private static func readWord(pid: Int32, address: UInt64, what: String) throws(ThreadContextLocationError)
        -> UInt64
    {
        var value: UInt64 = 0
        let copied = withUnsafeMutableBytes(of: &value) { buffer in
            nodeprof_read_process_memory(pid, address, buffer.baseAddress, 8)
        }
        guard copied == 8 else {
            throw .unreadable(
                "cannot read \(what) at 0x\(String(address, radix: 16)) in process \(pid): errno \(errno)")
        }
        return value
    }
}
