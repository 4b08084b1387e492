/// A tiny protobuf reader for the tests: fields of one message, no schema.
struct ProtobufField: Equatable {
    var number: UInt64
    var varint: UInt64?
    var bytes: [UInt8]?
}

struct ProtobufWalkError: Error {}

func protobufFields(_ data: some Collection<UInt8>) throws -> [ProtobufField] {
    let data = Array(data)
    var at = 0
    func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard at < data.count, shift < 64 else { throw ProtobufWalkError() }
            let byte = data[at]
            at += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }
    var fields: [ProtobufField] = []
    while at < data.count {
        let tag = try varint()
        switch tag & 7 {
        case 0:
            fields.append(ProtobufField(number: tag >> 3, varint: try varint()))
        case 1:
            guard at + 8 <= data.count else { throw ProtobufWalkError() }
            fields.append(ProtobufField(number: tag >> 3, bytes: Array(data[at..<(at + 8)])))
            at += 8
        case 2:
            let length = Int(try varint())
            guard length <= data.count - at else { throw ProtobufWalkError() }
            fields.append(ProtobufField(number: tag >> 3, bytes: Array(data[at..<(at + length)])))
            at += length
        default:
            throw ProtobufWalkError()
        }
    }
    return fields
}

/// A KeyValue's key and its AnyValue: a string, or an array of strings.
enum WalkedValue: Equatable {
    case string(String)
    case strings([String])
}

func keyValue(_ bytes: [UInt8]) throws -> (String, WalkedValue) {
    let fields = try protobufFields(bytes)
    guard let key = fields.first(where: { $0.number == 1 })?.bytes,
        let any = fields.first(where: { $0.number == 2 })?.bytes,
        let value = try protobufFields(any).first
    else { throw ProtobufWalkError() }
    switch value.number {
    case 1:
        return (String(decoding: key, as: UTF8.self), .string(String(decoding: value.bytes ?? [], as: UTF8.self)))
    case 5:
        let strings = try protobufFields(value.bytes ?? []).map { element in
            guard element.number == 1, let first = try protobufFields(element.bytes ?? []).first, first.number == 1
            else { throw ProtobufWalkError() }
            return String(decoding: first.bytes ?? [], as: UTF8.self)
        }
        return (String(decoding: key, as: UTF8.self), .strings(strings))
    default:
        throw ProtobufWalkError()
    }
}

/// ProcessContext as ordered (key, value) lists: resource attributes and extra attributes.
func walkProcessContext(_ payload: [UInt8]) throws -> (
    resource: [(String, WalkedValue)], attributes: [(String, WalkedValue)]
) {
    var resource: [(String, WalkedValue)] = []
    var attributes: [(String, WalkedValue)] = []
    for field in try protobufFields(payload) {
        switch field.number {
        case 1:
            for kv in try protobufFields(field.bytes ?? []) where kv.number == 1 {
                resource.append(try keyValue(kv.bytes ?? []))
            }
        case 2:
            attributes.append(try keyValue(field.bytes ?? []))
        default:
            throw ProtobufWalkError()
        }
    }
    return (resource, attributes)
}
