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
    for part in text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
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
    func trimmingCharacters(in set: CharacterSetLite) -> String {
        var scalars = Substring(self)
        while let first = scalars.first, set.contains(first) { scalars.removeFirst() }
        while let last = scalars.last, set.contains(last) { scalars.removeLast() }
        return String(scalars)
    }
}

/// The one character class we need, without pulling Foundation into the hot module.
struct CharacterSetLite {
    static let whitespacesAndNewlines = CharacterSetLite()
    func contains(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }
}
