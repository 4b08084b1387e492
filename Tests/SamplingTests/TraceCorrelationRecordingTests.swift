import Agent
import Foundation
import NodeprofCore
import ProcessTable
import Profiles
import Recording
import Sampling
import TestSupport
import Testing

/// The whole path on a real process using the writer library (ContextPublisher's C part,
/// built as a TLSDESC shared library): it publishes its process context with a key map and
/// alternates between two spans; a recording links every sample to its span.
@Suite(.serialized, .machineExclusive) struct TraceCorrelationRecordingTests {
    static let program = """
        #include <stdint.h>
        #include <string.h>
        #include "otel_context.h"
        static volatile unsigned long sink;
        __attribute__((noinline)) void checkout_work(void) { for (unsigned long i = 0; i < 3000000; i++) sink += i; }
        __attribute__((noinline)) void cart_work(void) { for (unsigned long i = 0; i < 3000000; i++) sink += 3 * i; }
        __attribute__((noinline)) void idle_work(void) { for (unsigned long i = 0; i < 3000000; i++) sink ^= i; }
        int main(void) {
            otel_kv resource[] = {{"service.name", "shop"}, {"service.version", "2.0.1"}};
            const char *keys[] = {"http.route", "user.tier"};
            if (otel_process_context_publish(resource, 2, 0, 0, keys, 2) != 0) return 2;
            uint8_t trace_a[16], span_a[8], trace_b[16], span_b[8];
            memset(trace_a, 0xA1, 16); memset(span_a, 0xA2, 8); memset(trace_b, 0xB1, 16); memset(span_b, 0xB2, 8);
            otel_thread_record a, b;
            otel_thread_record_init(&a, trace_a, span_a, 1);
            otel_thread_record_add_attribute(&a, 0, "/checkout", 9);
            otel_thread_record_add_attribute(&a, 1, "gold", 4);
            otel_thread_record_init(&b, trace_b, span_b, 0);
            otel_thread_record_add_attribute(&b, 0, "/cart", 5);
            for (;;) {
                otel_thread_ctx_set(&a); checkout_work(); otel_thread_ctx_clear();
                idle_work();
                otel_thread_ctx_set(&b); cart_work(); otel_thread_ctx_clear();
            }
        }
        """

    @Test func recordedSamplesLinkToTheirSpansAndTheResourceComesFromTheProcess() async throws {
        let directory = try TemporaryDirectory()
        let program = try compileC(
            Self.program, in: directory, name: "shop",
            flags: framePointerFlags + (try buildContextPublisherLibrary(in: directory)))
        let workload = try ChildProcess(program)
        defer { workload.kill() }
        try await Task.sleep(for: .milliseconds(200))

        let pid = workload.pid
        let result = try await runOnDedicatedThread {
            let recording = try Recording(durationSeconds: 3, sampler: .init(frequency: 499, processIDs: [pid]))
            return try recording.run(stop: StopSignal()) { _ in }
        }
        workload.kill()
        let profile = result.profile
        var byFunction: [String: [String: Int]] = [:]
        for sample in profile.samples {
            guard
                let function = sample.frames.compactMap(\.function).first(where: {
                    ["checkout_work", "cart_work", "idle_work"].contains($0)
                })
            else { continue }
            let span: String
            if let context = sample.traceContext {
                let route = context.attributes.first { $0.key == "http.route" }?.value
                span = "\(context.spanID.first.map { String($0, radix: 16) } ?? "?") \(route.map { "\($0)" } ?? "-")"
            } else {
                span = "none"
            }
            byFunction[function, default: [:]][span, default: 0] += 1
        }
        func share(_ function: String, _ span: String) -> Double {
            let counts = byFunction[function] ?? [:]
            let total = counts.values.reduce(0, +)
            return total == 0 ? 0 : Double(counts[span] ?? 0) / Double(total)
        }
        // The first samples come before the process was looked at (its first window): allow 5%.
        #expect(share("checkout_work", #"a2 string("/checkout")"#) >= 0.95, "\(byFunction)")
        #expect(share("cart_work", #"b2 string("/cart")"#) >= 0.95, "\(byFunction)")
        #expect(share("idle_work", "none") == 1, "\(byFunction)")
        let gold = profile.samples.compactMap(\.traceContext).filter {
            $0.attributes.contains(Attribute("user.tier", .string("gold")))
        }
        #expect(!gold.isEmpty, "the second key of the map names attribute index 1")
        // The process's resource, before what the agent derives.
        let attributes = profile.processAttributes[pid] ?? []
        #expect(attributes.first == Attribute("service.name", .string("shop")), "\(attributes)")
        #expect(attributes.contains(Attribute("service.version", .string("2.0.1"))))
        #expect(!attributes.contains { $0.key.hasPrefix("threadlocal.") })
        #expect(result.counters.threadContextsFound > 0)
    }
}
