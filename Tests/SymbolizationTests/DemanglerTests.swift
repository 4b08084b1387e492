import Foundation
import Testing

@testable import Symbolization

@Suite struct DemanglerTests {
    func cxxfilt(_ name: String) throws -> String {
        try Tool.run("c++filt", [name]).trimmingCharacters(in: .newlines)
    }

    @Test(arguments: [
        "_ZNSt6vectorIiSaIiEE9push_backERKi",
        "_ZN9__gnu_cxx13new_allocatorIcE8allocateEmPKv",
        "_Z3fooPKcz",
        "_ZNKSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE4sizeEv",
    ])
    func cxxNamesMatchCxxfilt(mangled: String) throws {
        let demangler = Demangler()
        let expected = try cxxfilt(mangled)
        #expect(expected != mangled)
        #expect(demangler.demangle(mangled) == expected)
        // Served from the cache the second time, with the same answer.
        #expect(demangler.demangle(mangled) == expected)
        #expect(demangler.cacheCount == 1)
    }

    @Test func rustLegacyNamesMatchCxxfiltWithoutTheHash() throws {
        let names = [
            "_ZN4core3fmt5write17h0123456789abcdefE",
            "_ZN4core3ptr85drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$..$u7b$$u7b$closure$u7d$$u7d$$GT$17h0123456789abcdefE",
        ]
        for mangled in names {
            var expected = try cxxfilt(mangled)
            // c++filt keeps the hash; profilers (and rustc's `{:#}`) drop it.
            #expect(expected.hasSuffix("::h0123456789abcdef"))
            expected.removeLast("::h0123456789abcdef".count)
            #expect(Demangler.demangleUncached(mangled) == expected)
        }
    }

    @Test func swiftNamesMatchSwiftDemangle() throws {
        // Real mangled names from the runtime's symbol table, checked against the toolchain.
        let symbols = NMSymbol.parse(try Tool.run("nm", ["--defined-only", swiftCorePath]))
        let swiftNames = symbols.filter { $0.type == "T" && $0.name.hasPrefix("$s") }.map(\.name)
        try #require(swiftNames.count > 100)
        let picks = stride(from: 0, to: swiftNames.count, by: swiftNames.count / 25).map { swiftNames[$0] }
        // The runtime's swift_demangle prints without sugar (`Swift.Optional<Swift.Int>`).
        let output = try Tool.run("swift-demangle", ["--compact", "--no-sugar"] + picks)
        let expected = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(expected.count >= picks.count)
        let demangler = Demangler()
        for (mangled, demangled) in zip(picks, expected) {
            #expect(demangled != mangled)
            #expect(demangler.demangle(mangled) == demangled, "\(mangled)")
        }
        // The underscore-prefixed spelling demangles the same way.
        #expect(demangler.demangle("_" + picks[0]) == expected[0])
    }

    @Test(arguments: [
        "main", "", "_Z", "_Zgarbage!", "_R", "_RNvCs1234_7mycrate3foo", "$", "$s", "_T0",
        "memcpy@@GLIBC_2.14", "\u{1F600}", String(repeating: "_Z", count: 2000),
    ])
    func namesThatAreNotMangledStayUnchanged(name: String) {
        #expect(Demangler.demangleUncached(name) == name)
    }

    @Test func cacheIsBounded() {
        let demangler = Demangler(cacheCapacity: 64)
        for index in 0..<1000 {
            _ = demangler.demangle("_Z3f\(index)v")
        }
        #expect(demangler.cacheCount <= 64)
        #expect(demangler.demangle("_Z3fooi") == "foo(int)")
    }
}
