import ArgumentParser
import Export
import Foundation
import Logging
import NodeprofCore
import Profiles
import Symbolization
import TestSupport

/// The OTLP exporter's memory while its receiver is unreachable: feeds an ``OTLPExporter``
/// one request every `--interval-ms` while hack/otlp/receiver.py closes its ports for
/// `--outage-seconds`, samples this process's RSS and the exporter's held bytes, then waits
/// for the queue to drain and checks the books: every request enqueued was delivered,
/// dropped (by reason) or is still held, and the receiver got requests after it came back.
///
/// The requests are windows of the synthetic node (see ``SyntheticNode``), encoded before
/// the measurement starts; each one enqueued is a fresh copy, as the agent would hand over a
/// newly encoded request, so the queue really holds what it says it holds.
struct ExportOutage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-outage",
        abstract: "Measure the OTLP exporter's memory through a receiver outage (prints JSON).")

    enum Transport: String, ExpressibleByArgument, CaseIterable {
        case http, grpc
    }

    @Option(help: "OTLP transport to the receiver.") var transport: Transport = .http
    @Option(help: "Seconds the receiver's ingest ports stay closed (0: no outage, for a baseline).")
    var outageSeconds = 60.0
    @Option(help: "Seconds after the first request at which the outage starts.") var outageStartSeconds = 5.0
    @Option(help: "Seconds of feeding requests.") var feedSeconds = 75.0
    @Option(help: "Milliseconds between two requests.") var intervalMs = 500
    @Option(help: "Milliseconds between two samples of RSS and held bytes.") var sampleMs = 250
    @Option(help: "Exporter queue limit in KiB.") var queueLimitKib = 4096
    @Option(help: "Most seconds to wait after feeding for the exporter to send what it holds.")
    var drainSeconds = 60.0
    @Option(help: "Seconds of the synthetic node one request covers (sets the request size).")
    var requestSeconds = 0.5
    @Option(help: "Distinct requests to cycle through.") var distinctRequests = 8
    @Option(help: "Copy the receiver's log here (default: discard).") var receiverLog: String?
    @Flag(help: "Log the exporter's warnings (failed attempts, drops) on stderr.") var verbose = false

    func validate() throws {
        guard outageSeconds >= 0, feedSeconds > 0, drainSeconds >= 0, requestSeconds > 0 else {
            throw ValidationError("durations must be positive (the outage and drain may be 0)")
        }
        guard intervalMs > 0, sampleMs > 0, queueLimitKib > 0, distinctRequests > 0 else {
            throw ValidationError(
                "--interval-ms, --sample-ms, --queue-limit-kib and --distinct-requests must be positive")
        }
    }

    /// One reading of the sampler.
    struct Reading: Sendable {
        var seconds: Double
        var residentKiB: Int
        var heldBytes: Int
        var succeededRequests: Int
        var droppedRequests: Int
    }

    func run() async throws {
        let templates = try makeRequests()
        // TestSupport's receiver: hack/otlp/receiver.py with the repository's .venv (hack/setup).
        let receiver = try await OTLPTestReceiver.start()
        defer {
            if let receiverLog {
                FileManager.default.createFile(atPath: receiverLog, contents: Data(receiver.log.utf8))
            }
            receiver.stop()
        }

        let endpoint: String
        let transportProtocol: OTLPExporterConfiguration.TransportProtocol
        switch transport {
        case .http:
            endpoint = "http://127.0.0.1:\(receiver.httpPort)/\(OTLPEndpoint.profilesSignalPath)"
            transportProtocol = .httpProtobuf
        case .grpc:
            endpoint = "http://127.0.0.1:\(receiver.grpcPort)"
            transportProtocol = .grpc
        }
        var configuration = try OTLPExporterConfiguration(
            environment: [:], overrides: .init(endpoint: endpoint, transportProtocol: transportProtocol))
        configuration.queueLimitBytes = queueLimitKib * 1024
        var logger = Logger(label: "nodeprof-bench.export")
        logger.logLevel = verbose ? .warning : .error
        let exporter = try OTLPExporter(configuration: configuration, logger: logger)
        let running = Task { try await exporter.run() }

        let residentBefore = Measurement.residentKiB()
        let clock = ContinuousClock()
        let start = clock.now
        let startUnixTime = Date().timeIntervalSince1970
        let sampleInterval = Duration.milliseconds(sampleMs)
        let sampler = Task { () -> [Reading] in
            var readings: [Reading] = []
            var next = start
            while !Task.isCancelled {
                let statistics = await exporter.statistics
                readings.append(
                    Reading(
                        seconds: Measurement.milliseconds(clock.now - start) / 1000,
                        residentKiB: Measurement.residentKiB(), heldBytes: statistics.queuedBytes,
                        succeededRequests: statistics.succeeded.requests + statistics.partiallySucceeded.requests,
                        droppedRequests: statistics.totalDropped.requests))
                next += sampleInterval
                try? await Task.sleep(until: next, clock: clock)
            }
            return readings
        }

        // Feed; take the receiver down once the outage is due.
        var downStatus: OTLPTestReceiver.Status?
        let ticks = Int(feedSeconds * 1000) / intervalMs
        for tick in 0..<ticks {
            try await Task.sleep(until: start + .milliseconds(tick * intervalMs), clock: clock)
            if outageSeconds > 0 && downStatus == nil
                && Measurement.milliseconds(clock.now - start) >= outageStartSeconds * 1000
            {
                downStatus = try await receiver.down(seconds: outageSeconds)
            }
            let template = templates[tick % templates.count]
            let copy = template.bytes.withUnsafeBufferPointer { Array($0) }
            await exporter.enqueue(
                OTLPEncodedRequest(bytes: copy, profileCount: template.profileCount, sampleCount: template.sampleCount))
        }
        let fedSeconds = Measurement.milliseconds(clock.now - start) / 1000
        let left = await exporter.flush(timeout: .seconds(drainSeconds))
        let drainedSeconds = Measurement.milliseconds(clock.now - start) / 1000
        let statistics = await exporter.statistics
        let residentAfter = Measurement.residentKiB()
        sampler.cancel()
        let readings = await sampler.value
        running.cancel()
        _ = try? await running.value
        let records = try await receiver.records()

        let upAt = downStatus?.upAt
        let afterOutage = records.filter { record in upAt.map { record.time >= $0 } == true && record.outcome == "ok" }
        let delivered = statistics.succeeded.requests + statistics.partiallySucceeded.requests
        let dropped = statistics.totalDropped.requests
        let sizes = templates.map(\.bytes.count)
        var droppedByReason: [String: Int] = [:]
        for reason in OTLPExporterStatistics.DropReason.allCases {
            droppedByReason[reason.rawValue] = statistics.dropped(reason).requests
        }
        let peakSampled = readings.map(\.heldBytes).max() ?? 0
        let requestSizes: [String: Any] = [
            "min": sizes.min() ?? 0, "max": sizes.max() ?? 0, "mean": sizes.reduce(0, +) / max(sizes.count, 1),
            "samples_each": templates.map(\.sampleCount).reduce(0, +) / max(templates.count, 1),
            "resource_profiles_each": templates.first?.profileCount ?? 0,
        ]
        let outage: [String: Any] = [
            "seconds": outageSeconds, "started_s": outageStartSeconds,
            "receiver_back_s": upAt.map { $0 - startUnixTime } ?? -1,
        ]
        let resident: [String: Any] = [
            "before": residentBefore, "peak": readings.map(\.residentKiB).max() ?? residentBefore,
            "after": residentAfter,
        ]
        let held: [String: Any] = [
            "peak_sampled": peakSampled, "peak_exporter": statistics.peakQueuedBytes,
            "within_limit": max(peakSampled, statistics.peakQueuedBytes) <= configuration.queueLimitBytes,
        ]
        let requests: [String: Any] = [
            "enqueued": statistics.enqueued.requests, "delivered": delivered, "dropped": dropped,
            "dropped_by_reason": droppedByReason, "still_held": left.remainingRequests,
            "accounted": statistics.enqueued.requests == delivered + dropped + left.remainingRequests,
            "attempts": statistics.attempts, "retries": statistics.retries,
        ]
        let samples: [String: Any] = [
            "enqueued": statistics.enqueued.samples, "exported": statistics.samplesExported,
            "dropped": statistics.totalDropped.samples,
        ]
        let firstAfterOutage = afterOutage.map(\.time).min().map { $0 - (upAt ?? 0) } ?? -1
        let receiverCounts: [String: Any] = [
            "requests_ok": records.filter { $0.outcome == "ok" }.count, "requests_total": records.count,
            "requests_after_outage": afterOutage.count, "first_after_outage_s": firstAfterOutage,
        ]
        let timeline: [[Double]] = readings.map { reading in
            [
                reading.seconds, Double(reading.residentKiB), Double(reading.heldBytes),
                Double(reading.succeededRequests), Double(reading.droppedRequests),
            ]
        }
        let retry: [String: Any] = [
            "initial_backoff_s": configuration.retry.initialBackoff / .seconds(1),
            "max_backoff_s": configuration.retry.maxBackoff / .seconds(1),
            "max_elapsed_s": configuration.retry.maxElapsedTime / .seconds(1),
        ]
        let report: [String: Any] = [
            "transport": transport.rawValue, "queue_limit_bytes": configuration.queueLimitBytes,
            "compression": configuration.compression.rawValue, "timeout_s": configuration.timeout / .seconds(1),
            "retry": retry, "distinct_requests": templates.count,
            "request_bytes": requestSizes, "interval_ms": intervalMs, "feed_seconds": fedSeconds,
            "outage": outage, "drained_s": drainedSeconds, "rss_kib": resident, "held_bytes": held,
            "requests": requests, "samples": samples, "receiver": receiverCounts, "resumed": !afterOutage.isEmpty,
            "timeline": timeline, "timeline_columns": ["seconds", "rss_kib", "held_bytes", "delivered", "dropped"],
        ]
        try Measurement.printJSON(report)
    }

    /// Distinct encoded windows of the synthetic node.
    func makeRequests() throws -> [OTLPEncodedRequest] {
        let node = SyntheticNode()
        let builder = OTLPBuilder(
            configuration: .init(hostName: Measurement.hostName(), kernelBuildID: KernelSymbols.buildID()))
        let windowNanos = UInt64(requestSeconds * 1e9)
        let start = wallClockNanoseconds()
        return try (0..<distinctRequests).map { window in
            let profile = node.profile(
                startTimeNanos: start + UInt64(window) * windowNanos, seconds: requestSeconds,
                sampleSeed: UInt64(window))
            return try builder.encodeSingleRequest(profile)
        }
    }
}
