import Glibc

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in nanoseconds: what a loop cost
/// on its own CPU, whatever else the machine runs (time waiting for a CPU is not counted).
enum ThreadCPUTime {
    static func nanoseconds() -> Int64 {
        // struct timespec is two longs on Linux (seconds, nanoseconds). Read as such: in this
        // target the struct's members resolve through Foundation's module.
        var words: (Int, Int) = (0, 0)
        withUnsafeMutablePointer(to: &words) { pointer in
            pointer.withMemoryRebound(to: timespec.self, capacity: 1) {
                _ = clock_gettime(CLOCK_THREAD_CPUTIME_ID, $0)
            }
        }
        return Int64(words.0) * 1_000_000_000 + Int64(words.1)
    }
}
