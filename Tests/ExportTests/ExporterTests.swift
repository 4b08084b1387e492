import Logging
import Profiles
import ServiceLifecycle
import TestSupport
import Testing

@testable import Export

/// The exporter's queue, retry loop, statistics, flush and shutdown, against a scripted
/// transport and a virtual retry clock (delays are recorded, never waited for).
@Suite struct ExporterTests {
    static func makeExporter(
        _ transport: ScriptedTransport, clock: VirtualClock = VirtualClock(), logger: Logger? = nil,
        configure: (inout OTLPExporterConfiguration) -> Void = { _ in }
    ) -> OTLPExporter {
        var configuration = OTLPExporterConfiguration()
        configuration.retry = OTLPRetryPolicy(
            initialBackoff: .seconds(1), maxBackoff: .seconds(30), multiplier: 2, jitter: .equal,
            maxElapsedTime: .seconds(300), maxThrottleDelay: .seconds(120))
        configure(&configuration)
        return OTLPExporter(
            configuration: configuration, transport: transport, logger: logger ?? Logger(label: "test"),
            clock: clock.retryClock)
    }

    static let unavailable = ScriptedTransport.Step.answer(.retryable(reason: "gRPC UNAVAILABLE", retryAfter: nil))

    @Test func retryableFailuresAreRetriedWithGrowingBackoff() async throws {
        let transport = ScriptedTransport([Self.unavailable, Self.unavailable, Self.unavailable])
        let clock = VirtualClock()
        let exporter = Self.makeExporter(transport, clock: clock)
        let statistics = try await whileRunning(exporter) { exporter in
            await exporter.enqueue(fakeRequest(byteCount: 100, samples: 7))
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
            return await exporter.statistics
        }
        #expect(transport.received.count == 4)
        #expect(Set(transport.received).count == 1, "the same request each time")
        #expect(statistics.attempts == 4 && statistics.retries == 3)
        #expect(statistics.succeeded == .init(requests: 1, profiles: 1, samples: 7))
        #expect(statistics.samplesExported == 7)
        #expect(statistics.bytesSent == 400)
        #expect(statistics.totalDropped.requests == 0)
        // Equal jitter: each delay lies in [ceiling/2, ceiling], ceilings 1, 2, 4 s.
        let sleeps = clock.sleeps
        #expect(sleeps.count == 3)
        for (delay, ceiling) in zip(sleeps, [1, 2, 4].map { Duration.seconds($0) }) {
            #expect(delay >= ceiling / 2 && delay <= ceiling, "\(delay) for ceiling \(ceiling)")
        }
    }

    @Test func theReceiversDelayIsHonoured() async throws {
        let transport = ScriptedTransport([
            .answer(.retryable(reason: "HTTP 429", retryAfter: .seconds(7))),
            .answer(.retryable(reason: "HTTP 503", retryAfter: .milliseconds(1500))),
        ])
        let clock = VirtualClock()
        let exporter = Self.makeExporter(transport, clock: clock)
        try await whileRunning(exporter) { exporter in
            await exporter.enqueue(fakeRequest(byteCount: 10))
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
        }
        #expect(clock.sleeps == [.seconds(7), .milliseconds(1500)])
    }

    @Test func aHugeReceiverDelayIsCapped() async throws {
        let transport = ScriptedTransport([.answer(.retryable(reason: "HTTP 429", retryAfter: .seconds(86_400)))])
        let clock = VirtualClock()
        let exporter = Self.makeExporter(transport, clock: clock)
        try await whileRunning(exporter) { exporter in
            await exporter.enqueue(fakeRequest(byteCount: 10))
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
        }
        #expect(clock.sleeps == [.seconds(120)])
    }

    @Test func permanentFailuresAreDroppedAtOnceAndCounted() async throws {
        let transport = ScriptedTransport([.answer(.permanent(reason: "HTTP 400: profile_id is all zero"))])
        let clock = VirtualClock()
        let recorder = LogRecorder()
        let exporter = Self.makeExporter(transport, clock: clock, logger: recorder.logger)
        let statistics = try await whileRunning(exporter) { exporter in
            await exporter.enqueue(fakeRequest(byteCount: 10, tag: 1, samples: 5))
            await exporter.enqueue(fakeRequest(byteCount: 10, tag: 2, samples: 6))
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
            return await exporter.statistics
        }
        #expect(clock.sleeps.isEmpty, "not retried")
        #expect(statistics.attempts == 2)
        #expect(statistics.dropped(.permanentError) == .init(requests: 1, profiles: 1, samples: 5))
        #expect(statistics.succeeded.samples == 6, "the next request goes on")
        #expect(statistics.lastError == "HTTP 400: profile_id is all zero")
        let errors = recorder.all.filter { $0.level == .error }
        #expect(errors.count == 1)
        #expect(errors.first?.message.contains("profile_id is all zero") == true, "the server's message is logged")
    }

    @Test func retriesEndAfterTheMaximumElapsedTime() async throws {
        let transport = ScriptedTransport(otherwise: Self.unavailable)
        let clock = VirtualClock()
        let exporter = Self.makeExporter(transport, clock: clock) {
            $0.retry = OTLPRetryPolicy(
                initialBackoff: .seconds(1), maxBackoff: .seconds(4), jitter: .full, maxElapsedTime: .seconds(20))
        }
        let statistics = try await whileRunning(exporter) { exporter in
            await exporter.enqueue(fakeRequest(byteCount: 10, samples: 3))
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
            return await exporter.statistics
        }
        let waited = clock.sleeps.reduce(Duration.zero, +)
        #expect(waited <= .seconds(20))
        #expect(clock.sleeps.count >= 5, "at most 4 s apart, so at least 5 retries fit in 20 s")
        #expect(statistics.dropped(.retriesExhausted) == .init(requests: 1, profiles: 1, samples: 3))
        #expect(statistics.attempts == clock.sleeps.count + 1)
        #expect(statistics.lastError == "gRPC UNAVAILABLE")
    }

    @Test func partialSuccessIsCountedAndNotRetried() async throws {
        let result = OTLPExportResult(rejectedProfiles: 3, errorMessage: "timestamps too old")
        let transport = ScriptedTransport([.answer(.success(result))])
        let recorder = LogRecorder()
        let exporter = Self.makeExporter(transport, logger: recorder.logger)
        let statistics = try await whileRunning(exporter) { exporter in
            await exporter.enqueue(OTLPEncodedRequest(bytes: [1, 2, 3], profileCount: 4, sampleCount: 40))
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
            return await exporter.statistics
        }
        #expect(transport.received.count == 1)
        #expect(statistics.partiallySucceeded == .init(requests: 1, profiles: 4, samples: 40))
        #expect(statistics.rejectedProfiles == 3)
        #expect(statistics.succeeded.requests == 0)
        #expect(recorder.all.contains { $0.level == .warning && $0.message.contains("timestamps too old") })
    }

    @Test func aFullQueueDropsTheOldestAndNeverExceedsItsBound() async throws {
        let transport = ScriptedTransport([.hold])
        let exporter = Self.makeExporter(transport) { $0.queueLimitBytes = 1000 }
        let statistics = try await whileRunning(exporter) { exporter in
            #expect(await exporter.enqueue(fakeRequest(byteCount: 300, tag: 0)))
            try await waitUntil("the first request is in flight") { transport.inFlight == 1 }
            for tag in UInt8(1)...9 {
                // 300 bytes are in flight, so two more requests fit: the newest two stay.
                #expect(await exporter.enqueue(fakeRequest(byteCount: 300, tag: tag)))
                let now = await exporter.statistics
                #expect(now.queuedBytes <= 1000)
                #expect(now.accountsForEveryRequest)
                #expect(now.inFlightRequests == 1)
            }
            let held = await exporter.statistics
            #expect(held.queuedRequests == 2 && held.queuedBytes == 900)
            #expect(held.dropped(.queueFull) == .init(requests: 7, profiles: 7, samples: 70))

            // Larger than the whole queue: refused.
            #expect(await !exporter.enqueue(fakeRequest(byteCount: 1001, tag: 100)))
            // Would fit an empty queue, but the request in flight leaves only 700 bytes: refused,
            // and the queued requests stay (dropping them would not make room).
            #expect(await !exporter.enqueue(fakeRequest(byteCount: 800, tag: 101)))
            #expect(await exporter.statistics.queuedRequests == 2)

            transport.release()
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
            return await exporter.statistics
        }
        #expect(transport.received.map(\.first) == [0, 8, 9], "in order: the one in flight, then the newest")
        #expect(statistics.peakQueuedBytes <= 1000)
        #expect(statistics.dropped(.queueFull) == .init(requests: 9, profiles: 9, samples: 90))
        #expect(statistics.succeeded.requests == 3)
        #expect(statistics.enqueued.requests == 12)
        #expect(statistics.enqueued.requests == statistics.succeeded.requests + statistics.totalDropped.requests)
        #expect(statistics.accountsForEveryRequest)
    }

    @Test func flushReturnsWhatItCouldNotSendInTime() async throws {
        let transport = ScriptedTransport([.hold])
        let exporter = Self.makeExporter(transport)
        try await whileRunning(exporter) { exporter in
            for tag in UInt8(0)..<3 { await exporter.enqueue(fakeRequest(byteCount: 50, tag: tag, samples: 2)) }
            try await waitUntil("an export is in flight") { transport.inFlight == 1 }
            let partial = await exporter.flush(timeout: .milliseconds(100))
            #expect(partial == OTLPFlushResult(remainingRequests: 3, remainingBytes: 150, remainingSamples: 6))
            transport.release()
            let complete = await exporter.flush(timeout: .seconds(60))
            #expect(complete == OTLPFlushResult(remainingRequests: 0, remainingBytes: 0, remainingSamples: 0))
        }
    }

    @Test func flushOfAnIdleExporterReturnsAtOnce() async throws {
        let exporter = Self.makeExporter(ScriptedTransport())
        #expect(await exporter.flush(timeout: .seconds(3600)).isComplete)
    }

    @Test func requestsAreSentInOrder() async throws {
        let transport = ScriptedTransport()
        let exporter = Self.makeExporter(transport)
        try await whileRunning(exporter) { exporter in
            for tag in UInt8(0)..<50 { await exporter.enqueue(fakeRequest(byteCount: 20, tag: tag)) }
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
        }
        #expect(transport.received.map(\.first) == (0..<50).map { UInt8($0) })
        #expect(transport.maxInFlight == 1)
    }

    @Test func concurrentExportsStayWithinTheirLimit() async throws {
        let transport = ScriptedTransport(otherwise: .hold)
        let exporter = Self.makeExporter(transport) { $0.maxConcurrentExports = 3 }
        let statistics = try await whileRunning(exporter) { exporter in
            for tag in UInt8(0)..<10 { await exporter.enqueue(fakeRequest(byteCount: 20, tag: tag)) }
            try await waitUntil("three exports are in flight") { transport.inFlight == 3 }
            #expect(await exporter.statistics.queuedRequests == 7)
            #expect(await exporter.statistics.queuedBytes == 200, "in-flight bytes count too")
            transport.release()
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
            return await exporter.statistics
        }
        #expect(transport.maxInFlight == 3)
        #expect(statistics.succeeded.requests == 10)
    }

    @Test func cancellingRunGivesQueuedRequestsOneLastAttempt() async throws {
        let transport = ScriptedTransport([.hold])
        let exporter = Self.makeExporter(transport)
        try await whileRunning(exporter) { exporter in
            for tag in UInt8(0)..<3 { await exporter.enqueue(fakeRequest(byteCount: 10, tag: tag)) }
            try await waitUntil("the first request is in flight") { transport.inFlight == 1 }
        }
        // The held export was interrupted and put back; all three went out in the drain.
        let statistics = await exporter.statistics
        #expect(statistics.succeeded.requests == 3)
        #expect(transport.received.map(\.first) == [0, 0, 1, 2])
        #expect(transport.wasShutDown)
        #expect(statistics.queuedBytes == 0)
    }

    @Test func whatCannotBeSentAtShutdownIsDroppedAndCounted() async throws {
        let transport = ScriptedTransport([.hold], otherwise: Self.unavailable)
        let exporter = Self.makeExporter(transport)
        try await whileRunning(exporter) { exporter in
            for tag in UInt8(0)..<3 { await exporter.enqueue(fakeRequest(byteCount: 10, tag: tag, samples: 4)) }
            try await waitUntil("the first request is in flight") { transport.inFlight == 1 }
        }
        var statistics = await exporter.statistics
        #expect(statistics.dropped(.shutdown) == .init(requests: 3, profiles: 3, samples: 12))
        #expect(statistics.queuedRequests == 0 && statistics.queuedBytes == 0)

        // After shutdown nothing is queued any more.
        #expect(await !exporter.enqueue(fakeRequest(byteCount: 10)))
        statistics = await exporter.statistics
        #expect(statistics.dropped(.shutdown).requests == 4)
        #expect(statistics.accountsForEveryRequest)
    }

    @Test func theShutdownDrainIsBoundedInTime() async throws {
        // Every export hangs; the drain must give up after the shutdown timeout.
        let transport = ScriptedTransport(otherwise: .hold)
        let exporter = Self.makeExporter(transport) { $0.shutdownTimeout = .milliseconds(100) }
        try await whileRunning(exporter) { exporter in
            for tag in UInt8(0)..<3 { await exporter.enqueue(fakeRequest(byteCount: 10, tag: tag)) }
            try await waitUntil("the first request is in flight") { transport.inFlight == 1 }
        }
        let statistics = await exporter.statistics
        #expect(statistics.dropped(.shutdown).requests == 3)
        #expect(statistics.succeeded.requests == 0)
    }

    @Test func runCanOnlyBeCalledOnce() async throws {
        let transport = ScriptedTransport()
        let exporter = Self.makeExporter(transport)
        try await whileRunning(exporter) { exporter in
            // Once a request went out, run() is certainly running.
            await exporter.enqueue(fakeRequest(byteCount: 1))
            try await waitUntil("the request was sent") { transport.received.count == 1 }
            await #expect(throws: OTLPExporterError.alreadyStarted) { try await exporter.run() }
        }
    }

    @Test func repeatedFailuresAreSummarisedInTheLog() async throws {
        let transport = ScriptedTransport(Array(repeating: Self.unavailable, count: 50))
        let recorder = LogRecorder()
        let exporter = Self.makeExporter(transport, logger: recorder.logger) {
            $0.retry = OTLPRetryPolicy(initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(100))
        }
        try await whileRunning(exporter) { exporter in
            await exporter.enqueue(fakeRequest(byteCount: 10))
            #expect(await exporter.flush(timeout: .seconds(60)).isComplete)
        }
        let retryLines = recorder.all.filter { $0.message.contains("retrying") }
        #expect(retryLines.count == 1, "50 identical failures within a minute: one line")
        let recovered = recorder.all.first { $0.message == "OTLP export recovered" }
        #expect(recovered?.metadata["unlogged_repeats"] == "49")
    }

    @Test(arguments: [OTLPExporterConfiguration.TransportProtocol.grpc, .httpProtobuf])
    func anExporterThatNeverRanNeedsNoShutdown(transportProtocol: OTLPExporterConfiguration.TransportProtocol) throws {
        // The transports create their clients on first use, so nothing is left to close.
        var exporter: OTLPExporter? = try OTLPExporter(
            configuration: OTLPExporterConfiguration(transportProtocol: transportProtocol), logger: Logger(label: "t"))
        #expect(exporter?.configuration.transportProtocol == transportProtocol)
        exporter = nil
    }

    @Test func aConfigurationThatCannotWorkIsRefused() {
        var configuration = OTLPExporterConfiguration()
        configuration.queueLimitBytes = -1
        #expect(throws: OTLPConfigurationError.self) {
            _ = try OTLPExporter(
                configuration: configuration, transport: ScriptedTransport(), logger: Logger(label: "t"))
        }
        var missingFile = OTLPExporterConfiguration(
            endpoint: OTLPEndpoint(usesTLS: true, host: "h", port: 1, path: "/"))
        missingFile.tls.certificateAuthorityFile = "/nonexistent/ca.pem"
        #expect {
            _ = try OTLPExporter(configuration: missingFile, logger: Logger(label: "t"))
        } throws: { error in
            "\(error)".contains("/nonexistent/ca.pem") && "\(error)".contains("No such file")
        }
    }
}

/// The exporter as a service of a `ServiceGroup`: graceful shutdown drains what is queued,
/// retries included, within the group's one shutdown bound.
@Suite struct ExporterServiceTests {
    /// A service that, once the group runs, enqueues `requests` and then shuts the group
    /// down: its producer's last act, as the agent's attribution service does.
    struct Producer: Service {
        let exporter: OTLPExporter
        let requests: Int

        func run() async throws {
            for index in 0..<requests { await exporter.enqueue(fakeRequest(byteCount: 50, tag: UInt8(index))) }
            try? await gracefulShutdown()
        }
    }

    func group(_ exporter: OTLPExporter, requests: Int, bound: Duration) -> ServiceGroup {
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: exporter),
                .init(
                    service: Producer(exporter: exporter, requests: requests),
                    successTerminationBehavior: .gracefullyShutdownGroup),
            ], logger: Logger(label: "test"))
        configuration.maximumGracefulShutdownDuration = bound
        configuration.maximumCancellationDuration = .seconds(30)
        return ServiceGroup(configuration: configuration)
    }

    @Test func gracefulShutdownSendsEverythingQueuedRetriesIncluded() async throws {
        let transport = ScriptedTransport([ExporterTests.unavailable, ExporterTests.unavailable])
        let exporter = ExporterTests.makeExporter(transport)
        let group = group(exporter, requests: 3, bound: .seconds(60))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await waitUntil("the requests are queued") { await exporter.statistics.enqueued.requests == 3 }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let statistics = await exporter.statistics
        #expect(statistics.succeeded.requests == 3, "\(statistics)")
        #expect(statistics.totalDropped.requests == 0)
        #expect(transport.received.count == 5, "two retries, then each request once")
        #expect(transport.wasShutDown)
    }

    @Test func theGroupsBoundEndsADrainThatCannotFinish() async throws {
        // Exports hang: only the group's bound can end the drain; no second timeout follows.
        let transport = ScriptedTransport(otherwise: .hold)
        let exporter = ExporterTests.makeExporter(transport) { $0.shutdownTimeout = .seconds(600) }
        let group = group(exporter, requests: 2, bound: .milliseconds(300))
        let started = ContinuousClock.now
        try? await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await waitUntil("the requests are queued") { await exporter.statistics.enqueued.requests == 2 }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let statistics = await exporter.statistics
        #expect(statistics.dropped[.shutdown]?.requests == 2, "\(statistics)")
        #expect(statistics.accountsForEveryRequest)
        // A deadline against a hang (the 600 s drain would be a second budget), not a speed test.
        #expect(ContinuousClock.now - started < .seconds(300))
    }
}
