// span-demo: an application instrumented with the ContextPublisher library, for trying nodeprof's
// trace correlation and for its tests. It publishes a process context and, on every worker
// thread, runs forever through three phases, burning CPU in a distinct function each:
//
//   span A (trace a1a1…, span a2a2…, http.route=/checkout)   spanAWork
//   no span                                                   idleWork
//   span B (trace b1b1…, span b2b2…, http.route=/cart)       spanBWork
//
// SIGUSR1 republishes the context (generation 2): a new resource attribute, an extra attribute
// and a key map with one more key, `demo.generation`, which the span records then carry too.
//
// Build with the TLS variable exported (Package.swift does), so profilers find it:
//   -Xlinker --export-dynamic-symbol=otel_thread_ctx_v1
import ContextPublisher
import Foundation
import Synchronization

let usage = """
    USAGE: span-demo [--threads N] [--phase-ms MS]

    Publishes an OpenTelemetry process context (service.name=span-demo) and alternates, on N
    worker threads (default 1), between span A, no span and span B, MS milliseconds each
    (default 5). Runs until killed. Prints its pid and the span ids on start-up.
    SIGUSR1 republishes the context with a larger key map (generation 2).
    """

/// Threads and phase length, from the command line.
func parseOptions() -> (threads: Int, phaseMilliseconds: Int) {
    var options = (threads: 1, phaseMilliseconds: 5)
    var arguments = CommandLine.arguments.dropFirst()
    while let argument = arguments.popFirst() {
        switch argument {
        case "--threads", "--phase-ms":
            guard let value = arguments.popFirst().flatMap({ Int($0) }), value > 0, value <= 1024 else {
                FileHandle.standardError.write(Data("span-demo: \(argument) needs a number from 1 to 1024\n".utf8))
                exit(64)
            }
            if argument == "--threads" { options.threads = value } else { options.phaseMilliseconds = value }
        case "-h", "--help":
            print(usage)
            exit(0)
        default:
            FileHandle.standardError.write(Data("span-demo: unknown argument \(argument)\n\(usage)\n".utf8))
            exit(64)
        }
    }
    return options
}
let (threads, phaseMilliseconds) = parseOptions()

let resource = ["service.name": "span-demo", "service.version": "1.0.0"]
let firstKeys = try ProcessContextPublisher.publish(
    resource: resource, attributes: ["deployment.environment.name": "demo"], threadAttributeKeys: ["http.route"])

let traceA = TraceID(hex: String(repeating: "a1", count: 16))!
let spanA = SpanID(hex: String(repeating: "a2", count: 8))!
let traceB = TraceID(hex: String(repeating: "b1", count: 16))!
let spanB = SpanID(hex: String(repeating: "b2", count: 8))!

/// The spans of one generation of the published context.
struct Spans: Sendable {
    var a: ThreadSpan
    var b: ThreadSpan
    init(keys: ThreadAttributeKeyMap, generation: String?) {
        var extra: [String: String] = [:]
        if let generation { extra["demo.generation"] = generation }
        a = ThreadSpan(
            traceID: traceA, spanID: spanA, flags: 1,
            attributes: extra.merging(["http.route": "/checkout"]) { $1 }, keys: keys)
        b = ThreadSpan(
            traceID: traceB, spanID: spanB, flags: 0, attributes: extra.merging(["http.route": "/cart"]) { $1 },
            keys: keys)
    }
}

/// Which generation the workers use: bumped once the republished context is out.
let generation = Atomic<Int>(1)
let generationTwo = Spans(
    keys: ThreadAttributeKeyMap(keys: ["http.route", "demo.generation"]), generation: "2")
let generationOne = Spans(keys: firstKeys, generation: nil)

/// Burns CPU for about `milliseconds` in a chain of xorshift steps the compiler cannot fold.
@inline(__always) func burn(_ milliseconds: Int, _ state: inout UInt64) {
    let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(milliseconds) * 1_000_000
    repeat {
        for _ in 0..<4096 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
        }
    } while DispatchTime.now().uptimeNanoseconds < deadline
}

@inline(never) func spanAWork(_ milliseconds: Int, _ state: inout UInt64) { burn(milliseconds, &state) }
@inline(never) func spanBWork(_ milliseconds: Int, _ state: inout UInt64) { burn(milliseconds, &state) }
@inline(never) func idleWork(_ milliseconds: Int, _ state: inout UInt64) { burn(milliseconds, &state) }

func work(seed: UInt64) -> Never {
    var state = seed | 1
    while true {
        let spans = generation.load(ordering: .acquiring) == 2 ? generationTwo : generationOne
        ThreadContext.withSpan(spans.a) { spanAWork(phaseMilliseconds, &state) }
        idleWork(phaseMilliseconds, &state)
        ThreadContext.withSpan(spans.b) { spanBWork(phaseMilliseconds, &state) }
    }
}

// SIGUSR1 is taken by a thread in sigwait: blocked everywhere else (workers inherit the mask).
var signals = sigset_t()
sigemptyset(&signals)
sigaddset(&signals, SIGUSR1)
pthread_sigmask(SIG_BLOCK, &signals, nil)
let signalThread = Thread {
    var received: Int32 = 0
    var wanted = sigset_t()
    sigemptyset(&wanted)
    sigaddset(&wanted, SIGUSR1)
    while sigwait(&wanted, &received) == 0 {
        guard generation.load(ordering: .acquiring) == 1 else { continue }
        do {
            // The key map first (append-only), then the records that use the new key.
            try ProcessContextPublisher.publish(
                resource: resource.merging(["service.version": "2.0.0"]) { $1 },
                attributes: ["deployment.environment.name": "demo", "demo.generation": "2"],
                threadAttributeKeys: ["http.route", "demo.generation"])
            generation.store(2, ordering: .releasing)
            print("republished generation 2")
            fflush(nil)  // every stream: stdout is a pipe under tests
        } catch {
            FileHandle.standardError.write(Data("span-demo: republishing failed: \(error)\n".utf8))
        }
    }
}
signalThread.start()

print("span-demo pid \(getpid()): span A \(traceA)/\(spanA), span B \(traceB)/\(spanB), \(threads) thread(s)")
fflush(nil)  // every stream: stdout is a pipe under tests
for index in 1..<threads {
    let worker = Thread { work(seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15) }
    worker.name = "worker-\(index)"
    worker.start()
}
work(seed: 0x2545_F491_4F6C_DD1D)
