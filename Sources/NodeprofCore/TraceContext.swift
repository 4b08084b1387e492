/// The span that was running on a thread when it was sampled (OTEP 4947 thread context),
/// decoded: what a profile sample links to.
public struct TraceContext: Sendable, Hashable {
    /// W3C trace id, 16 bytes (never all zero: such a record carries no trace).
    public var traceID: [UInt8]
    /// W3C span id, 8 bytes.
    public var spanID: [UInt8]
    /// W3C trace flags (bit 0: sampled); 0 when the writer did not say.
    public var flags: UInt8
    /// The record's attributes, named through the process's attribute key map
    /// (`http.route`, ...), in record order with the last value of a repeated key.
    public var attributes: [Attribute]

    /// Nil unless `traceID` is 16 bytes and not all zero and `spanID` is 8 bytes.
    public init?(traceID: [UInt8], spanID: [UInt8], flags: UInt8 = 0, attributes: [Attribute] = []) {
        guard traceID.count == 16, spanID.count == 8, traceID.contains(where: { $0 != 0 }) else { return nil }
        self.traceID = traceID
        self.spanID = spanID
        self.flags = flags
        self.attributes = attributes
    }

    /// True when the trace was sampled (flags bit 0).
    public var isSampled: Bool { flags & 1 != 0 }
}

/// How a thread of a process reaches its `otel_thread_ctx_v1` pointer from its thread
/// pointer: what the sampler needs per process to read thread context.
public enum ThreadContextAccess: Sendable, Hashable {
    /// Static TLS: the variable is at `thread pointer + offset`.
    case threadPointerOffset(Int64)
    /// Dynamic TLS (glibc): DTV at `*(thread pointer + 8)`, entries of 16 bytes; the variable
    /// is at `dtv[moduleID].pointer + offset`.
    case dynamicThreadVector(moduleID: UInt64, offset: UInt64)
}

extension TraceContext {
    /// Where the fields of an OTEP 4947 record sit (host endianness). The BPF program
    /// (`struct nodeprof_thread_record_header`) and the writer (`otel_thread_record`) use
    /// the same layout; a test compares the three.
    public enum RecordLayout {
        public static let traceIDOffset = 0
        public static let spanIDOffset = 16
        public static let validOffset = 24
        public static let traceFlagsOffset = 25
        /// Little-endian u16 on every supported host (x86_64, arm64).
        public static let attributesSizeOffset = 26
        /// The header's size: attribute entries start here.
        public static let headerSize = 28
        /// Most bytes of attribute entries (a record stays within 640 bytes).
        public static let attributesCapacity = 612
    }

    /// Decodes an OTEP 4947 record (28-byte header, then `[key index][length][value]`
    /// entries) with the process's attribute key map. Nil when the record is not valid
    /// (valid byte other than 1, too short) or has no trace id. Entries that do not fit end
    /// the parsing; indexes outside the map are skipped; a repeated key keeps its last value.
    public init?(record: [UInt8], keyMap: [String]) {
        typealias Layout = RecordLayout
        guard record.count >= Layout.headerSize, record[Layout.validOffset] == 1 else { return nil }
        let size = Int(record[Layout.attributesSizeOffset]) | Int(record[Layout.attributesSizeOffset + 1]) << 8
        var attributes: [Attribute] = []
        var position = Layout.headerSize
        let end = min(record.count, Layout.headerSize + size)
        while position + 2 <= end {
            let key = Int(record[position])
            let length = Int(record[position + 1])
            guard position + 2 + length <= end else { break }
            if key < keyMap.count, !keyMap[key].isEmpty {
                let value = String(decoding: record[(position + 2)..<(position + 2 + length)], as: UTF8.self)
                if let existing = attributes.firstIndex(where: { $0.key == keyMap[key] }) {
                    attributes[existing].value = .string(value)
                } else {
                    attributes.append(Attribute(keyMap[key], .string(value)))
                }
            }
            position += 2 + length
        }
        self.init(
            traceID: Array(record[Layout.traceIDOffset..<(Layout.traceIDOffset + 16)]),
            spanID: Array(record[Layout.spanIDOffset..<(Layout.spanIDOffset + 8)]),
            flags: record[Layout.traceFlagsOffset], attributes: attributes)
    }
}

extension TraceContext {
    /// The largest attribute key index a span record uses (-1 for none): a reader whose key
    /// map is shorter re-reads the process context before decoding (OTEP 4947).
    public static func maximumKeyIndex(_ record: [UInt8]) -> Int {
        let header = RecordLayout.headerSize
        guard record.count >= header else { return -1 }
        var largest = -1
        var position = header
        while position + 2 <= record.count {
            let length = Int(record[position + 1])
            guard position + 2 + length <= record.count else { break }
            largest = max(largest, Int(record[position]))
            position += 2 + length
        }
        return largest
    }
}
