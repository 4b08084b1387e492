import Agent
import Foundation
import NodeprofCore
import ProcessContext
import ProcessTable
import Profiles
import Recording
import Sampling
import TestSupport
import Testing

/// A node full of badly behaved publishers, recorded whole-machine the way the agent does:
/// broken process-context headers, a payload rewritten without pause, 500 publishers at once,
/// and span records with valid = 2, attrs_data_size = 65535 and overlapping key indexes.
/// Nothing crashes or hangs, each problem is counted, and a well-behaved instrumented service
/// next to them keeps every sample linked to its span.
@Suite(.serialized, .machineExclusive) struct HostileContextRecordingTests {
    /// Publishes keys k0, k1, k0 (a repeated name) and attaches one hand-made record, then burns.
    static let recordProgram = """
        #include <stdint.h>
        #include <string.h>
        #include <sys/mman.h>
        #include <unistd.h>
        #include "otel_context.h"
        static volatile unsigned long sink;
        __attribute__((noinline)) void hostile_work(void) { for (unsigned long i = 0; i < 3000000; i++) sink += i; }
        int main(int argc, char **argv) {
            const char *mode = argc > 1 ? argv[1] : "";
            otel_kv resource[] = {{"service.name", mode}};
            const char *keys[] = {"k0", "k1", "k0"};
            if (otel_process_context_publish(resource, 1, 0, 0, keys, 3) != 0) return 2;
            uint8_t trace[16], span[8];
            memset(trace, 0xC1, 16); memset(span, 0xC2, 8);
            static otel_thread_record r;
            otel_thread_record_init(&r, trace, span, 1);
            if (!strcmp(mode, "valid2")) {
                otel_thread_record_add_attribute(&r, 1, "y", 1);
                otel_thread_ctx_set(&r);
                r.valid = 2;
            } else if (!strcmp(mode, "attrs65535")) {
                while (otel_thread_record_add_attribute(&r, 1, "y", 1)) {}
                otel_thread_ctx_set(&r);
                r.attrs_data_size = 65535;
            } else if (!strcmp(mode, "overlap")) {
                otel_thread_record_add_attribute(&r, 0, "a", 1);
                otel_thread_record_add_attribute(&r, 2, "b", 1);
                otel_thread_record_add_attribute(&r, 1, "c", 1);
                otel_thread_record_add_attribute(&r, 1, "d", 1);
                otel_thread_ctx_set(&r);
            } else if (!strcmp(mode, "edge")) {
                /* A 31-byte record in the last 32 bytes before an unmapped page: a reader that
                 * copies more than the record at once fails and must fall back. */
                uint8_t *pages = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (pages == MAP_FAILED) return 4;
                munmap(pages + 4096, 4096);
                otel_thread_record *edge = (otel_thread_record *)(pages + 4096 - 32);
                otel_thread_record_init(edge, trace, span, 1);
                otel_thread_record_add_attribute(edge, 1, "y", 1);
                otel_thread_ctx_set(edge);
            } else {
                return 3;
            }
            for (;;) { hostile_work(); usleep(10000); }  /* about a fifth of a CPU */
        }
        """

    @Test func hostilePublishersAreCountedAndTheRestOfTheNodeIsStillProfiled() async throws {
        let directory = try TemporaryDirectory()
        let recordProgram = try compileC(
            Self.recordProgram, in: directory, name: "hostile-records",
            flags: framePointerFlags + (try buildContextPublisherLibrary(in: directory)))

        let service = try ChildProcess(try builtProduct("span-demo"))
        defer { service.kill() }
        let records = try ["valid2", "attrs65535", "overlap", "edge"].map {
            ($0, try ChildProcess(recordProgram, [$0]))
        }
        defer { records.forEach { $0.1.kill() } }
        let burn = ["PUBLISHER_BURN": "10:100"]
        let payload = Proto.hex(Proto.checkout())
        let headers = try ["badsig", "version99", "size4g", "badptr", "stuck0", "small"].map {
            ($0, try Publisher([$0, payload], environment: burn))
        }
        let rewriter = try Publisher(
            ["writer", payload, Proto.hex(Proto.checkout(name: "checkouT", version: "1.4.3"))], environment: burn)
        // 500 publishers, each burning 2 ms a second so that samples find most of them.
        let fleet = try Publisher(
            ["fork", "500", Proto.hex(Proto.checkout(name: "fleet"))], environment: ["PUBLISHER_BURN": "2:1000"])
        defer {
            headers.forEach { $0.1.kill() }
            rewriter.kill()
            fleet.kill()
        }
        #expect(fleet.childPids.count == 500)
        // The hostile ones at nice 10: on two cores their CPU demand would otherwise starve
        // the well-behaved service and the recording itself.
        for pid in records.map(\.1.pid) + (headers.map(\.1) + [rewriter, fleet]).map(\.pid) + fleet.childPids {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), 10)
        }
        try await Task.sleep(for: .milliseconds(300))

        let started = Date()
        let residentBefore = Self.residentBytes()
        let result = try await runOnDedicatedThread {
            let recording = try Recording(durationSeconds: 6, sampler: .init(frequency: 499))
            return try recording.run(stop: StopSignal()) { _ in }
        }
        // A hang detector, not a speed test: a stuck reader would take far longer.
        #expect(Date().timeIntervalSince(started) < 60)
        // Bounded memory: the recording (a few thousand samples, 500 processes' maps and
        // contexts) grows this process by tens of MiB; a reader keeping what it should not
        // (a 4 GiB payload size believed, unbounded retries) would show here.
        let growth = Self.residentBytes() - residentBefore
        #expect(growth < 256 << 20, "resident memory grew by \(growth >> 20) MiB")
        let profile = result.profile
        var samplesByPid: [Int32: [Profile.Sample]] = [:]
        for sample in profile.samples { samplesByPid[sample.pid, default: []].append(sample) }

        // The well-behaved service keeps its spans. Its variable is handed to BPF when its
        // first sample is read; on two starved cores that can be seconds after it was taken,
        // and samples taken before carry no record: count from the first linked sample on.
        let serviceSamples = samplesByPid[service.pid] ?? []
        let located = serviceSamples.filter { $0.traceContext != nil }.map(\.timestampNanos).min() ?? .max
        let demo = SwiftWriterSamplingTests.observations(serviceSamples.filter { $0.timestampNanos >= located })
        let demoSummary = Dictionary(grouping: demo, by: \.self).mapValues(\.count)
        #expect(demo.filter { $0.function == "spanAWork" }.count >= 20, "\(demoSummary)")
        #expect(
            SwiftWriterSamplingTests.share(demo, function: "spanAWork") { $0.span == "A" } >= 0.95, "\(demoSummary)")
        #expect(
            SwiftWriterSamplingTests.share(demo, function: "spanBWork") { $0.span == "B" } >= 0.95, "\(demoSummary)")
        // Before that, no sample carries a wrong span.
        let all = SwiftWriterSamplingTests.observations(serviceSamples)
        #expect(!all.contains { $0.function == "spanAWork" && $0.span != "A" && $0.span != "none" }, "\(all)")
        #expect(!all.contains { $0.function == "spanBWork" && $0.span != "B" && $0.span != "none" })
        #expect(!all.contains { $0.function == "idleWork" && $0.span != "none" })

        // Every hostile process is still profiled, without a context from its broken header.
        for (mode, publisher) in headers + [("writer", rewriter)] {
            #expect(!(samplesByPid[publisher.pid] ?? []).isEmpty, "\(mode) was not profiled")
        }
        for (mode, publisher) in headers {
            let attributes = profile.processAttributes[publisher.pid] ?? []
            #expect(!attributes.contains { $0.key == "service.name" }, "\(mode): \(attributes)")
        }
        // The rewriter is read whole or not at all: one of its two payloads, never a mix.
        let rewritten = (profile.processAttributes[rewriter.pid] ?? []).filter { $0.key == "service.name" }
        #expect(
            rewritten.isEmpty || rewritten == [Attribute("service.name", .string("checkout"))]
                || rewritten == [Attribute("service.name", .string("checkouT"))], "\(rewritten)")

        // Span records: valid = 2 gives no link (counted by BPF), 65535 is capped, repeated
        // keys keep the last value.
        let byMode = Dictionary(uniqueKeysWithValues: records.map { ($0.0, $0.1.pid) })
        let invalid = samplesByPid[byMode["valid2"]!] ?? []
        #expect(!invalid.isEmpty && invalid.allSatisfy { $0.traceContext == nil }, "\(invalid.count) samples")
        #expect(result.counters.threadContextsInvalid > 0)
        let capped = (samplesByPid[byMode["attrs65535"]!] ?? []).compactMap(\.traceContext)
        #expect(!capped.isEmpty)
        #expect(capped.allSatisfy { $0.attributes == [Attribute("k1", .string("y"))] }, "\(capped.first as Any)")
        let edge = (samplesByPid[byMode["edge"]!] ?? []).compactMap(\.traceContext)
        #expect(!edge.isEmpty && edge.allSatisfy { $0.attributes == [Attribute("k1", .string("y"))] })
        let overlapping = (samplesByPid[byMode["overlap"]!] ?? []).compactMap(\.traceContext)
        #expect(!overlapping.isEmpty)
        #expect(
            overlapping.allSatisfy {
                Set($0.attributes) == [Attribute("k0", .string("b")), Attribute("k1", .string("d"))]
            }, "\(overlapping.first as Any)")

        // Nearly all of the 500 were sampled (489 in a trial run), and their context read.
        let fleetRead = fleet.childPids.filter {
            profile.processAttributes[$0]?.contains(Attribute("service.name", .string("fleet"))) == true
        }
        #expect(fleetRead.count >= 400, "fleet processes read: \(fleetRead.count)")

        // Each refusal counted, and shown by the agent's /metrics.
        let statistics = result.processContexts
        let reader = statistics.reader
        #expect(reader.badSignature >= 1 && reader.badVersion >= 1 && reader.badSize >= 1, "\(reader)")
        #expect(reader.unreadableMemory >= 2 && reader.notPublished >= 1, "\(reader)")
        #expect(statistics.locateFailures >= fleetRead.count, "\(statistics)")
        #expect(statistics.threadContextsLocated >= 5, "\(statistics)")
        let metrics = String(
            decoding: AgentMetrics().render(statistics.metricSamples), as: UTF8.self)
        #expect(
            metrics.contains(#"nodeprof_process_context_lookups_total{result="bad_version"} \#(reader.badVersion)"#))
        #expect(
            metrics.contains(
                #"nodeprof_thread_context_processes_total{result="unsupported"} \#(statistics.locateFailures)"#),
            "\(metrics)")
    }

    /// This process's resident set size (VmRSS), in bytes.
    static func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kibibytes = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "")
        else { return 0 }
        return kibibytes << 10
    }
}
