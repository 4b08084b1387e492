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
