internal import ProfilesProtobuf
internal import SwiftProtobuf

/// What a receiver answered to an accepted OTLP profiles export
/// (`ExportProfilesServiceResponse`), decoded from the response body (HTTP) or message
/// (gRPC).
///
/// The OTLP spec: a response without `partial_success`, or with both fields at their zero
/// values, means everything was accepted. Otherwise `rejectedProfiles` profiles were
/// dropped by the receiver and `errorMessage` says why; the sender logs and counts this and
/// must not retry.
public struct OTLPExportResult: Sendable, Hashable {
    /// Profiles the receiver rejected (0 when everything was accepted).
    public var rejectedProfiles: Int64
    /// The receiver's explanation, or "" (a receiver may also send a warning with 0
    /// rejected profiles).
    public var errorMessage: String

    public init(rejectedProfiles: Int64 = 0, errorMessage: String = "") {
        self.rejectedProfiles = rejectedProfiles
        self.errorMessage = errorMessage
    }

    /// True when the receiver reported a partial success (rejections or a warning).
    public var isPartialSuccess: Bool { rejectedProfiles != 0 || !errorMessage.isEmpty }

    /// Decodes a serialized `ExportProfilesServiceResponse`. An empty body is a full success.
    public init(serializedResponse bytes: some Collection<UInt8>) throws(OTLPDecodingError) {
        let response: OTLPResponse
        do {
            response = try OTLPResponse(serializedBytes: Array(bytes))
        } catch {
            throw OTLPDecodingError(
                what: "ExportProfilesServiceResponse", byteCount: bytes.count, reason: String(describing: error))
        }
        self.init(
            rejectedProfiles: response.partialSuccess.rejectedProfiles,
            errorMessage: response.partialSuccess.errorMessage)
    }

    /// The serialized `ExportProfilesServiceResponse` for this result (what a receiver sends).
    public func serializedResponse() -> [UInt8] {
        var response = OTLPResponse()
        if isPartialSuccess {
            response.partialSuccess.rejectedProfiles = rejectedProfiles
            response.partialSuccess.errorMessage = errorMessage
        }
        // Serializing a message with only scalar and string fields cannot fail.
        return (try? response.serializedBytes()) ?? []
    }
}

/// Bytes that are not the OTLP message they should be.
public struct OTLPDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The message type expected.
    public var what: String
    /// Size of the input.
    public var byteCount: Int
    /// The protobuf decoder's complaint.
    public var reason: String

    public var description: String {
        "cannot decode \(byteCount) bytes as an OTLP \(what): \(reason)"
    }
}
