import Foundation
import Gzip
import NodeprofCore
import ProfilesProtobuf
import SwiftProtobuf
import Testing

@testable import ProfileConversion

/// pprof -> OTLP -> pprof keeps every pprof field, and the OTLP in between is what
/// docs/conversion.md describes.
@Suite struct ConversionRoundTripTests {
    @Test(arguments: [false, true])
    func richProfileSurvivesTheRoundTrip(gzipInput: Bool) throws {
        let original = try ConversionFixtures.rich()
        let input = gzipInput ? try Gzip.compress(original.serializedBytes()) : try original.serializedBytes()
        let otlp = try PprofOTLPConversion.otlpRequest(fromPprof: input)
        let back = try PprofOTLPConversion.pprof(fromOTLPRequest: otlp)

        #expect(PprofOTLPConversion.isGzip(back), "pprof output is gzip-compressed")
        CanonicalPprof(original).expectEqual(try CanonicalPprof(pprofBytes: back))
    }

    @Test func roundTripThroughJSONToo() throws {
        let original = try ConversionFixtures.rich()
        let json = try PprofOTLPConversion.otlpJSON(fromPprof: original.serializedBytes())
        let back = try PprofOTLPConversion.pprof(fromOTLPJSON: json)
        CanonicalPprof(original).expectEqual(try CanonicalPprof(pprofBytes: back))
    }

    @Test func aSecondRoundTripChangesNothing() throws {
        let once = try PprofOTLPConversion.pprof(
            fromOTLPRequest: PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes()))
        let twice = try PprofOTLPConversion.pprof(
            fromOTLPRequest: PprofOTLPConversion.otlpRequest(fromPprof: once))
        // Same tables, same ids, same bytes: the first pass already dropped what no sample used.
        #expect(try decodePprof(once) == decodePprof(twice))
    }

    @Test func oneProfilePerSampleTypeEachWithEverySample() throws {
        let original = try ConversionFixtures.rich()
        let request = try decodeRequest(
            PprofOTLPConversion.otlpRequest(
                fromPprof: original.serializedBytes(), options: ConversionFixtures.deterministic))
        let strings = request.dictionary.stringTable

        #expect(request.resourceProfiles.count == 1)
        let scopes = try #require(request.resourceProfiles.first).scopeProfiles
        #expect(scopes.count == 1)
        let scope = try #require(scopes.first)
        #expect(scope.profiles.count == 3)
        let types = scope.profiles.map {
            strings[Int($0.sampleType.typeStrindex)] + "/" + strings[Int($0.sampleType.unitStrindex)]
        }
        #expect(types == ["samples/count", "cpu/nanoseconds", "alloc_space/bytes"])
        for (typeIndex, profile) in scope.profiles.enumerated() {
            #expect(profile.samples.count == original.sample.count)
            #expect(profile.samples.map(\.values) == original.sample.map { [$0.value[typeIndex]] })
            let withoutTimestamps = profile.samples.allSatisfy { $0.timestampsUnixNano.isEmpty }
            #expect(withoutTimestamps)
            #expect(profile.samples.map(\.stackIndex) == scope.profiles[0].samples.map(\.stackIndex))
            #expect(profile.period == 10_000_000)
            #expect(strings[Int(profile.periodType.typeStrindex)] == "cpu")
            #expect(profile.timeUnixNano == 1_700_000_000_123_456_789)
            #expect(profile.durationNano == 2_500_000_000)
            #expect(profile.profileID.count == 16)
            #expect(profile.originalPayload.isEmpty && profile.originalPayloadFormat.isEmpty)
        }

        let scopeAttributes = Dictionary(uniqueKeysWithValues: scope.scope.attributes.map { ($0.key, $0.value) })
        #expect(scopeAttributes["pprof.scope.sample_type_order"]?.arrayValue.values.map(\.intValue) == [0, 1, 2])
        #expect(scopeAttributes["pprof.scope.default_sample_type"]?.stringValue == "cpu")
    }

    @Test func pprofOnlyFieldsBecomePprofAttributes() throws {
        let request = try decodeRequest(
            PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes()))
        let view = RequestView(request)
        let profile = try #require(request.resourceProfiles.first?.scopeProfiles.first?.profiles.first)

        let profileAttributes = view.attributes(profile.attributeIndices)
        #expect(
            profileAttributes["pprof.profile.comment"]?.value.arrayValue.values.map(\.stringValue)
                == ["recorded by a test", "second comment", "recorded by a test"])
        #expect(profileAttributes["pprof.profile.doc_url"]?.value.stringValue == "https://example.com/profile-doc")
        #expect(profileAttributes["pprof.profile.drop_frames"]?.value.stringValue == "runtime\\..*")
        #expect(profileAttributes["pprof.profile.keep_frames"]?.value.stringValue == "runtime\\.main")

        let mappings = Dictionary(
            uniqueKeysWithValues: request.dictionary.mappingTable.dropFirst().map {
                (view.string($0.filenameStrindex), view.attributes($0.attributeIndices))
            })
        #expect(
            Set(mappings.keys) == [
                "/opt/app/bin/app", "/opt/app/lib/libgo.so", ConversionFixtures.hashedFile, "[vdso]",
            ])
        let app = try #require(mappings["/opt/app/bin/app"])
        #expect(app["process.executable.build_id.gnu"]?.value.stringValue == "0a1b2c3d4e5f60718293")
        for flag in ["has_functions", "has_filenames", "has_line_numbers", "has_inline_frames"] {
            #expect(app["pprof.mapping.\(flag)"]?.value.boolValue == true)
        }
        let library = try #require(mappings["/opt/app/lib/libgo.so"])
        #expect(library["process.executable.build_id.go"]?.value.stringValue == "Go_build_ID/abc-DEF/ghi")
        #expect(Set(library.keys) == ["process.executable.build_id.go", "pprof.mapping.has_functions"])
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: ConversionFixtures.hashedFile)))
        let expectedHash = htlHash(head: bytes.prefix(4096), tail: bytes.suffix(4096), length: UInt64(bytes.count))
        #expect(
            mappings[ConversionFixtures.hashedFile]?["process.executable.build_id.htlhash"]?.value.stringValue
                == expectedHash)
        #expect(mappings["[vdso]"]?.isEmpty == true, "no build id and no file to hash: nothing to say")

        let locations = request.dictionary.locationTable.dropFirst().map { view.attributes($0.attributeIndices) }
        #expect(locations.count { $0["pprof.location.is_folded"]?.value.boolValue == true } == 1)
        #expect(locations.count { $0["pprof.location.empty"]?.value.boolValue == true } == 1)
    }

    @Test func labelsBecomeSampleAttributes() throws {
        let request = try decodeRequest(
            PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes()))
        let view = RequestView(request)
        let samples = try #require(request.resourceProfiles.first?.scopeProfiles.first?.profiles.first).samples

        let first = view.attributes(samples[0].attributeIndices)
        #expect(first["thread"]?.value.stringValue == "worker-1")
        #expect(first["pid"]?.value.intValue == 42)
        #expect(first["bytes"]?.value.intValue == 1024)
        #expect(first["bytes"]?.unit == "bytes")

        let repeated = view.attributes(samples[1].attributeIndices)
        #expect(repeated["tag"]?.value.arrayValue.values.map(\.stringValue) == ["a", "b"])
        #expect(repeated["size"]?.value.arrayValue.values.map(\.intValue) == [1, 2])
        #expect(repeated["size"]?.unit == "bytes")
        #expect(repeated.count == 2, "keys are unique in an attribute list")

        let mixed = view.attributes(samples[2].attributeIndices)
        #expect(mixed["mem"]?.value.arrayValue.values.map(\.intValue) == [1, 2])
        let units = try #require(mixed["pprof.sample.label_units"]?.value.kvlistValue.values)
        #expect(units.map(\.key) == ["mem"])
        #expect(units.first?.value.arrayValue.values.map(\.stringValue) == ["bytes", "kilobytes"])
        let mix = try #require(mixed["mix"]?.value.arrayValue.values)
        #expect(mix.first?.stringValue == "x")
        #expect(mix.last?.intValue == 7)
        #expect(mixed["zero"]?.value.intValue == 0)
        #expect(mixed["zero"]?.unit == "seconds")
    }

    @Test func stacksAreLeafFirstAndLinesCalleeFirst() throws {
        let request = try decodeRequest(
            PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes()))
        let view = RequestView(request)
        let sample = try #require(request.resourceProfiles.first?.scopeProfiles.first?.profiles.first?.samples[1])
        let stack = request.dictionary.stackTable[Int(sample.stackIndex)].locationIndices
        let frames = stack.map { index in
            request.dictionary.locationTable[Int(index)].lines.map { line in
                view.string(request.dictionary.functionTable[Int(line.functionIndex)].nameStrindex)
            }
        }
        #expect(frames == [["folded"], ["inlined_helper", "work"], ["main"]])
        let inlined = request.dictionary.locationTable[Int(stack[1])].lines
        #expect(inlined.map(\.line) == [12, 30])
        #expect(inlined.map(\.column) == [5, 9])
    }

    @Test func originalPayloadOnlyWhenAsked() throws {
        let original = try ConversionFixtures.rich()
        var options = PprofOTLPConversion.Options()
        options.keepOriginalPayload = true
        let request = try decodeRequest(
            PprofOTLPConversion.otlpRequest(fromPprof: Gzip.compress(original.serializedBytes()), options: options))
        let profiles = try #require(request.resourceProfiles.first?.scopeProfiles.first?.profiles)
        #expect(profiles[0].originalPayloadFormat == "pprof")
        #expect(try Perftools_Profiles_Profile(serializedBytes: [UInt8](profiles[0].originalPayload)) == original)
        let othersWithout = profiles.dropFirst().allSatisfy {
            $0.originalPayload.isEmpty && $0.originalPayloadFormat.isEmpty
        }
        #expect(othersWithout)
    }

    @Test func hashingLocalFilesCanBeTurnedOff() throws {
        var options = PprofOTLPConversion.Options()
        options.hashLocalFiles = false
        let request = try decodeRequest(
            PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes(), options: options))
        #expect(!request.dictionary.stringTable.contains("process.executable.build_id.htlhash"))
    }

    @Test func profileWithoutSamplesOrPeriodType() throws {
        var fixture = PprofFixture()
        fixture.profile.sampleType = [fixture.valueType("inuse_space", "bytes")]
        let back = try PprofOTLPConversion.pprof(
            fromOTLPRequest: PprofOTLPConversion.otlpRequest(fromPprof: fixture.serialized()))
        let profile = try decodePprof(back)
        #expect(!profile.hasPeriodType)
        CanonicalPprof(fixture.profile).expectEqual(CanonicalPprof(profile))
    }

    @Test func reencodingKeepsTheFormat() throws {
        let pprof: [UInt8] = try ConversionFixtures.rich().serializedBytes()
        let output = try PprofOTLPConversion.convert(pprof, from: .pprof, to: .pprof)
        #expect(try decodePprof(output.bytes) == decodePprof(pprof))
        #expect(output.summary == "pprof: 3 sample types, 7 samples -> pprof: 3 sample types, 7 samples")
    }
}

/// Lookups into a decoded request for assertions.
struct RequestView {
    let request: OTLPRequest
    init(_ request: OTLPRequest) { self.request = request }

    func string(_ index: Int32) -> String { request.dictionary.stringTable[Int(index)] }

    /// key -> (value, unit) of an attribute_indices list.
    func attributes(_ indices: [Int32]) -> [String: (value: OTLPAnyValue, unit: String)] {
        var result: [String: (value: OTLPAnyValue, unit: String)] = [:]
        for index in indices {
            let attribute = request.dictionary.attributeTable[Int(index)]
            result[string(attribute.keyStrindex)] = (attribute.value, string(attribute.unitStrindex))
        }
        return result
    }
}
