import Glibc

/// A system call failed: which call (with its subject, "open /proc/1/maps") and its errno.
public struct SystemCallError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The call's name and what it was applied to, as the message shows it.
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// "open /proc/1/maps: ENOENT (No such file or directory)".
    public var description: String { "\(call): \(SystemCall.errnoName(errno))" }
}

/// The one way Swift code here makes a system call that can be interrupted: retry on EINTR,
/// throw the errno with the call's name otherwise. C targets keep their own handling.
public enum SystemCall {
    /// Calls `body` until it does not fail with EINTR and returns its result. A negative result
    /// is a failure with `errno` set (the libc convention for `open`, `read`, `poll`...).
    ///
    /// - Parameter call: the call's name and subject for the error, evaluated only on failure.
    @discardableResult
    public static func retryingOnInterrupt<Result: BinaryInteger>(
        _ call: @autoclosure () -> String, _ body: () -> Result
    ) throws(SystemCallError) -> Result {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw SystemCallError(call(), errno: code)
        }
    }

    /// "EACCES (Permission denied)" for an errno value; "errno 135 (...)" for one without a
    /// symbolic name here.
    public static func errnoName(_ code: Int32) -> String {
        let text = String(cString: strerror(code))
        return "\(symbolicNames[code] ?? "errno \(code)") (\(text))"
    }

    private static let symbolicNames: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO",
        E2BIG: "E2BIG", ENOEXEC: "ENOEXEC", EBADF: "EBADF", ECHILD: "ECHILD", EAGAIN: "EAGAIN",
        ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST",
        EXDEV: "EXDEV", ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL",
        ENFILE: "ENFILE", EMFILE: "EMFILE", ETXTBSY: "ETXTBSY", EFBIG: "EFBIG", ENOSPC: "ENOSPC",
        ESPIPE: "ESPIPE", EROFS: "EROFS", EPIPE: "EPIPE", ERANGE: "ERANGE", ENAMETOOLONG: "ENAMETOOLONG",
        ENOSYS: "ENOSYS", ELOOP: "ELOOP", EOVERFLOW: "EOVERFLOW", EOPNOTSUPP: "EOPNOTSUPP",
        EADDRINUSE: "EADDRINUSE", ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET",
        ETIMEDOUT: "ETIMEDOUT",
    ]
}
