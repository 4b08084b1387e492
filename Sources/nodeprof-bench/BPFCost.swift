import ArgumentParser
import Foundation
import NodeprofCore
import ProcessContext
import Sampling

/// BPF program cost per sample, from the kernel's run-time statistics (run_time_ns /
/// run_cnt). The kernel only keeps cumulative sums, so the run is cut into windows and the
/// figure reported is the median of the per-window means.
///
/// With `--thread-context on`, the thread context (`otel_thread_ctx_v1`, OTEP 4947) of every
/// `--pid` is located first and handed to the program, so each sample of those processes also
/// reads the thread pointer, the TLS variable and the span record. `alternate` switches it on
/// and off at every window, so both figures come from the same run under the same load.
struct BPFCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bpf-cost", abstract: "Measure the sampler's BPF cost per sample (prints JSON).")

    enum ThreadContextMode: String, ExpressibleByArgument, CaseIterable {
        case off, on, alternate
    }

    @Option(help: "Seconds to sample.") var seconds = 10
    @Option(help: "Sampling frequency per CPU.") var frequency: UInt64 = 999
    @Option(help: "Window length in milliseconds.") var windowMs = 500
    @Option(name: .customLong("pid"), help: "Restrict to these processes (default: whole machine).")
    var pids: [Int32] = []
    @Option(
        help: """
            Locate otel_thread_ctx_v1 in every --pid and hand it to the program: off, on, or \
            alternate (located and not located in turns, one window each).
            """)
    var threadContext: ThreadContextMode = .off

    func validate() throws {
        if threadContext != .off && pids.isEmpty {
            throw ValidationError("--thread-context needs the processes to locate it in (--pid)")
        }
    }

    /// Window means and counters of one state (located or not).
    struct Side {
        var windows: [Double] = []
        var nanoseconds: UInt64 = 0
        var runs: UInt64 = 0
        var counters = SamplerCounters()

        mutating func add(nanoseconds: UInt64, runs: UInt64, counters delta: SamplerCounters) {
            if runs > 0 { windows.append(Double(nanoseconds) / Double(runs)) }
            self.nanoseconds += nanoseconds
            self.runs += runs
            counters.seen += delta.seen
            counters.submitted += delta.submitted
            counters.filteredOut += delta.filteredOut
            counters.idleDropped += delta.idleDropped
            counters.lostRingBufferFull += delta.lostRingBufferFull
            counters.threadContextsFound += delta.threadContextsFound
            counters.threadContextsUnreadable += delta.threadContextsUnreadable
        }

        var report: [String: Any] {
            let sorted = windows.sorted()
            return [
                "windows": windows.count,
                "median_ns": sorted.isEmpty ? 0 : sorted[sorted.count / 2],
                "p90_ns": sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 9 / 10)],
                "mean_ns": runs == 0 ? 0 : Double(nanoseconds) / Double(runs),
                "runs": runs,
                "submitted": counters.submitted,
                "filtered_out": counters.filteredOut,
                "idle_dropped": counters.idleDropped,
                "lost": counters.lostRingBufferFull,
                "thread_contexts_found": counters.threadContextsFound,
                "thread_contexts_unreadable": counters.threadContextsUnreadable,
            ]
        }
    }

    func run() throws {
        let stats = try BPFStatistics()
        let sampler = try Sampler(
            configuration: .init(frequency: frequency, processIDs: pids.isEmpty ? nil : pids))
        var locations: [[String: Any]] = []
        var accesses: [(pid: Int32, access: ThreadContextAccess)] = []
        if threadContext != .off {
            for pid in pids {
                let location = try ThreadContextLocation.locate(pid: pid)
                accesses.append((pid, location.access))
                var entry: [String: Any] = [
                    "pid": pid, "module": location.modulePath, "model": location.model.description,
                ]
                switch location.access {
                case .threadPointerOffset(let offset): entry["thread_pointer_offset"] = offset
                case .dynamicThreadVector(let module, let offset):
                    entry["dtv_module"] = module
                    entry["dtv_offset"] = offset
                }
                locations.append(entry)
            }
        }
        func setLocated(_ located: Bool) throws {
            for (pid, access) in accesses { try sampler.setThreadContextAccess(located ? access : nil, pid: pid) }
        }
        var located = threadContext != .off
        try setLocated(located)

        var sides = [Side(), Side()]  // [not located, located]
        // Per window: located (0 or 1), run time, runs, samples sent (of the selected processes).
        var windowTotals: [[UInt64]] = []
        var windows: [Double] = []
        var samples = 0
        var last = try sampler.programRunTime()
        var lastCounters = try sampler.counters()
        let first = last
        let start = Date()
        var windowStart = Date()
        while Date().timeIntervalSince(start) < Double(seconds) {
            samples += try sampler.poll(timeoutMilliseconds: 50) { _ in }
            if Date().timeIntervalSince(windowStart) * 1000 >= Double(windowMs) {
                let now = try sampler.programRunTime()
                let counters = try sampler.counters()
                let runs = now.runs - last.runs
                if runs > 0 { windows.append(Double(now.nanoseconds - last.nanoseconds) / Double(runs)) }
                let delta = counters.subtracting(lastCounters)
                sides[located ? 1 : 0].add(
                    nanoseconds: now.nanoseconds - last.nanoseconds, runs: runs, counters: delta)
                windowTotals.append([located ? 1 : 0, now.nanoseconds - last.nanoseconds, runs, delta.submitted])
                if threadContext == .alternate {
                    located.toggle()
                    try setLocated(located)
                }
                last = now
                lastCounters = counters
                windowStart = Date()
            }
        }
        let counters = try sampler.counters()
        withExtendedLifetime(stats) {}
        let sorted = windows.sorted()
        let total = (last.nanoseconds - first.nanoseconds, last.runs - first.runs)
        var report: [String: Any] = [
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
        if threadContext != .off {
            report["thread_context"] = threadContext.rawValue
            report["locations"] = locations
            report["thread_contexts_found"] = counters.threadContextsFound
            report["thread_contexts_unreadable"] = counters.threadContextsUnreadable
            if threadContext == .alternate {
                report["not_located"] = sides[0].report
                report["located"] = sides[1].report
                report["window_totals"] = windowTotals
                report["window_totals_columns"] = ["located", "nanoseconds", "runs", "submitted"]
            }
        }
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
