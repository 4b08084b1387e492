import NodeprofCore

/// Decodes the protobuf payload of a process context
/// (`opentelemetry.proto.processcontext.v1development.ProcessContext`) with a small bounded
/// wire reader, so that hostile bytes cost at most a few passes over 64 KiB.
///
/// Policy:
/// - unknown fields are skipped by wire type; groups (wire types 3 and 4) are errors;
/// - an `AnyValue` without a value is dropped (``AttributeValue`` has no empty case);
/// - a `KeyValueList` value is flattened into dotted keys (`parent.child`); inside an array it
///   has no key to flatten under, so the element is dropped;
/// - `threadlocal.*` keys (anywhere) are consumed into ``ProcessContext/threadSchemaVersion``
///   and ``ProcessContext/attributeKeyMap`` and never returned as attributes.
public enum ProcessContextPayload {
    /// Bounds on what one payload may contain.
    public enum Limits {
        /// Nested messages below the top level (ProcessContext → KeyValue → AnyValue →
        /// ArrayValue → AnyValue ... counts each level).
        public static let maximumDepth = 16
        /// Values (keys, array elements) in one payload.
        public static let maximumValues = 4096
        /// Bytes in one string or bytes field.
        public static let maximumStringBytes = 16384
        /// Entries kept from `threadlocal.attribute_key_map` (the spec's maximum).
        public static let maximumKeyMapEntries = 256
    }

    /// Decodes `bytes`, throwing on the first malformed or over-limit element.
    public static func decode(_ bytes: [UInt8]) throws(ProcessContextError) -> ProcessContext {
        var decoder = Decoder(bytes: bytes)
        var resource: [Attribute] = []
        var attributes: [Attribute] = []
        var reader = WireReader(bytes: bytes, start: 0, end: bytes.count)
        while let (field, wireType) = try reader.nextTag() {
            switch (field, wireType) {
            case (1, 2):
                var message = try reader.lengthDelimited()
                // Resource: field 1 repeated KeyValue; field 2 dropped_attributes_count skipped.
                while let (field, wireType) = try message.nextTag() {
                    if field == 1, wireType == 2 {
                        var keyValue = try message.lengthDelimited()
                        try decoder.keyValue(&keyValue, depth: 2, prefix: "", into: &resource)
                    } else {
                        try message.skip(wireType: wireType)
                    }
                }
            case (2, 2):
                var keyValue = try reader.lengthDelimited()
                try decoder.keyValue(&keyValue, depth: 1, prefix: "", into: &attributes)
            default:
                try reader.skip(wireType: wireType)
            }
        }

        var context = ProcessContext()
        context.resource = consumeThreadLocal(resource, into: &context)
        context.attributes = consumeThreadLocal(attributes, into: &context)
        return context
    }

    /// Removes `threadlocal.*` keys from `attributes`, recording the known ones in `context`.
    private static func consumeThreadLocal(_ attributes: [Attribute], into context: inout ProcessContext)
        -> [Attribute]
    {
        var kept: [Attribute] = []
        kept.reserveCapacity(attributes.count)
        for attribute in attributes {
            guard attribute.key.hasPrefix("threadlocal.") else {
                kept.append(attribute)
                continue
            }
            switch (attribute.key, attribute.value) {
            case ("threadlocal.schema_version", .string(let version)):
                context.threadSchemaVersion = version
            case ("threadlocal.attribute_key_map", .array(let entries)):
                context.attributeKeyMap = entries.prefix(Limits.maximumKeyMapEntries).map {
                    if case .string(let key) = $0 { return key }
                    return ""
                }
            default:
                break  // Other or mistyped coordination data: dropped, never exported.
            }
        }
        return kept
    }

    /// Decoding state shared across the payload: the value budget.
    private struct Decoder {
        let bytes: [UInt8]
        var values = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func countValue() throws(ProcessContextError) {
            values += 1
            guard values <= Limits.maximumValues else { throw .tooManyValues }
        }

        /// KeyValue { 1: key, 2: AnyValue }; appends zero or more attributes (a kvlist
        /// value flattens into several).
        mutating func keyValue(
            _ message: inout WireReader, depth: Int, prefix: String, into output: inout [Attribute]
        ) throws(ProcessContextError) {
            guard depth <= Limits.maximumDepth else { throw .nestingTooDeep }
            try countValue()
            var key = ""
            var value: Decoded = .none
            while let (field, wireType) = try message.nextTag() {
                switch (field, wireType) {
                case (1, 2): key = try message.string()
                case (2, 2):
                    var anyValue = try message.lengthDelimited()
                    value = try self.anyValue(&anyValue, depth: depth + 1)
                default: try message.skip(wireType: wireType)
                }
            }
            let fullKey = prefix.isEmpty ? key : "\(prefix).\(key)"
            switch value {
            case .none: break
            case .value(let attributeValue): output.append(Attribute(fullKey, attributeValue))
            case .list(let ranges):
                for range in ranges {
                    var nested = WireReader(bytes: bytes, start: range.lowerBound, end: range.upperBound)
                    try keyValue(&nested, depth: depth + 2, prefix: fullKey, into: &output)
                }
            }
        }

        enum Decoded {
            case none
            case value(AttributeValue)
            /// A KeyValueList: the byte ranges of its KeyValue messages, decoded by the caller.
            case list([Range<Int>])
        }

        /// AnyValue oneof; the last value field wins, as in protobuf.
        mutating func anyValue(_ message: inout WireReader, depth: Int) throws(ProcessContextError) -> Decoded {
            guard depth <= Limits.maximumDepth else { throw .nestingTooDeep }
            var result: Decoded = .none
            while let (field, wireType) = try message.nextTag() {
                switch (field, wireType) {
                case (1, 2): result = .value(.string(try message.string()))
                case (2, 0): result = .value(.bool(try message.varint() != 0))
                case (3, 0): result = .value(.int(Int64(bitPattern: try message.varint())))
                case (4, 1): result = .value(.double(Double(bitPattern: try message.fixed64())))
                case (5, 2):
                    var array = try message.lengthDelimited()
                    var elements: [AttributeValue] = []
                    while let (field, wireType) = try array.nextTag() {
                        guard field == 1, wireType == 2 else {
                            try array.skip(wireType: wireType)
                            continue
                        }
                        try countValue()
                        var element = try array.lengthDelimited()
                        if case .value(let value) = try anyValue(&element, depth: depth + 2) {
                            elements.append(value)
                        }
                    }
                    result = .value(.array(elements))
                case (6, 2):
                    var list = try message.lengthDelimited()
                    guard depth + 2 <= Limits.maximumDepth else { throw .nestingTooDeep }
                    var ranges: [Range<Int>] = []
                    while let (field, wireType) = try list.nextTag() {
                        guard field == 1, wireType == 2 else {
                            try list.skip(wireType: wireType)
                            continue
                        }
                        let keyValue = try list.lengthDelimited()
                        ranges.append(keyValue.position..<keyValue.end)
                    }
                    result = .list(ranges)
                case (7, 2): result = .value(.bytes(try message.byteString()))
                default: try message.skip(wireType: wireType)
                }
            }
            return result
        }
    }
}

/// A cursor over one protobuf message inside a byte array. Never reads outside
/// `start..<end`; every length is checked before it is used.
struct WireReader {
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int

    init(bytes: [UInt8], start: Int, end: Int) {
        self.bytes = bytes
        self.position = start
        self.end = end
    }

    /// The next (field number, wire type), or nil at the end of the message.
    mutating func nextTag() throws(ProcessContextError) -> (Int, Int)? {
        guard position < end else { return nil }
        let offset = position
        let tag = try varint()
        let field = tag >> 3
        guard field != 0, field <= UInt64(Int32.max) else {
            throw .unsupportedWireType(Int(tag & 7), offset: offset)
        }
        return (Int(field), Int(tag & 7))
    }

    mutating func varint() throws(ProcessContextError) -> UInt64 {
        let offset = position
        var result: UInt64 = 0
        for index in 0..<10 {
            guard position < end else { throw .truncated(offset: offset) }
            let byte = bytes[position]
            position += 1
            result |= UInt64(byte & 0x7f) << UInt64(7 * index)
            if byte & 0x80 == 0 { return result }
        }
        throw .malformedVarint(offset: offset)
    }

    mutating func fixed64() throws(ProcessContextError) -> UInt64 {
        guard end - position >= 8 else { throw .truncated(offset: position) }
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[position + index]) << UInt64(8 * index) }
        position += 8
        return value
    }

    /// The length prefix of a length-delimited field, checked against the remaining bytes.
    private mutating func length() throws(ProcessContextError) -> Int {
        let offset = position
        let length = try varint()
        guard length <= UInt64(end - position) else { throw .truncated(offset: offset) }
        return Int(length)
    }

    /// A reader over the embedded message; advances past it.
    mutating func lengthDelimited() throws(ProcessContextError) -> WireReader {
        let length = try length()
        let nested = WireReader(bytes: bytes, start: position, end: position + length)
        position += length
        return nested
    }

    mutating func byteString() throws(ProcessContextError) -> [UInt8] {
        let length = try length()
        guard length <= ProcessContextPayload.Limits.maximumStringBytes else {
            throw .stringTooLong(length)
        }
        let value = Array(bytes[position..<(position + length)])
        position += length
        return value
    }

    mutating func string() throws(ProcessContextError) -> String {
        let offset = position
        let raw = try byteString()
        guard let value = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(offset: offset) }
        return value
    }

    /// Skips a field of `wireType` whose tag was just read.
    mutating func skip(wireType: Int) throws(ProcessContextError) {
        switch wireType {
        case 0: _ = try varint()
        case 1:
            guard end - position >= 8 else { throw .truncated(offset: position) }
            position += 8
        case 2: _ = try lengthDelimited()
        case 5:
            guard end - position >= 4 else { throw .truncated(offset: position) }
            position += 4
        default: throw .unsupportedWireType(wireType, offset: position)
        }
    }
}
