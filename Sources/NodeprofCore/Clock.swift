import Glibc

/// Nanoseconds of `clock` (CLOCK_MONOTONIC, CLOCK_REALTIME, ...).
func clockNanoseconds(_ clock: clockid_t) -> UInt64 {
    var now = timespec()
    clock_gettime(clock, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// Monotonic clock in nanoseconds, for durations, cache ages and refresh intervals.
public func monotonicNanoseconds() -> UInt64 { clockNanoseconds(CLOCK_MONOTONIC) }

/// Wall-clock time in nanoseconds since the Unix epoch, for timestamps in profiles.
public func wallClockNanoseconds() -> UInt64 { clockNanoseconds(CLOCK_REALTIME) }
