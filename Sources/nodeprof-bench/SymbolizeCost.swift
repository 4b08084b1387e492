import ArgumentParser
import Foundation
import Symbolization

/// Symbolization cost: open a (large) ELF file, build its symbol index and resolve N
/// addresses spread over its functions. Writes the addresses and the names found, so
/// hack/bench can run llvm-symbolizer on the same addresses and compare answers.
struct SymbolizeCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "symbolize", abstract: "Measure ELF symbolization (prints JSON).")

    @Option(help: "ELF file to symbolize against.") var binary = "/opt/swift/usr/bin/swift-frontend"
    @Option(help: "Number of addresses to resolve.") var addresses = 10_000
    @Option(help: "Pick addresses and write them (hex, one per line) here, then exit (untimed).")
    var addressesOut: String?
    @Option(help: "Resolve the addresses in this file (hex, one per line), as llvm-symbolizer reads them.")
    var addressesIn: String?
    @Option(help: "Write the names found (one per line, ?? when none) here.") var namesOut: String?
    @Flag(help: "Demangle names (C++, Swift, Rust) as llvm-symbolizer does by default.") var demangle = false

    func run() throws {
        if let addressesOut {
            let picked = try pickAddresses()
            try (picked.map { "0x" + String($0, radix: 16) }.joined(separator: "\n") + "\n")
                .write(toFile: addressesOut, atomically: true, encoding: .utf8)
            return
        }
        guard let addressesIn, let namesOut else {
            throw ValidationError("give --addresses-out to pick addresses, or --addresses-in and --names-out")
        }
        let clock = ContinuousClock()
        let start = clock.now
        // Timed from here on: read the addresses, open and index the file, resolve, demangle.
        let text = try String(contentsOfFile: addressesIn, encoding: .utf8)
        let addresses = text.split(separator: "\n").compactMap { UInt64($0.dropFirst(2), radix: 16) }
        let file = try ELFFile(path: binary)
        _ = try file.symbolTable()
        let loaded = clock.now
        let demangler = Demangler()
        var names: [String] = []
        names.reserveCapacity(addresses.count)
        for address in addresses {
            if let symbol = file.symbol(containing: address) {
                names.append(demangle ? demangler.demangle(symbol.name) : symbol.name)
            } else {
                names.append("??")
            }
        }
        let done = clock.now
        try (names.joined(separator: "\n") + "\n").write(toFile: namesOut, atomically: true, encoding: .utf8)
        func ms(_ d: Duration) -> Double {
            Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        }
        let report: [String: Any] = [
            "binary": binary,
            "bytes": (try? FileManager.default.attributesOfItem(atPath: binary)[.size] as? Int) ?? 0,
            "symbols": try file.symbolTable().count,
            "addresses": addresses.count,
            "load_ms": ms(loaded - start),
            "lookup_ms": ms(done - loaded),
            "total_ms": ms(done - start),
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    /// Evenly spaced function symbols, an address in the middle of each.
    func pickAddresses() throws -> [UInt64] {
        let symbols = try ELFFile(path: binary).symbolTable().allSymbols().filter { $0.size > 1 }
        guard !symbols.isEmpty else { throw ValidationError("\(binary) has no sized symbols") }
        let step = max(1, symbols.count / addresses)
        return stride(from: 0, to: symbols.count, by: step).prefix(addresses).map {
            symbols[$0].address + symbols[$0].size / 2
        }
    }
}
