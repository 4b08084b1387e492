/// Splits a byte stream of concatenated JSON objects (a Kubernetes watch response) into one
/// byte slice per top-level object, whatever the chunking of the stream.
///
/// The framer tracks only JSON structure: brace and bracket depth, whether it is inside a
/// string, and whether the previous byte was a backslash inside a string. It does not
/// validate the object (the decoder does) and never looks inside a multibyte UTF-8 sequence:
/// every byte of one has its high bit set, so none can be mistaken for `{`, `}` or `"`, and a
/// sequence split across chunks needs no special handling.
///
/// Untrusted input is bounded:
/// - an object larger than `maxObjectBytes` is discarded byte by byte up to its end (the
///   structure is still tracked, the bytes are not kept) and reported once as
///   ``Frame/oversized(byteCount:)``;
/// - bytes between objects that are neither whitespace nor `{` (`[1,2]`, `x`, a stray `}`)
///   are malformed. Resynchronisation rule: everything from the first such byte up to, not
///   including, the next newline or the next `{` is skipped and reported once as
///   ``Frame/malformed(byteCount:)``; framing resumes there, so the objects that follow are
///   not lost. (A `{` inside the garbage, as in `[{"a":1}]`, starts an object; the decoder
///   then rejects it.)
/// - a raw newline inside an object ends it as malformed (with `newlineDelimited`, the
///   default), and framing resumes after the newline. The Kubernetes API server (Go's
///   `json.Encoder`) writes every event as compact JSON followed by one newline, and JSON
///   cannot hold a raw newline inside a string, so a newline inside an object means the
///   object was cut short: without this rule a truncated event (unbalanced braces) would
///   swallow the events after it. Turn it off for pretty-printed streams.
/// - an object whose braces never balance and that meets no newline cannot be told apart
///   from a long object: it is held up to the cap and then skipped as oversized, or reported
///   as malformed by ``finish()`` when the stream ends first.
///
/// Memory is bounded by `maxObjectBytes` plus one chunk; time is linear in the input.
public struct JSONObjectFramer: Sendable {
    /// One result of framing.
    public enum Frame: Sendable, Hashable {
        /// A complete top-level object, `{` to `}` inclusive.
        case object([UInt8])
        /// Bytes that are not an object, skipped (see the resynchronisation rule above), or an
        /// object cut short by the end of the stream.
        case malformed(byteCount: Int)
        /// An object larger than the cap, skipped to its end (or to the end of the stream).
        case oversized(byteCount: Int)
    }

    private enum Mode: Sendable {
        /// Between objects: whitespace is skipped, `{` starts an object.
        case between
        /// Inside an object that is being kept.
        case object
        /// Inside an object over the cap: structure tracked, bytes counted and dropped.
        case oversized
        /// Skipping garbage up to the next newline or `{`.
        case garbage
    }

    /// Largest object kept unless told otherwise: a Pod with many containers and managed
    /// fields is tens of kilobytes.
    public static let defaultMaxObjectBytes = 4 << 20

    /// The largest object kept, in bytes.
    public let maxObjectBytes: Int
    /// Whether a raw newline inside an object ends it as malformed (see above).
    public let newlineDelimited: Bool

    private var mode = Mode.between
    private var buffer: [UInt8] = []
    /// Bytes of the current object, oversized object or garbage run, kept or not.
    private var count = 0
    /// Open braces and brackets of the current object.
    private var depth = 0
    private var inString = false
    private var escaped = false

    public init(maxObjectBytes: Int = defaultMaxObjectBytes, newlineDelimited: Bool = true) {
        precondition(maxObjectBytes > 1, "an object has at least two bytes")
        self.maxObjectBytes = maxObjectBytes
        self.newlineDelimited = newlineDelimited
    }

    /// True when no partial object, oversized object or garbage run is pending.
    public var isAtBoundary: Bool { mode == .between }

    /// Consumes the next bytes of the stream and returns the frames they complete.
    public mutating func feed<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [Frame] {
        var frames: [Frame] = []
        let contiguous: Void? = bytes.withContiguousStorageIfAvailable { chunk in
            scan(chunk, into: &frames)
        }
        if contiguous == nil {
            Array(bytes).withUnsafeBufferPointer { chunk in scan(chunk, into: &frames) }
        }
        return frames
    }

    /// The end of the stream: reports what is pending (an object cut short is malformed) and
    /// resets the framer.
    public mutating func finish() -> [Frame] {
        defer {
            mode = .between
            buffer = []
            count = 0
            depth = 0
            inString = false
            escaped = false
        }
        switch mode {
        case .between: return []
        case .object, .garbage: return [.malformed(byteCount: count)]
        case .oversized: return [.oversized(byteCount: count)]
        }
    }

    private mutating func scan(_ chunk: UnsafeBufferPointer<UInt8>, into frames: inout [Frame]) {
        // The first byte of `chunk` not yet copied into `buffer` while in `.object`.
        var keptFrom = 0
        var index = 0
        while index < chunk.count {
            let byte = chunk[index]
            switch mode {
            case .between:
                if byte == UInt8(ascii: "{") {
                    startObject()
                    keptFrom = index
                } else if !Self.isWhitespace(byte) {
                    mode = .garbage
                    count = 1
                }
            case .garbage:
                if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "{") {
                    frames.append(.malformed(byteCount: count))
                    mode = .between
                    count = 0
                    continue  // the `{` starts an object in `.between`
                }
                count += 1
            case .object, .oversized:
                if newlineDelimited && byte == UInt8(ascii: "\n") {
                    // Cut short (see the type's documentation); the newline is a separator.
                    frames.append(mode == .object ? .malformed(byteCount: count) : .oversized(byteCount: count))
                    mode = .between
                    buffer = []
                    count = 0
                    index += 1
                    continue
                }
                count += 1
                if mode == .object && count > maxObjectBytes {
                    mode = .oversized
                    buffer = []
                }
                if track(byte) {
                    if mode == .object {
                        buffer.append(contentsOf: chunk[keptFrom...index])
                        frames.append(.object(buffer))
                        buffer = []
                    } else {
                        frames.append(.oversized(byteCount: count))
                    }
                    mode = .between
                    count = 0
                }
            }
            index += 1
        }
        if mode == .object && keptFrom < chunk.count {
            buffer.append(contentsOf: chunk[keptFrom..<chunk.count])
        }
    }

    private mutating func startObject() {
        mode = .object
        buffer = []
        count = 1
        depth = 1
        inString = false
        escaped = false
    }

    /// Follows the structure by one byte after the opening brace; true when that byte closes
    /// the top-level object.
    private mutating func track(_ byte: UInt8) -> Bool {
        if inString {
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
            }
            return false
        }
        switch byte {
        case UInt8(ascii: "\""):
            inString = true
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            depth += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            depth -= 1
            return depth == 0
        default:
            break
        }
        return false
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
            || byte == UInt8(ascii: "\t")
    }
}
