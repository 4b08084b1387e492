import Foundation
import Gzip
import NodeprofCore
import Profiles
import ProfilesProtobuf
import SwiftProtobuf
import TestSupport
import Testing

@testable import ProfileConversion

/// Hostile or broken input gives a ``ConversionError`` that says what is wrong and where:
/// never a crash, a trap or a hang.
@Suite struct ConversionHostileInputTests {

    static func expectError(
        _ kind: ConversionError.Kind, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected a ConversionError containing '\(fragment)'", sourceLocation: sourceLocation)
        } catch {
            guard let error = error as? ConversionError else {
                Issue.record("expected a ConversionError, got \(error)", sourceLocation: sourceLocation); return
            }
            #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains(fragment), "\(error)", sourceLocation: sourceLocation)
            #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
        }
    }

    // MARK: Bytes that are not what they claim

    @Test func truncatedPprofAtEveryLength() throws {
        let raw: [UInt8] = try ConversionFixtures.rich().serializedBytes()
        // gzip ends with a length and a CRC: every truncation shows.
        let gzipped = try Gzip.compress(raw)
        for length in 0..<gzipped.count {
            #expect(throws: ConversionError.self, "prefix of \(length) of \(gzipped.count) bytes") {
                try PprofOTLPConversion.otlpRequest(fromPprof: Array(gzipped.prefix(length)))
            }
        }
        // Raw protobuf has no end marker: a prefix that ends between two fields after the
        // string table is a valid (smaller) profile. Every other prefix must fail cleanly.
        var converted: [Int] = []
        for length in 0..<raw.count {
            do {
                _ = try PprofOTLPConversion.otlpRequest(fromPprof: Array(raw.prefix(length)))
                converted.append(length)
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        #expect(converted.count <= 16, "prefixes that converted: \(converted)")
        #expect(converted.allSatisfy { $0 > raw.count * 3 / 4 }, "prefixes that converted: \(converted)")
    }

    @Test func truncatedOTLPAtManyLengths() throws {
        let request = try PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes())
        for input in [request, try Gzip.compress(request)] {
            for length in stride(from: 0, to: input.count, by: max(1, input.count / 2000)) {
                #expect(throws: ConversionError.self, "prefix of \(length) of \(input.count) bytes") {
                    try PprofOTLPConversion.pprof(fromOTLPRequest: Array(input.prefix(length)))
                }
            }
        }
    }

    @Test func garbageIsNotAProfile() throws {
        var generator = SplitMix64(seed: 42)
        for size in [1, 2, 7, 64, 1000, 100_000] {
            for _ in 0..<20 {
                let garbage = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
                #expect(throws: ConversionError.self) { try PprofOTLPConversion.otlpRequest(fromPprof: garbage) }
                #expect(throws: ConversionError.self) { try PprofOTLPConversion.pprof(fromOTLPRequest: garbage) }
                #expect(throws: ConversionError.self) { try PprofOTLPConversion.pprof(fromOTLPJSON: garbage) }
                let gzipped = try Gzip.compress(garbage)
                #expect(throws: ConversionError.self) { try PprofOTLPConversion.otlpRequest(fromPprof: gzipped) }
                #expect(throws: ConversionError.self) { try PprofOTLPConversion.pprof(fromOTLPRequest: gzipped) }
            }
        }
        Self.expectError(.unreadable, "not a pprof profile") {
            _ = try PprofOTLPConversion.otlpRequest(fromPprof: Array("hello, this is text".utf8))
        }
        Self.expectError(.unreadable, "not an OTLP profiles request") {
            _ = try PprofOTLPConversion.pprof(fromOTLPRequest: [0x78, 0x01])  // field 15, varint 1
        }
    }

    @Test func corruptGzip() throws {
        var gzipped = try Gzip.compress(ConversionFixtures.rich().serializedBytes())
        gzipped[gzipped.count / 2] ^= 0xff
        gzipped[gzipped.count / 2 + 1] ^= 0x5a
        Self.expectError(.unreadable, "gzip") { _ = try PprofOTLPConversion.otlpRequest(fromPprof: gzipped) }
        Self.expectError(.unreadable, "gzip") { _ = try PprofOTLPConversion.otlpRequest(fromPprof: [0x1f, 0x8b]) }
    }

    @Test func gzipBombsStopAtTheLimit() throws {
        let bomb = try Gzip.compress([UInt8](repeating: 0, count: 64 << 20))
        #expect(bomb.count < 1 << 20)
        let limits = ConversionLimits(maxInputBytes: 8 << 20)
        Self.expectError(.tooLarge, "more than \(8 << 20) bytes") {
            _ = try PprofOTLPConversion.pprof(fromOTLPRequest: bomb, limits: limits)
        }
        var options = PprofOTLPConversion.Options()
        options.limits = limits
        Self.expectError(.tooLarge, "more than") {
            _ = try PprofOTLPConversion.otlpRequest(fromPprof: bomb, options: options)
        }
        Self.expectError(.tooLarge, "more than") { _ = try OTLPJSON.otlpRequest(fromJSON: bomb, limits: limits) }
        Self.expectError(.tooLarge, "more than") {
            _ = try PprofOTLPConversion.pprof(
                fromOTLPRequest: [UInt8](repeating: 0, count: 100), limits: .init(maxInputBytes: 99))
        }
    }

    @Test func hugeDeclaredLengthsAndDeepNesting() throws {
        // Field 1 (sample_type), length 2^62: far beyond the input.
        let hugeLength: [UInt8] = [0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]
        Self.expectError(.unreadable, "protobuf decoding failed") {
            _ = try PprofOTLPConversion.otlpRequest(fromPprof: hugeLength)
        }
        Self.expectError(.unreadable, "protobuf decoding failed") {
            _ = try PprofOTLPConversion.pprof(fromOTLPRequest: hugeLength)
        }
        // resource_profiles -> scope_profiles -> profiles -> ... nested messages 1000 deep:
        // field 1 of each message is a message, as deep as the decoder allows.
        var nested: [UInt8] = []
        for _ in 0..<1000 { nested = [0x0a] + Self.varint(UInt64(nested.count)) + nested }
        #expect(throws: ConversionError.self) { try PprofOTLPConversion.pprof(fromOTLPRequest: nested) }
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
        return bytes
    }

    // MARK: pprof tables

    /// Applies `edit` to the rich fixture and converts it.
    static func convertEdited(
        limits: ConversionLimits = .init(), _ edit: (inout Perftools_Profiles_Profile) throws -> Void
    ) throws -> Result<[UInt8], ConversionError> {
        var profile = try ConversionFixtures.rich()
        try edit(&profile)
        var options = PprofOTLPConversion.Options()
        options.limits = limits
        let bytes: [UInt8] = try profile.serializedBytes()
        do throws(ConversionError) {
            return .success(try PprofOTLPConversion.otlpRequest(fromPprof: bytes, options: options))
        } catch {
            return .failure(error)
        }
    }

    typealias PprofEdit = @Sendable (inout Perftools_Profiles_Profile) -> Void

    static let pprofEdits: [(String, PprofEdit)] = [
        ("refers to location 999", { $0.sample[0].locationID[0] = 999 }),
        ("refers to location 0", { $0.sample[1].locationID.append(0) }),
        ("refers to mapping 99, but the profile has no mapping", { $0.location[0].mappingID = 99 }),
        ("refers to function 77", { $0.location[1].line[0].functionID = 77 }),
        ("label 0 key refers to string 100000", { $0.sample[0].label[0].key = 100_000 }),
        ("label 0 key refers to string -1", { $0.sample[0].label[0].key = -1 }),
        ("label thread str refers to string", { $0.sample[0].label[0].str = 1 << 40 }),
        ("num_unit refers to string", { $0.sample[0].label[1].numUnit = 123_456 }),
        ("has an empty key", { $0.sample[0].label[0].key = 0 }),
        ("mapping 10 filename", { $0.mapping[0].filename = 5000 }),
        ("mapping 20 build_id", { $0.mapping[1].buildID = 5000 }),
        ("function 1 name", { $0.function[0].name = 5000 }),
        ("function 2 system_name", { $0.function[1].systemName = -7 }),
        ("function 3 filename", { $0.function[2].filename = 5000 }),
        ("sample_type[1].unit", { $0.sampleType[1].unit = 5000 }),
        ("sample_type[0].type", { $0.sampleType[0].type = 5000 }),
        ("period_type.type", { $0.periodType.type = 5000 }),
        ("drop_frames", { $0.dropFrames = 5000 }),
        ("keep_frames", { $0.keepFrames = 5000 }),
        ("comment[2]", { $0.comment[2] = 5000 }),
        ("default_sample_type", { $0.defaultSampleType = 5000 }),
        ("has 2 values, but the profile has 3 sample types", { $0.sample[3].value.removeLast() }),
        ("mapping id 10 is used by two mappings", { $0.mapping[1].id = 10 }),
        ("location id 101 is used by two locations", { $0.location[2].id = 101 }),
        ("function id 1 is used by two functions", { $0.function[3].id = 1 }),
        ("mapping[0] has id 0", { $0.mapping[0].id = 0 }),
        ("location[0] has id 0", { $0.location[0].id = 0 }),
        ("function[0] has id 0", { $0.function[0].id = 0 }),
        ("string table entry 0 must be the empty string", { $0.stringTable[0] = "oops" }),
        (
            "has no sample types",
            {
                $0.sampleType = []
                for index in $0.sample.indices { $0.sample[index].value = [] }
            }
        ),
        ("line number -4", { $0.location[0].line[0].line = -4 }),
        ("start_line -1", { $0.function[0].startLine = -1 }),
        ("not below memory_limit", { $0.mapping[0].memoryLimit = 0x1000 }),
    ]

    @Test(arguments: pprofEdits.indices)
    func outOfRangePprofReferences(case index: Int) throws {
        let (fragment, edit) = Self.pprofEdits[index]
        let result = try Self.convertEdited { edit(&$0) }
        guard case .failure(let error) = result else {
            Issue.record("expected an error containing '\(fragment)'")
            return
        }
        #expect(error.kind == .invalid)
        #expect(error.description.contains(fragment), "\(error)")
    }

    @Test func docURLOutOfRange() throws {
        let result = try Self.convertEdited { profile in
            // A second doc_url field: the last one wins, as protobuf merges scalars.
            try PprofNewerFields.setVarint(PprofNewerFields.docURLField, 9999, in: &profile)
        }
        guard case .failure(let error) = result else { Issue.record("expected an error"); return }
        #expect(error.description.contains("doc_url refers to string 9999"), "\(error)")
    }

    @Test func hugeCountsAreRefused() throws {
        // 3 sample types and 7 samples: 21 OTLP samples; 5 strings.
        var fixture = PprofFixture()
        fixture.profile.sampleType = [
            fixture.valueType("a", "count"), fixture.valueType("b", "count"), fixture.valueType("c", "count"),
        ]
        for _ in 0..<7 { fixture.sample([], [1, 2, 3]) }
        let bytes = try fixture.serialized()
        func convert(maxEntries: Int) -> ConversionError? {
            var options = PprofOTLPConversion.Options()
            options.limits.maxEntries = maxEntries
            do {
                _ = try PprofOTLPConversion.otlpRequest(fromPprof: bytes, options: options)
                return nil
            } catch {
                return error
            }
        }
        #expect(convert(maxEntries: 21) == nil)
        let product = try #require(convert(maxEntries: 20))
        #expect(product.kind == .tooLarge)
        #expect(product.description.contains("3 x 7 samples"), "\(product)")
        let samples = try #require(convert(maxEntries: 6))
        #expect(samples.kind == .tooLarge)
        #expect(samples.description.contains("7 samples, more than the 6 accepted"), "\(samples)")
    }

    // MARK: OTLP tables

    typealias OTLPEdit = @Sendable (inout OTLPRequest) -> Void

    static let otlpEdits: [(String, OTLPEdit)] = [
        (
            "location_table[1] refers to mapping 99, but mapping_table has",
            { $0.dictionary.locationTable[1].mappingIndex = 99 }
        ),
        (
            "location_table[2] line 0 refers to function 500",
            {
                $0.dictionary.locationTable[2].lines[0].functionIndex = 500
            }
        ),
        ("stack_table[1] refers to location -3", { $0.dictionary.stackTable[1].locationIndices[0] = -3 }),
        (
            "samples[0] refers to stack 4096",
            { $0.resourceProfiles[0].scopeProfiles[0].profiles[0].samples[0].stackIndex = 4096 }
        ),
        (
            "samples[1] refers to link 3",
            { $0.resourceProfiles[0].scopeProfiles[0].profiles[1].samples[1].linkIndex = 3 }
        ),
        (
            "samples[2] refers to attribute 1000",
            {
                $0.resourceProfiles[0].scopeProfiles[0].profiles[2].samples[2].attributeIndices.append(1000)
            }
        ),
        (
            "profiles[0] refers to attribute -1",
            {
                $0.resourceProfiles[0].scopeProfiles[0].profiles[0].attributeIndices.append(-1)
            }
        ),
        ("mapping_table[1] refers to attribute 777", { $0.dictionary.mappingTable[1].attributeIndices = [777] }),
        ("location_table[3] refers to attribute 777", { $0.dictionary.locationTable[3].attributeIndices = [777] }),
        (
            "mapping_table[2] filename refers to string 100000",
            { $0.dictionary.mappingTable[2].filenameStrindex = 100_000 }
        ),
        ("function_table[1] name refers to string", { $0.dictionary.functionTable[1].nameStrindex = 100_000 }),
        ("function_table[2] system name refers to string", { $0.dictionary.functionTable[2].systemNameStrindex = -2 }),
        ("function_table[3] filename refers to string", { $0.dictionary.functionTable[3].filenameStrindex = 100_000 }),
        ("attribute_table[1] key refers to string", { $0.dictionary.attributeTable[1].keyStrindex = 100_000 }),
        ("attribute_table[2] unit refers to string", { $0.dictionary.attributeTable[2].unitStrindex = 100_000 }),
        (
            "attribute_table[3] value refers to string 100000",
            {
                $0.dictionary.attributeTable[3].value.stringValueStrindex = 100_000
            }
        ),
        (
            "profiles[1] sample type refers to string",
            {
                $0.resourceProfiles[0].scopeProfiles[0].profiles[1].sampleType.typeStrindex = 100_000
            }
        ),
        (
            "profiles[0] period type unit refers to string",
            {
                $0.resourceProfiles[0].scopeProfiles[0].profiles[0].periodType.unitStrindex = 100_000
            }
        ),
        (
            "resource attribute key refers to string 100000",
            {
                var pair = OTLPKeyValue()
                pair.keyStrindex = 100_000
                $0.resourceProfiles[0].resource.attributes.append(pair)
            }
        ),
        (
            "scope attribute",
            {
                var pair = OTLPKeyValue()
                pair.key = "x"
                pair.value.stringValueStrindex = 100_000
                $0.resourceProfiles[0].scopeProfiles[0].scope.attributes.append(pair)
            }
        ),
        (
            "link_table[1] has a 5-byte trace id",
            {
                var link = OTLPLink()
                link.traceID = Data([1, 2, 3, 4, 5])
                link.spanID = Data(count: 8)
                $0.dictionary.linkTable.append(link)
            }
        ),
        ("holds no profiles", { $0.resourceProfiles = [] }),
        (
            "nests arrays and lists more than 16 levels",
            {
                var value = OTLPAnyValue()
                value.stringValue = "leaf"
                for _ in 0..<20 {  // the protobuf decoder's depth limit (64 messages) allows this
                    var array = OTLPArrayValue()
                    array.values = [value]
                    value = OTLPAnyValue()
                    value.arrayValue = array
                }
                $0.dictionary.attributeTable[1].value = value
            }
        ),
    ]

    @Test(arguments: otlpEdits.indices)
    func outOfRangeOTLPReferences(case index: Int) throws {
        let (fragment, edit) = Self.otlpEdits[index]
        var request = try decodeRequest(
            PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes()))
        edit(&request)
        let bytes: [UInt8] = try request.serializedBytes()
        let error = try #require(throws: ConversionError.self) { try PprofOTLPConversion.pprof(fromOTLPRequest: bytes) }
        #expect(error.kind == .invalid)
        #expect(error.description.contains(fragment), "\(error)")
        // JSON input is checked the same way.
        let json = try OTLPJSON.json(fromOTLPRequest: bytes)
        #expect(throws: ConversionError.self) { try PprofOTLPConversion.pprof(fromOTLPJSON: json) }
    }

    @Test func hugeOTLPTablesAreRefused() throws {
        let request = try PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes())
        let error = try #require(throws: ConversionError.self) {
            try PprofOTLPConversion.pprof(fromOTLPRequest: request, limits: .init(maxEntries: 10))
        }
        #expect(error.kind == .tooLarge)
        #expect(error.description.contains("entries"), "\(error)")
    }

    /// A request whose samples share one long stack (or one large array attribute) would
    /// expand in pprof, which repeats them in every sample.
    static func amplifyingRequest(samples: Int, stackDepth: Int, arrayLength: Int, types: Int = 1) throws -> [UInt8] {
        var builder = OTLPDictionaryBuilder()
        var locations: [Int32] = []
        for depth in 0..<stackDepth {
            var location = OTLPLocation()
            location.address = UInt64(0x1000 + depth)
            locations.append(builder.location(location))
        }
        let stack = builder.stack(locations)
        let array = builder.attribute("big", OTLPAnyValue(.array((0..<arrayLength).map { .int(Int64($0)) })))
        var request = OTLPRequest()
        var scope = OTLPScopeProfiles()
        for type in 0..<types {
            var profile = OTLPProfile()
            profile.sampleType.typeStrindex = builder.string("type\(type)")
            profile.samples = (0..<samples).map { index in
                var sample = OTLPSample()
                sample.stackIndex = stack
                sample.attributeIndices = [array, builder.attribute("n", OTLPAnyValue(.int(Int64(index))))]
                sample.values = [1]
                return sample
            }
            scope.profiles.append(profile)
        }
        var resource = OTLPResourceProfiles()
        resource.scopeProfiles = [scope]
        request.resourceProfiles = [resource]
        request.dictionary = builder.dictionary
        return try request.serializedBytes()
    }

    @Test func sharedStacksAndAttributesCannotBlowUpThePprof() throws {
        let limits = ConversionLimits(maxEntries: 100_000)
        let deepStacks = try Self.amplifyingRequest(samples: 1000, stackDepth: 1000, arrayLength: 1)
        Self.expectError(.tooLarge, "location and label entries") {
            _ = try PprofOTLPConversion.pprof(fromOTLPRequest: deepStacks, limits: limits)
        }
        let bigArrays = try Self.amplifyingRequest(samples: 1000, stackDepth: 1, arrayLength: 1000)
        Self.expectError(.tooLarge, "location and label entries") {
            _ = try PprofOTLPConversion.pprof(fromOTLPRequest: bigArrays, limits: limits)
        }
        // Within the limits the same shape converts.
        let small = try Self.amplifyingRequest(samples: 100, stackDepth: 100, arrayLength: 100)
        let pprof = try decodePprof(PprofOTLPConversion.pprof(fromOTLPRequest: small, limits: limits))
        #expect(pprof.sample.count == 100)
        #expect(pprof.sample.allSatisfy { $0.locationID.count == 100 && $0.label.count == 101 })
    }

    @Test func manySampleTypesAreRefused() throws {
        let request = try Self.amplifyingRequest(samples: 50, stackDepth: 1, arrayLength: 1, types: 40)
        Self.expectError(.tooLarge, "more than 30 distinct sample types") {
            _ = try PprofOTLPConversion.pprof(fromOTLPRequest: request, limits: .init(maxSampleTypes: 30))
        }
        // 50 samples x 40 sample types = 2000 values.
        Self.expectError(.tooLarge, "50 samples x 40 sample types") {
            _ = try PprofOTLPConversion.pprof(fromOTLPRequest: request, limits: .init(maxEntries: 1999))
        }

        var fixture = PprofFixture()
        fixture.profile.sampleType = (0..<12).map { fixture.valueType("type\($0)", "count") }
        var options = PprofOTLPConversion.Options()
        options.limits.maxSampleTypes = 11
        let bytes = try fixture.serialized()
        Self.expectError(.tooLarge, "12 sample types (one OTLP profile each)") {
            _ = try PprofOTLPConversion.otlpRequest(fromPprof: bytes, options: options)
        }
    }

    @Test func indexZeroOfAnEmptyTableIsUnset() throws {
        // A request whose tables are all empty (against the spec) still converts: every 0
        // means "unset".
        var request = OTLPRequest()
        var profile = OTLPProfile()
        var sample = OTLPSample()
        sample.values = [4]
        profile.samples = [sample]
        var scope = OTLPScopeProfiles()
        scope.profiles = [profile]
        var resource = OTLPResourceProfiles()
        resource.scopeProfiles = [scope]
        request.resourceProfiles = [resource]
        let pprof = try decodePprof(PprofOTLPConversion.pprof(fromOTLPRequest: request.serializedBytes()))
        #expect(pprof.sample.map(\.value) == [[4]])
        #expect(pprof.sample.first?.locationID == [])
    }
}
