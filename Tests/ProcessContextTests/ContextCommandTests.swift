import Foundation
import TestSupport
import Testing

/// `nodeprof context PID` on a process that uses the writer library (the C part of
/// ContextPublisher, built here as a TLSDESC shared library as applications would link it).
@Suite(.machineExclusive) struct ContextCommandTests {
    /// Publishes a context; thread "in-span" holds span A (route and tier), thread "broken"
    /// a record whose valid byte is 2, thread "idle" none; all of them sleep.
    static let program = """
        #define _GNU_SOURCE
        #include <pthread.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        #include "otel_context.h"
        static pthread_barrier_t attached;
        static void *in_span(void *arg) {
            (void)arg;
            uint8_t trace[16], span[8];
            memset(trace, 0xA1, 16); memset(span, 0xA2, 8);
            otel_thread_record record;
            otel_thread_record_init(&record, trace, span, 1);
            otel_thread_record_add_attribute(&record, 0, "/checkout", 9);
            otel_thread_record_add_attribute(&record, 1, "gold", 4);
            otel_thread_ctx_store(&record);
            pthread_barrier_wait(&attached);
            for (;;) sleep(60);
        }
        static void *broken(void *arg) {
            (void)arg;
            static otel_thread_record record;
            uint8_t trace[16];
            memset(trace, 0xB1, 16);
            otel_thread_record_init(&record, trace, trace, 0);
            otel_thread_ctx_set(&record);
            record.valid = 2;
            pthread_barrier_wait(&attached);
            for (;;) sleep(60);
        }
        static void *idle(void *arg) {
            (void)arg;
            pthread_barrier_wait(&attached);
            for (;;) sleep(60);
        }
        int main(int argc, char **argv) {
            (void)argc;
            otel_kv resource[] = {{"service.name", "checkout"}, {"service.version", "1.4.2"}};
            otel_kv extra[] = {{"deployment.environment.name", "prod"}};
            const char *keys[] = {"http.route", "user.tier"};
            if (otel_process_context_publish(resource, 2, extra, 1, keys, 2) != 0) return 2;
            pthread_barrier_init(&attached, NULL, 4);
            pthread_t threads[3];
            pthread_create(&threads[0], NULL, in_span, NULL);
            pthread_setname_np(threads[0], "in-span");
            pthread_create(&threads[1], NULL, broken, NULL);
            pthread_setname_np(threads[1], "broken");
            pthread_create(&threads[2], NULL, idle, NULL);
            pthread_setname_np(threads[2], "idle");
            pthread_barrier_wait(&attached);
            FILE *ready = fopen(argv[1], "w");
            if (!ready) return 1;
            fputs("ready\\n", ready);
            fclose(ready);
            sleep(60);
            return 0;
        }
        """

    @Test func printsTheResourceKeyMapAndTheTLSDescriptorModel() async throws {
        let directory = try TemporaryDirectory()
        let program = try compileC(
            Self.program, in: directory, name: "app",
            flags: ["-pthread"] + (try buildContextPublisherLibrary(in: directory)))
        let readyFile = directory.file("ready")
        let child = try ChildProcess(program, [readyFile])
        defer { child.kill() }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: readyFile) {
            try await Task.sleep(for: .milliseconds(20))
        }

        let result = try runProgramCapturing(try builtProduct("nodeprof"), ["context", "\(child.pid)", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["published"] as? Bool == true, "\(result.stdout)")
        let resource = (report["resource"] as? [[String: String]] ?? []).reduce(into: [String: String]()) {
            $0[$1["key"] ?? ""] = $1["value"]
        }
        #expect(resource == ["service.name": "checkout", "service.version": "1.4.2"])
        #expect((report["attributes"] as? [[String: String]])?.first?["key"] == "deployment.environment.name")
        #expect(report["threadSchemaVersion"] as? String == "tlsdesc_v1_dev")
        #expect(report["attributeKeyMap"] as? [String] == ["http.route", "user.tier"])
        let location = try #require(report["threadContext"] as? [String: Any], "\(result.stdout)")
        #expect(location["model"] as? String == "TLSDESC")
        #expect((location["module"] as? String)?.hasSuffix("libotelctx.so") == true)
        #expect(location["threadPointerOffset"] is Int)

        // Each thread's record, read while the thread sleeps (ptrace stops it briefly).
        let threads = try #require(report["threads"] as? [[String: Any]], "\(result.stdout)")
        let byName = Dictionary(threads.map { (($0["name"] as? String) ?? "", $0) }) { first, _ in first }
        #expect(threads.count == 4, "\(threads)")
        let inSpan = try #require(byName["in-span"], "\(threads)")
        #expect(inSpan["state"] as? String == "span")
        #expect(inSpan["traceID"] as? String == String(repeating: "a1", count: 16))
        #expect(inSpan["spanID"] as? String == String(repeating: "a2", count: 8))
        #expect(inSpan["flags"] as? Int == 1)
        #expect(
            (inSpan["attributes"] as? [[String: String]]) == [
                ["key": "http.route", "value": "/checkout"], ["key": "user.tier", "value": "gold"],
            ])
        #expect(byName["broken"]?["state"] as? String == "invalid")
        #expect(byName["broken"]?["validByte"] as? Int == 2)
        #expect(byName["idle"]?["state"] as? String == "none")
        #expect(byName["app"]?["state"] as? String == "none", "the main thread: \(threads)")
        #expect(kill(child.pid, 0) == 0, "the process runs on after being stopped and resumed")

        let text = try runProgramCapturing(try builtProduct("nodeprof"), ["context", "\(child.pid)"])
        #expect(text.stdout.contains("service.name = checkout"), "\(text.stdout)")
        #expect(text.stdout.contains("otel_thread_ctx_v1:") && text.stdout.contains("TLSDESC"), "\(text.stdout)")
        #expect(
            text.stdout.contains(
                "in-span: trace \(String(repeating: "a1", count: 16)) span \(String(repeating: "a2", count: 8)) flags 01 http.route=/checkout user.tier=gold"
            ), "\(text.stdout)")
        let skipped = try runProgramCapturing(
            try builtProduct("nodeprof"), ["context", "\(child.pid)", "--no-threads", "--json"])
        #expect(!skipped.stdout.contains("\"threads\""), "\(skipped.stdout)")
    }

    @Test func aProcessWithoutContextSaysSo() throws {
        let child = try ChildProcess("/bin/sleep", ["30"])
        defer { child.kill() }
        let result = try runProgramCapturing(try builtProduct("nodeprof"), ["context", "\(child.pid)"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("none published"), "\(result.stdout)")
        #expect(result.stdout.contains("no loaded module defines or uses otel_thread_ctx_v1"), "\(result.stdout)")
        let missing = try runProgramCapturing(try builtProduct("nodeprof"), ["context", "999999999"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("no such process"), "\(missing.stderr)")
    }
}
