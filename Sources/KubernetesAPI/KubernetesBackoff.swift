/// How long a list-watch waits before trying again after a failure: exponential backoff
/// with jitter and a cap, unless the server said how long (`Retry-After`).
///
/// The jitter is "full jitter" with a floor: uniform between a tenth of the ceiling and the
/// ceiling, so that many agents restarted together (a DaemonSet rollout, an API server
/// restart) spread out, and no wait is ever close to zero (no hot loop).
public struct KubernetesBackoff: Sendable, Hashable {
    /// Backoff ceiling of the first retry.
    public var initial: Duration
    /// Largest ceiling.
    public var maximum: Duration
    /// Growth of the ceiling per consecutive failure.
    public var multiplier: Double
    /// Longest `Retry-After` honoured; a bogus header cannot stall the agent for days.
    public var maxRetryAfter: Duration

    /// Defaults: 1 s doubling to 30 s (client-go's reflector backs off from 800 ms to 30 s).
    public init(
        initial: Duration = .seconds(1), maximum: Duration = .seconds(30), multiplier: Double = 2,
        maxRetryAfter: Duration = .seconds(120)
    ) {
        precondition(initial > .zero && maximum >= initial && multiplier >= 1, "invalid backoff")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.maxRetryAfter = maxRetryAfter
    }

    /// The ceiling before retry number `attempt` (0 for the first): `initial * multiplier^attempt`,
    /// at most `maximum`.
    public func ceiling(forAttempt attempt: Int) -> Duration {
        var ceiling = initial.secondsDouble
        let limit = maximum.secondsDouble
        for _ in 0..<max(attempt, 0) where ceiling < limit { ceiling *= multiplier }
        return .seconds(min(ceiling, limit))
    }

    /// The wait before retry number `attempt`: the jittered backoff, or the server's
    /// `Retry-After` (bounded by ``maxRetryAfter``) when that is longer.
    public func delay(
        forAttempt attempt: Int, retryAfter: Duration? = nil, using generator: inout some RandomNumberGenerator
    ) -> Duration {
        let ceiling = ceiling(forAttempt: attempt).secondsDouble
        let jittered = Duration.seconds(Double.random(in: (ceiling / 10)...ceiling, using: &generator))
        guard let retryAfter else { return jittered }
        return max(jittered, min(max(retryAfter, .zero), maxRetryAfter))
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    var secondsDouble: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}
