import Foundation
import Logging
import Profiles
import TestSupport
import Testing

@testable import Export

/// A 60 s receiver outage with a small queue: memory stays within the bound, every request
/// is either delivered or counted as dropped, and export resumes when the receiver returns.
/// Both protocols run at the same time (about 75 s in all).
@Suite(.timeLimit(.minutes(5)))
struct ReceiverOutageTests {
    static let queueLimit = 256 << 10

    @Test(arguments: [TransportProtocol.grpc, .httpProtobuf])
    func anOutageLosesOnlyWhatTheQueueCannotHold(transportProtocol: TransportProtocol) async throws {
        // About 20-30 KiB each: the queue holds roughly ten.
        let requests = try (0..<6).map { try TestRequests.make(samples: 2000 + 200 * $0) }
        for request in requests { #expect(request.bytes.count < Self.queueLimit / 6) }

        try await withReceiver { receiver in
            var configuration = try receiverConfiguration(receiver, transportProtocol)
            configuration.queueLimitBytes = Self.queueLimit
            let exporter = try OTLPExporter(configuration: configuration, logger: Logger(label: "outage-test"))

            let downAt = Date()
            try await receiver.down(seconds: 60)
            let statistics = try await whileRunning(exporter) { exporter in
                // One request a second for 70 s: through the outage and 10 s beyond.
                var enqueued = 0
                while Date().timeIntervalSince(downAt) < 70 {
                    await exporter.enqueue(requests[enqueued % requests.count])
                    enqueued += 1
                    let now = await exporter.statistics
                    #expect(now.queuedBytes <= Self.queueLimit)
                    #expect(now.peakQueuedBytes <= Self.queueLimit)
                    try await Task.sleep(for: .seconds(1))
                }
                let flushed = await exporter.flush(timeout: .seconds(60))
                #expect(flushed.isComplete, "everything queued is sent once the receiver is back")
                let statistics = await exporter.statistics
                #expect(statistics.enqueued.requests == enqueued)
                return statistics
            }

            let records = try await receiver.records()
            let delivered = records.filter { $0.outcome == "ok" }
            #expect(delivered.count == records.count, "nothing arrives but complete requests")
            #expect(delivered.count == statistics.succeeded.requests)
            #expect(delivered.reduce(0) { $0 + ($1.summary?.totalWeight ?? 0) } == statistics.succeeded.samples)
            // Exactly: what was not received was dropped, counted, for the queue's sake only.
            #expect(statistics.totalDropped.requests == statistics.enqueued.requests - delivered.count)
            #expect(statistics.dropped(.queueFull) == statistics.totalDropped)
            #expect(statistics.totalDropped.requests > 0, "60 requests cannot fit in 256 KiB")
            #expect(statistics.peakQueuedBytes <= Self.queueLimit)
            #expect(statistics.retries > 0)
            // Export resumed: requests arrived after the receiver came back.
            let upAt = downAt.timeIntervalSince1970 + 60
            #expect(delivered.filter { $0.time >= upAt }.count >= 10)
            #expect(delivered.allSatisfy { $0.time >= upAt }, "nothing got through while it was down")
        }
    }
}
