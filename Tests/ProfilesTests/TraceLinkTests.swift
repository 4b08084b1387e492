import Foundation
import NodeprofCore
import ProfilesProtobuf
import SwiftProtobuf
import TestSupport
import Testing

@testable import Profiles

/// Samples taken inside spans (OTEP 4947 thread context): OTLP links and sample attributes,
/// pprof labels, and merging that never mixes spans.
@Suite struct TraceLinkTests {
    static let spanA = TraceContext(
        traceID: Array(repeating: 0xA1, count: 16), spanID: Array(repeating: 0xA2, count: 8), flags: 1,
        attributes: [Attribute("http.route", .string("/checkout")), Attribute("thread.id", .int(-1))])!
    static let spanB = TraceContext(
        traceID: Array(repeating: 0xB1, count: 16), spanID: Array(repeating: 0xB2, count: 8), flags: 0,
        attributes: [Attribute("http.route", .string("/cart"))])!

    /// The same stack and thread, inside span A (3 samples), span B (2) and no span (2).
    static func samples() -> [Profile.Sample] {
        let frames = [Frame(kind: .native, address: 0x1000, function: "work", module: nil)]
        var samples: [Profile.Sample] = []
        for (index, context) in [spanA, spanA, spanB, nil, spanA, spanB, nil].enumerated() {
            samples.append(
                Profile.Sample(
                    pid: 7, tid: 8, threadName: "worker", processName: "app", cgroupID: 1,
                    timestampNanos: OTLPBuilderTests.start + UInt64(index) * 1_000_000, frames: frames,
                    traceContext: context))
        }
        return samples
    }

    @Test func traceContextRequiresAValidTraceID() {
        #expect(TraceContext(traceID: Array(repeating: 0, count: 16), spanID: Array(repeating: 1, count: 8)) == nil)
        #expect(TraceContext(traceID: Array(repeating: 1, count: 15), spanID: Array(repeating: 1, count: 8)) == nil)
        #expect(TraceContext(traceID: Array(repeating: 1, count: 16), spanID: Array(repeating: 1, count: 9)) == nil)
        #expect(Self.spanA.isSampled && !Self.spanB.isSampled)
    }

    @Test func samplesInSpansGetLinksAndAttributesAndDoNotMergeAcrossSpans() throws {
        let profile = OTLPBuilderTests.profile(Self.samples())
        #expect(profile.samplesWithTraceContext == 5)
        let encoded = try OTLPBuilderTests.builder().encode(profile)
        #expect(try otlpConformanceViolations(encoded[0].bytes) == [])
        let request = try OTLPBuilderTests.decode(encoded[0])
        let d = request.dictionary
        // Entry 0 plus one per span.
        #expect(d.linkTable.count == 3)
        var weightBySpan: [String: Int] = [:]
        var routeBySpan: [String: String] = [:]
        let samples = request.resourceProfiles.flatMap { $0.scopeProfiles.flatMap { $0.profiles.flatMap(\.samples) } }
        #expect(samples.count == 3, "one merged sample per span and one without")
        for sample in samples {
            let link = d.linkTable[Int(sample.linkIndex)]
            let span = sample.linkIndex == 0 ? "none" : hexString(link.traceID) + "/" + hexString(link.spanID)
            weightBySpan[span, default: 0] += sample.timestampsUnixNano.count
            for index in sample.attributeIndices {
                let attribute = d.attributeTable[Int(index)]
                let key = d.stringTable[Int(attribute.keyStrindex)]
                if key == "http.route" { routeBySpan[span] = attribute.value.stringValue }
                // The agent's own thread.id wins over a record's.
                if key == "thread.id" { #expect(attribute.value.intValue == 8) }
            }
        }
        let a = hexString(Self.spanA.traceID) + "/" + hexString(Self.spanA.spanID)
        let b = hexString(Self.spanB.traceID) + "/" + hexString(Self.spanB.spanID)
        #expect(weightBySpan == [a: 3, b: 2, "none": 2])
        #expect(routeBySpan == [a: "/checkout", b: "/cart"])
    }

    @Test func pprofLabelsCarryTheSpan() throws {
        let profile = OTLPBuilderTests.profile(Self.samples())
        let pprof = PprofEncoder().message(for: profile)
        var counts: [String: Int64] = [:]
        for sample in pprof.sample {
            var span = "none"
            var route = ""
            for label in sample.label {
                switch pprof.stringTable[Int(label.key)] {
                case "span_id": span = pprof.stringTable[Int(label.str)]
                case "http.route": route = pprof.stringTable[Int(label.str)]
                default: break
                }
            }
            counts[span + route, default: 0] += sample.value[0]
        }
        #expect(counts == ["a2a2a2a2a2a2a2a2/checkout": 3, "b2b2b2b2b2b2b2b2/cart": 2, "none": 2])
    }

    @Test func appendingWindowsKeepsTheirSpans() {
        let samples = Self.samples()
        var first = OTLPBuilderTests.profile(Array(samples.prefix(3)))
        let second = OTLPBuilderTests.profile(Array(samples.dropFirst(3)))
        first.append(contentsOf: second)
        #expect(first.samples.map(\.traceContext) == samples.map(\.traceContext))
    }
}
