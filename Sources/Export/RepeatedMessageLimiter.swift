/// Keeps a failing exporter from flooding the log: of a run of identical messages the first
/// is logged and the rest counted, with one reminder per `interval` while the run lasts. The
/// count is reported when the message changes or the run ends.
struct RepeatedMessageLimiter: Sendable {
    enum Decision: Equatable {
        /// Log the message. `previousRepeats` identical messages before it went unlogged
        /// (`previous` says which); `repeatsOfThis` copies of this message were suppressed
        /// since it was last logged.
        case log(previous: String?, previousRepeats: Int, repeatsOfThis: Int)
        /// Count it only.
        case suppress
    }

    let interval: Duration
    private var current: String?
    private var lastLogged: Duration = .zero
    private var suppressed = 0

    init(interval: Duration) {
        self.interval = interval
    }

    mutating func record(_ message: String, now: Duration) -> Decision {
        if message == current {
            guard now - lastLogged >= interval else {
                suppressed += 1
                return .suppress
            }
            let repeats = suppressed
            suppressed = 0
            lastLogged = now
            return .log(previous: nil, previousRepeats: 0, repeatsOfThis: repeats)
        }
        let previous = suppressed > 0 ? current : nil
        let previousRepeats = suppressed
        current = message
        suppressed = 0
        lastLogged = now
        return .log(previous: previous, previousRepeats: previousRepeats, repeatsOfThis: 0)
    }

    /// Ends the current run (the exporter recovered). Returns the message and how many copies
    /// went unlogged, if any did.
    mutating func reset() -> (message: String, repeats: Int)? {
        defer {
            current = nil
            suppressed = 0
        }
        guard let current, suppressed > 0 else { return nil }
        return (current, suppressed)
    }
}
