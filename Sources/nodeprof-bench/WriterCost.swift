import ArgumentParser
import CContextPublisher
import ContextPublisher
import Foundation
import Glibc

/// What the loops feed their results into, so the optimizer keeps them.
nonisolated(unsafe) private var writerCostSink: UInt = 0

/// An empty call the optimizer cannot remove: the baseline loop's body.
@inline(never)
private func writerCostConsume(_ value: UInt) {
    writerCostSink &+= value
}

/// The writer's hot path (OTEP 4947 thread context): attaching a span record to the calling
/// thread and detaching it, per iteration, in C and in Swift; beside it a thread-specific
/// key (`pthread_setspecific`), what an implementation without an ELF TLS variable pays, and an
/// empty loop. Cases are interleaved: each repetition runs every case once, so drift in the
/// machine's speed touches all of them alike. Times are the thread's CPU time (wall time beside).
struct WriterCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "writer-cost", abstract: "Measure thread-context attach + detach (prints JSON).")

    @Option(help: "Iterations per case and repetition.") var iterations = 10_000_000
    @Option(help: "Repetitions (the median is reported).") var repeats = 7

    /// The attribute of the one-attribute cases: 11 bytes, an http.route.
    static let route = "/users/{id}"

    struct Case {
        var key: String
        var name: String
        var body: (Int) -> UInt
    }

    func run() throws {
        let traceID = TraceID(high: 0x4bf9_2f35_77b3_4da6, low: 0xa3ce_929d_0e0e_4736)
        let spanID = SpanID(0x00f0_67aa_0ba9_02b7)
        let plainSpan = ThreadSpan(traceID: traceID, spanID: spanID, flags: 1)
        let routeSpan = ThreadSpan(traceID: traceID, spanID: spanID, flags: 1, attributes: [0: Self.route])

        // Caller-owned records, built once (the C cases attach them as they are).
        let plain = UnsafeMutablePointer<otel_thread_record>.allocate(capacity: 1)
        let withRoute = UnsafeMutablePointer<otel_thread_record>.allocate(capacity: 1)
        defer {
            plain.deallocate()
            withRoute.deallocate()
        }
        let traceBytes = traceID.bytes
        let spanBytes = spanID.bytes
        otel_thread_record_init(plain, traceBytes, spanBytes, 1)
        otel_thread_record_init(withRoute, traceBytes, spanBytes, 1)
        let added = Self.route.withCString { otel_thread_record_add_attribute(withRoute, 0, $0, strlen($0)) }
        guard added else { throw ValidationError("the attribute did not fit") }
        let routeBytes = Array(Self.route.utf8CString)

        var key = pthread_key_t()
        guard pthread_key_create(&key, nil) == 0 else { throw ValidationError("pthread_key_create failed") }
        defer { pthread_key_delete(key) }

        let cases: [Case] = [
            Case(key: "empty", name: "baseline: empty loop (one opaque call per iteration)") { n in
                for i in 0..<n { writerCostConsume(UInt(i)) }
                return writerCostSink
            },
            Case(key: "c_set_clear", name: "C `otel_thread_ctx_set` + `otel_thread_ctx_clear` (caller-owned record)") {
                n in
                var total: UInt = 0
                for _ in 0..<n {
                    otel_thread_ctx_set(plain)
                    otel_thread_ctx_clear()
                }
                total &+= UInt(plain.pointee.valid)
                return total
            },
            Case(key: "c_store_clear", name: "C `otel_thread_ctx_store` + `otel_thread_ctx_clear`, no attribute") { n in
                for _ in 0..<n {
                    otel_thread_ctx_store(plain)
                    otel_thread_ctx_clear()
                }
                return UInt(plain.pointee.attrs_data_size)
            },
            Case(key: "c_store_clear_attr", name: "C `otel_thread_ctx_store` + `otel_thread_ctx_clear`, one attribute")
            {
                n in
                for _ in 0..<n {
                    otel_thread_ctx_store(withRoute)
                    otel_thread_ctx_clear()
                }
                return UInt(withRoute.pointee.attrs_data_size)
            },
            Case(
                key: "c_build_store_clear_attr",
                name: "C `otel_thread_record_init` + `add_attribute` + `store` + `clear` (record built per span)"
            ) { n in
                var record = otel_thread_record()
                var total: UInt = 0
                routeBytes.withUnsafeBufferPointer { route in
                    let length = route.count - 1
                    for i in 0..<n {
                        otel_thread_record_init(&record, traceBytes, spanBytes, UInt8(truncatingIfNeeded: i) & 1)
                        _ = otel_thread_record_add_attribute(&record, 0, route.baseAddress, length)
                        otel_thread_ctx_store(&record)
                        otel_thread_ctx_clear()
                    }
                    total = UInt(record.attrs_data_size)
                }
                return total
            },
            Case(key: "swift_set_clear", name: "Swift `ThreadContext.set` + `clear`, no attribute") { n in
                var total: UInt = 0
                for _ in 0..<n {
                    if ThreadContext.set(plainSpan) { total &+= 1 }
                    ThreadContext.clear()
                }
                return total
            },
            Case(key: "swift_set_clear_attr", name: "Swift `ThreadContext.set` + `clear`, one attribute") { n in
                var total: UInt = 0
                for _ in 0..<n {
                    if ThreadContext.set(routeSpan) { total &+= 1 }
                    ThreadContext.clear()
                }
                return total
            },
            Case(key: "swift_with_span_attr", name: "Swift `ThreadContext.withSpan { }`, one attribute") { n in
                var total: UInt = 0
                for i in 0..<n {
                    total &+= ThreadContext.withSpan(routeSpan) { UInt(i) }
                }
                return total
            },
            Case(
                key: "pthread_key",
                name:
                    "peer: `pthread_getspecific` + `pthread_setspecific` (attach, keeping the previous) + `pthread_setspecific` (detach)"
            ) { n in
                var total: UInt = 0
                for _ in 0..<n {
                    let previous = pthread_getspecific(key)
                    pthread_setspecific(key, plain)
                    pthread_setspecific(key, previous)
                }
                total &+= UInt(bitPattern: pthread_getspecific(key))
                return total
            },
        ]

        // Checks, untimed: each way of attaching really attaches, and detaching detaches.
        var checks: [String: Bool] = [:]
        otel_thread_ctx_set(plain)
        checks["c_set_attaches"] = otel_thread_ctx_get() == plain && plain.pointee.valid == 1
        otel_thread_ctx_clear()
        checks["c_clear_detaches"] = otel_thread_ctx_get() == nil
        otel_thread_ctx_store(withRoute)
        checks["c_store_attaches_copy"] =
            otel_thread_ctx_get().map { $0.pointee.attrs_data_size == withRoute.pointee.attrs_data_size } ?? false
        otel_thread_ctx_clear()
        ThreadContext.set(routeSpan)
        checks["swift_set_attaches"] = ThreadContext.current == routeSpan
        ThreadContext.clear()
        checks["swift_with_span_attaches"] = ThreadContext.withSpan(routeSpan) { ThreadContext.current == routeSpan }
        checks["swift_with_span_restores"] = ThreadContext.current == nil
        pthread_setspecific(key, plain)
        checks["pthread_key_attaches"] = pthread_getspecific(key) == UnsafeMutableRawPointer(plain)
        pthread_setspecific(key, nil)

        // One unmeasured round, then the repetitions.
        for c in cases { writerCostSink &+= c.body(max(1, iterations / 10)) }
        let clock = ContinuousClock()
        var perIteration: [String: [Double]] = [:]
        var wallPerIteration: [String: [Double]] = [:]
        for _ in 0..<repeats {
            for c in cases {
                let start = clock.now
                let cpuStart = ThreadCPUTime.nanoseconds()
                let result = c.body(iterations)
                let cpu = ThreadCPUTime.nanoseconds() - cpuStart
                let elapsed = clock.now - start
                writerCostSink &+= result
                perIteration[c.key, default: []].append(Double(cpu) / Double(iterations))
                wallPerIteration[c.key, default: []].append(
                    Measurement.milliseconds(elapsed) * 1e6 / Double(iterations))
            }
        }
        let results: [[String: Any]] = cases.map { c in
            let times = perIteration[c.key] ?? []
            return [
                "key": c.key, "name": c.name, "median_ns": Measurement.median(times),
                "min_ns": times.min() ?? 0, "max_ns": times.max() ?? 0,
                "wall_median_ns": Measurement.median(wallPerIteration[c.key] ?? []),
            ]
        }
        try Measurement.printJSON([
            "iterations": iterations,
            "repeats": repeats,
            "attribute_bytes": Self.route.utf8.count,
            "cases": results,
            "checks": checks,
            "sink": writerCostSink,
        ])
    }
}
