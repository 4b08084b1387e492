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
    /// TLS descriptor whose argument matches no known C library's layout).
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
    /// Modules are read through `/proc/PID/root`, so paths inside containers work. To locate
    /// it in many processes, keep a ``ThreadContextLocator``: it reads each file once.
    public static func locate(pid: Int32, procRoot: String = "/proc") throws(ThreadContextLocationError)
        -> ThreadContextLocation
    {
        try ThreadContextLocator(procRoot: procRoot).locate(pid: pid)
    }
}

/// Locates thread context in many processes, reading each module file once: what a file
/// holds (by device, inode and path) is remembered, so processes sharing an executable and its
/// libraries cost a maps read and a GOT read each. Not thread-safe: use it from one thread.
public final class ThreadContextLocator {
    private struct FileKey: Hashable {
        var deviceMajor: UInt32
        var deviceMinor: UInt32
        var inode: UInt64
        var path: String
    }
    /// The variable as a module file declares it, and the file's virtual address at offset 0.
    private struct FileSymbol {
        var symbol: ThreadContextSymbol
        var baseVirtualAddress: UInt64
    }
    /// Nil value: the file was read and neither defines nor uses the variable.
    private var files: [FileKey: FileSymbol?] = [:]
    private let procRoot: String
    /// Files remembered at most; beyond it the memory starts afresh.
    public static let capacity = 4096
    /// Module files parsed (cache misses), for statistics and tests.
    public private(set) var filesRead = 0

    public init(procRoot: String = "/proc") {
        self.procRoot = procRoot
    }

    /// Where the threads of `pid` find their `otel_thread_ctx_v1`.
    public func locate(pid: Int32) throws(ThreadContextLocationError) -> ThreadContextLocation {
        let maps: ProcessMaps
        do {
            maps = ProcessMaps(parsing: try FileContents.read("\(procRoot)/\(pid)/maps", limit: 64 << 20))
        } catch {
            throw .unreadable("cannot read the maps of process \(pid): \(error)")
        }
        return try locate(pid: pid, maps: maps)
    }

    /// Where the threads of `pid` find their `otel_thread_ctx_v1`, from maps the caller read.
    public func locate(pid: Int32, maps: ProcessMaps) throws(ThreadContextLocationError) -> ThreadContextLocation {
        var seen: Set<String> = []
        var candidates: [(path: String, found: FileSymbol, mapping: MemoryMapping)] = []
        for mapping in maps.mappings where mapping.isFileBacked && mapping.offset == 0 {
            guard seen.insert(mapping.path).inserted else { continue }
            guard let found = symbol(of: mapping, pid: pid) else { continue }
            candidates.append((mapping.path, found, mapping))
        }
        // Prefer the module that defines the variable; any user of it reaches the same one.
        guard
            let chosen = candidates.first(where: {
                $0.found.symbol.offsetInBlock != nil && !$0.found.symbol.relocations.isEmpty
            })
                ?? candidates.first(where: { $0.found.symbol.offsetInBlock != nil }) ?? candidates.first,
            let model = chosen.found.symbol.accessModel
        else { throw .notFound }
        return try Self.resolve(
            pid: pid, path: chosen.path, symbol: chosen.found.symbol, model: model,
            bias: chosen.mapping.start &- chosen.found.baseVirtualAddress)
    }

    /// What `mapping`'s file declares about the variable (nil: nothing), read once per file.
    private func symbol(of mapping: MemoryMapping, pid: Int32) -> FileSymbol? {
        let key = FileKey(
            deviceMajor: mapping.deviceMajor, deviceMinor: mapping.deviceMinor, inode: mapping.inode,
            path: mapping.path)
        // Inode 0 (a deleted or synthetic file) identifies nothing: never remembered.
        if mapping.inode != 0, let known = files[key] { return known }
        filesRead += 1
        var found: FileSymbol?
        if let file = try? ELFFile(path: "\(procRoot)/\(pid)/root\(mapping.path)"),
            let symbol = try? ThreadContextSymbol.locate(in: file), symbol.accessModel != nil
        {
            found = FileSymbol(symbol: symbol, baseVirtualAddress: file.virtualAddress(forFileOffset: 0) ?? 0)
        }
        if mapping.inode != 0 {
            if files.count >= Self.capacity { files.removeAll(keepingCapacity: true) }
            files[key] = found
        }
        return found
    }
}

extension ThreadContextLocator {
    /// The access for `model`, from the GOT slots of the chosen module (loaded at `bias`).
    private static func resolve(
        pid: Int32, path: String, symbol: ThreadContextSymbol, model: TLSAccessModel, bias: UInt64
    ) throws(ThreadContextLocationError) -> ThreadContextLocation {
        let chosen = (path: path, symbol: symbol)
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
            // loaded at start-up, or a dlopen'd one placed in the static surplus) glibc's
            // resolver returns the argument: the offset from the thread pointer, small and
            // negative on x86_64. For dynamic TLS (a library dlopen'd with no static room) the
            // argument points at glibc's tlsdesc_dynamic_arg, which starts with the tls_index
            // {module id, offset}: the same access as general dynamic.
            let argumentWord = try readWord(
                pid: pid, address: (slot(.tlsDescriptor) ?? 0) &+ 8, what: "its TLS descriptor")
            let argument = Int64(bitPattern: argumentWord)
            if !(argument < 0 && argument > -(1 << 32)) {
                let moduleID = try readWord(pid: pid, address: argumentWord, what: "its dynamic TLS descriptor")
                let offset = try readWord(pid: pid, address: argumentWord &+ 8, what: "its dynamic TLS descriptor")
                // A module id counts loaded modules with TLS; an offset lies within one block.
                guard (1..<(1 << 20)).contains(moduleID), offset < (1 << 32) else {
                    throw .unsupported(
                        module: chosen.path,
                        reason:
                            "the TLS descriptor's argument (0x\(String(argumentWord, radix: 16))) is neither a static offset nor glibc's dynamic descriptor"
                    )
                }
                return ThreadContextLocation(
                    modulePath: chosen.path, model: model,
                    access: .dynamicThreadVector(moduleID: moduleID, offset: offset))
            }
            return ThreadContextLocation(modulePath: chosen.path, model: model, access: .threadPointerOffset(argument))
        }
    }

    private static func readWord(pid: Int32, address: UInt64, what: String) throws(ThreadContextLocationError)
        -> UInt64
    {
        do {
            return try ProcessMemory.word(pid: pid, address: address)
        } catch {
            throw .unreadable(
                "cannot read \(what) at 0x\(String(address, radix: 16)) in process \(pid): \(SystemCall.errnoName(error.errno))"
            )
        }
    }
}
