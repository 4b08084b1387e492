import Glibc

/// Reads a small text file (procfs, sysfs) whole. Reads at most `limit` bytes.
func readSmallFile(_ path: String, limit: Int = 1 << 20) throws(SamplerError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .system(operation: "open \(path)", errno: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw .system(operation: "read \(path)", errno: errno)
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<min(n, limit - bytes.count)])
    }
    return String(decoding: bytes, as: UTF8.self)
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
