import NodeprofCore
import Testing

@testable import Agent

@Suite struct SymbolizedStackCacheTests {
    func sample(pid: Int32, user: [UInt64]) -> StackSample {
        StackSample(
            pid: pid, tid: pid, cpu: 0, threadName: "t", cgroupID: 1, timestampNanos: 0, kernelStack: [],
            userStack: user)
    }

    func symbolized(_ sample: StackSample) -> (SymbolizedSample, cut: Bool) {
        let frames = sample.userStack.map { Frame(kind: .native, address: $0, function: "f\($0)", module: nil) }
        return (
            SymbolizedSample(
                pid: sample.pid, tid: sample.tid, threadName: sample.threadName, processName: "p",
                cgroupID: sample.cgroupID, timestampNanos: sample.timestampNanos, frames: frames), false
        )
    }

    @Test func repeatedStacksAreSymbolizedOncePerProcess() {
        var cache = SymbolizedStackCache()
        var calls = 0
        for pid: Int32 in [1, 1, 2, 1, 2] {
            let entry = cache.frames(for: sample(pid: pid, user: [10, 20])) {
                calls += 1
                return symbolized(sample(pid: pid, user: [10, 20]))
            }
            #expect(entry.pid == pid)
            #expect(entry.frames.map(\.function) == ["f10", "f20"])
        }
        #expect(calls == 2, "one symbolization per (pid, stack)")
    }

    @Test func entriesAreBounded() {
        var cache = SymbolizedStackCache()
        var calls = 0
        let count = SymbolizedStackCache.maximumEntries + 10
        for i in 0..<count {
            _ = cache.frames(for: sample(pid: 1, user: [UInt64(i)])) {
                calls += 1
                return symbolized(sample(pid: 1, user: [UInt64(i)]))
            }
        }
        // The first stack was dropped when the cache filled up: it is symbolized again.
        _ = cache.frames(for: sample(pid: 1, user: [0])) {
            calls += 1
            return symbolized(sample(pid: 1, user: [0]))
        }
        #expect(calls == count + 1)
    }
}
