import NodeprofCore
import TestSupport
import Testing

@testable import Profiles

@Suite struct TopFunctionsTests {
    static func profile(_ samples: [Profile.Sample]) -> Profile {
        var profile = Profile(startTimeNanos: 0, frequencyHz: 99)
        for sample in samples {
            profile.add(sample)
        }
        return profile
    }

    static func row(_ top: TopFunctions, _ function: String) -> TopFunctions.Row? {
        top.rows.first { $0.function == function }
    }

    @Test func flatAndCumulativeOfTheBasicProfile() throws {
        let top = TopFunctions(profile: Self.profile(ProfilesSyntheticStacks.basic), limit: 20)
        #expect(top.totalSamples == 300)
        #expect(top.rows.prefix(2).map(\.function) == ["leaf_a", "leaf_b"])

        let leafA = try #require(Self.row(top, "leaf_a"))
        #expect((leafA.flat, leafA.cumulative, leafA.module) == (200, 200, "app"))
        #expect(abs(leafA.flatPercent - 200.0 / 3) < 1e-9)
        let leafB = try #require(Self.row(top, "leaf_b"))
        #expect((leafB.flat, leafB.cumulative) == (100, 100))
        let main = try #require(Self.row(top, "main"))
        #expect((main.flat, main.cumulative, main.cumulativePercent) == (0, 300, 100))
        let workA = try #require(Self.row(top, "work_a"))
        #expect((workA.flat, workA.cumulative) == (0, 200))
    }

    @Test func mixedProfileRowsInOrder() {
        let top = TopFunctions(profile: Self.profile(ProfilesSyntheticStacks.mixed), limit: 100)
        let table = top.rows.map { "\($0.function)|\($0.module)|\($0.flat)|\($0.cumulative)" }
        #expect(
            table == [
                "leaf_a|app|200|200",
                "leaf_b|app|100|100",
                "copy_user_generic_string|[kernel.kallsyms]|40|40",
                "[unknown] libsynth.so+0x2234 (+1 more)|libsynth.so|20|120",
                "fib|app|10|10",
                "main|app|0|370",
                "work_a|app|0|220",
                "work_b|app|0|140",
                "do_syscall_64|[kernel.kallsyms]|0|40",
                "vfs_write|[kernel.kallsyms]|0|40",
                "write|libsynth.so|0|40",
            ])
        #expect(top.functionCount == 11)
        #expect(top.rows.filter { !$0.isSymbolized }.count == 1)
    }

    @Test func recursionCountsOncePerSampleInCumulative() throws {
        // fib -> fib -> fib -> main: fib is on the stack three times per sample.
        let top = TopFunctions(profile: Self.profile(ProfilesSyntheticStacks.mixed), limit: 100)
        let fib = try #require(Self.row(top, "fib"))
        #expect(fib.flat == 10)
        #expect(fib.cumulative == 10)
        #expect(top.rows.filter { $0.function == "fib" }.count == 1, "two addresses, one function")
    }

    @Test func limitCutsRowsButNotTotals() {
        let top = TopFunctions(profile: Self.profile(ProfilesSyntheticStacks.mixed), limit: 3)
        #expect(top.rows.map(\.function) == ["leaf_a", "leaf_b", "copy_user_generic_string"])
        #expect(top.functionCount == 11)
        #expect(top.totalSamples == 370)
        #expect(
            TopFunctions(profile: Self.profile(ProfilesSyntheticStacks.mixed), limit: -1).rows
                .isEmpty)
    }

    @Test func sameNameInTwoModulesIsTwoFunctions() {
        let other = Module(
            start: 0x1000, limit: 0x2000, fileOffset: 0, path: "/lib/other.so", buildID: nil)
        let initApp = Frame(
            kind: .native, address: 0x40_1000, function: "init", module: ProfilesSyntheticStacks.app
        )
        let initOther = Frame(kind: .native, address: 0x1100, function: "init", module: other)
        let samples =
            ProfilesSyntheticStacks.repeated(2, tid: 1, thread: "t", [initApp])
            + ProfilesSyntheticStacks.repeated(1, tid: 1, thread: "t", [initOther])
        let top = TopFunctions(profile: Self.profile(samples), limit: 10)
        #expect(
            top.rows.map { "\($0.function)@\($0.module):\($0.flat)" } == [
                "init@app:2", "init@other.so:1",
            ])
    }

    @Test func unsymbolizedKernelAndUnmappedFramesShowAddresses() {
        let kernel = Frame(
            kind: .kernel, address: 0xffff_ffff_8100_00ff, function: nil, module: nil)
        let jit = Frame(kind: .native, address: 0x7f12_3456, function: nil, module: nil)
        let samples =
            ProfilesSyntheticStacks.repeated(2, tid: 1, thread: "t", [kernel])
            + ProfilesSyntheticStacks.repeated(1, tid: 1, thread: "t", [jit])
        let top = TopFunctions(profile: Self.profile(samples), limit: 10)
        #expect(
            top.rows.map { "\($0.function)|\($0.module)" } == [
                "[unknown] 0xffffffff810000ff|[kernel.kallsyms]",
                "[unknown] 0x7f123456|[unknown]",
            ])
    }

    @Test func renderPrintsAnAlignedTable() {
        let top = TopFunctions(profile: Self.profile(ProfilesSyntheticStacks.basic), limit: 2)
        #expect(
            top.render() == """
                300 samples, showing 2 of 6 functions
                flat   flat%  cum    cum%  function  module
                 200  66.67%  200  66.67%  leaf_a    app
                 100  33.33%  100  33.33%  leaf_b    app

                """)
    }

    @Test func renderTruncatesLongNamesKeepingTheStart() {
        let long = "ns::Type<" + String(repeating: "Arg, ", count: 40) + ">::method(int)"
        let frame = Frame(
            kind: .native, address: 0x40_1000, function: long, module: ProfilesSyntheticStacks.app)
        var top = TopFunctions(
            profile: Self.profile(
                ProfilesSyntheticStacks.repeated(1, tid: 1, thread: "t", [frame])),
            limit: 1)
        top.maxFunctionWidth = 20
        let lines = top.render().split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[2].contains("ns::Type<Arg, Arg, …  app"))
        #expect(top.rows[0].function == long, "rows keep the full name")
    }

    @Test func renderOfAnEmptyProfile() {
        let top = TopFunctions(profile: Self.profile([]), limit: 10)
        #expect(
            top.render()
                == "0 samples, showing 0 of 0 functions\nflat  flat%  cum  cum%  function  module\n"
        )
    }

    @Test(arguments: [
        (2, 3, "66.67%"), (1, 3, "33.33%"), (1, 1, "100.00%"), (1, 8, "12.50%"),
        (0, 5, "0.00%"), (1, 20_000, "0.01%"), (1, 20_001, "0.00%"), (0, 0, "0.00%"),
    ])
    func percentRoundsHalfUp(count: Int, total: Int, expected: String) {
        #expect(TopFunctions.formatPercent(count, of: total) == expected)
    }
}
