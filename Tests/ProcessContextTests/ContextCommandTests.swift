import Foundation
import TestSupport
import Testing

/// `nodeprof context PID` on a process that uses the writer library (the C part of
/// ContextPublisher, built here as a TLSDESC shared library as applications would link it).
@Suite struct ContextCommandTests {
    static let program = """
        #include <stdint.h>
        #include <stdio.h>
        #include <unistd.h>
        #include "otel_context.h"
        int main(int argc, char **argv) {
            (void)argc;
            otel_kv resource[] = {{"service.name", "checkout"}, {"service.version", "1.4.2"}};
            otel_kv extra[] = {{"deployment.environment.name", "prod"}};
            const char *keys[] = {"http.route", "user.tier"};
            if (otel_process_context_publish(resource, 2, extra, 1, keys, 2) != 0) return 2;
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
            Self.program, in: directory, name: "app", flags: try buildContextPublisherLibrary(in: directory))
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

        let text = try runProgramCapturing(try builtProduct("nodeprof"), ["context", "\(child.pid)"])
        #expect(text.stdout.contains("service.name = checkout"), "\(text.stdout)")
        #expect(text.stdout.contains("otel_thread_ctx_v1:") && text.stdout.contains("TLSDESC"), "\(text.stdout)")
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
