internal import NodeprofCore

/// The functions that use the most CPU in a profile, as a table for the terminal
/// (what `nodeprof record` prints when it stops).
///
/// - flat: samples whose leaf frame is the function (time spent in the function itself);
/// - cum: samples with the function anywhere on the stack, counted once per sample even
///   when it recurses (time spent in the function and what it calls).
///
/// Percentages are of all samples in the profile. A function is its name within its
/// module, so `init` in two libraries is two rows. Frames without a symbol are grouped per
/// module into one `[unknown]` row, named after the address seen most often in that module
/// as `[unknown] libfoo.so+0x1234` (a file offset, ready for `addr2line -e libfoo.so`);
/// one row per address would flood the table with single-sample rows.
public struct TopFunctions: Sendable {
    /// One function's share of the profile.
    public struct Row: Sendable, Hashable {
        /// The function's name, or `[unknown] module+0xoffset` for unsymbolized code.
        public var function: String
        /// The file name of the module (`libc.so.6`), `[kernel.kallsyms]` for the kernel,
        /// `[unknown]` for code outside any file-backed mapping.
        public var module: String
        /// False for the per-module group of unsymbolized frames.
        public var isSymbolized: Bool
        /// Samples with this function as the leaf.
        public var flat: Int
        /// Samples with this function anywhere on the stack.
        public var cumulative: Int
        /// `flat` as a percentage of all samples.
        public var flatPercent: Double
        /// `cumulative` as a percentage of all samples.
        public var cumulativePercent: Double
    }

    /// The top rows, by flat samples (then cumulative, then name), at most `limit`.
    public var rows: [Row]
    /// All samples in the profile, the base of the percentages.
    public var totalSamples: Int
    /// Distinct functions (and unknown groups) in the profile, shown or not.
    public var functionCount: Int
    /// Longest function name `render()` prints before truncating it.
    public var maxFunctionWidth = 60
    /// Longest module name `render()` prints before truncating it.
    public var maxModuleWidth = 32

    /// Computes the table; `limit` is the most rows to keep (negative counts as 0).
    public init(profile: Profile, limit: Int) {
        var tally = Tally()
        for sample in profile.samples {
            tally.add(sample)
        }
        totalSamples = profile.sampleCount
        functionCount = tally.entries.count
        let total = profile.sampleCount
        let sorted = tally.entries.sorted { a, b in
            if a.flat != b.flat { return a.flat > b.flat }
            if a.cumulative != b.cumulative { return a.cumulative > b.cumulative }
            if a.displayName != b.displayName { return a.displayName < b.displayName }
            return a.module < b.module
        }
        rows = sorted.prefix(max(0, limit)).map { entry in
            Row(
                function: entry.displayName, module: entry.module,
                isSymbolized: entry.isSymbolized, flat: entry.flat,
                cumulative: entry.cumulative,
                flatPercent: Self.percent(entry.flat, of: total),
                cumulativePercent: Self.percent(entry.cumulative, of: total))
        }
    }

    /// The table as text, one line per row after a summary and a header:
    ///
    ///     300 samples, showing 2 of 5 functions
    ///     flat   flat%  cum     cum%  function  module
    ///      200  66.67%  200   66.67%  leaf_a    app
    ///        0   0.00%  300  100.00%  main      app
    ///
    /// Long names keep their start and end with `…`: the start carries the namespace and
    /// type, which is what tells rows apart when scanning down the table. The full names
    /// are in ``rows``.
    public func render() -> String {
        let header = ["flat", "flat%", "cum", "cum%", "function", "module"]
        var table: [[String]] = [header]
        for row in rows {
            table.append([
                String(row.flat),
                Self.formatPercent(row.flat, of: totalSamples),
                String(row.cumulative),
                Self.formatPercent(row.cumulative, of: totalSamples),
                Self.truncate(row.function, to: maxFunctionWidth),
                Self.truncate(row.module, to: maxModuleWidth),
            ])
        }
        var widths = [Int](repeating: 0, count: header.count)
        for line in table {
            for (column, cell) in line.enumerated() {
                widths[column] = max(widths[column], cell.count)
            }
        }

        let noun = totalSamples == 1 ? "sample" : "samples"
        var output =
            "\(totalSamples) \(noun), showing \(rows.count) of \(functionCount) functions\n"
        for line in table {
            var text = ""
            for (column, cell) in line.enumerated() {
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                let separator = column == 0 ? "" : "  "
                switch column {
                case 0...3:  // numbers align right
                    text += separator + padding + cell
                case header.count - 1:  // last column: no trailing spaces
                    text += separator + cell
                default:
                    text += separator + cell + padding
                }
            }
            output += text + "\n"
        }
        return output
    }

    // MARK: Formatting

    private static func percent(_ count: Int, of total: Int) -> Double {
        total == 0 ? 0 : Double(count) * 100 / Double(total)
    }

    /// Two decimals, rounded half up, with integer arithmetic (no Foundation formatter).
    static func formatPercent(_ count: Int, of total: Int) -> String {
        guard total > 0 else { return "0.00%" }
        let basisPoints = (count * 20_000 + total) / (2 * total)
        let fraction = basisPoints % 100
        return "\(basisPoints / 100).\(fraction < 10 ? "0" : "")\(fraction)%"
    }

    static func truncate(_ text: String, to width: Int) -> String {
        guard text.count > width, width > 0 else { return text }
        return String(text.prefix(width - 1)) + "…"
    }
}

// MARK: Counting

/// Per-function counters, filled one sample at a time.
private struct Tally {
    /// What a row stands for: one function, or the unsymbolized code of one module.
    enum Key: Hashable {
        case function(name: String, module: String)
        case unknown(module: String)
    }

    struct Entry {
        var isSymbolized: Bool
        var name: String
        var module: String
        var flat = 0
        var cumulative = 0
        /// Index of the last sample counted in `cumulative`, so recursion counts once.
        var lastSample = -1
        /// For unknown groups: how often each file offset was seen.
        var offsets: [UInt64: Int] = [:]

        var displayName: String {
            guard !isSymbolized else { return name }
            guard let hottest = offsets.max(by: { ($0.value, $1.key) < ($1.value, $0.key) }) else {
                return "[unknown]"
            }
            let location =
                module == unmappedModule || module == PprofSchema.kernelMappingName
                ? "0x" + String(hottest.key, radix: 16)
                : module + "+0x" + String(hottest.key, radix: 16)
            let others = offsets.count - 1
            return "[unknown] \(location)" + (others > 0 ? " (+\(others) more)" : "")
        }
    }

    static let unmappedModule = "[unknown]"

    private(set) var entries: [Entry] = []
    private var indices: [Key: Int] = [:]
    private var sampleNumber = 0

    mutating func add(_ sample: Profile.Sample) {
        defer { sampleNumber += 1 }
        for (depth, frame) in sample.frames.enumerated() {
            let index = entryIndex(for: frame)
            if depth == 0 {
                entries[index].flat += 1
            }
            if entries[index].lastSample != sampleNumber {
                entries[index].lastSample = sampleNumber
                entries[index].cumulative += 1
            }
            if !entries[index].isSymbolized {
                entries[index].offsets[Self.offset(of: frame), default: 0] += 1
            }
        }
    }

    private mutating func entryIndex(for frame: Frame) -> Int {
        // Keyed by path (two libraries can share a file name), shown by file name.
        let modulePath: String
        let moduleName: String
        switch frame.kind {
        case .kernel:
            modulePath = PprofSchema.kernelMappingName
            moduleName = PprofSchema.kernelMappingName
        case .native:
            modulePath = frame.module?.path ?? Self.unmappedModule
            moduleName = frame.module?.name ?? Self.unmappedModule
        }
        let key: Key =
            if let name = frame.function {
                .function(name: name, module: modulePath)
            } else {
                .unknown(module: modulePath)
            }
        if let index = indices[key] { return index }
        let entry = Entry(
            isSymbolized: frame.function != nil, name: frame.function ?? "", module: moduleName)
        indices[key] = entries.count
        entries.append(entry)
        return entries.count - 1
    }

    /// The file offset of a user frame (what addr2line wants), else the raw address.
    private static func offset(of frame: Frame) -> UInt64 {
        guard frame.kind == .native, let module = frame.module, frame.address >= module.start
        else { return frame.address }
        return frame.address - module.start &+ module.fileOffset
    }
}
