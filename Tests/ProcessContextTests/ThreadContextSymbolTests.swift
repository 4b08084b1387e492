import Foundation
import Symbolization
import TestSupport
import Testing

@testable import ProcessContext

/// `otel_thread_ctx_v1` in real ELF files, built by the system compiler with each TLS access
/// model the spec lists.
@Suite struct ThreadContextSymbolTests {
    static let library = """
        __attribute__((visibility("default"))) __thread void *otel_thread_ctx_v1;
        void *otel_test_get(void) { return otel_thread_ctx_v1; }
        void otel_test_set(void *record) { otel_thread_ctx_v1 = record; }
        """

    /// Prints the variable's offset from the thread pointer, as the compiled code sees it.
    static let executable = """
        #include <stdio.h>
        __attribute__((visibility("default"))) __thread void *otel_thread_ctx_v1;
        int main(void) {
            otel_thread_ctx_v1 = (void *)1;
            printf("%ld\\n", (long)((char *)&otel_thread_ctx_v1 - (char *)__builtin_thread_pointer()));
            return 0;
        }
        """

    @Test(arguments: [
        (["-mtls-dialect=gnu2"], TLSAccessModel.tlsDescriptor),
        (["-mtls-dialect=gnu"], TLSAccessModel.generalDynamic),
        (["-ftls-model=initial-exec"], TLSAccessModel.initialExec),
    ])
    func sharedLibraryModelsComeFromTheirRelocations(flags: [String], model: TLSAccessModel) throws {
        let directory = try TemporaryDirectory()
        let path = try compileC(
            Self.library, in: directory, name: "libctx.so", flags: ["-shared", "-fPIC", "-O1"] + flags)
        let symbol = try #require(try ThreadContextSymbol.locate(in: ELFFile(path: path)))
        #expect(symbol.accessModel == model, "\(symbol)")
        #expect(symbol.offsetInBlock != nil, "the library defines the variable")
        #expect(!symbol.isExecutable)
        #expect(symbol.relocations.allSatisfy { $0.slotAddress != 0 })
    }

    @Test func anExecutableThatExportsTheVariableIsLocalExecWithTheRightOffset() throws {
        let directory = try TemporaryDirectory()
        let path = try compileC(
            Self.executable, in: directory, name: "app",
            flags: ["-O1", "-Wl,--export-dynamic-symbol=otel_thread_ctx_v1"])
        let symbol = try #require(try ThreadContextSymbol.locate(in: ELFFile(path: path)))
        #expect(symbol.isExecutable)
        #expect(symbol.accessModel == .localExec, "\(symbol)")
        let printed = try runProgramCapturing(path, []).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(symbol.localExecThreadPointerOffset == Int64(printed), "the program says \(printed)")
    }

    @Test func anExecutableUsingALibrarysVariableInitialExecHasATPOFFSlot() throws {
        let directory = try TemporaryDirectory()
        let library = try compileC(Self.library, in: directory, name: "libctx.so", flags: ["-shared", "-fPIC"])
        let app = try compileC(
            """
            extern __thread void *otel_thread_ctx_v1;
            int main(void) { otel_thread_ctx_v1 = (void *)1; return 0; }
            """, in: directory, name: "app", flags: ["-ftls-model=initial-exec", "-Wl,--no-as-needed", library])
        let symbol = try #require(try ThreadContextSymbol.locate(in: ELFFile(path: app)))
        #expect(symbol.accessModel == .initialExec, "\(symbol)")
        #expect(symbol.offsetInBlock == nil, "defined in the library, not here")
    }

    @Test func filesWithoutTheVariableGiveNothing() throws {
        let directory = try TemporaryDirectory()
        let path = try compileC(
            "__thread void *other_variable; int main(void) { return 0; }", in: directory, name: "plain", flags: [])
        #expect(try ThreadContextSymbol.locate(in: ELFFile(path: path)) == nil)
        // A function (not STT_TLS) with the same name does not count.
        let impostor = try compileC(
            "void otel_thread_ctx_v1(void) {} int main(void) { return 0; }", in: directory, name: "impostor",
            flags: ["-rdynamic"])
        #expect(try ThreadContextSymbol.locate(in: ELFFile(path: impostor)) == nil)
    }

    @Test func relocationTypesMapToModels() {
        #expect(ThreadContextSymbol.model(relocationType: 36, machine: ELFMachine.x86_64) == .tlsDescriptor)
        #expect(ThreadContextSymbol.model(relocationType: 16, machine: ELFMachine.x86_64) == .generalDynamic)
        #expect(ThreadContextSymbol.model(relocationType: 18, machine: ELFMachine.x86_64) == .initialExec)
        #expect(ThreadContextSymbol.model(relocationType: 17, machine: ELFMachine.x86_64) == nil)
        #expect(ThreadContextSymbol.model(relocationType: 1031, machine: ELFMachine.aarch64) == .tlsDescriptor)
        #expect(ThreadContextSymbol.model(relocationType: 36, machine: ELFMachine.aarch64) == nil)
    }
}
