import Gzip
import Testing

@Suite struct GzipTests {
    /// Deterministic bytes that compress poorly (xorshift).
    static func noise(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    @Test(arguments: [0, 1, 100, 100_000, 300_000])
    func roundTrip(count: Int) throws {
        let input = Self.noise(count: count)
        let compressed = try Gzip.compress(input)
        #expect(Array(compressed.prefix(3)) == [0x1f, 0x8b, 0x08], "gzip magic and deflate method")
        #expect(try Gzip.decompress(compressed, maxOutputBytes: count) == input)
    }

    @Test func roundTripOfCompressibleData() throws {
        let input = [UInt8]((0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 / 1000) })
        for level: Int32 in [0, 1, 6, 9] {
            let compressed = try Gzip.compress(input, level: level)
            if level > 0 { #expect(compressed.count < input.count / 50) }
            #expect(try Gzip.decompress(compressed, maxOutputBytes: input.count) == input)
        }
    }

    @Test func concatenatedMembersDecompressToTheirConcatenation() throws {
        let first = Self.noise(count: 70_000, seed: 1)
        let second = Self.noise(count: 10, seed: 2)
        let data = try Gzip.compress(first) + Gzip.compress(second)
        #expect(try Gzip.decompress(data, maxOutputBytes: 1 << 20) == first + second)
    }

    @Test func invalidLevelIsRejected() {
        #expect(throws: GzipError.invalidLevel(10)) { try Gzip.compress([1, 2, 3], level: 10) }
    }

    @Test func garbageIsCorrupt() {
        let garbage = Self.noise(count: 1000)
        #expect {
            try Gzip.decompress(garbage, maxOutputBytes: 1 << 20)
        } throws: { error in
            guard case .corrupt = error as? GzipError else { return false }
            return "\(error)".hasPrefix("input is not valid gzip data")
        }
    }

    @Test func damagedDeflateDataIsCorrupt() throws {
        var data = try Gzip.compress(Self.noise(count: 10_000))
        // Flip bits in the middle of the deflate stream; the CRC catches what inflate doesn't.
        for index in stride(from: 20, to: data.count - 8, by: 97) {
            data[index] ^= 0x5a
        }
        #expect {
            try Gzip.decompress(data, maxOutputBytes: 1 << 20)
        } throws: { error in
            guard case .corrupt = error as? GzipError else { return false }
            return true
        }
    }

    @Test func trailingGarbageAfterAMemberIsCorrupt() throws {
        let data = try Gzip.compress([1, 2, 3]) + [0x00, 0x01, 0x02, 0x03]
        #expect {
            try Gzip.decompress(data, maxOutputBytes: 1 << 20)
        } throws: { error in
            guard case .corrupt = error as? GzipError else { return false }
            return true
        }
    }

    @Test func truncatedInputIsTruncated() throws {
        let data = try Gzip.compress(Self.noise(count: 50_000))
        for length in [0, 1, 5, 10, data.count / 2, data.count - 4, data.count - 1] {
            #expect(throws: GzipError.truncated, "cut at \(length) of \(data.count) bytes") {
                try Gzip.decompress(Array(data.prefix(length)), maxOutputBytes: 1 << 20)
            }
        }
    }

    @Test func gzipBombStopsAtTheOutputBound() throws {
        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = try Gzip.compress([UInt8](repeating: 0, count: 64 << 20), level: 9)
        #expect(bomb.count < 100_000)
        #expect(throws: GzipError.outputTooLarge(limit: 1 << 20)) {
            try Gzip.decompress(bomb, maxOutputBytes: 1 << 20)
        }
        let message = GzipError.outputTooLarge(limit: 1 << 20).description
        #expect(message.contains("more than 1048576 bytes"))
    }

    @Test func outputBoundIsInclusive() throws {
        let input = Self.noise(count: 65_536 * 2 + 17)
        let data = try Gzip.compress(input)
        #expect(try Gzip.decompress(data, maxOutputBytes: input.count) == input)
        #expect(throws: GzipError.outputTooLarge(limit: input.count - 1)) {
            try Gzip.decompress(data, maxOutputBytes: input.count - 1)
        }
    }
}
