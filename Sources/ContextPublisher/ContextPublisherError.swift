#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Why publishing the process context failed: the C writer's errno and what to do about it.
public struct ContextPublisherError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The errno the writer returned (EINVAL, E2BIG, ENOMEM, or one of mmap's).
    public let errno: Int32
    /// The call that failed.
    public let operation: String

    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    public var description: String {
        let name = String(cString: strerror(errno))
        switch errno {
        case EINVAL:
            return
                "\(operation): \(name); keys and values must not be NULL or contain NUL characters, at most 256 thread attribute keys, and a new key map must extend the published one (append-only)"
        case E2BIG:
            return "\(operation): \(name); the encoded process context must stay within 64 KiB, shorten the values"
        default:
            return "\(operation): \(name)"
        }
    }
}
