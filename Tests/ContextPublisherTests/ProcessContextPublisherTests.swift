import CContextPublisher
import ContextPublisher
import NodeprofCore
import ProcessContext
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The OTEL_CTX mapping of this process, found the way a reader finds it: /proc/self/maps.
private struct Mapping {
    var start: UInt
    var name: String
}

private func findMapping() throws -> Mapping? {
    let prefixes = ["/memfd:OTEL_CTX", "[anon:OTEL_CTX]", "[anon_shmem:OTEL_CTX]"]
    guard let file = fopen("/proc/self/maps", "r") else { throw ProtobufWalkError() }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let columns = text.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard columns.count == 6 else { continue }
        let name = columns[5].trimmingPrefix { $0 == " " }.split(separator: "\n").first.map(String.init) ?? ""
        guard prefixes.contains(where: { name.hasPrefix($0) }), !columns[1].contains("x") else { continue }
        let start = UInt(columns[0].split(separator: "-")[0], radix: 16)!
        return Mapping(start: start, name: name)
    }
    return nil
}

private struct Header {
    var signature: [UInt8]
    var version: UInt32
    var payloadSize: UInt32
    var timestamp: UInt64
    var payload: UInt64
}

private func readHeader(_ mapping: Mapping) -> Header {
    let raw = UnsafeRawPointer(bitPattern: mapping.start)!
    return Header(
        signature: Array(UnsafeRawBufferPointer(start: raw, count: 8)),
        version: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self),
        payloadSize: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self),
        timestamp: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
        payload: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
}

private func payloadBytes(_ header: Header) -> [UInt8] {
    Array(
        UnsafeRawBufferPointer(
            start: UnsafeRawPointer(bitPattern: UInt(header.payload)), count: Int(header.payloadSize)))
}

/// One process context per process: these tests run one at a time.
@Suite(.serialized, .machineExclusive) struct ProcessContextPublisherTests {
    @Test func publishCreatesTheMappingWithHeaderAndPayload() throws {
        ProcessContextPublisher.unpublish()
        #expect(try findMapping() == nil)
        let keys = try ProcessContextPublisher.publish(
            resource: ["service.name": "checkout", "service.version": "1.2.3"],
            attributes: ["deployment.environment.name": "prod"],
            threadAttributeKeys: ["http.route", "http.method"])
        defer { ProcessContextPublisher.unpublish() }
        #expect(keys.index(of: "http.method") == 1)

        let mapping = try #require(try findMapping())
        // This kernel cannot name anonymous mappings, so the memfd path shows.
        #expect(mapping.name.hasPrefix("/memfd:OTEL_CTX") || mapping.name.hasPrefix("[anon"))
        #expect(UnsafeRawPointer(bitPattern: mapping.start) == UnsafeRawPointer(otel_process_context_mapping()))
        let header = readHeader(mapping)
        #expect(header.signature == Array("OTEL_CTX".utf8))
        #expect(header.version == 2)
        #expect(header.payloadSize > 0)
        #expect(header.payloadSize <= 65536)
        #expect(header.timestamp > 0)
        var now = timespec()
        clock_gettime(CLOCK_BOOTTIME, &now)
        #expect(header.timestamp <= UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec))
        #expect(header.payload != 0)

        let decoded = try walkProcessContext(payloadBytes(header))
        #expect(decoded.resource.map(\.0) == ["service.name", "service.version"])
        #expect(decoded.resource.map(\.1) == [.string("checkout"), .string("1.2.3")])
        #expect(
            decoded.attributes.map(\.0) == [
                "deployment.environment.name", "threadlocal.schema_version", "threadlocal.attribute_key_map",
            ])
        #expect(
            decoded.attributes.map(\.1) == [
                .string("prod"), .string("tlsdesc_v1_dev"), .strings(["http.route", "http.method"]),
            ])
    }

    @Test func theReadersDecoderAgrees() throws {
        ProcessContextPublisher.unpublish()
        try ProcessContextPublisher.publish(
            resource: ["service.name": "checkout"], attributes: ["team": "payments"],
            threadAttributeKeys: ["http.route"])
        defer { ProcessContextPublisher.unpublish() }
        let header = readHeader(try #require(try findMapping()))
        let context = try ProcessContextPayload.decode(payloadBytes(header))
        #expect(context.resource.count == 1)
        #expect(context.attributes.count == 1)
        #expect(context.threadSchemaVersion == "tlsdesc_v1_dev")
        #expect(context.attributeKeyMap == ["http.route"])
    }

    @Test func anUpdateSwapsThePayloadWithAGreaterTimestamp() throws {
        ProcessContextPublisher.unpublish()
        try ProcessContextPublisher.publish(resource: ["service.name": "a"], threadAttributeKeys: ["k0"])
        defer { ProcessContextPublisher.unpublish() }
        let mapping = try #require(try findMapping())
        let first = readHeader(mapping)
        try ProcessContextPublisher.publish(resource: ["service.name": "b"], threadAttributeKeys: ["k0", "k1"])
        #expect(try findMapping()?.start == mapping.start)  // one context per process
        let second = readHeader(mapping)
        #expect(second.timestamp > first.timestamp)
        #expect(second.payload != 0)
        let decoded = try walkProcessContext(payloadBytes(second))
        #expect(decoded.resource.map(\.1) == [.string("b")])
        #expect(decoded.attributes.last?.1 == .strings(["k0", "k1"]))
    }

    @Test func theKeyMapIsAppendOnly() throws {
        ProcessContextPublisher.unpublish()
        try ProcessContextPublisher.publish(resource: [:], threadAttributeKeys: ["a", "b"])
        defer { ProcessContextPublisher.unpublish() }
        let before = readHeader(try #require(try findMapping()))
        #expect(throws: ContextPublisherError(errno: EINVAL, operation: "otel_process_context_publish")) {
            try ProcessContextPublisher.publish(resource: [:], threadAttributeKeys: ["b", "a"])
        }
        #expect(throws: ContextPublisherError.self) {
            try ProcessContextPublisher.publish(resource: [:], threadAttributeKeys: ["a"])
        }
        // A refused update leaves the published context as it was.
        let after = readHeader(try #require(try findMapping()))
        #expect(after.timestamp == before.timestamp)
        #expect(after.payload == before.payload)
    }

    @Test func moreThan256KeysAreRefused() throws {
        ProcessContextPublisher.unpublish()
        let keys = (0..<257).map { "k\($0)" }
        #expect(throws: ContextPublisherError.self) {
            try ProcessContextPublisher.publish(resource: ["service.name": "x"], threadAttributeKeys: keys)
        }
        // The C entry point refuses too.
        #expect(otel_process_context_publish(nil, 0, nil, 0, nil, 257) == -EINVAL)
        #expect(try findMapping() == nil)
        try ProcessContextPublisher.publish(
            resource: ["service.name": "x"], threadAttributeKeys: Array(keys.prefix(256)))
        ProcessContextPublisher.unpublish()
    }

    @Test func payloadsAbove64KiBAreRefused() throws {
        ProcessContextPublisher.unpublish()
        let huge = String(repeating: "v", count: 70_000)
        do {
            try ProcessContextPublisher.publish(resource: ["service.name": huge], threadAttributeKeys: [])
            Issue.record("a 70 kB value was published")
        } catch {
            #expect(error.errno == E2BIG)
            #expect(error.description.contains("64 KiB"))
        }
        #expect(throws: ContextPublisherError.self) {
            try ProcessContextPublisher.publish(resource: [:], threadAttributeKeys: [huge])
        }
        #expect(try findMapping() == nil)
    }

    @Test func stringsWithEmbeddedNULAreRefused() throws {
        ProcessContextPublisher.unpublish()
        #expect(throws: ContextPublisherError.self) {
            try ProcessContextPublisher.publish(resource: ["service.name": "a\u{0}b"], threadAttributeKeys: [])
        }
        #expect(throws: ContextPublisherError.self) {
            try ProcessContextPublisher.publish(resource: [:], threadAttributeKeys: ["k\u{0}"])
        }
        #expect(try findMapping() == nil)
    }

    @Test func nullPointersAreRefusedByTheCEntryPoint() {
        var kv = otel_kv(key: nil, value: nil)
        #expect(otel_process_context_publish(&kv, 1, nil, 0, nil, 0) == -EINVAL)
        #expect(otel_process_context_publish(nil, 1, nil, 0, nil, 0) == -EINVAL)
        #expect(otel_process_context_publish(nil, 0, nil, 0, nil, 1) == -EINVAL)
    }

    @Test func anEmptyResourceStillGivesANonEmptyPayload() throws {
        ProcessContextPublisher.unpublish()
        try ProcessContextPublisher.publish(resource: [:], threadAttributeKeys: [])
        defer { ProcessContextPublisher.unpublish() }
        let header = readHeader(try #require(try findMapping()))
        #expect(header.payloadSize > 0)
        let decoded = try walkProcessContext(payloadBytes(header))
        #expect(decoded.resource.isEmpty)
        #expect(decoded.attributes.map(\.1) == [.string("tlsdesc_v1_dev"), .strings([])])
    }

    @Test func unpublishRemovesTheMapping() throws {
        try ProcessContextPublisher.publish(resource: ["service.name": "x"], threadAttributeKeys: [])
        #expect(try findMapping() != nil)
        ProcessContextPublisher.unpublish()
        #expect(try findMapping() == nil)
        #expect(otel_process_context_mapping() == nil)
        ProcessContextPublisher.unpublish()  // twice is harmless
    }
}
