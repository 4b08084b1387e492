import Foundation
import NodeprofCore
import Profiles
import ProfilesProtobuf
import SwiftProtobuf
import TestSupport
import Testing

@testable import ProfileConversion

/// OTLP -> pprof for requests that did not come from pprof: our agent's (one
/// ResourceProfiles per process, timestamps instead of values, thread attributes) and
/// requests mixing several profiles and sample types.
@Suite struct ConversionAgentRequestTests {
    static func labels(_ profile: Perftools_Profiles_Profile, _ sample: Perftools_Profiles_Sample) -> [String: String] {
        var result: [String: String] = [:]
        for label in sample.label {
            let key = profile.stringTable[Int(label.key)]
            result[key] = label.str != 0 ? profile.stringTable[Int(label.str)] : String(label.num)
        }
        return result
    }

    @Test func agentRequestBecomesOnePprof() throws {
        let profile = try decodePprof(PprofOTLPConversion.pprof(fromOTLPRequest: ConversionFixtures.agentRequest()))
        let strings = profile.stringTable
        #expect(profile.sampleType.map { strings[Int($0.type)] + "/" + strings[Int($0.unit)] } == ["samples/count"])
        #expect(strings[Int(profile.periodType.type)] == "cpu")
        #expect(profile.period == 1_000_000_000 / 99)
        #expect(profile.sample.reduce(0) { $0 + $1.value[0] } == 370, "one count per timestamp")
        #expect(profile.timeNanos == 1_700_000_000_000_000_000)

        let labels = profile.sample.map { Self.labels(profile, $0) }
        #expect(labels.allSatisfy { $0["pid"] == "100" && $0["process"] == "app" })
        #expect(Set(labels.compactMap { $0["tid"] }) == ["101", "102", "103"])
        #expect(Set(labels.compactMap { $0["thread"] }) == ["worker-a", "worker-b", "fib"])
        #expect(labels.allSatisfy { $0.keys.allSatisfy { !$0.hasPrefix("thread.") && !$0.hasPrefix("process.") } })

        let kernel = try #require(profile.mapping.first { strings[Int($0.filename)] == "[kernel.kallsyms]" })
        #expect(strings[Int(kernel.buildID)] == "00112233445566778899aabbccddeeff00112233")
    }

    @Test func goToolPprofReadsTheAgentRequest() throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-convert-agent")
        let file = directory.file("agent.pb.gz")
        try Data(PprofOTLPConversion.pprof(fromOTLPRequest: ConversionFixtures.agentRequest())).write(
            to: URL(fileURLWithPath: file))

        let top = try goToolPprof(["-top", "-nodecount=30", "-symbolize=none", file])
        let rows = ConversionGoTests.table(top).map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        func row(_ name: String) -> [Substring]? { rows.first { $0.last.map(String.init) == name } }
        #expect(row("leaf_a")?.first == "200", "\(top)")
        #expect(row("copy_user_generic_string")?.first == "40", "\(top)")
        #expect(row("main")?[3] == "370", "\(top)")
        #expect(row("main")?[4] == "100%", "\(top)")

        let traces = try goToolPprof(["-traces", "-symbolize=none", file])
        let lines = traces.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let stack = ["copy_user_generic_string", "vfs_write", "do_syscall_64", "write", "work_b", "main"]
        let start = try #require(lines.firstIndex { $0.hasSuffix(stack[0]) }, "\(traces)")
        #expect(Array(lines[(start + 1)...].prefix(stack.count - 1)) == Array(stack.dropFirst()))

        let tags = try goToolPprof(["-tags", "-symbolize=none", file])
        for expected in ["pid: Total 370", "tid: Total 370", "thread: Total 370", "process: Total 370"] {
            #expect(tags.contains(expected), "missing '\(expected)' in:\n\(tags)")
        }
    }

    @Test func linksBecomeTraceAndSpanLabels() throws {
        var request = try decodeRequest(ConversionFixtures.agentRequest())
        var link = OTLPLink()
        link.traceID = Data((1...16).map { UInt8($0) })
        link.spanID = Data([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3])
        request.dictionary.linkTable.append(link)
        let linked = try #require(request.resourceProfiles[0].scopeProfiles[0].profiles[0].samples.first)
        request.resourceProfiles[0].scopeProfiles[0].profiles[0].samples[0].linkIndex =
            Int32(request.dictionary.linkTable.count - 1)

        let profile = try decodePprof(PprofOTLPConversion.pprof(fromOTLPRequest: request.serializedBytes()))
        let labels = profile.sample.map { Self.labels(profile, $0) }
        let withLink = labels.filter { $0["trace_id"] != nil }
        #expect(withLink.count == 1)
        #expect(withLink.first?["trace_id"] == "0102030405060708090a0b0c0d0e0f10")
        #expect(withLink.first?["span_id"] == "deadbeef00010203")
        // The linked sample no longer merges with its unlinked twins: its count is its own.
        let linkedCount = profile.sample.first { Self.labels(profile, $0)["trace_id"] != nil }?.value[0]
        #expect(linkedCount == Int64(linked.timestampsUnixNano.count))
        #expect(profile.sample.reduce(0) { $0 + $1.value[0] } == 370)
    }

    @Test func profilesOfSeveralProcessesAndTypesMerge() throws {
        // Two processes (resources), an on-CPU profile with timestamps and an off-CPU one with
        // values and timestamps.
        var builder = OTLPDictionaryBuilder()
        func resource(pid: Int64, name: String, profiles: [OTLPProfile]) -> OTLPResourceProfiles {
            var resource = OTLPResourceProfiles()
            resource.resource.attributes = [
                OTLPKeyValue(Attribute("process.pid", .int(pid))),
                OTLPKeyValue(Attribute("process.executable.name", .string(name))),
                OTLPKeyValue(Attribute("host.name", .string("ignored"))),
            ]
            var scope = OTLPScopeProfiles()
            scope.profiles = profiles
            resource.scopeProfiles = [scope]
            return resource
        }
        var function = OTLPFunction()
        function.nameStrindex = builder.string("hot")
        var line = OTLPLine()
        line.functionIndex = builder.function(function)
        var location = OTLPLocation()
        location.address = 0x1000
        location.lines = [line]
        let stack = builder.stack([builder.location(location)])
        let thread = builder.attribute("thread.id", OTLPAnyValue(.int(7)))

        func profile(_ type: String, _ unit: String, _ samples: [([Int64], Int)]) -> OTLPProfile {
            var profile = OTLPProfile()
            profile.sampleType.typeStrindex = builder.string(type)
            profile.sampleType.unitStrindex = builder.string(unit)
            profile.timeUnixNano = 1_000
            profile.durationNano = 1_000
            profile.samples = samples.map { values, timestamps in
                var sample = OTLPSample()
                sample.stackIndex = stack
                sample.attributeIndices = [thread]
                sample.values = values
                sample.timestampsUnixNano = (0..<timestamps).map { UInt64(1_000 + $0) }
                return sample
            }
            return profile
        }
        var request = OTLPRequest()
        request.resourceProfiles = [
            resource(
                pid: 1, name: "one",
                profiles: [profile("samples", "count", [([], 3)]), profile("off_cpu", "nanoseconds", [([5, 6], 2)])]),
            resource(pid: 2, name: "two", profiles: [profile("samples", "count", [([], 4), ([], 1)])]),
        ]
        request.dictionary = builder.dictionary

        let pprof = try decodePprof(PprofOTLPConversion.pprof(fromOTLPRequest: request.serializedBytes()))
        let strings = pprof.stringTable
        #expect(pprof.sampleType.map { strings[Int($0.type)] } == ["samples", "off_cpu"])
        let byProcess = Dictionary(
            uniqueKeysWithValues: pprof.sample.map { (Self.labels(pprof, $0)["process"] ?? "?", $0.value) })
        #expect(byProcess == ["one": [3, 11], "two": [5, 0]])
        #expect(pprof.sample.allSatisfy { Self.labels(pprof, $0)["tid"] == "7" })
        #expect(pprof.timeNanos == 1_000 && pprof.durationNanos == 1_000)
    }

    @Test func aConvertedPprofThatNoLongerLinesUpIsMerged() throws {
        let original = try ConversionFixtures.rich()
        var request = try decodeRequest(PprofOTLPConversion.otlpRequest(fromPprof: original.serializedBytes()))
        // A collector dropped the last sample of the second profile: the profiles no longer
        // zip, so they merge; the totals per sample type stay.
        request.resourceProfiles[0].scopeProfiles[0].profiles[1].samples.removeLast()
        let pprof = try decodePprof(PprofOTLPConversion.pprof(fromOTLPRequest: request.serializedBytes()))
        let dropped = original.sample.last?.value[1] ?? 0
        for column in 0..<3 {
            let expected = original.sample.reduce(0) { $0 + $1.value[column] } - (column == 1 ? dropped : 0)
            #expect(pprof.sample.reduce(0) { $0 + $1.value[column] } == expected, "column \(column)")
        }
        // The two samples with the same stack and labels are now one.
        #expect(pprof.sample.count == original.sample.count - 1)
        #expect(CanonicalPprof(pprof).comments == CanonicalPprof(original).comments)
        #expect(CanonicalPprof(pprof).defaultSampleType == "cpu")
    }
}
