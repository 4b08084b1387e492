internal import SwiftProtobuf

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// pprof fields newer than the generated `profile.proto` (Debian's copy): `doc_url`
/// (Profile field 15, a string index) and `column` (Line field 3). SwiftProtobuf keeps
/// them as unknown fields when decoding; these helpers read them from there and add them
/// back (by merging their wire bytes) when encoding, so they survive a round trip.
enum PprofNewerFields {
    static let docURLField = 15
    static let lineColumnField = 3

    /// The value of the last varint field `number` among a message's unknown fields, or 0.
    static func varint(_ number: Int, in unknown: UnknownStorage) -> UInt64 {
        var scanner = WireScanner(bytes: [UInt8](unknown.data))
        var value: UInt64 = 0
        while let field = scanner.next() {
            if field.number == number, let fieldValue = field.varint { value = fieldValue }
        }
        return value
    }

    /// Adds varint field `number` = `value` to `message` (nothing for 0, proto3's default).
    static func setVarint<M: Message>(_ number: Int, _ value: UInt64, in message: inout M) throws(ConversionError) {
        guard value != 0 else { return }
        var bytes: [UInt8] = []
        appendVarint(UInt64(number) << 3, to: &bytes)  // wire type 0
        appendVarint(value, to: &bytes)
        do {
            try message.merge(serializedBytes: bytes)
        } catch {
            throw .internalError("cannot add field \(number): \(error)")
        }
    }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }
}

/// Walks protobuf wire data field by field; stops at the end or at anything malformed.
private struct WireScanner {
    struct Field {
        var number: Int
        /// The value of a varint field; nil for other wire types.
        var varint: UInt64?
    }

    let bytes: [UInt8]
    var offset = 0

    mutating func next() -> Field? {
        guard let tag = readVarint(), tag >> 3 > 0, tag >> 3 <= UInt64(Int32.max) else { return nil }
        let number = Int(tag >> 3)
        switch tag & 7 {
        case 0:
            guard let value = readVarint() else { return nil }
            return Field(number: number, varint: value)
        case 1: return skip(8) ? Field(number: number) : nil
        case 5: return skip(4) ? Field(number: number) : nil
        case 2:
            guard let length = readVarint(), length <= UInt64(bytes.count - offset) else { return nil }
            return skip(Int(length)) ? Field(number: number) : nil
        default: return nil  // groups (deprecated) and invalid wire types
        }
    }

    private mutating func skip(_ count: Int) -> Bool {
        guard count <= bytes.count - offset else { return false }
        offset += count
        return true
    }

    private mutating func readVarint() -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count, shift < 64 {
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        return nil
    }
}
