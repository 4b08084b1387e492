public import NodeprofCore

/// A snapshot of what an ``OTLPExporter`` has done since it was created, for metrics and
/// logs. Every request handed to ``OTLPExporter/enqueue(_:)`` is counted in exactly one of:
/// ``queuedRequests``, ``inFlightRequests``, ``succeeded``, ``partiallySucceeded`` or
/// ``dropped`` (by reason).
public struct OTLPExporterStatistics: Sendable, Hashable {
    /// Why requests were dropped.
    public enum DropReason: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// The byte-bounded queue was full (the oldest queued requests make room for new ones).
        case queueFull = "queue_full"
        /// The receiver refused the request for good (such as HTTP 400, INVALID_ARGUMENT).
        case permanentError = "permanent_error"
        /// Retryable failures went on past the retry policy's maximum elapsed time.
        case retriesExhausted = "retries_exhausted"
        /// Still queued when the exporter shut down.
        case shutdown = "shutdown"

        public var description: String { rawValue }
    }

    /// Requests, profiles and samples counted together.
    public struct Counts: Sendable, Hashable {
        public var requests = 0
        public var profiles = 0
        public var samples = 0

        public init(requests: Int = 0, profiles: Int = 0, samples: Int = 0) {
            self.requests = requests
            self.profiles = profiles
            self.samples = samples
        }

        mutating func add(profiles: Int, samples: Int) {
            requests += 1
            self.profiles += profiles
            self.samples += samples
        }
    }

    /// Everything handed to ``OTLPExporter/enqueue(_:)``.
    public var enqueued = Counts()
    /// Requests the receiver accepted completely.
    public var succeeded = Counts()
    /// Requests the receiver accepted in part (`partial_success`, not retried).
    public var partiallySucceeded = Counts()
    /// Profiles the receiver reported as rejected in partial successes.
    public var rejectedProfiles: Int64 = 0
    /// Dropped requests by reason.
    public var dropped: [DropReason: Counts] = [:]
    /// Export attempts, first tries and retries.
    public var attempts = 0
    /// Attempts that were retries of an earlier failed attempt.
    public var retries = 0
    /// Protobuf bytes handed to the transport over all attempts, before compression.
    public var bytesSent = 0
    /// Requests waiting now, not counting those in flight.
    public var queuedRequests = 0
    /// Requests being sent now (or waiting to be retried).
    public var inFlightRequests = 0
    /// Bytes held now: queued and in-flight requests. Never above the queue limit.
    public var queuedBytes = 0
    /// The most bytes ever held at once.
    public var peakQueuedBytes = 0
    /// The most recent failure, or `nil` if there was none.
    public var lastError: String?

    public init() {}

    /// Samples the receiver accepted: those of complete and partial successes (a partial
    /// success does not say which samples were rejected; see ``rejectedProfiles``).
    public var samplesExported: Int { succeeded.samples + partiallySucceeded.samples }

    /// Drops over all reasons.
    public var totalDropped: Counts {
        dropped.values.reduce(into: Counts()) { total, counts in
            total.requests += counts.requests
            total.profiles += counts.profiles
            total.samples += counts.samples
        }
    }

    /// Drops for one reason.
    public func dropped(_ reason: DropReason) -> Counts { dropped[reason] ?? Counts() }
}

/// How much ``OTLPExporter/flush(timeout:)`` could not send in time (still queued or in flight).
public struct OTLPFlushResult: Sendable, Hashable {
    public var remainingRequests: Int
    public var remainingBytes: Int
    public var remainingSamples: Int

    public init(remainingRequests: Int, remainingBytes: Int, remainingSamples: Int) {
        self.remainingRequests = remainingRequests
        self.remainingBytes = remainingBytes
        self.remainingSamples = remainingSamples
    }

    /// True when everything was sent (successfully or not).
    public var isComplete: Bool { remainingRequests == 0 }
}

extension OTLPExporterStatistics {
    /// The exporter's counts as `/metrics` samples.
    public var metricSamples: [MetricSample] {
        var samples: [MetricSample] = [
            .counter(
                "nodeprof_export_requests_total", "OTLP export requests by result.", succeeded.requests,
                labels: [("result", "success")]),
            .counter(
                "nodeprof_export_requests_total", "OTLP export requests by result.", partiallySucceeded.requests,
                labels: [("result", "partial_success")]),
            .counter(
                "nodeprof_export_samples_total", "Samples the collector accepted.",
                succeeded.samples + partiallySucceeded.samples),
            .counter("nodeprof_export_attempts_total", "Export attempts, first tries and retries.", attempts),
            .counter("nodeprof_export_retries_total", "Export attempts that were retries.", retries),
            .counter("nodeprof_export_bytes_total", "Protobuf bytes sent, before compression.", bytesSent),
            .gauge("nodeprof_export_queue_bytes", "Bytes queued or in flight.", Double(queuedBytes)),
        ]
        for (reason, counts) in dropped.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            samples.append(
                .counter(
                    "nodeprof_export_requests_dropped_total", "OTLP export requests dropped, by reason.",
                    counts.requests, labels: [("reason", reason.rawValue)]))
        }
        return samples
    }
}
