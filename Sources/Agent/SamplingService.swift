import Foundation
public import Logging
public import NodeprofCore
import ProcessTable
public import Profiles
import Recording
public import Sampling
public import ServiceLifecycle

/// A closed recording window on its way to attribution and export: each process
/// description in it carries the container its cgroup names.
public struct ClosedWindow: Sendable {
    public var profile: Profile

    public init(profile: Profile) {
        self.profile = profile
    }
}

/// Samples the whole node without end, cutting the recording into windows of
/// `exportInterval` that go to ``AttributionService`` through `windows`. The sampler lives
/// on a dedicated thread (it blocks in ring-buffer polls); graceful shutdown stops it, and
/// the last, partial window is still handed over.
public final class SamplingService: Service, Sendable {
    private let configuration: SamplerConfiguration
    private let windowSeconds: Double
    private let windows: AsyncStream<ClosedWindow>.Continuation
    private let identifiesContainers: Bool
    private let state: AgentState
    private let logger: Logger

    /// - Parameter identifiesContainers: find each process's container from its cgroup.
    public init(
        configuration: SamplerConfiguration, windowSeconds: Double, windows: AsyncStream<ClosedWindow>.Continuation,
        state: AgentState, logger: Logger, identifiesContainers: Bool = true
    ) {
        self.configuration = configuration
        self.windowSeconds = windowSeconds
        self.windows = windows
        self.identifiesContainers = identifiesContainers
        self.state = state
        self.logger = logger
    }

    public func run() async throws {
        let stop = StopSignal()
        defer { windows.finish() }
        do {
            try await withGracefulShutdownHandler {
                try await runOnDedicatedThread { [self] in try self.record(stop: stop) }
            } onGracefulShutdown: {
                stop.stop()
            }
            state.update { $0.samplingEnded = true }
        } catch {
            state.update {
                $0.samplingEnded = true
                $0.samplingError = "\(error)"
            }
            throw error
        }
    }

    private func record(stop: StopSignal) throws(SamplerError) {
        let recording = try Recording(
            durationSeconds: nil, sampler: configuration,
            processTable: ProcessTable.Configuration(identifiesContainers: identifiesContainers))
        state.update {
            $0.samplerRunning = true
            $0.samplingHeartbeatNanos = monotonicNanoseconds()
        }
        logger.info(
            "sampling every CPU at \(configuration.frequency) Hz; a profile every \(windowSeconds) s")
        if let reason = recording.contextEventsUnavailable {
            logger.notice(
                "process contexts published after a process's first sample are found by a rescan every 30 s: \(reason)")
        }
        defer { state.update { $0.samplerRunning = false } }
        let state = self.state
        let windows = self.windows
        let window = RecordingWindow(seconds: windowSeconds, keepsWholeRecording: false) { profile in
            let result = windows.yield(ClosedWindow(profile: profile))
            state.update {
                $0.windowsClosed += 1
                if case .dropped = result { $0.windowsDropped += 1 }
            }
        }
        _ = try recording.run(
            stop: stop, window: window,
            progress: { progress in
                state.update {
                    $0.samplingHeartbeatNanos = monotonicNanoseconds()
                    $0.samplesRecorded = progress.samples
                    $0.processesTracked = progress.processes
                    if let counters = progress.counters { $0.samplerCounters = counters }
                    $0.processTable = progress.processTable
                }
            })
    }
}

/// Runs `body` on a new thread (8 MiB stack) and returns its result: for blocking work that
/// must not hold a thread of Swift's cooperative pool.
public func runOnDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
