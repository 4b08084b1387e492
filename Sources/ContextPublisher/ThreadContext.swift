import CContextPublisher

/// The calling OS thread's span record (`otel_thread_ctx_v1`, OTEP 4947).
///
/// The record belongs to the OS thread, not to a Swift task. ``withSpan(_:_:)`` takes only a
/// synchronous closure, so the record is correct for the whole body: no suspension can move
/// the work to another thread. Async code must not hold a record across `await`: after a
/// suspension the task may resume on another thread (which lacks the record) while the old
/// thread runs other work (which would be charged to this span). Wrap each synchronous stretch
/// in `withSpan`, or call ``set(_:)`` after every `await` and ``clear()`` before the next one.
public enum ThreadContext {
    /// Attaches `span` to the calling thread. The record is copied into one of two
    /// thread-local buffers (the one not attached), so there is no allocation in C and a sample
    /// never sees a half-written record. Returns false when some attributes did not fit in the
    /// record (the others are still written).
    @discardableResult
    public static func set(_ span: ThreadSpan) -> Bool {
        // The attribute entries were encoded when the span was made: only copies here.
        let traceID = (span.traceID.high.bigEndian, span.traceID.low.bigEndian)
        let spanID = span.spanID.value.bigEndian
        withUnsafeBytes(of: traceID) { trace in
            withUnsafeBytes(of: spanID) { spanBytes in
                span.encoding.bytes.withUnsafeBufferPointer { entries in
                    otel_thread_ctx_store_span(
                        trace.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        spanBytes.baseAddress!.assumingMemoryBound(to: UInt8.self), span.flags,
                        entries.baseAddress, entries.count)
                }
            }
        }
        return span.encoding.complete
    }

    /// Detaches the calling thread's record (the TLS pointer becomes NULL).
    public static func clear() {
        otel_thread_ctx_clear()
    }

    /// The calling thread's attached record, decoded; nil when none is attached or it is not
    /// valid.
    public static var current: ThreadSpan? {
        guard let record = otel_thread_ctx_get(), record.pointee.valid == 1 else { return nil }
        return decode(record)
    }

    /// Runs `body` with `span` attached to the calling thread, then restores exactly what was
    /// attached before (another span, a record attached from C, or nothing), also when `body`
    /// throws.
    public static func withSpan<Result, Failure: Error>(
        _ span: ThreadSpan,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let previous = otel_thread_ctx_get()
        var saved = otel_thread_record()
        // The library's buffers are reused by `set`: keep a copy to restore from. A record
        // attached from C is the caller's and is re-attached as is.
        let owned = previous.map { otel_thread_ctx_is_library_owned($0) } ?? false
        if owned, let previous { saved = previous.pointee }
        set(span)
        defer {
            if previous == nil {
                otel_thread_ctx_clear()
            } else if owned {
                otel_thread_ctx_store(&saved)
            } else {
                otel_thread_ctx_set(previous)
            }
        }
        return try body()
    }

    /// The record entries for `attributes`: in index order, each value cut to 255 bytes at a
    /// UTF-8 boundary, entries that do not fit left out (`complete` is then false).
    static func encode(_ attributes: [UInt8: String]) -> ThreadSpan.AttributeEncoding {
        guard !attributes.isEmpty else { return ThreadSpan.AttributeEncoding(bytes: [], complete: true) }
        var record = otel_thread_record()
        var complete = true
        for index in attributes.keys.sorted() {
            var value = attributes[index]!
            let added = value.withUTF8 { utf8 in
                utf8.withMemoryRebound(to: CChar.self) {
                    otel_thread_record_add_attribute(&record, index, $0.baseAddress, $0.count)
                }
            }
            if !added { complete = false }
        }
        let size = Int(record.attrs_data_size)
        let bytes = withUnsafeBytes(of: record.attrs_data) { Array($0.prefix(size)) }
        return ThreadSpan.AttributeEncoding(bytes: bytes, complete: complete)
    }

    static func decode(_ record: UnsafePointer<otel_thread_record>) -> ThreadSpan {
        let traceID = withUnsafeBytes(of: record.pointee.trace_id) { TraceID(bytes: $0)! }
        let spanID = withUnsafeBytes(of: record.pointee.span_id) { SpanID(bytes: $0)! }
        var attributes: [UInt8: String] = [:]
        let size = min(Int(record.pointee.attrs_data_size), Int(OTEL_THREAD_RECORD_ATTRS_CAPACITY))
        withUnsafeBytes(of: record.pointee.attrs_data) { data in
            var at = 0
            // Stop at the first entry that does not fit; a repeated index: the last one wins.
            while at + 2 <= size {
                let length = Int(data[at + 1])
                guard at + 2 + length <= size else { break }
                attributes[data[at]] = String(decoding: data[(at + 2)..<(at + 2 + length)], as: UTF8.self)
                at += 2 + length
            }
        }
        return ThreadSpan(traceID: traceID, spanID: spanID, flags: record.pointee.trace_flags, attributes: attributes)
    }
}
