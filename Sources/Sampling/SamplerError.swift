import Glibc
import NodeprofCore

/// Why the sampler could not start. Every message names the fix.
public enum SamplerError: Error, CustomStringConvertible, Sendable {
    /// Not root and without CAP_BPF / CAP_PERFMON.
    case notPermitted(operation: String)
    /// The running kernel exposes no BTF, which CO-RE needs.
    case kernelWithoutBTF
    /// perf_event_open failed on a CPU.
    case perfEventOpen(cpu: Int, errno: Int32, frequency: UInt64)
    /// The BPF object did not load; `log` holds the tail of libbpf's / the verifier's log.
    case loadFailed(errno: Int32, log: String)
    /// A syscall or libbpf call failed in a way that names no specific fix.
    case system(operation: String, errno: Int32)
    /// The configuration is unusable.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .notPermitted(let operation):
            return "\(operation): permission denied; run as root (sudo) or grant CAP_BPF and CAP_PERFMON"
        case .kernelWithoutBTF:
            return
                "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing); use a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.10 or later)"
        case .perfEventOpen(let cpu, let code, let frequency):
            let name = SystemCall.errnoName(code)
            switch code {
            case EACCES, EPERM:
                return
                    "cannot open perf event on CPU \(cpu): \(name); run as root or grant CAP_PERFMON, or lower kernel.perf_event_paranoid"
            case EINVAL:
                return
                    "cannot open perf event on CPU \(cpu) at \(frequency) Hz: \(name); the frequency may exceed kernel.perf_event_max_sample_rate (\(maxSampleRate().map(String.init) ?? "unknown")): lower --frequency"
            case ENOENT, EOPNOTSUPP, ENODEV:
                return
                    "cannot open perf event on CPU \(cpu): \(name); this kernel or VM does not offer the cpu-clock software event"
            case EMFILE, ENFILE:
                return "cannot open perf event on CPU \(cpu): \(name); raise the open-file limit (ulimit -n)"
            default:
                return "cannot open perf event on CPU \(cpu): \(name)"
            }
        case .loadFailed(let code, let log):
            let hint: String
            switch code {
            case EPERM, EACCES:
                hint = "run as root (sudo) or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE"
            case ENOMEM:
                hint =
                    "the kernel refused memory for BPF maps; raise the memlock limit (ulimit -l unlimited) or lower --ring-buffer-size"
            default:
                hint = "the kernel rejected the sampler program (kernel 5.10 or later with BTF is required)"
            }
            let detail = log.isEmpty ? "" : "\n" + log
            return "cannot load the BPF sampler: \(SystemCall.errnoName(code)); \(hint)\(detail)"
        case .system(let operation, let code):
            return "\(operation) failed: \(SystemCall.errnoName(code))"
        case .invalidConfiguration(let message):
            return message
        }
    }
}

/// kernel.perf_event_max_sample_rate, when readable.
func maxSampleRate() -> Int? {
    guard let text = try? readSmallFile("/proc/sys/kernel/perf_event_max_sample_rate") else {
        return nil
    }
    return Int(text.trimmedWhitespace())
}
