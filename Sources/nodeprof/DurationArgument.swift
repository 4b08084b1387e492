import ArgumentParser

/// A duration on the command line: "10s", "1.5m", "500ms", "2h", or a bare number of seconds.
struct DurationArgument: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let seconds: Double

    init(seconds: Double) { self.seconds = seconds }

    init?(argument: String) {
        let units: [(suffix: String, scale: Double)] = [
            ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600),
        ]
        var number = Substring(argument)
        var scale = 1.0
        for unit in units where argument.hasSuffix(unit.suffix) {
            number = argument.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        guard let value = Double(number), value.isFinite, value > 0, value * scale <= 7 * 86400 else {
            return nil
        }
        seconds = value * scale
    }

    var description: String {
        seconds == seconds.rounded() ? "\(Int(seconds))s" : "\(seconds)s"
    }

    static var defaultCompletionKind: CompletionKind { .default }
}
