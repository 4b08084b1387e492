import NodeprofCore
import Profiles
import Testing

@testable import Recording

@Suite struct SymbolizedStackCacheTests {
    func sample(pid: Int32, user: [UInt64]) -> StackSample {
        StackSample(
            pid: pid, tid: pid, cpu: 0, threadName: "t", cgroupID: 1, timestampNanos: 0, kernelStack: [],
            userStack: user)
    }

    func entry(_ sample: StackSample, in profile: inout Profile) -> SymbolizedStackCache.Entry {
        let frames = sample.userStack.map { Frame(kind: .native, address: $0, function: "f\($0)", module: nil) }
        return .init(stack: profile.intern(stack: frames), cut: false)
    }

    @Test func repeatedStacksAreSymbolizedOncePerProcess() {
        var profile = Profile(startTimeNanos: 0, frequencyHz: 99)
        var cache = SymbolizedStackCache()
        var calls = 0
        for pid: Int32 in [1, 1, 2, 1, 2] {
            let s = sample(pid: pid, user: [10, 20])
            let found = cache.entry(for: s) {
                calls += 1
                return entry(s, in: &profile)
            }
            profile.add(
                stack: found.stack, pid: pid, tid: pid, threadName: "t", processName: "p\(pid)", cgroupID: 1,
                timestampNanos: 0)
        }
        #expect(calls == 2, "one symbolization per (pid, stack)")
        #expect(profile.distinctStackCount == 1, "both processes ran the same frames")
        #expect(profile.samples.map(\.pid) == [1, 1, 2, 1, 2])
        #expect(profile.samples.allSatisfy { $0.frames.map(\.function) == ["f10", "f20"] })
    }

    @Test func entriesAreBounded() {
        var profile = Profile(startTimeNanos: 0, frequencyHz: 99)
        var cache = SymbolizedStackCache()
        var calls = 0
        let count = SymbolizedStackCache.maximumEntries + 10
        for i in 0..<count {
            let s = sample(pid: 1, user: [UInt64(i)])
            _ = cache.entry(for: s) {
                calls += 1
                return entry(s, in: &profile)
            }
        }
        // The first stack was dropped when the cache filled up: it is symbolized again.
        let first = sample(pid: 1, user: [0])
        _ = cache.entry(for: first) {
            calls += 1
            return entry(first, in: &profile)
        }
        #expect(calls == count + 1)
    }
}
