/// One serialized `ExportProfilesServiceRequest`, ready to send, with the counts an
/// exporter reports in its metrics and logs.
///
/// The builder keeps every request below the size limit it was given (the collector's
/// recommended 64 MiB by default), so exporters send requests as they are.
public struct OTLPEncodedRequest: Sendable, Hashable {
    /// The request in protobuf wire format, not compressed (exporters compress on send).
    public var bytes: [UInt8]
    /// Profiles in the request (the unit of OTLP partial success).
    public var profileCount: Int
    /// Samples in the request (merged samples count once).
    public var sampleCount: Int

    public init(bytes: [UInt8], profileCount: Int, sampleCount: Int) {
        self.bytes = bytes
        self.profileCount = profileCount
        self.sampleCount = sampleCount
    }
}
