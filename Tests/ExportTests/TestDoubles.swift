import Logging
import Profiles
import Synchronization
import TestSupport
import Testing

@testable import Export

/// A transport that answers from a script, records what it was sent, and can hold exports
/// "in flight" until released.
final class ScriptedTransport: OTLPExportTransport {
    enum Step: Sendable {
        case answer(OTLPExportAttemptOutcome)
        /// Stays in flight until ``release()`` (then succeeds) or the task is cancelled.
        case hold
    }

    private struct State {
        var script: [Step]
        var otherwise: Step
        var received: [[UInt8]] = []
        var inFlight = 0
        var maxInFlight = 0
        var released = false
        var shutDown = false
    }

    private let state: Mutex<State>

    /// - Parameter otherwise: the answer once the script is used up.
    init(_ script: [Step] = [], otherwise: Step = .answer(.success(OTLPExportResult()))) {
        state = Mutex(State(script: script, otherwise: otherwise))
    }

    func export(_ request: [UInt8]) async -> OTLPExportAttemptOutcome {
        let step = state.withLock { state in
            state.received.append(request)
            state.inFlight += 1
            state.maxInFlight = max(state.maxInFlight, state.inFlight)
            return state.script.isEmpty ? state.otherwise : state.script.removeFirst()
        }
        defer { state.withLock { $0.inFlight -= 1 } }
        switch step {
        case .answer(let outcome):
            return outcome
        case .hold:
            while !state.withLock({ $0.released }) {
                do {
                    try await Task.sleep(for: .milliseconds(2))
                } catch {
                    return .retryable(reason: "cancelled", retryAfter: nil)
                }
            }
            return .success(OTLPExportResult())
        }
    }

    func shutdown() async {
        state.withLock { $0.shutDown = true }
    }

    /// Lets held exports succeed.
    func release() { state.withLock { $0.released = true } }

    var received: [[UInt8]] { state.withLock { $0.received } }
    var inFlight: Int { state.withLock { $0.inFlight } }
    var maxInFlight: Int { state.withLock { $0.maxInFlight } }
    var wasShutDown: Bool { state.withLock { $0.shutDown } }
}

/// Retry time that passes only when the exporter sleeps: delays are recorded, not waited.
final class VirtualClock: Sendable {
    private let state = Mutex<(now: Duration, sleeps: [Duration])>((.zero, []))

    var retryClock: RetryClock {
        RetryClock(
            now: { self.state.withLock { $0.now } },
            sleep: { delay in
                try Task.checkCancellation()
                self.state.withLock { state in
                    state.now += delay
                    state.sleeps.append(delay)
                }
                await Task.yield()
            })
    }

    /// Every delay the exporter asked for, in order.
    var sleeps: [Duration] { state.withLock { $0.sleeps } }
}

/// Log records kept for inspection.
final class LogRecorder: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let records = Mutex<[Record]>([])

    var logger: Logger {
        Logger(label: "export-test") { _ in Handler(recorder: self) }
    }

    var all: [Record] { records.withLock { $0 } }

    func append(_ record: Record) { records.withLock { $0.append(record) } }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorder.append(Record(level: event.level, message: "\(event.message)", metadata: event.metadata ?? [:]))
        }
    }
}

/// A request of `byteCount` bytes (not valid protobuf; fake transports do not care).
func fakeRequest(byteCount: Int, tag: UInt8 = 0, samples: Int = 10) -> OTLPEncodedRequest {
    OTLPEncodedRequest(bytes: [UInt8](repeating: tag, count: byteCount), profileCount: 1, sampleCount: samples)
}

/// Runs `exporter` while `body` runs, then cancels it and waits for its shutdown.
func whileRunning<T: Sendable>(
    _ exporter: OTLPExporter, _ body: @Sendable (OTLPExporter) async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
        group.addTask { try await exporter.run() }
        do {
            let result = try await body(exporter)
            group.cancelAll()
            try await group.waitForAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

/// Polls `condition` until it holds; fails the test after `timeout` (a deadline against a
/// hang, never an assertion about speed).
func waitUntil(
    _ what: String, timeout: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

extension OTLPExporterStatistics {
    /// Every enqueued request is accounted for exactly once.
    var accountsForEveryRequest: Bool {
        enqueued.requests
            == succeeded.requests + partiallySucceeded.requests + totalDropped.requests + queuedRequests
            + inFlightRequests
    }
}
