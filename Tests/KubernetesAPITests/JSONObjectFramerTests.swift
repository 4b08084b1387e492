import KubernetesAPI
import TestSupport
import Testing

@Suite struct APIJSONObjectFramerTests {
    /// Watch events shaped like the API server's (compact JSON, one newline after each), with
    /// strings that hold braces, brackets, escaped quotes, backslashes and multibyte UTF-8.
    static let events: [String] = [
        #"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-7d4b9c8f5-x2x4k","namespace":"shop","uid":"6b1f0c52-8a7e-4d0c-9a55-0e8f2b1c3d4e","resourceVersion":"1001","labels":{"app":"web","pod-template-hash":"7d4b9c8f5"},"annotations":{"note":"braces { } [ ] in a string, \"quoted\" and a backslash \\ and \\\" too"}},"spec":{"nodeName":"node-1","containers":[{"name":"app","image":"registry.example.com/shop/web:1.4.2"}]},"status":{"phase":"Running"}}}"#,
        #"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"café-日本-🚀","namespace":"ünïcode","uid":"a2","resourceVersion":"1002","annotations":{"k":"}{\\","e":"\u00e9\n\t"}},"status":{"phase":"Running","containerStatuses":[{"name":"app","containerID":"containerd://5dab"}]}}}"#,
        #"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"1003"}}}"#,
        #"{"type":"DELETED","object":{"metadata":{"name":"x","uid":"a3","resourceVersion":"1004","annotations":{"only-escapes":"\\\\\\\\","quote-brace":"\"}\""}}}}"#,
        #"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (1000)","reason":"Expired","code":410}}"#,
    ]

    static var stream: [UInt8] {
        // Whitespace of every kind between objects, as a tolerant reader must accept.
        let separators = ["\n", "\r\n", "  \n\t", "\n\n", "\n"]
        return Array(zip(events, separators).map { $0 + $1 }.joined().utf8)
    }

    static var expected: [JSONObjectFramer.Frame] { events.map { .object(Array($0.utf8)) } }

    static func frame(
        _ chunks: [ArraySlice<UInt8>], maxObjectBytes: Int = 4 << 20, newlineDelimited: Bool = true
    ) -> [JSONObjectFramer.Frame] {
        var framer = JSONObjectFramer(maxObjectBytes: maxObjectBytes, newlineDelimited: newlineDelimited)
        var frames: [JSONObjectFramer.Frame] = []
        for chunk in chunks { frames += framer.feed(chunk) }
        return frames + framer.finish()
    }

    static func frame(_ text: String, maxObjectBytes: Int = 4 << 20) -> [JSONObjectFramer.Frame] {
        frame([ArraySlice(text.utf8)], maxObjectBytes: maxObjectBytes)
    }

    /// The frames of `bytes` fed whole, split in two at every position, one byte at a time,
    /// and in seeded random chunkings must all be equal; returns them.
    static func framesUnderEveryChunking(
        _ bytes: [UInt8], maxObjectBytes: Int = 4 << 20, seeds: Range<UInt64> = 0..<50
    ) -> [JSONObjectFramer.Frame] {
        let whole = frame([bytes[...]], maxObjectBytes: maxObjectBytes)
        for split in 0...bytes.count {
            let frames = frame([bytes[..<split], bytes[split...]], maxObjectBytes: maxObjectBytes)
            #expect(frames == whole, "split at \(split)")
        }
        let bytewise = frame(bytes.indices.map { bytes[$0...$0] }, maxObjectBytes: maxObjectBytes)
        #expect(bytewise == whole, "one byte at a time")
        for seed in seeds {
            var random = SplitMix64(seed: seed)
            var chunks: [ArraySlice<UInt8>] = []
            var start = 0
            while start < bytes.count {
                let length = Int.random(in: 1...64, using: &random)
                let end = min(bytes.count, start + length)
                chunks.append(bytes[start..<end])
                start = end
            }
            #expect(frame(chunks, maxObjectBytes: maxObjectBytes) == whole, "seed \(seed)")
        }
        return whole
    }

    @Test func framesRealisticEventsUnderEveryChunking() {
        let frames = Self.framesUnderEveryChunking(Self.stream)
        #expect(frames == Self.expected)
    }

    @Test func splitsUTF8SequencesAnywhere() {
        let text = #"{"s":"é日本🚀"}"# + "\n" + #"{"t":"🚀"}"#
        let frames = Self.framesUnderEveryChunking(Array(text.utf8))
        #expect(frames == [.object(Array(#"{"s":"é日本🚀"}"#.utf8)), .object(Array(#"{"t":"🚀"}"#.utf8))])
    }

    @Test func manyObjectsInOneChunkWithoutSeparators() {
        let text = #"{"a":1}{"b":"}"}{"c":[{"d":{}}]}"#
        #expect(
            Self.frame(text) == [
                .object(Array(#"{"a":1}"#.utf8)), .object(Array(#"{"b":"}"}"#.utf8)),
                .object(Array(#"{"c":[{"d":{}}]}"#.utf8)),
            ])
    }

    @Test func oversizedObjectIsSkippedToItsEnd() {
        let small = #"{"a":"small"}"#
        let big = #"{"b":""# + String(repeating: "x{}\\\"", count: 40) + #"","c":{"d":[1,2,{}]}}"#
        let text = small + "\n" + big + "\n" + small + "\n"
        let frames = Self.framesUnderEveryChunking(Array(text.utf8), maxObjectBytes: 100, seeds: 0..<10)
        #expect(
            frames == [.object(Array(small.utf8)), .oversized(byteCount: big.utf8.count), .object(Array(small.utf8))])
    }

    @Test func objectOfExactlyTheCapIsKept() {
        let object = #"{"a":"12345"}"#
        #expect(Self.frame(object, maxObjectBytes: object.utf8.count) == [.object(Array(object.utf8))])
        #expect(Self.frame(object, maxObjectBytes: object.utf8.count - 1) == [.oversized(byteCount: object.utf8.count)])
    }

    @Test func garbageBetweenObjectsIsSkippedToTheNextNewlineOrBrace() {
        let a = #"{"a":1}"#
        let b = #"{"b":2}"#
        // `[1,2,3]` then a newline; a bare `x` right before an object; a stray `}`; a number.
        let text = a + "\n[1,2,3]\n" + "x" + b + "\n}\n" + "42 " + a + "\n"
        let frames = Self.framesUnderEveryChunking(Array(text.utf8))
        #expect(
            frames == [
                .object(Array(a.utf8)), .malformed(byteCount: 7), .malformed(byteCount: 1), .object(Array(b.utf8)),
                .malformed(byteCount: 1), .malformed(byteCount: 3), .object(Array(a.utf8)),
            ])
    }

    @Test func garbageContainingAnObjectResynchronisesAtItsBrace() {
        // The documented rule: the `{` inside the array starts an object (the decoder rejects
        // it later); the `]` after it is garbage up to the newline.
        let frames = Self.frame("[{\"a\":1}]\n{\"b\":2}\n")
        #expect(
            frames == [
                .malformed(byteCount: 1), .object(Array(#"{"a":1}"#.utf8)), .malformed(byteCount: 1),
                .object(Array(#"{"b":2}"#.utf8)),
            ])
    }

    @Test func truncatedObjectEndsAtItsNewline() {
        // What `inject: malformed` sends: an event cut short inside a string, then a newline.
        let truncated = #"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"trunc"#
        let next = #"{"type":"DELETED","object":{"metadata":{"uid":"u"}}}"#
        let cutOutsideString = #"{"type":"ADDED","object":{"metadata":"#
        let text = truncated + "\n" + next + "\n" + cutOutsideString + "\n" + next + "\n"
        let frames = Self.framesUnderEveryChunking(Array(text.utf8))
        #expect(
            frames == [
                .malformed(byteCount: truncated.utf8.count), .object(Array(next.utf8)),
                .malformed(byteCount: cutOutsideString.utf8.count), .object(Array(next.utf8)),
            ])
    }

    @Test func withoutNewlineDelimitingAPrettyPrintedObjectIsOneFrame() {
        let pretty = "{\n  \"a\": {\n    \"b\": [1, 2]\n  }\n}"
        let frames = Self.frame([ArraySlice(pretty.utf8)], newlineDelimited: false)
        #expect(frames == [.object(Array(pretty.utf8))])
    }

    @Test func unterminatedStringAtEndOfStreamIsMalformed() {
        let text = #"{"a":1}"# + "\n" + #"{"b":"never closed \" {"#
        let frames = Self.framesUnderEveryChunking(Array(text.utf8))
        #expect(frames == [.object(Array(#"{"a":1}"#.utf8)), .malformed(byteCount: text.utf8.count - 8)])
    }

    @Test func aMegabyteOfOpeningBracesIsBounded() {
        let braces = [UInt8](repeating: UInt8(ascii: "{"), count: 1 << 20)
        // Under the cap: held, then reported as cut short at the end of the stream.
        #expect(Self.frame([braces[...]]) == [.malformed(byteCount: 1 << 20)])
        // Over the cap: dropped as it arrives, in chunks as the network would deliver it.
        var framer = JSONObjectFramer(maxObjectBytes: 64 << 10)
        var frames: [JSONObjectFramer.Frame] = []
        for start in stride(from: 0, to: braces.count, by: 4096) {
            frames += framer.feed(braces[start..<(start + 4096)])
        }
        #expect(frames.isEmpty)
        #expect(!framer.isAtBoundary)
        #expect(framer.finish() == [.oversized(byteCount: 1 << 20)])
        #expect(framer.isAtBoundary)
        // The framer is usable again after finish.
        #expect(framer.feed(Array(#"{"a":1}"#.utf8)) == [.object(Array(#"{"a":1}"#.utf8))])
    }

    @Test func deeplyNestedObjectIsFramedWithoutRecursion() {
        let depth = 200_000
        let text = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        let frames = Self.frame(text, maxObjectBytes: 8 << 20)
        #expect(frames == [.object(Array(text.utf8))])
        #expect(Self.frame(text, maxObjectBytes: 1000) == [.oversized(byteCount: text.utf8.count)])
    }

    @Test func emptyAndWhitespaceStreamsYieldNothing() {
        #expect(Self.frame("").isEmpty)
        #expect(Self.frame(" \n\r\n\t ").isEmpty)
    }
}
