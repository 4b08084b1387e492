import Foundation
import Gzip
import NodeprofCore
import Profiles
import ProfilesProtobuf
import SwiftProtobuf
import TestSupport
import Testing

@testable import ProfileConversion

/// A pprof profile with ids resolved to content and labels sorted, so two profiles compare
/// equal when they hold the same pprof content however their tables are numbered.
///
/// Tables are reduced to what samples reach (entries no sample reaches carry no meaning, and
/// OTLP has no place for them). A function or mapping with every field empty is the same as
/// none (OTLP's all-default entry 0 means "unset").
struct CanonicalPprof: Equatable, CustomStringConvertible {
    struct ValueType: Equatable { var type, unit: String }
    struct Mapping: Equatable {
        var start, limit, offset: UInt64
        var filename, buildID: String
        var hasFunctions, hasFilenames, hasLineNumbers, hasInlineFrames: Bool
    }
    struct Function: Equatable {
        var name, systemName, filename: String
        var startLine: Int64
    }
    struct Line: Equatable {
        var function: Function?
        var line, column: Int64
    }
    struct Location: Equatable {
        var address: UInt64
        var mapping: Mapping?
        var lines: [Line]
        var isFolded: Bool
    }
    struct Label: Equatable, Comparable {
        var key: String
        var string: String?
        var number: Int64
        var unit: String

        static func < (a: Label, b: Label) -> Bool {
            (a.key, a.string ?? "", a.string == nil ? 0 : 1, a.number, a.unit)
                < (b.key, b.string ?? "", b.string == nil ? 0 : 1, b.number, b.unit)
        }
    }
    struct Sample: Equatable {
        var locations: [Location]
        var values: [Int64]
        var labels: [Label]
    }

    var sampleTypes: [ValueType]
    var defaultSampleType: String
    var samples: [Sample]
    /// Mappings that samples reach, in table order (pprof puts the main binary first).
    var mappings: [Mapping]
    var timeNanos, durationNanos, period: Int64
    var periodType: ValueType?
    var comments: [String]
    var dropFrames, keepFrames, docURL: String

    init(_ profile: Perftools_Profiles_Profile) {
        let strings = profile.stringTable
        func text(_ index: Int64) -> String { index >= 0 && index < strings.count ? strings[Int(index)] : "<bad>" }
        func valueType(_ type: Perftools_Profiles_ValueType) -> ValueType {
            ValueType(type: text(type.type), unit: text(type.unit))
        }
        var mappings: [UInt64: Mapping] = [:]
        for mapping in profile.mapping {
            let value = Mapping(
                start: mapping.memoryStart, limit: mapping.memoryLimit, offset: mapping.fileOffset,
                filename: text(mapping.filename), buildID: text(mapping.buildID),
                hasFunctions: mapping.hasFunctions_p, hasFilenames: mapping.hasFilenames_p,
                hasLineNumbers: mapping.hasLineNumbers_p, hasInlineFrames: mapping.hasInlineFrames_p)
            let empty = Mapping(
                start: 0, limit: 0, offset: 0, filename: "", buildID: "", hasFunctions: false, hasFilenames: false,
                hasLineNumbers: false, hasInlineFrames: false)
            if value != empty { mappings[mapping.id] = value }
        }
        var functions: [UInt64: Function] = [:]
        for function in profile.function {
            let value = Function(
                name: text(function.name), systemName: text(function.systemName), filename: text(function.filename),
                startLine: function.startLine)
            if value != Function(name: "", systemName: "", filename: "", startLine: 0) {
                functions[function.id] = value
            }
        }
        var locations: [UInt64: Location] = [:]
        var mappingOfLocation: [UInt64: UInt64] = [:]
        for location in profile.location {
            locations[location.id] = Location(
                address: location.address, mapping: mappings[location.mappingID],
                lines: location.line.map { line in
                    Line(
                        function: functions[line.functionID], line: line.line,
                        column: Int64(
                            bitPattern: PprofNewerFields.varint(
                                PprofNewerFields.lineColumnField, in: line.unknownFields)))
                }, isFolded: location.isFolded)
            mappingOfLocation[location.id] = location.mappingID
        }
        var reachedMappings = Set<UInt64>()
        samples = profile.sample.map { sample in
            for id in sample.locationID { reachedMappings.insert(mappingOfLocation[id] ?? 0) }
            return Sample(
                locations: sample.locationID.map { locations[$0] ?? Location(address: 0, lines: [], isFolded: false) },
                values: sample.value,
                labels: sample.label.map { label in
                    label.str != 0
                        ? Label(key: text(label.key), string: text(label.str), number: 0, unit: "")
                        : Label(key: text(label.key), string: nil, number: label.num, unit: text(label.numUnit))
                }.sorted())
        }
        self.mappings = profile.mapping.filter { reachedMappings.contains($0.id) }.compactMap { mappings[$0.id] }
        sampleTypes = profile.sampleType.map(valueType)
        defaultSampleType = text(profile.defaultSampleType)
        timeNanos = profile.timeNanos
        durationNanos = profile.durationNanos
        period = profile.period
        periodType = profile.hasPeriodType ? valueType(profile.periodType) : nil
        comments = profile.comment.map(text)
        dropFrames = text(profile.dropFrames)
        keepFrames = text(profile.keepFrames)
        docURL = text(
            Int64(bitPattern: PprofNewerFields.varint(PprofNewerFields.docURLField, in: profile.unknownFields)))
    }

    init(pprofBytes bytes: [UInt8]) throws {
        let raw = PprofOTLPConversion.isGzip(bytes) ? try Gzip.decompress(bytes, maxOutputBytes: 1 << 30) : bytes
        self.init(try Perftools_Profiles_Profile(serializedBytes: raw))
    }

    var description: String {
        "\(sampleTypes.count) sample types, \(samples.count) samples, \(mappings.count) mappings"
    }

    /// Expects `other` to equal `self` field by field, naming the first difference.
    func expectEqual(_ other: CanonicalPprof, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(other.sampleTypes == sampleTypes, sourceLocation: sourceLocation)
        #expect(other.defaultSampleType == defaultSampleType, sourceLocation: sourceLocation)
        #expect(other.mappings == mappings, sourceLocation: sourceLocation)
        #expect(other.timeNanos == timeNanos, sourceLocation: sourceLocation)
        #expect(other.durationNanos == durationNanos, sourceLocation: sourceLocation)
        #expect(other.period == period, sourceLocation: sourceLocation)
        #expect(other.periodType == periodType, sourceLocation: sourceLocation)
        #expect(other.comments == comments, sourceLocation: sourceLocation)
        #expect(other.dropFrames == dropFrames, sourceLocation: sourceLocation)
        #expect(other.keepFrames == keepFrames, sourceLocation: sourceLocation)
        #expect(other.docURL == docURL, sourceLocation: sourceLocation)
        #expect(other.samples.count == samples.count, sourceLocation: sourceLocation)
        for (index, (mine, theirs)) in zip(samples, other.samples).enumerated() {
            #expect(theirs.values == mine.values, "sample \(index) values", sourceLocation: sourceLocation)
            #expect(theirs.labels == mine.labels, "sample \(index) labels", sourceLocation: sourceLocation)
            #expect(theirs.locations == mine.locations, "sample \(index) stack", sourceLocation: sourceLocation)
        }
        #expect(other == self, sourceLocation: sourceLocation)
    }
}

extension CanonicalPprof.Location {
    init(address: UInt64, lines: [CanonicalPprof.Line], isFolded: Bool) {
        self.init(address: address, mapping: nil, lines: lines, isFolded: isFolded)
    }
}

/// Builds pprof messages with an interning string table.
struct PprofFixture {
    var profile = Perftools_Profiles_Profile()
    private var indices: [String: Int64] = ["": 0]

    init() {
        profile.stringTable = [""]
    }

    mutating func string(_ text: String) -> Int64 {
        if let index = indices[text] { return index }
        let index = Int64(profile.stringTable.count)
        profile.stringTable.append(text)
        indices[text] = index
        return index
    }

    mutating func valueType(_ type: String, _ unit: String) -> Perftools_Profiles_ValueType {
        var value = Perftools_Profiles_ValueType()
        value.type = string(type)
        value.unit = string(unit)
        return value
    }

    @discardableResult
    mutating func mapping(
        id: UInt64, start: UInt64, limit: UInt64, offset: UInt64 = 0, file: String, buildID: String = "",
        flags: (functions: Bool, filenames: Bool, lineNumbers: Bool, inlineFrames: Bool) = (false, false, false, false)
    ) -> UInt64 {
        var mapping = Perftools_Profiles_Mapping()
        mapping.id = id
        mapping.memoryStart = start
        mapping.memoryLimit = limit
        mapping.fileOffset = offset
        mapping.filename = string(file)
        mapping.buildID = string(buildID)
        mapping.hasFunctions_p = flags.functions
        mapping.hasFilenames_p = flags.filenames
        mapping.hasLineNumbers_p = flags.lineNumbers
        mapping.hasInlineFrames_p = flags.inlineFrames
        profile.mapping.append(mapping)
        return id
    }

    @discardableResult
    mutating func function(id: UInt64, name: String, systemName: String? = nil, file: String = "", startLine: Int64 = 0)
        -> UInt64
    {
        var function = Perftools_Profiles_Function()
        function.id = id
        function.name = string(name)
        function.systemName = string(systemName ?? name)
        function.filename = string(file)
        function.startLine = startLine
        profile.function.append(function)
        return id
    }

    /// `lines`: (function id, line, column), inlined callee first.
    @discardableResult
    mutating func location(
        id: UInt64, address: UInt64, mapping: UInt64 = 0, lines: [(UInt64, Int64, Int64)] = [], folded: Bool = false
    ) throws -> UInt64 {
        var location = Perftools_Profiles_Location()
        location.id = id
        location.address = address
        location.mappingID = mapping
        location.isFolded = folded
        for (function, number, column) in lines {
            var line = Perftools_Profiles_Line()
            line.functionID = function
            line.line = number
            try PprofNewerFields.setVarint(PprofNewerFields.lineColumnField, UInt64(column), in: &line)
            location.line.append(line)
        }
        profile.location.append(location)
        return id
    }

    enum LabelValue {
        case string(String)
        case number(Int64, unit: String)
    }

    mutating func sample(_ locations: [UInt64], _ values: [Int64], _ labels: [(String, LabelValue)] = []) {
        var sample = Perftools_Profiles_Sample()
        sample.locationID = locations
        sample.value = values
        sample.label = labels.map { key, value in
            var label = Perftools_Profiles_Label()
            label.key = string(key)
            switch value {
            case .string(let text): label.str = string(text)
            case .number(let number, let unit):
                label.num = number
                label.numUnit = string(unit)
            }
            return label
        }
        profile.sample.append(sample)
    }

    func serialized() throws -> [UInt8] { try profile.serializedBytes() }
    func gzipped() throws -> [UInt8] { try Gzip.compress(serialized()) }
}

/// Synthetic pprof profiles that use every pprof field the conversion carries.
enum ConversionFixtures {
    /// A readable file without a build id, for the htlhash path: this source file.
    static let hashedFile = URL(fileURLWithPath: #filePath).path

    /// Three sample types (with a default), inlined frames with columns, string and
    /// numeric labels with units, repeated keys (one with two units, one mixing strings
    /// and numbers), a folded location, mapping flags, a Go build id, a mapping hashed from
    /// its file, an unhashable mapping ([vdso]), a location without a mapping, an empty
    /// location, functions with empty names, duplicate samples, an empty stack, comments
    /// with a repeat, drop/keep frames, doc_url, and tables with entries no sample uses.
    ///
    /// `conformant`: leave out what OTLP flags on purpose (a mapping with no build id that
    /// cannot be hashed, samples that OTLP would merge), for the conformance checker.
    static func rich(conformant: Bool = false) throws -> Perftools_Profiles_Profile {
        var f = PprofFixture()
        f.profile.sampleType = [
            f.valueType("samples", "count"), f.valueType("cpu", "nanoseconds"), f.valueType("alloc_space", "bytes"),
        ]
        f.profile.defaultSampleType = f.string("cpu")
        f.profile.periodType = f.valueType("cpu", "nanoseconds")
        f.profile.period = 10_000_000
        f.profile.timeNanos = 1_700_000_000_123_456_789
        f.profile.durationNanos = 2_500_000_000
        f.profile.comment = [
            f.string("recorded by a test"), f.string("second comment"), f.string("recorded by a test"),
        ]
        f.profile.dropFrames = f.string("runtime\\..*")
        f.profile.keepFrames = f.string("runtime\\.main")
        try PprofNewerFields.setVarint(
            PprofNewerFields.docURLField, UInt64(f.string("https://example.com/profile-doc")), in: &f.profile)

        f.mapping(
            id: 10, start: 0x40_0000, limit: 0x50_0000, file: "/opt/app/bin/app", buildID: "0a1b2c3d4e5f60718293",
            flags: (true, true, true, true))
        f.mapping(
            id: 20, start: 0x7f00_0000_0000, limit: 0x7f00_0010_0000, offset: 0x1000, file: "/opt/app/lib/libgo.so",
            buildID: "Go_build_ID/abc-DEF/ghi", flags: (true, false, false, false))
        f.mapping(id: 30, start: 0x7fff_f000_0000, limit: 0x7fff_f000_2000, file: hashedFile)
        if !conformant {
            f.mapping(id: 40, start: 0x7fff_ffff_0000, limit: 0x7fff_ffff_2000, file: "[vdso]")
        }
        f.mapping(id: 50, start: 0x1000, limit: 0x2000, file: "/unused/mapping.so", buildID: "ffff")

        f.function(id: 1, name: "main", file: "main.c", startLine: 1)
        f.function(id: 2, name: "work", systemName: "_Z4workv", file: "work.c", startLine: 10)
        f.function(id: 3, name: "inlined_helper", file: "helper.h", startLine: 3)
        f.function(id: 4, name: "folded", file: "lib.go")
        f.function(id: 5, name: "", systemName: "", file: "anonymous.c", startLine: 7)  // empty names
        f.function(id: 6, name: "", systemName: "")  // every field empty
        f.function(id: 7, name: "unused_function")

        try f.location(id: 101, address: 0x40_1000, mapping: 10, lines: [(3, 12, 5), (2, 30, 9)])
        try f.location(id: 102, address: 0x40_2000, mapping: 10, lines: [(1, 5, 0)])
        try f.location(id: 103, address: 0x7f00_0000_1000, mapping: 20, lines: [(4, 1, 0)], folded: true)
        try f.location(id: 104, address: 0x7fff_f000_0100, mapping: 30)
        try f.location(id: 105, address: 0x1_2345, lines: [(5, 8, 2)])  // no mapping
        try f.location(id: 106, address: 0)  // nothing at all
        try f.location(id: 107, address: 0x40_3000, mapping: 10, lines: [(6, 0, 0)])
        try f.location(id: 108, address: 0x40_2000, mapping: 10, lines: [(1, 5, 0)])  // same as 102
        if !conformant {
            try f.location(id: 109, address: 0x7fff_ffff_0400, mapping: 40)
        }
        try f.location(id: 110, address: 0x1500, mapping: 50, lines: [(7, 1, 0)])  // no sample uses it

        f.sample(
            [101, 102], [1, 10_000_000, 0],
            [("thread", .string("worker-1")), ("pid", .number(42, unit: "")), ("bytes", .number(1024, unit: "bytes"))])
        f.sample(
            [103, 101, 102], [2, 20_000_000, 4096],
            [
                ("tag", .string("a")), ("size", .number(1, unit: "bytes")), ("tag", .string("b")),
                ("size", .number(2, unit: "bytes")),
            ])
        f.sample(
            [104, 105, 106, 102], [3, 30_000_000, 0],
            [
                ("mem", .number(1, unit: "bytes")), ("mix", .string("x")), ("mem", .number(2, unit: "kilobytes")),
                ("mix", .number(7, unit: "")), ("zero", .number(0, unit: "seconds")),
            ])
        f.sample([107, 108], [4, 40_000_000, 8192], [("thread", .string("worker-2"))])
        f.sample([], [5, 50_000_000, 0])
        if !conformant {
            // The same stack and labels as the first sample: pprof keeps both.
            f.sample(
                [101, 102], [6, 60_000_000, 1],
                [
                    ("thread", .string("worker-1")), ("pid", .number(42, unit: "")),
                    ("bytes", .number(1024, unit: "bytes")),
                ])
            f.sample([109, 102], [7, 70_000_000, 0])
        }
        return f.profile
    }

    /// A request shaped like our agent's: the synthetic stacks of the `mixed` set through
    /// ``OTLPBuilder`` (one process, timestamps, no values, thread attributes).
    static func agentRequest() throws -> [UInt8] {
        var profile = Profile(startTimeNanos: 1_700_000_000_000_000_000, durationNanos: 5_000_000_000, frequencyHz: 99)
        for sample in ProfilesSyntheticStacks.mixed { profile.add(sample) }
        profile.processAttributes[ProfilesSyntheticStacks.pid] = [
            Attribute("process.executable.path", .string("/opt/synthetic/bin/app"))
        ]
        let builder = OTLPBuilder(
            configuration: .init(hostName: "test-host", kernelBuildID: "00112233445566778899aabbccddeeff00112233"))
        return try builder.encodeSingleRequest(profile).bytes
    }

    /// Options that give reproducible requests (fixed, non-zero profile ids).
    static var deterministic: PprofOTLPConversion.Options {
        PprofOTLPConversion.Options(makeProfileID: { Array(1...16) })
    }
}

/// The repository root (this file is Tests/ProfileConversionTests/ConversionSupport.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// What `hack/otlp/check.py` (the repository's OTLP conformance checker) says of a request.
struct ConformanceReport {
    var status: Int32
    var violations: [String]
    var output: String

    /// The violations, less the one the conversion documents: a mapping that has no build
    /// id and whose file cannot be hashed here (a pseudo-file such as `[vdso]`).
    func unexpectedViolations(in request: OTLPRequest) -> [String] {
        violations.filter { violation in
            guard violation.hasPrefix("mapping_table["), violation.contains("] carries none of the attributes"),
                let close = violation.firstIndex(of: "]"),
                let index = Int(violation[violation.index(violation.startIndex, offsetBy: 14)..<close]),
                index < request.dictionary.mappingTable.count
            else { return true }
            let file = request.dictionary.stringTable[Int(request.dictionary.mappingTable[index].filenameStrindex)]
            return file.hasPrefix("/") && FileManager.default.isReadableFile(atPath: file)
        }
    }
}

/// Runs `hack/otlp/check.py --json` on `request`.
func conformanceCheck(_ request: [UInt8]) throws -> ConformanceReport {
    let python = repositoryRoot.appendingPathComponent(".venv/bin/python").path
    let checker = repositoryRoot.appendingPathComponent("hack/otlp/check.py").path
    guard FileManager.default.isExecutableFile(atPath: python) else {
        throw FixtureError("\(python) is missing: run hack/setup (it creates the Python environment)")
    }
    guard FileManager.default.fileExists(atPath: checker) else { throw FixtureError("\(checker) is missing") }
    let directory = try TemporaryDirectory(prefix: "nodeprof-conformance")
    let file = directory.file("request.otlp")
    try Data(request).write(to: URL(fileURLWithPath: file))
    let result = try runProgramCapturing(python, [checker, "--json", "--max-violations", "100", file])
    var violations: [String] = []
    if let line = result.stdout.split(separator: "\n").first,
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    {
        violations = object["violations"] as? [String] ?? []
        if let error = object["error"] as? String { violations.append("unreadable: \(error)") }
    }
    return ConformanceReport(status: result.status, violations: violations, output: result.stdout + result.stderr)
}

/// Decodes a serialized (or gzip-compressed) pprof profile.
func decodePprof(_ bytes: [UInt8]) throws -> Perftools_Profiles_Profile {
    let raw = PprofOTLPConversion.isGzip(bytes) ? try Gzip.decompress(bytes, maxOutputBytes: 1 << 30) : bytes
    return try Perftools_Profiles_Profile(serializedBytes: raw)
}

/// Decodes a serialized OTLP request.
func decodeRequest(_ bytes: [UInt8]) throws -> OTLPRequest {
    try OTLPRequest(serializedBytes: bytes)
}
