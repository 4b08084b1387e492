/// Splits the body of a LIST reply, `{"kind":..,"metadata":{..},"items":[{..},{..}]}`, into
/// its items as the bytes arrive, so that a list is decoded one object at a time and never
/// held whole (a page of 500 pods with managed fields is several MiB of JSON, and a
/// JSONDecoder holds several times its input).
///
/// Like ``JSONObjectFramer`` it tracks only JSON structure (depth, strings, escapes) and
/// never validates: each item is decoded by the caller, and the raw `metadata` value (the
/// list's resourceVersion and continue token) is kept for decoding at the end. Keys are
/// compared raw: Kubernetes never escapes `items` or `metadata`.
///
/// Untrusted input is bounded: an item over `maxItemBytes` is dropped byte by byte and
/// reported as ``Frame/oversized(byteCount:)``; an element of `items` that is not an object
/// is skipped and reported as ``Frame/notAnObject(byteCount:)``; `metadata` over
/// ``maxMetadataBytes`` is dropped (the list then has no resourceVersion); a body that is
/// not a JSON object, or whose `items` is not an array, sets ``problem`` and the rest is
/// ignored. Memory is one item (at most `maxItemBytes`) plus the metadata; time is linear.
public struct JSONListItemFramer: Sendable {
    public enum Frame: Sendable, Hashable {
        /// One element of `items`, `{` to `}` inclusive.
        case item([UInt8])
        /// An element over the cap, skipped.
        case oversized(byteCount: Int)
        /// An element that is not a JSON object (a number, a string, an array, `null`).
        case notAnObject(byteCount: Int)
    }

    /// Where the scanner is in the list object.
    private enum Place: Sendable {
        /// Before the top-level `{`.
        case start
        /// In the top-level object, before a key (or its closing `}`).
        case key
        case inKey
        /// After a key, before `:`.
        case colon
        /// After `:`, before the value.
        case value
        /// Inside a top-level value that is not kept.
        case skippedValue
        /// Inside a scalar top-level value (number, true, false, null).
        case skippedScalar
        /// Inside the `metadata` object.
        case metadataValue
        /// After a top-level value, before `,` or `}`.
        case afterValue
        /// In `items`, before an element (or `]`).
        case element
        /// Inside an element object.
        case item
        /// Inside an element that is not an object.
        case skippedElement
        case skippedScalarElement
        /// In `items`, after an element, before `,` or `]`.
        case afterElement
        /// After the top-level `}`.
        case end
        /// Not a list object: everything after is ignored.
        case failed
    }

    /// Largest `metadata` kept: a resourceVersion, a continue token, a count.
    public static let maxMetadataBytes = 64 << 10

    public let maxItemBytes: Int
    /// The raw JSON of the top-level `metadata` object, once it has been read.
    public private(set) var metadata: [UInt8]?
    /// Whether an `items` array was found.
    public private(set) var sawItems = false
    /// Why the body is not a list object, when it is not.
    public private(set) var problem: String?

    private var place = Place.start
    private var key: [UInt8] = []
    private var keyOverflow = false
    private var buffer: [UInt8] = []
    private var count = 0
    private var oversized = false
    /// Nesting inside the current value or element (0 for a scalar).
    private var depth = 0
    private var inString = false
    private var escaped = false

    public init(maxItemBytes: Int = JSONObjectFramer.defaultMaxObjectBytes) {
        precondition(maxItemBytes > 1, "an object has at least two bytes")
        self.maxItemBytes = maxItemBytes
    }

    /// True once the top-level object has closed.
    public var isComplete: Bool {
        if case .end = place { return true }
        return false
    }

    /// Consumes the next bytes of the body and returns the elements they complete.
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

    /// The end of the body: sets ``problem`` when the list object did not close.
    public mutating func finish() {
        switch place {
        case .end, .failed: break
        case .start: fail("the body is empty")
        default: fail("the body ends inside the list object")
        }
    }

    private mutating func fail(_ reason: String) {
        if problem == nil { problem = reason }
        place = .failed
        buffer = []
    }

    private mutating func scan(_ chunk: UnsafeBufferPointer<UInt8>, into frames: inout [Frame]) {
        // The first byte of `chunk` not yet copied into `buffer` while capturing.
        var keptFrom = 0
        var index = 0
        while index < chunk.count {
            let byte = chunk[index]
            switch place {
            case .failed:
                return
            case .start:
                if byte == UInt8(ascii: "{") {
                    place = .key
                } else if !Self.isWhitespace(byte) {
                    fail("the body is not a JSON object")
                }
            case .end:
                if !Self.isWhitespace(byte) { fail("bytes follow the list object") }
            case .key:
                if byte == UInt8(ascii: "\"") {
                    place = .inKey
                    key = []
                    keyOverflow = false
                    escaped = false
                } else if byte == UInt8(ascii: "}") {
                    place = .end
                } else if !Self.isWhitespace(byte) && byte != UInt8(ascii: ",") {
                    fail("the list object has a value without a key")
                }
            case .inKey:
                if escaped {
                    escaped = false
                    keyOverflow = true  // an escaped key is none of the keys looked for
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    place = .colon
                } else if key.count < 16 {
                    key.append(byte)
                } else {
                    keyOverflow = true
                }
            case .colon:
                if byte == UInt8(ascii: ":") {
                    place = .value
                } else if !Self.isWhitespace(byte) {
                    fail("the list object has a key without a value")
                }
            case .value:
                if Self.isWhitespace(byte) { break }
                let name = keyOverflow ? "" : String(decoding: key, as: UTF8.self)
                if name == "items" && !sawItems && byte == UInt8(ascii: "[") {
                    sawItems = true
                    place = .element
                } else if name == "items" && !sawItems && byte != UInt8(ascii: "n") {
                    fail("items is not an array")
                } else if name == "metadata" && metadata == nil && byte == UInt8(ascii: "{") {
                    place = .metadataValue
                    startValue(byte)
                    buffer = []
                    keptFrom = index
                } else {
                    place = startValue(byte) ? .skippedValue : .skippedScalar
                }
            case .skippedValue:
                if track(byte) { place = .afterValue }
            case .skippedScalar:
                if Self.endsScalar(byte) {
                    place = .afterValue
                    continue  // the delimiter belongs to the object
                }
            case .metadataValue:
                count += 1
                if track(byte) {
                    if count <= Self.maxMetadataBytes {
                        buffer.append(contentsOf: chunk[keptFrom...index])
                        metadata = buffer
                    }
                    buffer = []
                    place = .afterValue
                }
            case .afterValue:
                if byte == UInt8(ascii: ",") {
                    place = .key
                } else if byte == UInt8(ascii: "}") {
                    place = .end
                } else if !Self.isWhitespace(byte) {
                    fail("the list object is not valid JSON")
                }
            case .element:
                if byte == UInt8(ascii: "]") {
                    place = .afterValue
                } else if byte == UInt8(ascii: "{") {
                    place = .item
                    startValue(byte)
                    buffer = []
                    oversized = false
                    keptFrom = index
                } else if !Self.isWhitespace(byte) && byte != UInt8(ascii: ",") {
                    place = startValue(byte) ? .skippedElement : .skippedScalarElement
                }
            case .item:
                count += 1
                if !oversized && count > maxItemBytes {
                    oversized = true
                    buffer = []
                }
                if track(byte) {
                    if oversized {
                        frames.append(.oversized(byteCount: count))
                    } else {
                        buffer.append(contentsOf: chunk[keptFrom...index])
                        frames.append(.item(buffer))
                    }
                    buffer = []
                    place = .afterElement
                }
            case .skippedElement:
                count += 1
                if track(byte) {
                    frames.append(.notAnObject(byteCount: count))
                    place = .afterElement
                }
            case .skippedScalarElement:
                if Self.endsScalar(byte) {
                    frames.append(.notAnObject(byteCount: count))
                    place = .afterElement
                    continue
                }
                count += 1
            case .afterElement:
                if byte == UInt8(ascii: ",") {
                    place = .element
                } else if byte == UInt8(ascii: "]") {
                    place = .afterValue
                } else if !Self.isWhitespace(byte) {
                    fail("items is not a valid JSON array")
                }
            }
            index += 1
        }
        switch place {
        case .metadataValue where count <= Self.maxMetadataBytes, .item where !oversized:
            if keptFrom < chunk.count { buffer.append(contentsOf: chunk[keptFrom..<chunk.count]) }
        default:
            break
        }
    }

    /// Starts tracking a value whose first byte is `byte`; true for an object, array or
    /// string (which end at a closing byte), false for a scalar (which ends before a
    /// delimiter).
    @discardableResult
    private mutating func startValue(_ byte: UInt8) -> Bool {
        count = 1
        inString = byte == UInt8(ascii: "\"")
        escaped = false
        depth = byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") ? 1 : 0
        return depth > 0 || inString
    }

    /// Follows the structure by one byte after a value's first byte; true when that byte
    /// ends the value.
    private mutating func track(_ byte: UInt8) -> Bool {
        if inString {
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
                return depth == 0
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
            return depth <= 0
        default:
            break
        }
        return false
    }

    private static func endsScalar(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ",") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") || isWhitespace(byte)
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
            || byte == UInt8(ascii: "\t")
    }
}
