import Glibc
import NodeprofCore

/// Reads a small text file (procfs, sysfs) whole, at most `limit` bytes.
func readSmallFile(_ path: String, limit: Int = 1 << 20) throws(SamplerError) -> String {
    do {
        return String(decoding: try FileContents.read(path, limit: limit), as: UTF8.self)
    } catch {
        switch error {
        case .systemCall(_, let operation, let code): throw .system(operation: "\(operation) \(path)", errno: code)
        case .tooLarge: throw .invalidConfiguration(error.description)
        }
    }
}

/// Parses a CPU list such as "0-3,8,10-11" (sysfs cpu/online). Bounded: at most 4096 CPUs.
public func parseCPUList(_ text: String) -> [Int]? {
    var cpus: [Int] = []
    for part in text.trimmedWhitespace().split(separator: ",") {
        let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 1 || bounds.count == 2,
            let low = Int(bounds[0]), low >= 0, low < 4096
        else { return nil }
        let high = bounds.count == 2 ? Int(bounds[1]) : low
        guard let high, high >= low, high < 4096 else { return nil }
        cpus.append(contentsOf: low...high)
    }
    return cpus.isEmpty ? nil : cpus
}

extension String {
    /// The string without leading and trailing spaces, tabs and newlines (Sampling does not
    /// import Foundation).
    func trimmedWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
