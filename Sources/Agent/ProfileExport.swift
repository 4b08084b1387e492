public import Export
public import Logging
public import Profiles

/// Sends recorded profiles to an OTLP receiver: each profile handed to ``submit(_:)`` (a
/// closed recording window) is encoded into size-bounded requests on the caller's thread and
/// queued, in order, for the ``OTLPExporter``, which sends them with its retry policy.
///
/// ```
/// recording thread --submit(profile)--> OTLPBuilder --requests--> stream --> OTLPExporter
/// ```
///
/// Sending starts at `init`; ``finish(flushTimeout:)`` stops accepting profiles, sends what
/// is queued (or gives up when the timeout passes) and stops the exporter.
public final class ProfileExport: Sendable {
    public let builder: OTLPBuilder
    public let exporter: OTLPExporter
    private let logger: Logger
    private let continuation: AsyncStream<OTLPEncodedRequest>.Continuation
    private let forwarding: Task<Void, Never>
    private let exporting: Task<Void, any Error>

    public init(builder: OTLPBuilder, exporter: OTLPExporter, logger: Logger) {
        self.builder = builder
        self.exporter = exporter
        self.logger = logger
        // Unbounded here: one window's requests at a time pass through, and the exporter's
        // byte-bounded queue decides what is dropped (and counts it).
        let (requests, continuation) = AsyncStream.makeStream(of: OTLPEncodedRequest.self)
        self.continuation = continuation
        exporting = Task { try await exporter.run() }
        forwarding = Task {
            for await request in requests { await exporter.enqueue(request) }
        }
    }

    /// Encodes `profile` and queues its requests. Safe from any thread; does not block on
    /// the network.
    public func submit(_ profile: Profile) {
        guard profile.sampleCount > 0 else { return }
        do {
            for request in try builder.encode(profile) { continuation.yield(request) }
        } catch {
            logger.error(
                "a profile of \(profile.sampleCount) samples could not be encoded and is lost",
                metadata: ["error": "\(error)"])
        }
    }

    /// Stops accepting profiles, waits up to `flushTimeout` for everything queued to be
    /// sent, stops the exporter, and returns what could not be sent.
    public func finish(flushTimeout: Duration) async -> OTLPFlushResult {
        continuation.finish()
        await forwarding.value
        let result = await exporter.flush(timeout: flushTimeout)
        exporting.cancel()
        _ = try? await exporting.value
        return result
    }
}
