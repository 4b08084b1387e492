import CContextPublisher
import ContextPublisher
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct ThreadRecordLayoutTests {
    @Test func layoutMatchesTheSpecTable() {
        typealias R = otel_thread_record
        #expect(MemoryLayout<R>.offset(of: \R.trace_id) == 0)
        #expect(MemoryLayout.size(ofValue: R().trace_id) == 16)
        #expect(MemoryLayout<R>.offset(of: \R.span_id) == 16)
        #expect(MemoryLayout.size(ofValue: R().span_id) == 8)
        #expect(MemoryLayout<R>.offset(of: \R.valid) == 24)
        #expect(MemoryLayout<R>.offset(of: \R.trace_flags) == 25)
        #expect(MemoryLayout<R>.offset(of: \R.attrs_data_size) == 26)
        #expect(MemoryLayout<R>.offset(of: \R.attrs_data) == 28)
        #expect(MemoryLayout.size(ofValue: R().attrs_data) == 612)
        #expect(MemoryLayout<R>.size == 640)
        #expect(MemoryLayout<R>.alignment >= 2)
    }

    @Test func processContextHeaderLayout() {
        typealias H = otel_process_context_header
        #expect(MemoryLayout<H>.size == 32)
        #expect(MemoryLayout<H>.offset(of: \H.version) == 8)
        #expect(MemoryLayout<H>.offset(of: \H.payload_size) == 12)
        #expect(MemoryLayout<H>.offset(of: \H.monotonic_published_at_ns) == 16)
        #expect(MemoryLayout<H>.offset(of: \H.payload) == 24)
    }
}

/// The attribute bytes of a record, as a profiler would read them.
private func attributeBytes(_ record: otel_thread_record) -> [UInt8] {
    withUnsafeBytes(of: record.attrs_data) { Array($0.prefix(Int(record.attrs_data_size))) }
}

private func add(_ record: inout otel_thread_record, _ key: UInt8, _ value: String) -> Bool {
    var value = value
    return value.withUTF8 { utf8 in
        utf8.withMemoryRebound(to: CChar.self) {
            otel_thread_record_add_attribute(&record, key, $0.baseAddress, $0.count)
        }
    }
}

@Suite struct ThreadRecordPackingTests {
    @Test func initWritesIdsFlagsAndLeavesTheRecordInvalid() {
        var record = otel_thread_record()
        record.valid = 7
        record.attrs_data_size = 99
        let trace: [UInt8] = Array(1...16)
        let span: [UInt8] = Array(17...24)
        otel_thread_record_init(&record, trace, span, 1)
        #expect(withUnsafeBytes(of: record.trace_id) { Array($0) } == trace)
        #expect(withUnsafeBytes(of: record.span_id) { Array($0) } == span)
        #expect(record.valid == 0)
        #expect(record.trace_flags == 1)
        #expect(record.attrs_data_size == 0)
        otel_thread_record_init(&record, nil, nil, 0)
        #expect(withUnsafeBytes(of: record.trace_id) { Array($0) } == [UInt8](repeating: 0, count: 16))
    }

    @Test func entriesArePackedKeyLengthValue() {
        var record = otel_thread_record()
        otel_thread_record_init(&record, nil, nil, 0)
        #expect(add(&record, 0, "/users/{id}"))
        #expect(add(&record, 3, ""))
        #expect(add(&record, 255, "GET"))
        let expected: [UInt8] = [0, 11] + Array("/users/{id}".utf8) + [3, 0] + [255, 3] + Array("GET".utf8)
        #expect(attributeBytes(record) == expected)
    }

    @Test func longValuesAreCutTo255BytesAtACharacterBoundary() {
        var record = otel_thread_record()
        otel_thread_record_init(&record, nil, nil, 0)
        #expect(add(&record, 1, String(repeating: "a", count: 300)))
        #expect(attributeBytes(record).count == 2 + 255)
        #expect(attributeBytes(record)[1] == 255)

        // "é" is two bytes: 255 would split one, so the cut falls at 254.
        otel_thread_record_init(&record, nil, nil, 0)
        #expect(add(&record, 1, String(repeating: "é", count: 200)))
        let bytes = attributeBytes(record)
        #expect(bytes[1] == 254)
        #expect(String(validating: bytes[2...], as: UTF8.self) == String(repeating: "é", count: 127))
    }

    @Test func anEntryThatDoesNotFitIsRefusedAndTheRecordIsUnchanged() {
        var record = otel_thread_record()
        otel_thread_record_init(&record, nil, nil, 0)
        // 2 entries of 2 + 255 bytes = 514; 98 bytes left.
        #expect(add(&record, 0, String(repeating: "x", count: 255)))
        #expect(add(&record, 1, String(repeating: "y", count: 255)))
        let before = attributeBytes(record)
        #expect(!add(&record, 2, String(repeating: "z", count: 97)))
        #expect(attributeBytes(record) == before)
        #expect(add(&record, 2, String(repeating: "z", count: 96)))
        #expect(record.attrs_data_size == 612)
        #expect(!add(&record, 3, ""))
        #expect(!otel_thread_record_add_attribute(&record, 4, nil, 1))
    }
}

private struct Boom: Error {}

private let traceA = TraceID(hex: "4bf92f3577b34da6a3ce929d0e0e4736")!
private let spanA = SpanID(hex: "00f067aa0ba902b7")!

@Suite struct ThreadContextTests {
    @Test func idsRoundTripThroughBytesAndHex() {
        #expect(traceA.description == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(traceA.bytes.first == 0x4b)
        #expect(TraceID(bytes: traceA.bytes) == traceA)
        #expect(spanA.description == "00f067aa0ba902b7")
        #expect(SpanID(bytes: spanA.bytes) == spanA)
        #expect(TraceID(hex: "xyz") == nil)
        #expect(SpanID(bytes: [1, 2, 3]) == nil)
    }

    @Test func setStoresWhatGetReturns() throws {
        ThreadContext.clear()
        #expect(otel_thread_ctx_get() == nil)
        #expect(ThreadContext.current == nil)
        let span = ThreadSpan(traceID: traceA, spanID: spanA, flags: 1, attributes: [0: "/checkout", 2: "POST"])
        #expect(ThreadContext.set(span))
        let record = try #require(otel_thread_ctx_get())
        #expect(record.pointee.valid == 1)
        #expect(record.pointee.trace_flags == 1)
        #expect(withUnsafeBytes(of: record.pointee.trace_id) { Array($0) } == traceA.bytes)
        #expect(withUnsafeBytes(of: record.pointee.span_id) { Array($0) } == spanA.bytes)
        #expect(attributeBytes(record.pointee) == [0, 9] + Array("/checkout".utf8) + [2, 4] + Array("POST".utf8))
        #expect(ThreadContext.current == span)
        ThreadContext.clear()
        #expect(otel_thread_ctx_get() == nil)
    }

    @Test func attributesChangedAfterInitAreWhatIsAttached() throws {
        ThreadContext.clear()
        var span = ThreadSpan(traceID: traceA, spanID: spanA, attributes: [0: "/old"])
        span.attributes[0] = "/new"
        span.attributes[1] = "GET"
        #expect(ThreadContext.set(span))
        let record = try #require(otel_thread_ctx_get())
        #expect(attributeBytes(record.pointee) == [0, 4] + Array("/new".utf8) + [1, 3] + Array("GET".utf8))
        span.attributes = [:]
        #expect(ThreadContext.set(span))
        #expect(ThreadContext.current?.attributes == [:])
        ThreadContext.clear()
    }

    @Test func storeNeverWritesTheAttachedBuffer() throws {
        ThreadContext.clear()
        ThreadContext.set(ThreadSpan(traceID: traceA, spanID: SpanID(1)))
        let first = try #require(otel_thread_ctx_get())
        ThreadContext.set(ThreadSpan(traceID: traceA, spanID: SpanID(2)))
        let second = try #require(otel_thread_ctx_get())
        #expect(first != second)
        #expect(first.pointee.span_id.7 == 1)  // untouched while the second was written
        ThreadContext.set(ThreadSpan(traceID: traceA, spanID: SpanID(3)))
        #expect(otel_thread_ctx_get() == first)
        ThreadContext.clear()
    }

    @Test func attributesByNameGoThroughTheKeyMap() {
        let keys = ThreadAttributeKeyMap(keys: ["http.route", "http.method"])
        let span = ThreadSpan(
            traceID: traceA, spanID: spanA, attributes: ["http.method": "GET", "unknown": "x"], keys: keys)
        #expect(span.attributes == [1: "GET"])
    }

    @Test func attributesThatDoNotFitAreReported() {
        ThreadContext.clear()
        var attributes: [UInt8: String] = [:]
        for i in 0..<3 { attributes[UInt8(i)] = String(repeating: "v", count: 255) }
        #expect(!ThreadContext.set(ThreadSpan(traceID: traceA, spanID: spanA, attributes: attributes)))
        #expect(ThreadContext.current?.attributes.count == 2)
        ThreadContext.clear()
    }

    @Test func withSpanRestoresThePreviousSpanAlsoOnThrow() {
        ThreadContext.clear()
        let outer = ThreadSpan(traceID: traceA, spanID: SpanID(1), attributes: [0: "outer"])
        let inner = ThreadSpan(traceID: traceA, spanID: SpanID(2), attributes: [0: "inner"])
        ThreadContext.withSpan(outer) {
            #expect(ThreadContext.current == outer)
            #expect(throws: Boom.self) {
                try ThreadContext.withSpan(inner) { () throws(Boom) in
                    #expect(ThreadContext.current == inner)
                    // A third level reuses the buffer the outer span was restored from.
                    ThreadContext.withSpan(ThreadSpan(traceID: traceA, spanID: SpanID(3))) {
                        #expect(ThreadContext.current?.spanID == SpanID(3))
                    }
                    #expect(ThreadContext.current == inner)
                    throw Boom()
                }
            }
            #expect(ThreadContext.current == outer)
        }
        #expect(otel_thread_ctx_get() == nil)
    }

    @Test func withSpanReattachesARecordAttachedFromC() {
        ThreadContext.clear()
        let record = UnsafeMutablePointer<otel_thread_record>.allocate(capacity: 1)
        defer { record.deallocate() }
        otel_thread_record_init(record, traceA.bytes, spanA.bytes, 1)
        otel_thread_ctx_set(record)
        #expect(otel_thread_ctx_get() == record)
        #expect(record.pointee.valid == 1)
        let result = ThreadContext.withSpan(ThreadSpan(traceID: .invalid, spanID: SpanID(9))) { 42 }
        #expect(result == 42)
        #expect(otel_thread_ctx_get() == record)
        otel_thread_ctx_set(nil)
        #expect(otel_thread_ctx_get() == nil)
    }

    @Test func recordsArePerThread() {
        ThreadContext.clear()
        ThreadContext.set(ThreadSpan(traceID: traceA, spanID: spanA))
        let emptyElsewhere = UnsafeMutablePointer<Bool>.allocate(capacity: 1)
        defer { emptyElsewhere.deallocate() }
        emptyElsewhere.initialize(to: false)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { argument in
                argument!.assumingMemoryBound(to: Bool.self).pointee = otel_thread_ctx_get() == nil
                return nil
            }, emptyElsewhere)
        #expect(rc == 0)
        pthread_join(thread, nil)
        #expect(emptyElsewhere.pointee)
        #expect(ThreadContext.current?.spanID == spanA)
        ThreadContext.clear()
    }
}
