import Foundation
import Glibc

/// Small helpers shared by the subcommands.
enum Measurement {
    /// Runs `body` `repeats` times and returns the median wall time in milliseconds, with the
    /// last result.
    static func medianMilliseconds<T>(repeats: Int, _ body: () throws -> T) rethrows -> (milliseconds: Double, last: T)
    {
        precondition(repeats >= 1, "at least one run")
        let clock = ContinuousClock()
        var times: [Double] = []
        var last: T?
        for _ in 0..<repeats {
            let start = clock.now
            last = try body()
            times.append(milliseconds(clock.now - start))
        }
        return (median(times), last!)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    /// Resident set size of this process in KiB (`/proc/self/statm`, second field, in pages).
    static func residentKiB() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * sysconf(Int32(_SC_PAGESIZE)) / 1024
    }

    /// This machine's host name, for `host.name`.
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Prints `report` as one line of JSON with sorted keys (hack/bench.py reads it).
    static func printJSON(_ report: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
