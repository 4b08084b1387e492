import Foundation
import NodeprofCore
import TestSupport
import Testing

@testable import ProcessContext

/// `ThreadContextLocation.locate(pid:)` on running processes built with each access model:
/// the resolved access leads to the address the program itself reports.
@Suite(.machineExclusive) struct ThreadContextLocationTests {
    /// The library defines the variable and reports its address.
    static let library = """
        __attribute__((visibility("default"))) __thread void *otel_thread_ctx_v1;
        void *otel_test_address(void) { return &otel_thread_ctx_v1; }
        """

    /// Writes "address threadPointer dtv[0..7 entries' pointers]" to argv[1], then waits.
    static let program = """
        #include <stdio.h>
        #include <stdint.h>
        #include <unistd.h>
        void *otel_test_address(void);
        int main(int argc, char **argv) {
            (void)argc;
            uintptr_t tp = (uintptr_t)__builtin_thread_pointer();
            uintptr_t *dtv = *(uintptr_t **)(tp + 8);
            FILE *out = fopen(argv[1], "w");
            if (!out) return 1;
            fprintf(out, "%lu %lu", (unsigned long)(uintptr_t)otel_test_address(), (unsigned long)tp);
            for (int i = 0; i < 8; i++) fprintf(out, " %lu", (unsigned long)dtv[2 * i]);
            fprintf(out, "\\n");
            fclose(out);
            sleep(60);
            return 0;
        }
        """

    struct Reported {
        var address: UInt64
        var threadPointer: UInt64
        var dtv: [UInt64]
    }

    static func run(_ binary: String, in directory: TemporaryDirectory) async throws -> (ChildProcess, Reported) {
        let output = directory.file("report")
        let child = try ChildProcess(binary, [output])
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: output, encoding: .utf8), text.hasSuffix("\n") {
                let numbers = text.split(separator: " ").compactMap {
                    UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines))
                }
                guard numbers.count == 10 else { break }
                return (child, Reported(address: numbers[0], threadPointer: numbers[1], dtv: Array(numbers[2...])))
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        child.kill()
        throw FixtureError("the test program did not report")
    }

    func resolve(_ location: ThreadContextLocation, _ reported: Reported) -> UInt64? {
        switch location.access {
        case .threadPointerOffset(let offset):
            return UInt64(bitPattern: Int64(bitPattern: reported.threadPointer) &+ offset)
        case .dynamicThreadVector(let moduleID, let offset):
            guard moduleID < UInt64(reported.dtv.count) else { return nil }
            return reported.dtv[Int(moduleID)] &+ offset
        }
    }

    @Test(arguments: [
        (["-mtls-dialect=gnu2"], TLSAccessModel.tlsDescriptor),
        (["-mtls-dialect=gnu"], TLSAccessModel.generalDynamic),
        (["-ftls-model=initial-exec"], TLSAccessModel.initialExec),
    ])
    func aSharedLibrarysVariableIsFoundWhereTheProgramSeesIt(flags: [String], model: TLSAccessModel) async throws {
        let directory = try TemporaryDirectory()
        let library = try compileC(
            Self.library, in: directory, name: "libctx.so", flags: ["-shared", "-fPIC", "-O1"] + flags)
        let program = try compileC(
            Self.program, in: directory, name: "app",
            flags: ["-O1", "-Wl,--no-as-needed", library, "-Wl,-rpath,\(directory.path)"])
        let (child, reported) = try await Self.run(program, in: directory)
        defer { child.kill() }
        let location = try ThreadContextLocation.locate(pid: child.pid)
        #expect(location.model == model)
        #expect(location.modulePath.hasSuffix("libctx.so"))
        #expect(resolve(location, reported) == reported.address, "\(location)")
    }

    @Test func anExecutablesOwnVariableIsLocalExec() async throws {
        let directory = try TemporaryDirectory()
        let program = try compileC(
            Self.library + "\n" + Self.program.replacingOccurrences(of: "void *otel_test_address(void);", with: ""),
            in: directory, name: "app", flags: ["-O1", "-Wl,--export-dynamic-symbol=otel_thread_ctx_v1"])
        let (child, reported) = try await Self.run(program, in: directory)
        defer { child.kill() }
        let location = try ThreadContextLocation.locate(pid: child.pid)
        #expect(location.model == .localExec)
        #expect(resolve(location, reported) == reported.address, "\(location)")
    }

    @Test func aProcessWithoutTheVariableIsNotFound() async throws {
        let child = try ChildProcess("/bin/sleep", ["30"])
        defer { child.kill() }
        #expect(throws: ThreadContextLocationError.notFound) { try ThreadContextLocation.locate(pid: child.pid) }
        #expect(throws: ThreadContextLocationError.self) { try ThreadContextLocation.locate(pid: 999_999_999) }
    }

    /// A locator reads each module file once: a second process of the same program costs no
    /// file parse, and still resolves to its own address (its own load address and GOT).
    @Test func aLocatorReadsEachFileOnceAcrossProcesses() async throws {
        let directory = try TemporaryDirectory()
        let library = try compileC(
            Self.library, in: directory, name: "libctx.so", flags: ["-shared", "-fPIC", "-O1", "-mtls-dialect=gnu"])
        let program = try compileC(
            Self.program, in: directory, name: "app",
            flags: ["-O1", "-Wl,--no-as-needed", library, "-Wl,-rpath,\(directory.path)"])
        let second = try TemporaryDirectory()
        let (first, firstReported) = try await Self.run(program, in: directory)
        defer { first.kill() }
        let (other, otherReported) = try await Self.run(program, in: second)
        defer { other.kill() }
        let locator = ThreadContextLocator()
        let firstLocation = try locator.locate(pid: first.pid)
        let filesAfterFirst = locator.filesRead
        #expect(filesAfterFirst >= 3, "the program, libctx.so, libc, ld.so: \(filesAfterFirst)")
        let otherLocation = try locator.locate(pid: other.pid)
        #expect(locator.filesRead == filesAfterFirst, "no file read again")
        #expect(resolve(firstLocation, firstReported) == firstReported.address)
        #expect(resolve(otherLocation, otherReported) == otherReported.address)
    }
}
