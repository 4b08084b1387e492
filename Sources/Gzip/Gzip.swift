internal import CZlib

/// gzip (RFC 1952) compression through zlib, as pprof files are stored.
///
/// Decompression takes an output bound because its input may be hostile: a few kilobytes
/// of gzip can expand to gigabytes.
public enum Gzip {
    /// Size of the scratch buffer zlib writes into per call.
    private static let chunkSize = 64 * 1024

    /// zlib's windowBits for a gzip wrapper: 15 (32 KiB window) + 16 (gzip header).
    private static let gzipWindowBits: Int32 = 15 + 16

    /// Compresses `input` into one gzip member.
    ///
    /// - Parameter level: zlib level, 0 (store) to 9 (smallest); 6 is zlib's default.
    public static func compress(_ input: [UInt8], level: Int32 = 6) throws(GzipError) -> [UInt8] {
        guard (0...9).contains(level) else { throw .invalidLevel(level) }
        var stream = z_stream()
        let initStatus = deflateInit2_(
            &stream, level, Z_DEFLATED, gzipWindowBits, 8, Z_DEFAULT_STRATEGY,
            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else {
            throw .zlib(operation: "deflateInit2", status: initStatus, message: nil)
        }
        defer { deflateEnd(&stream) }

        let chunk = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }
        // Profiles compress about 5-10x; let the array grow from a modest guess rather than
        // reserving deflateBound (larger than the input).
        var output: [UInt8] = []
        output.reserveCapacity(min(input.count / 4, 1 << 20) + 64)

        let failure: GzipError? = input.withUnsafeBufferPointer { inputBuffer in
            var offset = 0  // bytes handed to zlib so far
            while true {
                if stream.avail_in == 0 && offset < inputBuffer.count {
                    // avail_in is 32-bit: larger inputs go in pieces.
                    let piece = min(inputBuffer.count - offset, Int(UInt32.max))
                    stream.next_in = inputBuffer.baseAddress.map {
                        UnsafeMutablePointer(mutating: $0 + offset)
                    }
                    stream.avail_in = UInt32(piece)
                    offset += piece
                }
                let flush = offset == inputBuffer.count ? Z_FINISH : Z_NO_FLUSH
                stream.next_out = chunk.baseAddress
                stream.avail_out = UInt32(chunkSize)
                let status = deflate(&stream, flush)
                // Z_BUF_ERROR only means "no progress this call", not corruption.
                guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                    return .zlib(operation: "deflate", status: status, message: message(of: stream))
                }
                output.append(contentsOf: chunk[..<(chunkSize - Int(stream.avail_out))])
                if status == Z_STREAM_END { return nil }
            }
        }
        if let failure { throw failure }
        return output
    }

    /// Decompresses gzip data, including several concatenated members (as `gzip` and
    /// Go's reader accept).
    ///
    /// - Parameter maxOutputBytes: the most bytes to produce; larger output fails with
    ///   ``GzipError/outputTooLarge(limit:)`` before more memory is used.
    public static func decompress(_ input: [UInt8], maxOutputBytes: Int) throws(GzipError)
        -> [UInt8]
    {
        guard !input.isEmpty else { throw .truncated }
        var stream = z_stream()
        let initStatus = inflateInit2_(
            &stream, gzipWindowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else {
            throw .zlib(operation: "inflateInit2", status: initStatus, message: nil)
        }
        defer { inflateEnd(&stream) }

        let chunk = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }
        var output: [UInt8] = []

        let failure: GzipError? = input.withUnsafeBufferPointer { inputBuffer in
            var offset = 0  // bytes handed to zlib so far
            var memberComplete = false
            while true {
                if stream.avail_in == 0 {
                    guard offset < inputBuffer.count else {
                        return memberComplete ? nil : .truncated
                    }
                    let piece = min(inputBuffer.count - offset, Int(UInt32.max))
                    stream.next_in = inputBuffer.baseAddress.map {
                        UnsafeMutablePointer(mutating: $0 + offset)
                    }
                    stream.avail_in = UInt32(piece)
                    offset += piece
                }
                if memberComplete {
                    // More bytes follow a complete member: they must be another member.
                    guard inflateReset(&stream) == Z_OK else {
                        return .zlib(
                            operation: "inflateReset", status: Z_STREAM_ERROR, message: nil)
                    }
                    memberComplete = false
                }
                stream.next_out = chunk.baseAddress
                stream.avail_out = UInt32(chunkSize)
                let status = inflate(&stream, Z_NO_FLUSH)
                switch status {
                case Z_OK, Z_STREAM_END:
                    break
                case Z_BUF_ERROR:
                    // No progress although input and output space were available.
                    return .corrupt(message(of: stream) ?? "inflate made no progress")
                case Z_DATA_ERROR, Z_NEED_DICT:
                    return .corrupt(message(of: stream) ?? "invalid deflate data")
                default:
                    return .zlib(operation: "inflate", status: status, message: message(of: stream))
                }
                let produced = chunkSize - Int(stream.avail_out)
                guard produced <= maxOutputBytes - output.count else {
                    return .outputTooLarge(limit: maxOutputBytes)
                }
                output.append(contentsOf: chunk[..<produced])
                memberComplete = status == Z_STREAM_END
            }
        }
        if let failure { throw failure }
        return output
    }

    private static func message(of stream: z_stream) -> String? {
        stream.msg.map { String(cString: $0) }
    }
}

/// Why gzip compression or decompression failed.
public enum GzipError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The compression level is not 0...9.
    case invalidLevel(Int32)
    /// The input is not valid gzip data.
    case corrupt(String)
    /// The input ends before the gzip stream does.
    case truncated
    /// Decompressed data would exceed the caller's bound.
    case outputTooLarge(limit: Int)
    /// zlib reported an unexpected status (usually out of memory).
    case zlib(operation: String, status: Int32, message: String?)

    public var description: String {
        switch self {
        case .invalidLevel(let level):
            "gzip compression level \(level) is invalid; use 0...9"
        case .corrupt(let detail):
            "input is not valid gzip data: \(detail)"
        case .truncated:
            "gzip data is truncated: the input ends before the compressed stream does"
        case .outputTooLarge(let limit):
            "gzip data expands to more than \(limit) bytes; refusing to decompress further"
        case .zlib(let operation, let status, let message):
            "zlib \(operation) failed with status \(status)" + (message.map { ": \($0)" } ?? "")
        }
    }
}
