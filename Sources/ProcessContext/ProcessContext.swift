import Glibc
public import NodeprofCore

/// Reads what instrumented processes publish about themselves: the OTEP 4719 process context
/// (resource and extra attributes in a named mapping; OpenTelemetry OTEP 4719,
/// https://github.com/open-telemetry/opentelemetry-specification/pull/4719)
/// and the thread-context reference data it carries (`threadlocal.*` keys, OTEP 4947).
///
/// Data flow: `/proc/PID/maps` → mapping named `OTEL_CTX` → 32-byte header (process_vm_readv)
/// → payload at the header's pointer → ``ProcessContextPayload`` → ``ProcessContext``.

/// The decoded process context of one process.
public struct ProcessContext: Sendable, Hashable {
    /// `ProcessContext.resource.attributes` (field 1): service.name, service.version, ...
    public var resource: [Attribute]
    /// `ProcessContext.attributes` (field 2) without the `threadlocal.*` keys.
    public var attributes: [Attribute]
    /// `threadlocal.schema_version` (e.g. `tlsdesc_v1_dev`, `tls_v1`, `go_pprof_labels_v1`).
    public var threadSchemaVersion: String?
    /// `threadlocal.attribute_key_map`: index i names thread attribute key i. Entries that
    /// were not strings are kept as "" so later indexes stay right; at most 256 entries.
    public var attributeKeyMap: [String]?

    public init(
        resource: [Attribute] = [], attributes: [Attribute] = [], threadSchemaVersion: String? = nil,
        attributeKeyMap: [String]? = nil
    ) {
        self.resource = resource
        self.attributes = attributes
        self.threadSchemaVersion = threadSchemaVersion
        self.attributeKeyMap = attributeKeyMap
    }
}

/// Why a process context could not be read or decoded. Every case is an expected outcome for
/// hostile or racing writers: the caller counts it and profiles the process without a context.
public enum ProcessContextError: Error, Sendable, Hashable, CustomStringConvertible {
    // MARK: Payload decoding
    /// A varint, length or fixed-size field runs past the end of its message.
    case truncated(offset: Int)
    /// A varint longer than 10 bytes.
    case malformedVarint(offset: Int)
    /// Wire type 3, 4, 6 or 7 (groups or undefined), or field number 0.
    case unsupportedWireType(Int, offset: Int)
    /// Messages nested deeper than ``ProcessContextPayload/Limits/maximumDepth``.
    case nestingTooDeep
    /// More values than ``ProcessContextPayload/Limits/maximumValues``.
    case tooManyValues
    /// A string or bytes field longer than ``ProcessContextPayload/Limits/maximumStringBytes``.
    case stringTooLong(Int)
    /// A string field that is not UTF-8.
    case invalidUTF8(offset: Int)

    // MARK: Reading the other process
    /// The process has exited (ESRCH or ENOENT on its /proc files or memory).
    case processGone
    /// The header does not start with `OTEL_CTX`.
    case badSignature
    /// A header version other than 2 (or 1, accepted for development writers).
    case badVersion(UInt32)
    /// payload_size is 0 or above 64 KiB.
    case badPayloadSize(UInt32)
    /// The timestamp stayed 0 (update in progress) through every attempt.
    case notPublished
    /// The timestamp changed during every attempt: the writer keeps updating.
    case torn
    /// process_vm_readv failed or came short at `address` (EFAULT: nothing mapped there;
    /// EPERM: the agent lacks CAP_SYS_PTRACE for this process).
    case unreadableMemory(address: UInt64, errno: Int32)

    public var description: String {
        switch self {
        case .truncated(let offset): "process context payload truncated at byte \(offset)"
        case .malformedVarint(let offset): "process context payload: varint longer than 10 bytes at byte \(offset)"
        case .unsupportedWireType(let type, let offset):
            "process context payload: unsupported wire type \(type) at byte \(offset)"
        case .nestingTooDeep: "process context payload nests too deeply"
        case .tooManyValues: "process context payload has too many values"
        case .stringTooLong(let length): "process context payload has a \(length)-byte string"
        case .invalidUTF8(let offset): "process context payload: invalid UTF-8 in the string at byte \(offset)"
        case .processGone: "the process has exited"
        case .badSignature: "the OTEL_CTX mapping does not start with the OTEL_CTX signature"
        case .badVersion(let version): "process context version \(version) is not supported (expected 2)"
        case .badPayloadSize(let size): "process context payload size \(size) is outside 1...65536"
        case .notPublished: "the process context stayed mid-update (timestamp 0); try again later"
        case .torn: "the process context changed during every read attempt; try again later"
        case .unreadableMemory(let address, let errno):
            "cannot read process memory at 0x\(String(address, radix: 16)): \(SystemCall.errnoName(errno))"
                + (errno == EPERM ? "; grant CAP_SYS_PTRACE or run as root" : "")
        }
    }
}
