import NodeprofCore
import ProcessContext
import TestSupport
import Testing

@Suite struct PayloadDecoderTests {
    @Test func decodesTheBriefPayloadAndConsumesThreadLocalKeys() throws {
        let context = try ProcessContextPayload.decode(Proto.checkout())
        #expect(context.resource == [Attribute("service.name", "checkout"), Attribute("service.version", "1.4.2")])
        #expect(context.attributes == [Attribute("deployment.environment.name", "prod")])
        #expect(context.threadSchemaVersion == "tlsdesc_v1_dev")
        #expect(context.attributeKeyMap == ["http.route", "user.tier"])
    }

    @Test func decodesEveryValueTypeAndSkipsUnknownFields() throws {
        let double = Proto.varint(4 << 3 | 1) + withUnsafeBytes(of: (2.5).bitPattern.littleEndian, Array.init)
        let payload =
            Proto.varint(9 << 3 | 0) + Proto.varint(300)  // unknown varint field
            + Proto.context(
                resource: [],
                attributes: [
                    Proto.keyValue("b", Proto.varint(2 << 3) + [1]),
                    Proto.keyValue("i", Proto.varint(3 << 3) + Proto.varint(UInt64(bitPattern: -5))),
                    Proto.keyValue("d", double),
                    Proto.keyValue("x", Proto.field(7, [0, 255])),
                    Proto.keyValue("m", Proto.field(6, Proto.field(1, Proto.keyValue("k", Proto.string("v"))))),
                    Proto.keyValue("empty", []),
                    Proto.keyValue("threadlocal.other", Proto.string("hidden")),
                ])
        let context = try ProcessContextPayload.decode(payload)
        #expect(
            context.attributes == [
                Attribute("b", true), Attribute("i", -5), Attribute("d", .double(2.5)),
                Attribute("x", .bytes([0, 255])),
                Attribute("m.k", "v"),
            ])
    }

    @Test func rejectsHostileBytes() {
        func rejects(
            _ bytes: [UInt8], _ check: (ProcessContextError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation
        ) {
            do {
                _ = try ProcessContextPayload.decode(bytes)
                Issue.record("decoded hostile bytes", sourceLocation: sourceLocation)
            } catch {
                #expect(check(error), "\(error)", sourceLocation: sourceLocation)
            }
        }
        // Truncated varint (tag, then a length whose continuation bit never ends).
        rejects([0x12, 0x80, 0x80]) { if case .truncated = $0 { true } else { false } }
        // 11-byte varint.
        rejects([0x08] + [UInt8](repeating: 0xff, count: 10) + [0x01]) {
            if case .malformedVarint = $0 { true } else { false }
        }
        // Length beyond the end.
        rejects([0x12, 0x05, 0x0a]) { if case .truncated = $0 { true } else { false } }
        // A 1 MB string claim with 4 bytes behind it.
        rejects(Proto.varint(2 << 3 | 2) + Proto.varint(6) + [0x0a] + Proto.varint(1 << 20) + [1, 2, 3]) {
            if case .truncated = $0 { true } else { false }
        }
        // A real 20 KB key: over the string limit.
        rejects(
            Proto.context(
                resource: [], attributes: [Proto.keyValue(String(repeating: "k", count: 20000), Proto.string("v"))])
        ) {
            if case .stringTooLong = $0 { true } else { false }
        }
        // Invalid UTF-8.
        rejects(Proto.context(resource: [], attributes: [Proto.field(1, [0xff, 0xfe])])) {
            if case .invalidUTF8 = $0 { true } else { false }
        }
        // Groups and field number 0.
        rejects([0x0b]) { if case .unsupportedWireType = $0 { true } else { false } }
        rejects([0x02, 0x00]) { if case .unsupportedWireType = $0 { true } else { false } }
        // Nesting depth bomb: arrays in arrays, 1000 deep.
        var value = Proto.string("leaf")
        for _ in 0..<1000 { value = Proto.array([value]) }
        rejects(Proto.context(resource: [], attributes: [Proto.keyValue("bomb", value)])) { $0 == .nestingTooDeep }
        // Too many values.
        let many = Proto.array([[UInt8]](repeating: Proto.varint(3 << 3) + [1], count: 5000))
        rejects(Proto.context(resource: [], attributes: [Proto.keyValue("many", many)])) { $0 == .tooManyValues }
    }

    @Test func randomBytesNeverCrash() {
        var generator = SystemRandomNumberGenerator()
        let valid = Proto.checkout()
        for round in 0..<2000 {
            var bytes = valid
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0..<200, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }
            } else {
                for _ in 0..<3 { bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255) }
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count)))
            }
            _ = try? ProcessContextPayload.decode(bytes)
        }
    }
}
