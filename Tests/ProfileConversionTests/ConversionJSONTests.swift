import Foundation
import Gzip
import NodeprofCore
import ProfileConversion
import ProfilesProtobuf
import SwiftProtobuf
import Testing

/// OTLP/JSON: binary -> JSON -> binary gives the same bytes; ids are hex; decoding is as
/// lenient as the OTLP spec asks and strict about broken JSON.
@Suite struct ConversionJSONTests {
    /// The converted rich pprof and our agent's request, with a link so trace and span ids
    /// appear.
    static func requests() throws -> [[UInt8]] {
        var agent = try decodeRequest(ConversionFixtures.agentRequest())
        var link = OTLPLink()
        link.traceID = Data((0..<16).map { UInt8(0xa0 + $0) })
        link.spanID = Data((0..<8).map { UInt8(0x10 + $0) })
        agent.dictionary.linkTable.append(link)
        agent.resourceProfiles[0].scopeProfiles[0].profiles[0].samples[0].linkIndex = 1
        var options = PprofOTLPConversion.Options()
        options.keepOriginalPayload = true
        return [
            try PprofOTLPConversion.otlpRequest(
                fromPprof: ConversionFixtures.rich().serializedBytes(), options: options),
            try agent.serializedBytes(),
        ]
    }

    @Test func binaryToJSONToBinaryIsIdentical() throws {
        for request in try Self.requests() {
            let json = try OTLPJSON.json(fromOTLPRequest: request)
            #expect(try OTLPJSON.otlpRequest(fromJSON: json) == request)
            // gzip-compressed input reads the same.
            #expect(try OTLPJSON.json(fromOTLPRequest: Gzip.compress(request)) == json)
            #expect(try OTLPJSON.otlpRequest(fromJSON: Gzip.compress(json)) == request)
        }
    }

    @Test func idsAreLowercaseHex() throws {
        let agent = try Self.requests()[1]
        let text = String(decoding: try OTLPJSON.json(fromOTLPRequest: agent), as: UTF8.self)
        #expect(text.contains(#""traceId": "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf""#))
        #expect(text.contains(#""spanId": "1011121314151617""#))
        #expect(text.contains(#""traceId": "00000000000000000000000000000000""#), "the zero link")
        let profileIDs = try decodeRequest(agent).resourceProfiles.flatMap(\.scopeProfiles).flatMap(\.profiles)
            .map { hexString($0.profileID) }
        #expect(!profileIDs.isEmpty)
        for id in profileIDs { #expect(text.contains(#""profileId": "\#(id)""#)) }
    }

    @Test func jsonIsPrettyAndUsesOTLPNames() throws {
        let text = String(decoding: try OTLPJSON.json(fromOTLPRequest: Self.requests()[0]), as: UTF8.self)
        #expect(text.hasPrefix("{\n  \"resourceProfiles\": [\n"))
        #expect(text.hasSuffix("}\n"))
        for name in ["\"scopeProfiles\"", "\"sampleType\"", "\"stackIndex\"", "\"locationIndices\"", "\"stringTable\""]
        {
            #expect(text.contains(name))
        }
        #expect(!text.contains("resource_profiles"))
        #expect(text.contains(#""originalPayloadFormat": "pprof""#))
    }

    @Test func decodingAcceptsNumbersUppercaseHexAndUnknownFields() throws {
        let json = #"""
            {
              "resourceProfiles": [{
                "scopeProfiles": [{
                  "profiles": [{
                    "sampleType": {"typeStrindex": 1, "unitStrindex": 2},
                    "timeUnixNano": 1700000000000000000,
                    "durationNano": "5000000000",
                    "profileId": "0102030405060708090A0B0C0D0E0F10",
                    "samples": [{"stackIndex": 0, "linkIndex": 1, "values": [3]}],
                    "someFutureField": {"nested": [1, 2, 3]}
                  }]
                }]
              }],
              "dictionary": {
                "stringTable": ["", "samples", "count"],
                "linkTable": [{}, {"traceId": "AABBCCDDEEFF00112233445566778899", "spanId": "0011223344556677"}]
              }
            }
            """#
        let request = try decodeRequest(OTLPJSON.otlpRequest(fromJSON: Array(json.utf8)))
        let profile = try #require(request.resourceProfiles.first?.scopeProfiles.first?.profiles.first)
        #expect(profile.timeUnixNano == 1_700_000_000_000_000_000)
        #expect(profile.durationNano == 5_000_000_000)
        #expect(hexString(profile.profileID) == "0102030405060708090a0b0c0d0e0f10")
        #expect(hexString(request.dictionary.linkTable[1].traceID) == "aabbccddeeff00112233445566778899")
        #expect(profile.samples.first?.values == [3])

        // And it converts: one sample of weight 3 with trace and span labels.
        let pprof = try decodePprof(PprofOTLPConversion.pprof(fromOTLPJSON: Array(json.utf8)))
        #expect(pprof.sample.map(\.value) == [[3]])
        #expect(pprof.stringTable.contains("aabbccddeeff00112233445566778899"))
    }

    @Test(arguments: [
        (#"{"dictionary": {"linkTable": [{}, {"traceId": "not hex at all!"}]}}"#, "not a hex id"),
        (#"{"resourceProfiles": [], "dictionary": {"stringTable": [""]},}"#, "expected a quoted member name"),
        (#"{"resourceProfiles": [{"scopeProfiles": 7}]}"#, "does not match"),
        (#"[1, 2, 3]"#, "not a JSON object"),
        (#"{"a": 1}"#, "neither resourceProfiles nor a dictionary"),
        (#"{"dictionary": {"stringTable": ["\ud800"]}}"#, "surrogate"),
        ("{\"dictionary\": {\"stringTable\": [\"a\u{01}\"]}}", "control character"),
        (#"{"dictionary": {"stringTable": [""]}} trailing"#, "after the JSON document"),
        (#"{"dictionary": {"mappingTable": [{"memoryStart": 01}]}}"#, "expected ',' or '}'"),
        ("", "empty"),
    ])
    func brokenJSONGivesAClearError(json: String, expected: String) throws {
        let error = try #require(throws: ConversionError.self) { try OTLPJSON.otlpRequest(fromJSON: Array(json.utf8)) }
        #expect(error.description.contains(expected), "\(error)")
        #expect(!error.description.contains("\n"))
    }

    @Test func truncatedJSONAtEveryLengthFails() throws {
        let json = try OTLPJSON.json(fromOTLPRequest: Self.requests()[0])
        // Every proper prefix that ends inside the document (a prefix may only lack
        // whitespace at the end, which is complete JSON).
        let end = json.lastIndex(of: UInt8(ascii: "}")) ?? json.count
        for length in stride(from: 0, to: end, by: max(1, end / 3000)) {
            #expect(throws: ConversionError.self, "prefix of \(length) bytes") {
                try OTLPJSON.otlpRequest(fromJSON: Array(json.prefix(length)))
            }
        }
    }

    @Test func deepNestingIsRefused() throws {
        let json = Array(("{\"a\": " + String(repeating: "[", count: 100_000)).utf8)
        let error = try #require(throws: ConversionError.self) { try OTLPJSON.otlpRequest(fromJSON: json) }
        #expect(error.description.contains("nest deeper"), "\(error)")
    }
}
