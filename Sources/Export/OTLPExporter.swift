public import Logging
import NodeprofCore
public import Profiles
public import ServiceLifecycle
import Synchronization

/// Sends encoded OTLP profile requests to a receiver, in order, retrying transient failures,
/// while holding at most a bounded number of bytes (the swift-otel exporter shape).
///
/// Producers call ``enqueue(_:)``; one long-running ``run()`` sends. Requests wait in a
/// queue bounded in bytes (``OTLPExporterConfiguration/queueLimitBytes``), which counts the
/// requests in flight too, so memory stays bounded through any outage. When a new request
/// does not fit, the **oldest** queued requests are dropped to make room: after an outage
/// the most recent profiles are the ones worth having (they show the present, and backends
/// may refuse data that is too old), and a request that has waited longest is also the one
/// closest to its retry budget. A new request is refused only when even an empty queue
/// could not take it (larger than the limit, or the limit is filled by requests in flight).
/// Every drop is counted in ``statistics`` with its samples.
///
/// Failures follow ``OTLPRetryPolicy``: retryable ones are tried again after the receiver's
/// RetryInfo / Retry-After or an exponential backoff with jitter, until the policy's maximum
/// elapsed time; permanent ones are logged with the receiver's message and dropped; partial
/// successes are logged and counted, never retried (OTLP spec, "Partial Success"). Repeated
/// identical log messages are summarised, not repeated.
///
/// A `Service`: in a `ServiceGroup`, graceful shutdown makes ``run()`` send everything still
/// queued, with retries, and return once nothing is left; the group's shutdown bound is the
/// only budget (when it passes, the group cancels and what is left is dropped and counted).
/// Place it before its producers in the group, so they stop (and hand over their last
/// requests) before it drains.
public actor OTLPExporter: Service {
    private enum State {
        case idle, running, shuttingDown, finished
    }

    /// The configuration the exporter was created with.
    public nonisolated let configuration: OTLPExporterConfiguration
    private let transport: any OTLPExportTransport
    private let logger: Logger
    private let clock: RetryClock

    private var state = State.idle
    private var queue = RequestQueue()
    private var inFlight: [UInt64: QueuedRequest] = [:]
    private var inFlightBytes = 0
    private var nextSequence: UInt64 = 0
    private var stats = OTLPExporterStatistics()
    private var generator = SystemRandomNumberGenerator()

    /// Set by graceful shutdown: send what is queued, then return.
    private nonisolated let drainRequested = Atomic<Bool>(false)
    /// Wakes the send loop: a request was enqueued or an export finished.
    private let wakeups: AsyncStream<Void>
    private nonisolated let wakeupContinuation: AsyncStream<Void>.Continuation
    private var idleWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiterID: UInt64 = 0

    private var failureLog = RepeatedMessageLimiter(interval: .seconds(60))
    private var dropLog = RepeatedMessageLimiter(interval: .seconds(60))
    private var partialSuccessLog = RepeatedMessageLimiter(interval: .seconds(60))

    /// Creates an exporter with the transport the configuration asks for (gRPC or HTTP).
    ///
    /// - Throws: when a configuration value is invalid or a TLS file cannot be loaded.
    public init(configuration: OTLPExporterConfiguration, logger: Logger) throws(OTLPConfigurationError) {
        try configuration.validate()
        let transport: any OTLPExportTransport =
            switch configuration.transportProtocol {
            case .grpc: try GRPCExportTransport(configuration: configuration)
            case .httpProtobuf: try HTTPExportTransport(configuration: configuration)
            }
        self.init(configuration: configuration, transport: transport, logger: logger, clock: .system)
    }

    /// Creates an exporter that sends through `transport` (the configuration's endpoint,
    /// protocol, headers and TLS settings are then the transport's concern).
    public init(
        configuration: OTLPExporterConfiguration, transport: any OTLPExportTransport, logger: Logger
    ) throws(OTLPConfigurationError) {
        try configuration.validate()
        self.init(configuration: configuration, transport: transport, logger: logger, clock: .system)
    }

    init(
        configuration: OTLPExporterConfiguration, transport: any OTLPExportTransport, logger: Logger,
        clock: RetryClock
    ) {
        self.configuration = configuration
        self.transport = transport
        self.logger = logger
        self.clock = clock
        (wakeups, wakeupContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// What the exporter has done so far, and what it holds now.
    public var statistics: OTLPExporterStatistics {
        var snapshot = stats
        snapshot.queuedRequests = queue.count
        snapshot.inFlightRequests = inFlight.count
        snapshot.queuedBytes = heldBytes
        return snapshot
    }

    /// Bytes held: queued and in flight. Never more than the queue limit.
    private var heldBytes: Int { queue.byteCount + inFlightBytes }

    private var isIdle: Bool { queue.isEmpty && inFlight.isEmpty }

    /// Queues `request` for sending, dropping the oldest queued requests if it would not fit
    /// otherwise (see the type's documentation).
    ///
    /// - Returns: false when `request` itself was dropped: it is larger than the queue limit,
    ///   requests in flight fill the limit, or the exporter has shut down.
    @discardableResult
    public func enqueue(_ request: OTLPEncodedRequest) -> Bool {
        stats.enqueued.add(profiles: request.profileCount, samples: request.sampleCount)
        let item = QueuedRequest(sequence: nextSequence, request: request)
        nextSequence += 1
        let limit = configuration.queueLimitBytes

        guard state != .finished && state != .shuttingDown else {
            drop(item, .shutdown, because: "the exporter has shut down")
            return false
        }
        guard item.byteCount <= limit else {
            drop(item, .queueFull, because: "the request (\(item.byteCount) bytes) is larger than the queue limit")
            return false
        }
        // Requests in flight cannot be dropped: when they leave no room, refuse the new one
        // (and keep the queued ones, which would not make room either).
        guard inFlightBytes + item.byteCount <= limit else {
            drop(item, .queueFull, because: "requests in flight fill the queue")
            return false
        }
        while heldBytes + item.byteCount > limit, let oldest = queue.popFirst() {
            drop(oldest, .queueFull, because: "the queue is full; dropped the oldest request to make room")
        }
        queue.append(item)
        stats.peakQueuedBytes = max(stats.peakQueuedBytes, heldBytes)
        wakeupContinuation.yield()
        return true
    }

    /// Sends queued requests until graceful shutdown has drained them or the task is
    /// cancelled; call it once.
    ///
    /// On graceful shutdown (in a `ServiceGroup`) it goes on sending, retries included, until
    /// nothing is queued or in flight, then returns. On cancellation the requests in flight
    /// are interrupted and put back; without a graceful shutdown before it, every queued
    /// request gets one more attempt within ``OTLPExporterConfiguration/shutdownTimeout``
    /// (after one, the group's bound is spent and nothing more is tried). What is still left
    /// is dropped as ``OTLPExporterStatistics/DropReason/shutdown`` and the transport is
    /// closed. From then on, ``enqueue(_:)`` drops its request.
    ///
    /// - Throws: ``OTLPExporterError/alreadyStarted`` on a second call.
    public func run() async throws {
        guard state == .idle else { throw OTLPExporterError.alreadyStarted }
        state = .running
        logger.debug(
            "OTLP exporter started",
            metadata: [
                "endpoint": "\(configuration.endpoint)", "protocol": "\(configuration.transportProtocol)",
            ])

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                startExports(in: &group)
                // The stream ends when this task is cancelled.
                for await _ in wakeups {
                    if Task.isCancelled { break }
                    startExports(in: &group)
                    if drainRequested.load(ordering: .relaxed) && isIdle { break }
                }
            }
        } onGracefulShutdown: {
            self.requestDrain()
        }

        state = .shuttingDown
        let drained = drainRequested.load(ordering: .relaxed)
        if !queue.isEmpty && configuration.shutdownTimeout > .zero && !drained {
            // Not a child task: the cancellation that ended the loop must not cut this short.
            let drain = Task { await self.sendEachOnce(within: self.configuration.shutdownTimeout) }
            await drain.value
        }
        for item in queue.removeAll() {
            drop(item, .shutdown, because: "still queued at shutdown")
        }
        await transport.shutdown()
        state = .finished
        resumeIdleWaiters()
        let final = statistics
        if let left = final.dropped[.shutdown], left.requests > 0 {
            logger.warning(
                "\(left.requests) export requests (\(left.samples) samples) were not sent before shutdown; is the collector reachable?"
            )
        }
        logger.info(
            "OTLP exporter stopped",
            metadata: [
                "succeeded": "\(final.succeeded.requests)", "partial": "\(final.partiallySucceeded.requests)",
                "dropped": "\(final.totalDropped.requests)", "samples_exported": "\(final.samplesExported)",
            ])
    }

    /// Graceful shutdown: send what is queued, then let ``run()`` return.
    private nonisolated func requestDrain() {
        drainRequested.store(true, ordering: .relaxed)
        wakeupContinuation.yield()
    }

    /// Waits until everything queued has been sent (or dropped), or `timeout` has passed.
    /// Sending is done by ``run()``, which must be running.
    ///
    /// - Returns: what was still queued or in flight when the wait ended.
    public func flush(timeout: Duration) async -> OTLPFlushResult {
        if !isIdle {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.waitUntilIdle() }
                group.addTask { try? await Task.sleep(for: timeout) }
                await group.next()
                group.cancelAll()
            }
        }
        let held = Array(queue.requests) + Array(inFlight.values)
        return OTLPFlushResult(
            remainingRequests: held.count, remainingBytes: heldBytes,
            remainingSamples: held.reduce(0) { $0 + $1.request.sampleCount })
    }

    // MARK: Sending

    private func startExports(in group: inout DiscardingTaskGroup) {
        while inFlight.count < configuration.maxConcurrentExports, let item = queue.popFirst() {
            take(item)
            group.addTask { await self.export(item, retrying: true) }
        }
    }

    /// The shutdown drain: one attempt per queued request, in order, until the time is up.
    private func sendEachOnce(within timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled, let item = await self.takeNext() {
                    await self.export(item, retrying: false)
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func takeNext() -> QueuedRequest? {
        guard let item = queue.popFirst() else { return nil }
        take(item)
        return item
    }

    private func take(_ item: QueuedRequest) {
        inFlight[item.sequence] = item
        inFlightBytes += item.byteCount
    }

    /// Sends one request until it succeeds, fails for good, or runs out of retries (OTLP
    /// exporter spec, "Retry"). An interrupted export (task cancelled) puts the request back.
    private func export(_ item: QueuedRequest, retrying: Bool) async {
        let started = clock.now()
        var retry = 0
        while true {
            guard !Task.isCancelled else { return putBack(item) }
            stats.attempts += 1
            if retry > 0 { stats.retries += 1 }
            stats.bytesSent += item.byteCount

            switch await transport.export(item.request.bytes) {
            // Statistics first, then finish(): it may wake flush() callers.
            case .success(let result):
                recordSuccess(of: item, result: result)
                finish(item)
                return
            case .permanent(let reason):
                stats.lastError = reason
                drop(item, .permanentError, because: "the receiver refused it: \(reason)")
                finish(item)
                return
            case .retryable(let reason, let retryAfter):
                // A failure caused by our own cancellation says nothing about the receiver.
                guard !Task.isCancelled else { return putBack(item) }
                stats.lastError = reason
                guard retrying else {
                    drop(item, .shutdown, because: "the last attempt at shutdown failed: \(reason)")
                    finish(item)
                    return
                }
                let delay = configuration.retry.delay(forRetry: retry, receiverDelay: retryAfter, using: &generator)
                let elapsed = clock.now() - started
                guard elapsed + delay <= configuration.retry.maxElapsedTime else {
                    let limit = configuration.retry.maxElapsedTime.formatted
                    drop(
                        item, .retriesExhausted,
                        because: "failing for \(elapsed.formatted) (limit \(limit)): \(reason)")
                    finish(item)
                    return
                }
                log(
                    &failureLog, .warning, "OTLP export failed, retrying: \(reason)",
                    metadata: [
                        "retry_in": "\(delay.formatted)", "retry": "\(retry + 1)",
                        "server_delay": "\(retryAfter != nil)",
                    ])
                do {
                    try await clock.sleep(delay)
                } catch {
                    return putBack(item)
                }
                retry += 1
            }
        }
    }

    private func recordSuccess(of item: QueuedRequest, result: OTLPExportResult) {
        if let (message, repeats) = failureLog.reset() {
            logger.info(
                "OTLP export recovered", metadata: ["last_failure": "\(message)", "unlogged_repeats": "\(repeats)"])
        }
        guard result.isPartialSuccess else {
            stats.succeeded.add(profiles: item.request.profileCount, samples: item.request.sampleCount)
            return
        }
        stats.partiallySucceeded.add(profiles: item.request.profileCount, samples: item.request.sampleCount)
        stats.rejectedProfiles += result.rejectedProfiles
        let message =
            result.rejectedProfiles > 0
            ? "OTLP receiver rejected \(result.rejectedProfiles) of \(item.request.profileCount) profiles: \(result.errorMessage)"
            : "OTLP receiver accepted the request with a warning: \(result.errorMessage)"
        log(&partialSuccessLog, .warning, message)
    }

    /// Removes a request from the in-flight set once it is done (sent or dropped).
    private func finish(_ item: QueuedRequest) {
        guard inFlight.removeValue(forKey: item.sequence) != nil else { return }
        inFlightBytes -= item.byteCount
        wakeupContinuation.yield()
        if isIdle { resumeIdleWaiters() }
    }

    /// Returns an interrupted request to the queue in its original place.
    private func putBack(_ item: QueuedRequest) {
        guard inFlight.removeValue(forKey: item.sequence) != nil else { return }
        inFlightBytes -= item.byteCount
        queue.putBack(item)
    }

    private func drop(_ item: QueuedRequest, _ reason: OTLPExporterStatistics.DropReason, because detail: String) {
        stats.dropped[reason, default: .init()].add(
            profiles: item.request.profileCount, samples: item.request.sampleCount)
        let message = "OTLP request dropped (\(reason)): \(detail)"
        let metadata: Logger.Metadata = [
            "samples": "\(item.request.sampleCount)", "bytes": "\(item.byteCount)",
        ]
        switch reason {
        case .queueFull, .shutdown: log(&dropLog, .warning, message, metadata: metadata)
        case .permanentError, .retriesExhausted: log(&failureLog, .error, message, metadata: metadata)
        }
    }

    private func log(
        _ limiter: inout RepeatedMessageLimiter, _ level: Logger.Level, _ message: String,
        metadata: Logger.Metadata = [:]
    ) {
        switch limiter.record(message, now: clock.now()) {
        case .suppress:
            return
        case .log(let previous, let previousRepeats, let repeatsOfThis):
            if let previous {
                // Bookkeeping for an earlier run of warnings or errors: visible at warning level.
                logger.warning("previous message repeated \(previousRepeats) more times: \(previous)")
            }
            var metadata = metadata
            if repeatsOfThis > 0 { metadata["unlogged_repeats"] = "\(repeatsOfThis)" }
            logger.log(level: level, "\(message)", metadata: metadata)
        }
    }

    // MARK: Flush waiting

    private func waitUntilIdle() async {
        let id = nextWaiterID
        nextWaiterID += 1
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                if isIdle || Task.isCancelled || state == .finished {
                    continuation.resume()
                } else {
                    idleWaiters[id] = continuation
                }
            }
        } onCancel: {
            Task { await self.resumeIdleWaiter(id) }
        }
    }

    private func resumeIdleWaiter(_ id: UInt64) {
        idleWaiters.removeValue(forKey: id)?.resume()
    }

    private func resumeIdleWaiters() {
        let waiters = idleWaiters.values
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }
}

/// Misuse of an ``OTLPExporter``.
public enum OTLPExporterError: Error, Sendable, Hashable, CustomStringConvertible {
    /// ``OTLPExporter/run()`` was called a second time.
    case alreadyStarted

    public var description: String {
        switch self {
        case .alreadyStarted: "OTLPExporter.run() was already called; an exporter runs once"
        }
    }
}

/// The retry loop's view of time, replaceable in tests: a monotonic reading and a sleep.
struct RetryClock: Sendable {
    var now: @Sendable () -> Duration
    var sleep: @Sendable (Duration) async throws -> Void

    static let system = RetryClock(
        now: { .nanoseconds(Int64(monotonicNanoseconds())) },
        sleep: { try await Task.sleep(for: $0) })
}

extension Duration {
    /// Seconds with millisecond precision, such as "2.125 s".
    var formatted: String {
        let milliseconds = Int64((seconds * 1000).rounded())
        let fraction = String(milliseconds % 1000)
        return "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction) s"
    }
}
