import Glibc

/// Checks made before loading anything, so the common mistakes get a one-line answer.
public enum Preflight {
    /// Linux capability numbers (include/uapi/linux/capability.h).
    static let capSysAdmin = 21
    static let capPerfmon = 38
    static let capBPF = 39

    /// Throws when the process can neither load BPF programs nor open system-wide perf
    /// events: not root, and lacking CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN).
    public static func checkPrivileges(statusPath: String = "/proc/self/status") throws(SamplerError) {
        if geteuid() == 0 { return }
        guard let effective = try? effectiveCapabilities(statusPath: statusPath) else {
            throw .notPermitted(operation: "nodeprof needs BPF and perf events")
        }
        let has = { (cap: Int) in effective & (UInt64(1) << UInt64(cap)) != 0 }
        if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) { return }
        throw .notPermitted(operation: "nodeprof needs BPF and perf events")
    }

    /// Throws when the running kernel exposes no BTF.
    public static func checkBTF(path: String = "/sys/kernel/btf/vmlinux") throws(SamplerError) {
        guard access(path, R_OK) == 0 else { throw .kernelWithoutBTF }
    }

    /// The CapEff mask from a /proc/PID/status file.
    static func effectiveCapabilities(statusPath: String) throws(SamplerError) -> UInt64 {
        let text = try readSmallFile(statusPath)
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).trimmingPrefix(while: { $0 == " " || $0 == "\t" })
            if let value = UInt64(hex, radix: 16) { return value }
        }
        throw .invalidConfiguration("no CapEff line in \(statusPath)")
    }
}

extension Substring {
    fileprivate func trimmingPrefix(while predicate: (Character) -> Bool) -> Substring {
        var s = self
        while let c = s.first, predicate(c) { s.removeFirst() }
        return s
    }
}
