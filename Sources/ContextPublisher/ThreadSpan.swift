/// A W3C trace id: 16 bytes, `high` holds bytes 0...7 in big-endian order (as in the hex form).
public struct TraceID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    /// All zeros: no trace.
    public static let invalid = TraceID(high: 0, low: 0)

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Exactly 16 bytes, or nil.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (i, byte) in bytes.enumerated() {
            if i < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.init(high: high, low: low)
    }

    /// 32 hex digits, or nil.
    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 32, let high = UInt64(hex.prefix(16), radix: 16),
            let low = UInt64(hex.suffix(16), radix: 16)
        else { return nil }
        self.init(high: high, low: low)
    }

    /// The 16 bytes in wire order.
    public var bytes: [UInt8] {
        bigEndianBytes(high) + bigEndianBytes(low)
    }

    public var description: String { hex16(high) + hex16(low) }
}

/// A W3C span id: 8 bytes, big-endian in `value` (as in the hex form).
public struct SpanID: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) {
        self.value = value
    }

    /// Exactly 8 bytes, or nil.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 8 else { return nil }
        self.init(bytes.reduce(0) { $0 << 8 | UInt64($1) })
    }

    /// 16 hex digits, or nil.
    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 16, let value = UInt64(hex, radix: 16) else { return nil }
        self.init(value)
    }

    /// The 8 bytes in wire order.
    public var bytes: [UInt8] { bigEndianBytes(value) }

    public var description: String { hex16(value) }
}

private func bigEndianBytes(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
}

private func hex16(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// The span active on an OS thread, as a profiler sees it in the thread's record: ids, W3C
/// flags and a few string attributes keyed by their index in the published key map.
public struct ThreadSpan: Hashable, Sendable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// W3C trace flags; bit 0 = sampled.
    public var flags: UInt8
    /// Attribute values by key index (see ``ThreadAttributeKeyMap``). Written in index order;
    /// a value longer than 255 bytes is cut at a UTF-8 character boundary; entries that do not
    /// fit in the record's 612 bytes are left out (see ``ThreadContext/set(_:)``).
    public var attributes: [UInt8: String] {
        didSet { encoding = ThreadContext.encode(attributes) }
    }

    /// The record's attribute entries for ``attributes``, built when they are set so that
    /// attaching the span only copies bytes.
    struct AttributeEncoding: Hashable, Sendable {
        var bytes: [UInt8]
        /// False when some entries did not fit in the record.
        var complete: Bool
    }
    private(set) var encoding: AttributeEncoding

    public init(traceID: TraceID, spanID: SpanID, flags: UInt8 = 0, attributes: [UInt8: String] = [:]) {
        self.traceID = traceID
        self.spanID = spanID
        self.flags = flags
        self.attributes = attributes
        self.encoding = ThreadContext.encode(attributes)
    }

    /// Attributes by key name, mapped through `keys`; names the key map does not hold are
    /// ignored (publish them in the key map first).
    public init(
        traceID: TraceID,
        spanID: SpanID,
        flags: UInt8 = 0,
        attributes: [String: String],
        keys: ThreadAttributeKeyMap
    ) {
        var byIndex: [UInt8: String] = [:]
        for (name, value) in attributes {
            if let index = keys.index(of: name) { byIndex[index] = value }
        }
        self.init(traceID: traceID, spanID: spanID, flags: flags, attributes: byIndex)
    }
}
