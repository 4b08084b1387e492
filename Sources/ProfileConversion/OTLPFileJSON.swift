internal import NodeprofCore
internal import ProfilesProtobuf
internal import SwiftProtobuf

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// The OTLP/JSON encoding of a profiles request (`ExportProfilesServiceRequest`), for files
/// a human reads.
///
/// OTLP/JSON is protobuf's JSON mapping (lowerCamelCase field names, 64-bit integers as
/// decimal strings, enums as integers, bytes as base64) with one change: `traceId`,
/// `spanId` (and here `profileId`) are lowercase hex strings, not base64. SwiftProtobuf
/// does the protobuf mapping; a pass over the JSON text rewrites the id fields, and writes
/// it pretty-printed (two-space indentation, short scalar arrays on one line).
///
/// Decoding accepts what the OTLP spec asks receivers to accept: 64-bit integers as strings
/// or numbers, ids in hex of either case (base64 too, from producers that got this wrong),
/// lowerCamelCase or original field names, and unknown fields (ignored).
public enum OTLPJSON {
    /// A serialized request (binary protobuf, maybe gzip-compressed) as OTLP/JSON.
    public static func json(fromOTLPRequest bytes: [UInt8], limits: ConversionLimits = .init())
        throws(ConversionError) -> [UInt8]
    {
        try encode(PprofOTLPConversion.decodeOTLP(bytes, limits: limits))
    }

    /// An OTLP/JSON request (maybe gzip-compressed) as a serialized binary request.
    public static func otlpRequest(fromJSON bytes: [UInt8], limits: ConversionLimits = .init())
        throws(ConversionError) -> [UInt8]
    {
        let request = try decodeRequest(bytes, limits: limits)
        do {
            return try request.serializedBytes()
        } catch {
            throw .internalError("cannot serialize the OTLP request: \(error)")
        }
    }

    /// Field names whose bytes OTLP/JSON writes as hex.
    static let idFields: Set<String> = ["traceId", "spanId", "profileId", "trace_id", "span_id", "profile_id"]

    static func encode(_ request: OTLPRequest) throws(ConversionError) -> [UInt8] {
        var options = JSONEncodingOptions()
        options.alwaysPrintEnumsAsInts = true  // OTLP/JSON: enums are integers
        let protobufJSON: [UInt8]
        do {
            protobufJSON = try request.jsonUTF8Bytes(options: options)
        } catch {
            throw .internalError("cannot encode the OTLP request as JSON: \(error)")
        }
        var tree: JSONValue
        do {
            tree = try JSONParser.parse(protobufJSON)
        } catch {
            throw .internalError("SwiftProtobuf wrote JSON we cannot read back: \(error.message)")
        }
        try rewriteIDs(&tree, path: "", toHex: true)
        var output: [UInt8] = []
        output.reserveCapacity(protobufJSON.count * 2)
        tree.write(to: &output, indent: 0)
        output.append(UInt8(ascii: "\n"))
        return output
    }

    static func decodeRequest(_ bytes: [UInt8], limits: ConversionLimits) throws(ConversionError) -> OTLPRequest {
        let raw = try PprofOTLPConversion.unwrap(bytes, format: .otlpJSON, limits: limits)
        var tree: JSONValue
        do {
            tree = try JSONParser.parse(raw)
        } catch {
            throw .unreadable("the input is not OTLP/JSON: \(error.message)")
        }
        guard case .object = tree else {
            throw .unreadable("the input is not OTLP/JSON: the document is not a JSON object")
        }
        try rewriteIDs(&tree, path: "", toHex: false)
        var compact: [UInt8] = []
        compact.reserveCapacity(raw.count)
        tree.write(to: &compact, indent: nil)
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true  // OTLP/JSON receivers must ignore unknown fields
        options.messageDepthLimit = 64
        let request: OTLPRequest
        do {
            request = try OTLPRequest(jsonUTF8Bytes: compact, options: options)
        } catch {
            throw .invalid("the OTLP/JSON input does not match the ExportProfilesServiceRequest schema: \(error)")
        }
        try PprofOTLPConversion.checkLooksLikeRequest(request, format: .otlpJSON)
        return request
    }

    /// Rewrites every id field: base64 -> hex (`toHex`) or hex -> base64.
    private static func rewriteIDs(_ value: inout JSONValue, path: String, toHex: Bool) throws(ConversionError) {
        switch value {
        case .object(var members):
            for index in members.indices {
                let key = members[index].key
                let memberPath = path.isEmpty ? key : path + "." + key
                if idFields.contains(key), case .string(let text) = members[index].value {
                    members[index].value = .string(try convertID(text, path: memberPath, toHex: toHex))
                } else {
                    try rewriteIDs(&members[index].value, path: memberPath, toHex: toHex)
                }
            }
            value = .object(members)
        case .array(var elements):
            for index in elements.indices {
                try rewriteIDs(&elements[index], path: "\(path)[\(index)]", toHex: toHex)
            }
            value = .array(elements)
        default: break
        }
    }

    private static func convertID(_ text: String, path: String, toHex: Bool) throws(ConversionError) -> String {
        if toHex {
            guard let bytes = Data(base64Encoded: text) else {
                throw .internalError("\(path) is not base64 in SwiftProtobuf's JSON")
            }
            return hexString(bytes)
        }
        if let bytes = hexBytes(text) { return Data(bytes).base64EncodedString() }
        if Data(base64Encoded: text) != nil { return text }
        throw .invalid("OTLP/JSON \(path) is \(quoted(text)), which is not a hex id (OTLP/JSON writes ids as hex)")
    }

    private static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = PprofToOTLPConverter.hexDigitValue(digits[index]),
                let low = PprofToOTLPConverter.hexDigitValue(digits[index + 1])
            else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }
}

// MARK: - A small JSON tree that keeps number literals as written

/// JSON as a tree. Numbers keep their literal text, so rewriting the id fields cannot change
/// any other value (a double printed back may differ in its last digit; a literal cannot).
enum JSONValue {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    /// Writes the value; `indent` nil writes it compact, a number pretty-prints at that depth.
    func write(to output: inout [UInt8], indent: Int?) {
        switch self {
        case .object(let members):
            guard !members.isEmpty else { return output.append(contentsOf: Array("{}".utf8)) }
            output.append(UInt8(ascii: "{"))
            for (position, member) in members.enumerated() {
                if position > 0 { output.append(UInt8(ascii: ",")) }
                Self.newline(&output, indent.map { $0 + 1 })
                Self.writeString(member.key, to: &output)
                output.append(UInt8(ascii: ":"))
                if indent != nil { output.append(UInt8(ascii: " ")) }
                member.value.write(to: &output, indent: indent.map { $0 + 1 })
            }
            Self.newline(&output, indent)
            output.append(UInt8(ascii: "}"))
        case .array(let elements):
            guard !elements.isEmpty else { return output.append(contentsOf: Array("[]".utf8)) }
            // Short lists of scalars (stack location indices, values) stay on one line.
            let inline = indent == nil || (elements.count <= 16 && elements.allSatisfy(\.isShortScalar))
            output.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 {
                    output.append(UInt8(ascii: ","))
                    if inline && indent != nil { output.append(UInt8(ascii: " ")) }
                }
                if !inline { Self.newline(&output, indent.map { $0 + 1 }) }
                element.write(to: &output, indent: indent.map { $0 + 1 })
            }
            if !inline { Self.newline(&output, indent) }
            output.append(UInt8(ascii: "]"))
        case .string(let text): Self.writeString(text, to: &output)
        case .number(let literal): output.append(contentsOf: Array(literal.utf8))
        case .bool(let flag): output.append(contentsOf: Array((flag ? "true" : "false").utf8))
        case .null: output.append(contentsOf: Array("null".utf8))
        }
    }

    private var isShortScalar: Bool {
        switch self {
        case .number, .bool, .null: true
        case .string(let text): text.utf8.count <= 24
        case .object, .array: false
        }
    }

    private static func newline(_ output: inout [UInt8], _ indent: Int?) {
        guard let indent else { return }
        output.append(UInt8(ascii: "\n"))
        output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * indent))
    }

    private static func writeString(_ text: String, to output: inout [UInt8]) {
        let digits = Array("0123456789abcdef".utf8)
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7f:
                output.append(contentsOf: Array("\\u00".utf8))
                output.append(digits[Int(byte >> 4)])
                output.append(digits[Int(byte & 0xf)])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}

/// Why JSON text could not be parsed, with the line and column.
struct JSONSyntaxError: Error {
    var message: String
}

/// A strict RFC 8259 parser with a nesting bound.
struct JSONParser {
    private let bytes: [UInt8]
    private var offset = 0
    private let maximumDepth = 100

    init(bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte order mark is not JSON, but editors write one.
        if bytes.starts(with: [0xef, 0xbb, 0xbf]) { offset = 3 }
    }

    /// The JSON document in `bytes`.
    static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        return try parser.parseDocument()
    }

    private mutating func parseDocument() throws(JSONSyntaxError) -> JSONValue {
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard offset == bytes.count else { throw failure("unexpected text after the JSON document") }
        return value
    }

    private mutating func parseValue(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        guard offset < bytes.count else { throw failure("the JSON ends early (truncated?)") }
        switch bytes[offset] {
        case UInt8(ascii: "{"):
            guard depth < maximumDepth else { throw failure("objects and arrays nest deeper than \(maximumDepth)") }
            return try parseObject(depth: depth)
        case UInt8(ascii: "["):
            guard depth < maximumDepth else { throw failure("objects and arrays nest deeper than \(maximumDepth)") }
            return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try parseLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try parseLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try parseLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw failure("unexpected character \(describe(bytes[offset]))")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        offset += 1  // {
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if offset < bytes.count && bytes[offset] == UInt8(ascii: "}") {
            offset += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else {
                throw failure("expected a quoted member name")
            }
            let key = try parseString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "expected ':' after a member name")
            let value = try parseValue(depth: depth + 1)
            members.append((key, value))
            skipWhitespace()
            guard offset < bytes.count else { throw failure("the JSON ends inside an object (truncated?)") }
            if bytes[offset] == UInt8(ascii: "}") {
                offset += 1
                return .object(members)
            }
            try expect(UInt8(ascii: ","), "expected ',' or '}' in an object")
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        offset += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if offset < bytes.count && bytes[offset] == UInt8(ascii: "]") {
            offset += 1
            return .array(elements)
        }
        while true {
            elements.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard offset < bytes.count else { throw failure("the JSON ends inside an array (truncated?)") }
            if bytes[offset] == UInt8(ascii: "]") {
                offset += 1
                return .array(elements)
            }
            try expect(UInt8(ascii: ","), "expected ',' or ']' in an array")
        }
    }

    private mutating func parseString() throws(JSONSyntaxError) -> String {
        offset += 1  // opening quote
        var text: [UInt8] = []
        while true {
            guard offset < bytes.count else { throw failure("the JSON ends inside a string (truncated?)") }
            let byte = bytes[offset]
            offset += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let string = String(validating: text, as: UTF8.self) else {
                    throw failure("a string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                guard offset < bytes.count else { throw failure("the JSON ends inside a string (truncated?)") }
                let escape = bytes[offset]
                offset += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.append(escape)
                case UInt8(ascii: "b"): text.append(0x08)
                case UInt8(ascii: "f"): text.append(0x0c)
                case UInt8(ascii: "n"): text.append(0x0a)
                case UInt8(ascii: "r"): text.append(0x0d)
                case UInt8(ascii: "t"): text.append(0x09)
                case UInt8(ascii: "u"): text.append(contentsOf: Array(String(try parseUnicodeEscape()).utf8))
                default: throw failure("invalid escape \\\(describe(escape)) in a string")
                }
            case 0..<0x20: throw failure("a control character inside a string must be escaped")
            default: text.append(byte)
            }
        }
    }

    /// The scalar of `\uXXXX` (the `\u` already read), joining a surrogate pair.
    private mutating func parseUnicodeEscape() throws(JSONSyntaxError) -> Character {
        let first = try parseHex4()
        var scalar = first
        if (0xd800..<0xdc00).contains(first) {
            guard offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u")
            else { throw failure("a \\u escape holds half a surrogate pair") }
            offset += 2
            let second = try parseHex4()
            guard (0xdc00..<0xe000).contains(second) else { throw failure("a \\u escape holds half a surrogate pair") }
            scalar = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
        }
        guard let unicode = Unicode.Scalar(scalar) else { throw failure("a \\u escape is not a Unicode scalar") }
        return Character(unicode)
    }

    private mutating func parseHex4() throws(JSONSyntaxError) -> UInt32 {
        guard offset + 4 <= bytes.count else { throw failure("the JSON ends inside a \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = PprofToOTLPConverter.hexDigitValue(bytes[offset]) else {
                throw failure("a \\u escape needs four hex digits")
            }
            value = value << 4 | UInt32(digit)
            offset += 1
        }
        return value
    }

    private mutating func parseNumber() throws(JSONSyntaxError) -> JSONValue {
        let start = offset
        if bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        guard offset < bytes.count, isDigit(bytes[offset]) else { throw failure("a number needs digits") }
        if bytes[offset] == UInt8(ascii: "0") {
            offset += 1
        } else {
            skipDigits()
        }
        if offset < bytes.count && bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw failure("a fraction needs digits") }
            skipDigits()
        }
        if offset < bytes.count && (bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E")) {
            offset += 1
            if offset < bytes.count && (bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-")) {
                offset += 1
            }
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw failure("an exponent needs digits") }
            skipDigits()
        }
        return .number(String(decoding: bytes[start..<offset], as: UTF8.self))
    }

    private mutating func parseLiteral(_ word: String, _ value: JSONValue) throws(JSONSyntaxError) -> JSONValue {
        let expected = Array(word.utf8)
        guard bytes.count - offset >= expected.count, bytes[offset..<offset + expected.count].elementsEqual(expected)
        else { throw failure("unexpected character \(describe(bytes[offset]))") }
        offset += expected.count
        return value
    }

    private func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    private mutating func skipDigits() {
        while offset < bytes.count && isDigit(bytes[offset]) { offset += 1 }
    }

    private mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): offset += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8, _ message: String) throws(JSONSyntaxError) {
        guard offset < bytes.count, bytes[offset] == byte else { throw failure(message) }
        offset += 1
    }

    private func describe(_ byte: UInt8) -> String {
        (0x21..<0x7f).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "byte \(hex(UInt64(byte)))"
    }

    /// An error at the current position, with its line and column (1-based).
    private func failure(_ message: String) -> JSONSyntaxError {
        let end = min(offset, bytes.count)
        var line = 1
        var lineStart = 0
        for position in 0..<end where bytes[position] == UInt8(ascii: "\n") {
            line += 1
            lineStart = position + 1
        }
        return JSONSyntaxError(message: "\(message) at line \(line), column \(end - lineStart + 1)")
    }
}
