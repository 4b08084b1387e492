import CProcessContext
import Glibc

/// Reads of another process's memory (process_vm_readv), shared by the context reader, the TLS
/// locator and the per-thread record reader.
enum ProcessMemory {
    /// Why a read failed: the errno of process_vm_readv (EFAULT for a short read).
    struct Failure: Error {
        var errno: Int32
    }

    /// Exactly `count` bytes at `address` in `pid`; a short read is a failure. EINTR is retried.
    static func read(pid: Int32, address: UInt64, count: Int) throws(Failure) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        while true {
            let copied = buffer.withUnsafeMutableBytes {
                nodeprof_read_process_memory(pid, address, $0.baseAddress, count)
            }
            if copied == count { return buffer }
            if copied < 0 {
                let error = Glibc.errno
                if error == EINTR { continue }
                throw Failure(errno: error)
            }
            throw Failure(errno: EFAULT)
        }
    }

    /// The 8-byte word at `address` in `pid` (host byte order).
    static func word(pid: Int32, address: UInt64) throws(Failure) -> UInt64 {
        try read(pid: pid, address: address, count: 8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }
}
