import ArgumentParser
import Foundation
import Sampling

/// BPF program cost per sample, from the kernel's run-time statistics (run_time_ns /
/// run_cnt). The kernel only keeps cumulative sums, so the run is cut into windows and the
/// figure reported is the median of the per-window means.
struct BPFCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bpf-cost", abstract: "Measure the sampler's BPF cost per sample (prints JSON).")

    @Option(help: "Seconds to sample.") var seconds = 10
    @Option(help: "Sampling frequency per CPU.") var frequency: UInt64 = 999
    @Option(help: "Window length in milliseconds.") var windowMs = 500
    @Option(name: .customLong("pid"), help: "Restrict to these processes (default: whole machine).")
    var pids: [Int32] = []

    func run() throws {
        let stats = try BPFStatistics()
        let sampler = try Sampler(
            configuration: .init(frequency: frequency, processIDs: pids.isEmpty ? nil : pids))
        var windows: [Double] = []
        var samples = 0
        var last = try sampler.programRunTime()
        let first = last
        let start = Date()
        var windowStart = Date()
        while Date().timeIntervalSince(start) < Double(seconds) {
            samples += try sampler.poll(timeoutMilliseconds: 50) { _ in }
            if Date().timeIntervalSince(windowStart) * 1000 >= Double(windowMs) {
                let now = try sampler.programRunTime()
                let runs = now.runs - last.runs
                if runs > 0 { windows.append(Double(now.nanoseconds - last.nanoseconds) / Double(runs)) }
                last = now
                windowStart = Date()
            }
        }
        let counters = try sampler.counters()
        withExtendedLifetime(stats) {}
        let sorted = windows.sorted()
        let total = (last.nanoseconds - first.nanoseconds, last.runs - first.runs)
        let report: [String: Any] = [
            "frequency": frequency,
            "seconds": seconds,
            "windows": windows.count,
            "median_ns": sorted.isEmpty ? 0 : sorted[sorted.count / 2],
            "p90_ns": sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 9 / 10)],
            "mean_ns": total.1 == 0 ? 0 : Double(total.0) / Double(total.1),
            "runs": total.1,
            "samples_received": samples,
            "lost": counters.lostRingBufferFull,
            "idle_dropped": counters.idleDropped,
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
