import CProcessContext
import Glibc
import NodeprofCore

/// Reads of another process's memory (process_vm_readv), shared by the context reader, the TLS
/// locator and the per-thread record reader.
enum ProcessMemory {
    /// Exactly `count` bytes at `address` in `pid`. Fails with the errno of process_vm_readv,
    /// or EFAULT for a short read. EINTR is retried.
    static func read(pid: Int32, address: UInt64, count: Int) throws(SystemCallError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let copied = try SystemCall.retryingOnInterrupt("process_vm_readv") {
            buffer.withUnsafeMutableBytes { nodeprof_process_context_read_memory(pid, address, $0.baseAddress, count) }
        }
        guard copied == count else { throw SystemCallError("process_vm_readv", errno: EFAULT) }
        return buffer
    }

    /// The 8-byte word at `address` in `pid` (host byte order).
    static func word(pid: Int32, address: UInt64) throws(SystemCallError) -> UInt64 {
        try read(pid: pid, address: address, count: 8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }
}
