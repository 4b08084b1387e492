import Export
import ProfilesProtobuf
import SwiftProtobuf
import Testing

/// Decoding what a receiver answers to an accepted export (`ExportProfilesServiceResponse`).
@Suite struct ExportResultTests {
    @Test func decodesPartialSuccessAndRejectsGarbage() throws {
        let partial = OTLPExportResult(rejectedProfiles: 3, errorMessage: "too old")
        let decoded = try OTLPExportResult(serializedResponse: partial.serializedResponse())
        #expect(decoded == partial && decoded.isPartialSuccess)
        #expect(try OTLPExportResult(serializedResponse: [UInt8]()).isPartialSuccess == false)
        #expect(throws: OTLPDecodingError.self) { try OTLPExportResult(serializedResponse: [0x0a, 0xff, 0x01]) }
        #expect(throws: OTLPDecodingError.self) { try OTLPExportResult(serializedResponse: [0xff, 0xff, 0xff]) }
    }

    @Test func readsTheResponseAReceiverBuilds() throws {
        var response = OTLPResponse()
        response.partialSuccess.rejectedProfiles = 7
        response.partialSuccess.errorMessage = "unknown attribute"
        let result = try OTLPExportResult(serializedResponse: try response.serializedBytes() as [UInt8])
        #expect(result == OTLPExportResult(rejectedProfiles: 7, errorMessage: "unknown attribute"))
        #expect(try OTLPResponse(serializedBytes: result.serializedResponse()) == response)
        #expect(OTLPExportResult().serializedResponse().isEmpty, "full success is the empty message")
    }
}
