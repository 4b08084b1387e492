import CSampling
import Glibc

/// Keeps the kernel's BPF run-time statistics on (run_time_ns / run_cnt per program) for
/// as long as the value lives. Used by benchmarks; costs a little per program run.
public final class BPFStatistics {
    private let fd: Int32

    public init() throws(SamplerError) {
        let fd = nodeprof_sampler_enable_bpf_stats()
        guard fd >= 0 else { throw .system(operation: "BPF_ENABLE_STATS", errno: -fd) }
        self.fd = fd
    }

    deinit { close(fd) }
}
