import ArgumentParser
import Foundation
import Glibc
import NodeprofCore
import ProcessContext

/// Reader throughput (OTEP 4719 process context) over many publishing processes: sustained
/// `ProcessContextReader.context(for:)` lookups per second, round-robin over the pids, in two
/// regimes: steady state (cached: the 32-byte header is re-read, the timestamp is unchanged)
/// and first sight (`forget(pid:)` before each lookup: maps scan, header and payload read,
/// decode). The peer, in the same run: plain reads of `/proc/PID/maps`, what any per-process
/// scan pays. The regimes take turns in rounds, so drift touches all of them alike. Rates are
/// per wall-clock second; the CPU time of the measuring thread is reported beside them.
struct ContextRead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "context-read", abstract: "Measure process-context lookups per second (prints JSON).")

    @Option(name: .customLong("pid"), help: "A publishing process (repeatable).") var pids: [Int32] = []
    @Option(help: "A file of pids, one per line (added to --pid).") var pidsFile: String?
    @Option(help: "Seconds per regime, split over the rounds.") var seconds = 10.0
    @Option(help: "Rounds: each runs every regime once for seconds / rounds.") var rounds = 3

    enum Regime: String, CaseIterable {
        case steady = "steady_state"
        case firstSight = "first_sight"
        case mapsRead = "maps_read"
    }

    /// Lookups and time of one regime, summed over the rounds.
    struct Tally {
        var operations = 0
        var nanoseconds: Int64 = 0
        /// CPU time of this thread (user + system) over the same stretches.
        var cpuNanoseconds: Int64 = 0
        var withoutResult = 0
        var thrown: [String: Int] = [:]
        var bytes = 0
        var statistics = ProcessContextReader.Statistics()
    }

    func run() throws {
        var all = pids
        if let pidsFile {
            let text = try String(contentsOfFile: pidsFile, encoding: .utf8)
            all += text.split(whereSeparator: \.isNewline).compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
        }
        guard !all.isEmpty else { throw ValidationError("give the publishing processes: --pid or --pids-file") }
        let rssBefore = Measurement.residentKiB()
        let reader = ProcessContextReader()

        // Warm-up, untimed: every pid once, which fills the cache and checks the contexts.
        var withServiceName = 0
        var resourceAttributes = 0
        var keyMapEntries = 0
        for pid in all {
            guard let context = try? reader.context(for: pid) else { continue }
            if context.resource.contains(where: { $0.key == "service.name" }) { withServiceName += 1 }
            resourceAttributes += context.resource.count
            keyMapEntries += context.attributeKeyMap?.count ?? 0
        }
        let warmUp = reader.statistics
        let rssAfterWarmUp = Measurement.residentKiB()

        var tallies: [Regime: Tally] = [:]
        let slice = Duration.nanoseconds(Int64(seconds / Double(max(1, rounds)) * 1e9))
        let clock = ContinuousClock()
        var next = 0
        for _ in 0..<max(1, rounds) {
            for regime in Regime.allCases {
                var tally = tallies[regime] ?? Tally()
                let before = reader.statistics
                let cpuStart = ThreadCPUTime.nanoseconds()
                let start = clock.now
                var now = start
                while now - start < slice {
                    // 32 operations between clock reads.
                    for _ in 0..<32 {
                        let pid = all[next]
                        next = next + 1 == all.count ? 0 : next + 1
                        switch regime {
                        case .steady, .firstSight:
                            if regime == .firstSight { reader.forget(pid: pid) }
                            do {
                                if try reader.context(for: pid) == nil { tally.withoutResult += 1 }
                            } catch {
                                tally.thrown["\(error)", default: 0] += 1
                            }
                        case .mapsRead:
                            do {
                                tally.bytes += try FileContents.read("/proc/\(pid)/maps", limit: 64 << 20).count
                            } catch {
                                tally.thrown["\(error)", default: 0] += 1
                            }
                        }
                        tally.operations += 1
                    }
                    now = clock.now
                }
                tally.cpuNanoseconds += ThreadCPUTime.nanoseconds() - cpuStart
                let elapsed = (now - start).components
                tally.nanoseconds += elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
                tally.statistics = Self.adding(tally.statistics, Self.subtracting(reader.statistics, before))
                tallies[regime] = tally
            }
        }

        var report: [String: Any] = [
            "processes": all.count,
            "seconds_per_regime": seconds,
            "rounds": rounds,
            "warm_up": [
                "contexts_with_service_name": withServiceName,
                "resource_attributes_mean": Double(resourceAttributes) / Double(all.count),
                "key_map_entries_mean": Double(keyMapEntries) / Double(all.count),
                "statistics": Self.dictionary(warmUp),
            ] as [String: Any],
            "rss_kib": [
                "before": rssBefore, "after_warm_up": rssAfterWarmUp, "end": Measurement.residentKiB(),
                "peak": Self.peakResidentKiB(),
            ],
            "cached_processes": reader.cachedProcessCount,
        ]
        for regime in Regime.allCases {
            let t = tallies[regime] ?? Tally()
            let seconds = Double(t.nanoseconds) / 1e9
            var entry: [String: Any] = [
                "operations": t.operations,
                "seconds": seconds,
                "per_second": seconds > 0 ? Double(t.operations) / seconds : 0,
                "us_per_operation": t.operations > 0 ? Double(t.nanoseconds) / 1000 / Double(t.operations) : 0,
                "cpu_seconds": Double(t.cpuNanoseconds) / 1e9,
                "cpu_us_per_operation": t.operations > 0 ? Double(t.cpuNanoseconds) / 1000 / Double(t.operations) : 0,
                "without_result": t.withoutResult,
                "thrown": t.thrown,
            ]
            if regime == .mapsRead {
                entry["bytes_mean"] = t.operations > 0 ? Double(t.bytes) / Double(t.operations) : 0
            } else {
                entry["statistics"] = Self.dictionary(t.statistics)
                entry["errors"] = Self.errors(t.statistics) + t.thrown.values.reduce(0, +)
            }
            report[regime.rawValue] = entry
        }
        try Measurement.printJSON(report)
    }

    /// Peak resident set size (VmHWM) of this process in KiB.
    static func peakResidentKiB() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    /// Every failure the reader counts (a lookup without a mapping is not one: counted apart).
    static func errors(_ s: ProcessContextReader.Statistics) -> Int {
        s.notPublished + s.torn + s.badSignature + s.badVersion + s.badSize + s.unreadableMemory + s.decodeErrors
            + s.processesGone
    }

    static var fields: [(String, WritableKeyPath<ProcessContextReader.Statistics, Int>)] {
        [
            ("lookups", \.lookups), ("without_context", \.withoutContext), ("reads", \.reads),
            ("cache_hits", \.cacheHits), ("header_reads", \.headerReads), ("payload_reads", \.payloadReads),
            ("not_published", \.notPublished), ("retries", \.retries), ("torn", \.torn),
            ("bad_signature", \.badSignature), ("bad_version", \.badVersion), ("bad_size", \.badSize),
            ("unreadable_memory", \.unreadableMemory), ("decode_errors", \.decodeErrors),
            ("processes_gone", \.processesGone), ("evictions", \.evictions),
        ]
    }

    static func dictionary(_ s: ProcessContextReader.Statistics) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: fields.map { ($0.0, s[keyPath: $0.1]) })
    }

    static func subtracting(
        _ a: ProcessContextReader.Statistics, _ b: ProcessContextReader.Statistics
    ) -> ProcessContextReader.Statistics {
        var d = a
        for (_, path) in fields { d[keyPath: path] = a[keyPath: path] - b[keyPath: path] }
        return d
    }

    static func adding(
        _ a: ProcessContextReader.Statistics, _ b: ProcessContextReader.Statistics
    ) -> ProcessContextReader.Statistics {
        var d = a
        for (_, path) in fields { d[keyPath: path] = a[keyPath: path] + b[keyPath: path] }
        return d
    }
}
