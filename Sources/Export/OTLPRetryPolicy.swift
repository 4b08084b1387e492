/// When a failed export is tried again: exponential backoff with jitter and a cap, unless the
/// receiver said how long to wait.
///
/// Implements the OTLP exporter spec, "Retry" (transient errors MUST be retried with
/// exponential back-off with jitter), and the OTLP protocol spec, "OTLP/gRPC Throttling"
/// (wait `RetryInfo.retry_delay`) and "OTLP/HTTP Throttling" (honour `Retry-After`). Which
/// failures are transient is decided by the transports (see ``OTLPRetryClassification``).
public struct OTLPRetryPolicy: Sendable, Hashable {
    /// How the random part of a backoff delay is drawn from the exponential ceiling `c`.
    public enum Jitter: Sendable, Hashable {
        /// Uniform in `0...c`: spreads clients furthest apart, but may retry at once.
        case full
        /// Uniform in `c/2...c`: never less than half the ceiling.
        case equal
    }

    /// Backoff ceiling before the first retry.
    public var initialBackoff: Duration
    /// Largest backoff ceiling.
    public var maxBackoff: Duration
    /// Growth of the ceiling per retry.
    public var multiplier: Double
    public var jitter: Jitter
    /// A request whose retries would last longer than this after its first attempt is
    /// dropped and counted as ``OTLPExporterStatistics/DropReason/retriesExhausted``.
    public var maxElapsedTime: Duration
    /// Longest wait honoured from a receiver's RetryInfo or Retry-After; longer requests are
    /// cut to this, so a bogus header cannot stall the exporter for days.
    public var maxThrottleDelay: Duration

    /// Defaults: 1 s doubling to 30 s with equal jitter, give up after 5 minutes, honour a
    /// receiver's wait of up to 2 minutes.
    public init(
        initialBackoff: Duration = .seconds(1), maxBackoff: Duration = .seconds(30), multiplier: Double = 2,
        jitter: Jitter = .equal, maxElapsedTime: Duration = .seconds(300), maxThrottleDelay: Duration = .seconds(120)
    ) {
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.multiplier = multiplier
        self.jitter = jitter
        self.maxElapsedTime = maxElapsedTime
        self.maxThrottleDelay = maxThrottleDelay
    }

    func validate() throws(OTLPConfigurationError) {
        func fail(_ setting: String, _ value: String, _ problem: String) -> OTLPConfigurationError {
            OTLPConfigurationError(setting: "retry " + setting, value: value, problem: problem)
        }
        guard initialBackoff > .zero else { throw fail("initial backoff", "\(initialBackoff)", "must be positive") }
        guard maxBackoff >= initialBackoff else {
            throw fail("max backoff", "\(maxBackoff)", "must be at least the initial backoff \(initialBackoff)")
        }
        guard multiplier >= 1, multiplier.isFinite else {
            throw fail("multiplier", "\(multiplier)", "must be a finite number >= 1")
        }
        guard maxElapsedTime >= .zero else {
            throw fail("max elapsed time", "\(maxElapsedTime)", "must not be negative")
        }
        guard maxThrottleDelay >= .zero else {
            throw fail("max throttle delay", "\(maxThrottleDelay)", "must not be negative")
        }
    }

    /// The ceiling of the backoff before retry number `retry` (0 for the first retry):
    /// `initialBackoff * multiplier^retry`, at most `maxBackoff`.
    public func backoffCeiling(forRetry retry: Int) -> Duration {
        var ceiling = initialBackoff.seconds
        let limit = maxBackoff.seconds
        for _ in 0..<max(retry, 0) where ceiling < limit { ceiling *= multiplier }
        return .seconds(min(ceiling, limit))
    }

    /// The backoff before retry number `retry`: the ceiling with jitter applied.
    public func backoff(forRetry retry: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let ceiling = backoffCeiling(forRetry: retry).seconds
        let lower = jitter == .full ? 0 : ceiling / 2
        return .seconds(lower == ceiling ? ceiling : Double.random(in: lower...ceiling, using: &generator))
    }

    /// The wait before retry number `retry`: the receiver's delay (bounded by
    /// ``maxThrottleDelay``) when it gave one, the jittered backoff otherwise.
    public func delay(
        forRetry retry: Int, receiverDelay: Duration?, using generator: inout some RandomNumberGenerator
    ) -> Duration {
        if let receiverDelay {
            return min(max(receiverDelay, .zero), maxThrottleDelay)
        }
        return backoff(forRetry: retry, using: &generator)
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}
