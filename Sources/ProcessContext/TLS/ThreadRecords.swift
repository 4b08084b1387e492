import CProcessContext
import Glibc
public import NodeprofCore

/// The span record one thread of a process has attached at the moment it was read from outside
/// (OTEP 4947): what `nodeprof context` prints per thread.
public struct ThreadRecordSnapshot: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        /// `otel_thread_ctx_v1` is NULL: the thread runs no span.
        case none
        /// A record is attached but its valid byte is not 1 (being replaced, or broken).
        case invalid(validByte: UInt8)
        /// A valid record, its attributes named through the process's key map.
        case span(TraceContext)
        /// The record has no trace id (all zero) or is too short to decode.
        case undecodable
        /// The thread pointer, variable or record could not be read.
        case unreadable(String)
    }

    public var tid: Int32
    /// The thread's name (`/proc/PID/task/TID/comm`).
    public var name: String
    public var state: State
}

extension ThreadContextLocation {
    /// Most threads read by ``threadRecords(pid:keyMap:procRoot:limit:)`` by default.
    public static let defaultThreadLimit = 1024

    /// Reads the record every thread of `pid` has attached right now. The thread pointer is in
    /// a register only the kernel saves, so each thread is stopped for a few microseconds with
    /// ptrace (seize, interrupt, read registers, detach; a blocking system call is restarted).
    /// Needs ptrace access (root or CAP_SYS_PTRACE) and fails per thread under another tracer.
    /// At most `limit` threads, in the order /proc lists them; `truncated` says when more exist.
    public func threadRecords(pid: Int32, keyMap: [String], procRoot: String = "/proc", limit: Int = defaultThreadLimit)
        -> (records: [ThreadRecordSnapshot], truncated: Bool)
    {
        let tids = Self.threadIDs(pid: pid, procRoot: procRoot)
        var records: [ThreadRecordSnapshot] = []
        for tid in tids.prefix(max(0, limit)) {
            let name =
                (try? FileContents.read("\(procRoot)/\(pid)/task/\(tid)/comm", limit: 64))
                .map { String(decoding: $0, as: UTF8.self).trimmingTrailingNewline() } ?? ""
            records.append(ThreadRecordSnapshot(tid: tid, name: name, state: state(pid: pid, tid: tid, keyMap: keyMap)))
        }
        return (records, tids.count > limit)
    }

    private func state(pid: Int32, tid: Int32, keyMap: [String]) -> ThreadRecordSnapshot.State {
        var threadPointer: UInt64 = 0
        let rc = nodeprof_process_context_thread_pointer(tid, &threadPointer)
        guard rc == 0 else {
            return .unreadable(
                rc == -EPERM
                    ? "no ptrace access (run as root or with CAP_SYS_PTRACE; or another tracer is attached)"
                    : "cannot stop the thread to read its thread pointer: \(SystemCall.errnoName(-rc))")
        }
        let variable: UInt64
        switch access {
        case .threadPointerOffset(let offset):
            variable = threadPointer &+ UInt64(bitPattern: offset)
        case .dynamicThreadVector(let moduleID, let offset):
            // glibc x86_64: the DTV pointer is the second word of the TCB; 16-byte entries.
            guard let dtv = Self.word(pid: pid, at: threadPointer &+ 8),
                let block = Self.word(pid: pid, at: dtv &+ 16 &* moduleID)
            else { return .unreadable("cannot read the thread's dynamic thread vector") }
            guard block != 0, block != UInt64.max else { return .none }  // not allocated yet
            variable = block &+ offset
        }
        guard let record = Self.word(pid: pid, at: variable) else {
            return .unreadable("cannot read otel_thread_ctx_v1 at 0x\(String(variable, radix: 16))")
        }
        guard record != 0 else { return .none }
        let layout = TraceContext.RecordLayout.self
        guard let header = Self.bytes(pid: pid, at: record, count: layout.headerSize) else {
            return .unreadable("cannot read the record at 0x\(String(record, radix: 16))")
        }
        guard header[layout.validOffset] == 1 else { return .invalid(validByte: header[layout.validOffset]) }
        let size = min(
            Int(header[layout.attributesSizeOffset]) | Int(header[layout.attributesSizeOffset + 1]) << 8,
            layout.attributesCapacity)
        let attributes =
            size == 0 ? [] : Self.bytes(pid: pid, at: record &+ UInt64(layout.headerSize), count: size) ?? []
        guard let context = TraceContext(record: header + attributes, keyMap: keyMap) else { return .undecodable }
        return .span(context)
    }

    private static func threadIDs(pid: Int32, procRoot: String) -> [Int32] {
        guard let directory = opendir("\(procRoot)/\(pid)/task") else { return [] }
        defer { closedir(directory) }
        var tids: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let tid = Int32(name) { tids.append(tid) }
        }
        return tids.sorted()
    }

    private static func bytes(pid: Int32, at address: UInt64, count: Int) -> [UInt8]? {
        try? ProcessMemory.read(pid: pid, address: address, count: count)
    }

    private static func word(pid: Int32, at address: UInt64) -> UInt64? {
        try? ProcessMemory.word(pid: pid, address: address)
    }
}

extension String {
    fileprivate func trimmingTrailingNewline() -> String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}
