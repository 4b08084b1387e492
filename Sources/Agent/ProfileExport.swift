public import Export
public import Logging
public import Profiles

/// Sends recorded profiles to an OTLP receiver: each profile handed to ``submit(_:)`` (a
/// closed recording window) is encoded into size-bounded requests and queued, in order, for
/// the ``OTLPExporter``, which sends them with its retry policy.
///
/// ```
/// closed window --submit(profile)--> OTLPBuilder --requests--> OTLPExporter (a Service)
/// ```
///
/// The exporter runs as a service of its own (in the agent's `ServiceGroup`, or beside the
/// recording in `nodeprof record`); this only encodes and enqueues.
public struct ProfileExport: Sendable {
    public let builder: OTLPBuilder
    public let exporter: OTLPExporter
    private let logger: Logger

    public init(builder: OTLPBuilder, exporter: OTLPExporter, logger: Logger) {
        self.builder = builder
        self.exporter = exporter
        self.logger = logger
    }

    /// Encodes `profile` and queues its requests; does not wait for the network.
    public func submit(_ profile: Profile) async {
        guard profile.sampleCount > 0 else { return }
        do {
            for request in try builder.encode(profile) { await exporter.enqueue(request) }
        } catch {
            logger.error(
                "a profile of \(profile.sampleCount) samples could not be encoded and is lost",
                metadata: ["error": "\(error)"])
        }
    }
}
