import Foundation
import NodeprofCore
import ProcessContext
import Sampling
import Symbolization
import TestSupport
import Testing

/// The BPF sampler reads the interrupted thread's OTEP 4947 span record: a program alternates
/// between span A (burning CPU in span_a_work), no span (no_span_work) and span B
/// (span_b_work), built with each TLS access model.
@Suite(.serialized, .machineExclusive) struct ThreadContextSamplingTests {
    static let library = """
        __attribute__((visibility("default"))) __thread void *otel_thread_ctx_v1;
        void otel_test_set(void *record) { otel_thread_ctx_v1 = record; }
        """

    static let program = """
        #include <string.h>
        struct record {
            unsigned char trace_id[16], span_id[8], valid, flags;
            unsigned short attrs_size;
            unsigned char attrs[16];
        } __attribute__((packed));
        #if defined(DLOPEN)
        #include <dlfcn.h>
        static void (*otel_test_set)(void *record);
        #elif defined(DEFINE_HERE)
        __attribute__((visibility("default"))) __thread void *otel_thread_ctx_v1;
        void otel_test_set(void *record) { otel_thread_ctx_v1 = record; }
        #else
        void otel_test_set(void *record);
        #endif
        static struct record a, b;
        static volatile unsigned long sink;
        __attribute__((noinline)) void span_a_work(void) { for (unsigned long i = 0; i < 3000000; i++) sink += i; }
        __attribute__((noinline)) void span_b_work(void) { for (unsigned long i = 0; i < 3000000; i++) sink += 3 * i; }
        __attribute__((noinline)) void no_span_work(void) { for (unsigned long i = 0; i < 3000000; i++) sink ^= i; }
        int main(void) {
        #ifdef DLOPEN
            void *library = dlopen(LIBSPAN, RTLD_NOW);
            if (!library) return 5;
            otel_test_set = (void (*)(void *))dlsym(library, "otel_test_set");
            if (!otel_test_set) return 6;
        #endif
            memset(a.trace_id, 0xA1, 16); memset(a.span_id, 0xA2, 8); a.flags = 1;
            a.attrs[0] = 0; a.attrs[1] = 2; a.attrs[2] = '/'; a.attrs[3] = 'a'; a.attrs_size = 4;
            memset(b.trace_id, 0xB1, 16); memset(b.span_id, 0xB2, 8); b.flags = 0;
            a.valid = 1; b.valid = 1;
            for (;;) {
                otel_test_set(&a); span_a_work(); otel_test_set(0);
                no_span_work();
                otel_test_set(&b); span_b_work(); otel_test_set(0);
            }
        }
        """

    enum Build: String, CaseIterable, Sendable {
        case sharedTLSDescriptor, sharedGeneralDynamic, executable
        /// The TLSDESC library loaded with dlopen, with no static TLS room left
        /// (GLIBC_TUNABLES=glibc.rtld.optional_static_tls=0): its descriptor resolves to dynamic TLS.
        case dlopenTLSDescriptor
    }

    static func build(_ build: Build, in directory: TemporaryDirectory) throws -> String {
        let flags = framePointerFlags
        switch build {
        case .sharedTLSDescriptor, .sharedGeneralDynamic:
            let dialect = build == .sharedTLSDescriptor ? "-mtls-dialect=gnu2" : "-mtls-dialect=gnu"
            let library = try compileC(
                Self.library, in: directory, name: "libspan.so", flags: ["-shared", "-fPIC", dialect] + flags)
            return try compileC(
                Self.program, in: directory, name: "spans",
                flags: flags + ["-Wl,--no-as-needed", library, "-Wl,-rpath,\(directory.path)"])
        case .dlopenTLSDescriptor:
            let library = try compileC(
                Self.library, in: directory, name: "libspan.so",
                flags: ["-shared", "-fPIC", "-mtls-dialect=gnu2"] + flags)
            return try compileC(
                Self.program, in: directory, name: "spans",
                flags: flags + ["-DDLOPEN", "-DLIBSPAN=\"\(library)\"", "-ldl"])
        case .executable:
            return try compileC(
                Self.program, in: directory, name: "spans",
                flags: flags + ["-DDEFINE_HERE", "-Wl,--export-dynamic-symbol=otel_thread_ctx_v1"])
        }
    }

    @Test(arguments: Build.allCases)
    func samplesInASpanCarryItsIdsAndOthersNone(build: Build) async throws {
        let directory = try TemporaryDirectory()
        let program = try Self.build(build, in: directory)
        // env execs the program in the same process, with no static TLS to spare for dlopen.
        let workload =
            build == .dlopenTLSDescriptor
            ? try ChildProcess("/usr/bin/env", ["GLIBC_TUNABLES=glibc.rtld.optional_static_tls=0", program])
            : try ChildProcess(program)
        defer { workload.kill() }
        try await Task.sleep(for: .milliseconds(200))  // the dynamic linker has run
        let location = try ThreadContextLocation.locate(pid: workload.pid)
        if build == .dlopenTLSDescriptor {
            guard case .dynamicThreadVector = location.access else {
                Issue.record("expected dynamic TLS for a dlopen'd library without static room: \(location)")
                return
            }
            #expect(location.model == .tlsDescriptor)
        }
        // Its maps are read now: the samples are symbolized after it is gone.
        let symbolizer = Symbolizer()
        symbolizer.observe(pid: workload.pid)

        let sampler = try Sampler(configuration: .init(frequency: 999, processIDs: [workload.pid]))
        try sampler.setThreadContextAccess(location.access, pid: workload.pid)
        var samples: [StackSample] = []
        let deadline = Date().addingTimeInterval(2.0)
        while Date() < deadline {
            try sampler.poll(timeoutMilliseconds: 100) { samples.append($0) }
        }
        let counters = try sampler.counters()
        workload.kill()

        var bySpan: [String: [String: Int]] = [:]  // function -> span -> samples
        for sample in samples {
            let frames = symbolizer.symbolize(sample).frames
            guard
                let function = frames.compactMap(\.function).first(where: {
                    ["span_a_work", "span_b_work", "no_span_work"].contains($0)
                })
            else { continue }
            let context = TraceContext(record: sample.threadContextRecord, keyMap: ["http.route"])
            let span: String
            switch context?.spanID.first {
            case 0xA2?: span = context?.attributes == [Attribute("http.route", .string("/a"))] ? "A" : "A?"
            case 0xB2?: span = "B"
            case nil: span = "none"
            default: span = "other"
            }
            bySpan[function, default: [:]][span, default: 0] += 1
        }
        func share(_ function: String, _ span: String) -> Double {
            let counts = bySpan[function] ?? [:]
            let total = counts.values.reduce(0, +)
            return total == 0 ? 0 : Double(counts[span] ?? 0) / Double(total)
        }
        #expect(
            (bySpan["span_a_work"]?.values.reduce(0, +) ?? 0) >= 50, "\(build): \(bySpan), \(samples.count) samples")
        #expect(share("span_a_work", "A") >= 0.95, "\(build): \(bySpan), \(location)")
        #expect(share("span_b_work", "B") >= 0.95, "\(build): \(bySpan)")
        #expect(share("no_span_work", "none") == 1, "no sample outside a span carries a link: \(bySpan)")
        #expect(counters.threadContextsFound > 0)
        #expect(counters.threadContextsUnreadable == 0)
    }

    @Test func hostileRecordsAreIgnoredOrCapped() {
        var record = [UInt8](repeating: 0xA1, count: 16) + [UInt8](repeating: 0xA2, count: 8) + [2, 1, 0, 0]
        #expect(TraceContext(record: record, keyMap: []) == nil, "valid = 2 is not valid")
        record[24] = 1
        #expect(TraceContext(record: record, keyMap: []) != nil)
        // attrs_data_size 65535 with only 6 bytes present: parsing stops at what is there.
        record[26] = 0xFF
        record[27] = 0xFF
        let withAttributes = record + [0, 1, UInt8(ascii: "x"), 1, 9, UInt8(ascii: "y")]
        let context = TraceContext(record: withAttributes, keyMap: ["k0", "k1"])
        #expect(context?.attributes == [Attribute("k0", .string("x"))])
        // Overlapping (repeated) keys: the last one wins; indexes outside the map are skipped.
        let repeated = record + [0, 1, UInt8(ascii: "a"), 0, 1, UInt8(ascii: "b"), 7, 1, UInt8(ascii: "c")]
        #expect(TraceContext(record: repeated, keyMap: ["k0"])?.attributes == [Attribute("k0", .string("b"))])
        #expect(TraceContext(record: Array(record.prefix(20)), keyMap: []) == nil, "too short")
        #expect(
            TraceContext(record: [UInt8](repeating: 0, count: 24) + [1, 0, 0, 0], keyMap: []) == nil, "no trace id")
    }
}
