import Foundation
public import KubeMetadata
public import Logging
public import NodeprofCore
public import Profiles
public import Sampling
public import ServiceLifecycle
import Synchronization

/// A closed recording window on its way to attribution and export.
public struct ClosedWindow: Sendable {
    public var profile: Profile
    /// The container of each process that has samples in the window (processes outside any
    /// container are absent).
    public var containers: [Int32: ContainerIdentity]
}

/// Samples the whole node without end, cutting the recording into windows of
/// `exportInterval` that go to ``AttributionService`` through `windows`. The sampler lives
/// on a dedicated thread (it blocks in ring-buffer polls); graceful shutdown stops it, and
/// the last, partial window is still handed over.
public final class SamplingService: Service, Sendable {
    /// Makes, on the sampling thread, the function that finds a process's container from its
    /// pid and cgroup id (reading /proc while the process still runs).
    public typealias ContainerIdentifierFactory =
        @Sendable () -> (_ pid: Int32, _ cgroupID: UInt64) -> ContainerIdentity?

    private let configuration: SamplerConfiguration
    private let windowSeconds: Double
    private let windows: AsyncStream<ClosedWindow>.Continuation
    private let makeIdentifier: ContainerIdentifierFactory
    private let state: AgentState
    private let logger: Logger

    public init(
        configuration: SamplerConfiguration, windowSeconds: Double, windows: AsyncStream<ClosedWindow>.Continuation,
        state: AgentState, logger: Logger, makeIdentifier: @escaping ContainerIdentifierFactory
    ) {
        self.configuration = configuration
        self.windowSeconds = windowSeconds
        self.windows = windows
        self.makeIdentifier = makeIdentifier
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
        let recording = try Recording(durationSeconds: nil, sampler: configuration)
        state.update {
            $0.samplerRunning = true
            $0.samplingHeartbeatNanos = monotonicNanoseconds()
        }
        logger.info(
            "sampling every CPU at \(configuration.frequency) Hz; a profile every \(windowSeconds) s")
        defer { state.update { $0.samplerRunning = false } }
        let identify = makeIdentifier()
        // Filled on the sampling thread by observeProcess, emptied by the window handler on
        // the same thread: the mutex only satisfies the compiler (never contended).
        let containers = Mutex<[Int32: ContainerIdentity]>([:])
        let state = self.state
        let windows = self.windows
        let window = RecordingWindow(seconds: windowSeconds, keepsWholeRecording: false) { profile in
            let closed = ClosedWindow(
                profile: profile,
                containers: containers.withLock { current in
                    defer { current = [:] }
                    return current
                })
            let result = windows.yield(closed)
            state.update {
                $0.windowsClosed += 1
                if case .dropped = result { $0.windowsDropped += 1 }
            }
        }
        _ = try recording.run(
            stop: stop, window: window,
            observeProcess: { pid, cgroupID in
                if let reference = identify(pid, cgroupID) { containers.withLock { $0[pid] = reference } }
            },
            progress: { progress in
                state.update {
                    $0.samplingHeartbeatNanos = monotonicNanoseconds()
                    $0.samplesRecorded = progress.samples
                    $0.processesTracked = progress.processes
                    if let counters = progress.counters { $0.samplerCounters = counters }
                    $0.processContexts = progress.processContexts
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
