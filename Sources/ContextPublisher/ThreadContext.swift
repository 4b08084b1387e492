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
        var record = otel_thread_record()
        let complete = fill(&record, span)
        otel_thread_ctx_store(&record)
        return complete
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

    static func fill(_ record: inout otel_thread_record, _ span: ThreadSpan) -> Bool {
        withUnsafeMutableBytes(of: &record.trace_id) { bytes in
            bytes.storeBytes(of: span.traceID.high.bigEndian, toByteOffset: 0, as: UInt64.self)
            bytes.storeBytes(of: span.traceID.low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        withUnsafeMutableBytes(of: &record.span_id) { bytes in
            bytes.storeBytes(of: span.spanID.value.bigEndian, toByteOffset: 0, as: UInt64.self)
        }
        record.valid = 0
        record.trace_flags = span.flags
        record.attrs_data_size = 0
        var complete = true
        // Index order without sorting into a new array: a 256-bit set, no allocation.
        var present: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        for index in span.attributes.keys {
            let bit = UInt64(1) << UInt64(index & 63)
            switch index >> 6 {
            case 0: present.0 |= bit
            case 1: present.1 |= bit
            case 2: present.2 |= bit
            default: present.3 |= bit
            }
        }
        for word in 0..<4 {
            var bits: UInt64
            switch word {
            case 0: bits = present.0
            case 1: bits = present.1
            case 2: bits = present.2
            default: bits = present.3
            }
            while bits != 0 {
                let index = UInt8(word * 64 + bits.trailingZeroBitCount)
                bits &= bits - 1
                var value = span.attributes[index]!
                let added = value.withUTF8 { utf8 in
                    utf8.withMemoryRebound(to: CChar.self) {
                        otel_thread_record_add_attribute(&record, index, $0.baseAddress, $0.count)
                    }
                }
                if !added { complete = false }
            }
        }
        return complete
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
