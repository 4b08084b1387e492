import Foundation
import NodeprofCore
import SwiftProtobuf
import TestSupport
import Testing

@testable import ProfileConversion

/// The OTLP the conversion writes passes the repository's conformance checker
/// (`hack/otlp/check.py`), except where docs/conversion.md says it cannot.
@Suite struct ConversionConformanceTests {
    @Test func convertedSyntheticProfileConforms() throws {
        let request = try PprofOTLPConversion.otlpRequest(
            fromPprof: ConversionFixtures.rich(conformant: true).serializedBytes())
        let report = try conformanceCheck(request)
        #expect(report.status == 0, "\(report.output)")
        #expect(report.violations == [])
    }

    @Test func convertedJSONConformsToo() throws {
        let json = try PprofOTLPConversion.otlpJSON(
            fromPprof: ConversionFixtures.rich(conformant: true).serializedBytes())
        let report = try conformanceCheck(OTLPJSON.otlpRequest(fromJSON: json))
        #expect(report.status == 0, "\(report.output)")
    }

    @Test func keptOriginalPayloadConforms() throws {
        var options = PprofOTLPConversion.Options()
        options.keepOriginalPayload = true
        let request = try PprofOTLPConversion.otlpRequest(
            fromPprof: ConversionFixtures.rich(conformant: true).serializedBytes(), options: options)
        #expect(try conformanceCheck(request).violations == [])
    }

    /// The full fixture breaks two rules on purpose, and only those: a mapping ([vdso]) with
    /// no build id and no file to hash, and two pprof samples with the same stack and labels,
    /// which the conversion keeps apart (the spec only says SHOULD merge).
    @Test func onlyTheDocumentedDeviations() throws {
        let bytes = try PprofOTLPConversion.otlpRequest(fromPprof: ConversionFixtures.rich().serializedBytes())
        let report = try conformanceCheck(bytes)
        let request = try decodeRequest(bytes)
        #expect(report.status == 1, "\(report.output)")
        let unexpected = report.unexpectedViolations(in: request).filter {
            !$0.contains("has the same stack, attributes and link as samples[0] (should be merged)")
        }
        #expect(unexpected == [], "\(report.output)")
        #expect(report.violations.count == 4, "one mapping, and the repeated sample in 3 profiles: \(report.output)")
    }
}
