/// Rewrites a serialized OTLP `ExportProfilesServiceRequest` so that its samples carry a
/// count instead of timestamps: each `Sample.timestamps_unix_nano` (field 5, packed fixed64)
/// is replaced by `values = [number of timestamps]` (field 4, packed int64).
///
/// The builder merges samples by stack, attributes and link whatever their timestamps, so
/// the result is the same request in the spec's "no timestamps, exactly one value" shape: it
/// tells how much of the request's size the timestamps take. Works on the wire format (the
/// generated message types are internal to Profiles), walking only the path to the samples:
/// request.resource_profiles (1) -> scope_profiles (2) -> profiles (2) -> samples (2).
/// Everything else is copied byte for byte.
enum OTLPSampleCounts {
    struct Result {
        var bytes: [UInt8]
        /// Sample messages seen (samples after the builder's merging).
        var sampleMessages: Int
        /// Timestamps replaced by counts (one per recorded sample).
        var timestamps: Int
    }

    struct MalformedRequest: Error, CustomStringConvertible {
        var description: String { "the OTLP request is not well-formed protobuf" }
    }

    static func replacingTimestamps(in request: [UInt8]) throws(MalformedRequest) -> Result {
        var sampleMessages = 0
        var timestamps = 0
        let bytes = try rewrite(request[...], path: [1, 2, 2, 2][...]) { sample throws(MalformedRequest) in
            let (rewritten, count) = try replacingTimestamps(inSample: sample)
            sampleMessages += 1
            timestamps += count
            return rewritten
        }
        return Result(bytes: bytes, sampleMessages: sampleMessages, timestamps: timestamps)
    }

    /// Copies `message`, rewriting the length-delimited fields numbered `path.first` with
    /// the rest of the path, and with `leaf` at the end of the path.
    private static func rewrite(
        _ message: ArraySlice<UInt8>, path: ArraySlice<Int>,
        leaf: (ArraySlice<UInt8>) throws(MalformedRequest) -> [UInt8]
    ) throws(MalformedRequest) -> [UInt8] {
        guard let field = path.first else { return try leaf(message) }
        var output: [UInt8] = []
        output.reserveCapacity(message.count)
        var reader = WireReader(bytes: message)
        while let entry = try reader.next() {
            if entry.number == field && entry.wireType == 2 {
                let inner = try rewrite(entry.payload, path: path.dropFirst(), leaf: leaf)
                appendVarint(UInt64(field << 3 | 2), to: &output)
                appendVarint(UInt64(inner.count), to: &output)
                output += inner
            } else {
                output += entry.raw
            }
        }
        return output
    }

    /// A Sample without field 5 and with `values = [count]` when it had timestamps, and
    /// that count.
    private static func replacingTimestamps(inSample sample: ArraySlice<UInt8>) throws(MalformedRequest) -> (
        [UInt8], Int
    ) {
        var output: [UInt8] = []
        var timestamps = 0
        var reader = WireReader(bytes: sample)
        while let entry = try reader.next() {
            switch (entry.number, entry.wireType) {
            case (5, 2): timestamps += entry.payload.count / 8  // packed fixed64
            case (5, 1): timestamps += 1  // unpacked
            default: output += entry.raw
            }
        }
        if timestamps > 0 {
            var packed: [UInt8] = []
            appendVarint(UInt64(timestamps), to: &packed)
            appendVarint(4 << 3 | 2, to: &output)
            appendVarint(UInt64(packed.count), to: &output)
            output += packed
        }
        return (output, timestamps)
    }

    private static func appendVarint(_ value: UInt64, to output: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            output.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        output.append(UInt8(value))
    }

    /// Iterates over the fields of one message.
    private struct WireReader {
        struct Entry {
            var number: Int
            var wireType: Int
            /// The field's value: the bytes of a length-delimited field, else the encoded value.
            var payload: ArraySlice<UInt8>
            /// Tag and value as they were on the wire.
            var raw: ArraySlice<UInt8>
        }

        let bytes: ArraySlice<UInt8>
        private var position: Int

        init(bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            position = bytes.startIndex
        }

        mutating func next() throws(MalformedRequest) -> Entry? {
            guard position < bytes.endIndex else { return nil }
            let start = position
            let tag = try varint()
            let number = Int(tag >> 3)
            let wireType = Int(tag & 7)
            let payloadStart: Int
            switch wireType {
            case 0:
                payloadStart = position
                _ = try varint()
            case 1:
                payloadStart = position
                try skip(8)
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.endIndex - position) else { throw MalformedRequest() }
                payloadStart = position
                try skip(Int(length))
            case 5:
                payloadStart = position
                try skip(4)
            default:
                throw MalformedRequest()  // groups are not used by OTLP
            }
            return Entry(
                number: number, wireType: wireType, payload: bytes[payloadStart..<position],
                raw: bytes[start..<position])
        }

        private mutating func skip(_ count: Int) throws(MalformedRequest) {
            guard count <= bytes.endIndex - position else { throw MalformedRequest() }
            position += count
        }

        private mutating func varint() throws(MalformedRequest) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while position < bytes.endIndex, shift < 64 {
                let byte = bytes[position]
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            throw MalformedRequest()
        }
    }
}
