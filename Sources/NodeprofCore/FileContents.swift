import Glibc

/// A file read could not complete.
public enum FileReadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A system call (`open`, `read`) failed.
    case systemCall(path: String, operation: String, errno: Int32)
    /// The file is larger than the reader accepts.
    case tooLarge(path: String, limit: Int)

    public var description: String {
        switch self {
        case .tooLarge(let path, let limit):
            return "cannot read \(path): larger than the \(limit) bytes this reader accepts"
        case .systemCall(let path, let operation, let errno):
            // Advice for /proc and /sys files differs from advice for files a user named.
            let system = path.hasPrefix("/proc/") || path.hasPrefix("/sys/")
            var advice = ""
            if errno == EACCES || errno == EPERM {
                advice = system ? "; run as root (or grant CAP_SYS_PTRACE and CAP_SYSLOG)" : "; check its permissions"
            } else if errno == ENOENT || errno == ESRCH {
                advice = system ? "; the process has probably exited" : "; check the path"
            }
            return "cannot read \(path): \(operation): \(SystemCall.errnoName(errno))\(advice)"
        }
    }

    /// True when the error means the file or the process behind it is gone.
    public var isNotFound: Bool {
        if case .systemCall(_, _, let errno) = self { return errno == ENOENT || errno == ESRCH }
        return false
    }
}

/// Whole-file reads for /proc and /sys files, whose `st_size` is 0 and which must be read
/// until EOF. The one place that opens and reads such files (EINTR retried by `SystemCall`, errno kept).
public enum FileContents {
    /// Reads `path` to the end, failing when it is larger than `limit` bytes.
    public static func read(_ path: String, limit: Int) throws(FileReadError) -> [UInt8] {
        let descriptor: Int32
        do {
            descriptor = try SystemCall.retryingOnInterrupt("open") { open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw .systemCall(path: path, operation: error.call, errno: error.errno)
        }
        defer { close(descriptor) }

        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count: Int
            do {
                count = try SystemCall.retryingOnInterrupt("read") {
                    chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
                }
            } catch {
                throw .systemCall(path: path, operation: error.call, errno: error.errno)
            }
            if count == 0 { return contents }
            guard contents.count + count <= limit else {
                throw .tooLarge(path: path, limit: limit)
            }
            contents.append(contentsOf: chunk[0..<count])
        }
    }

    /// The target of the symbolic link at `path`, or nil.
    public static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBufferPointer { raw -> Int in
            guard let base = raw.baseAddress else { return -1 }
            return readlink(path, base, raw.count)
        }
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// True when `path` exists.
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }
}
