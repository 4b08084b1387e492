import NodeprofCore
import Profiles
import TestSupport
import Testing

@Suite struct ProfileTests {
    @Test func periodIsTheInverseOfTheFrequency() {
        #expect(Profile(startTimeNanos: 0, frequencyHz: 100).periodNanos == 10_000_000)
        #expect(Profile(startTimeNanos: 0, frequencyHz: 99).periodNanos == 10_101_010)
        #expect(Profile(startTimeNanos: 0, frequencyHz: 1).periodNanos == 1_000_000_000)
    }

    @Test func addKeepsSamplesInOrder() {
        var profile = Profile(startTimeNanos: 1, durationNanos: 2, frequencyHz: 99)
        let samples = ProfilesSyntheticStacks.mixed
        for sample in samples {
            profile.add(sample)
        }
        #expect(profile.sampleCount == 370)
        #expect(Array(profile.samples) == samples)
    }

    /// A long recording repeats a few stacks: each is stored once, samples keep their own
    /// timestamps, threads and processes.
    @Test func repeatedStacksAreStoredOnce() {
        var profile = Profile(startTimeNanos: 0, frequencyHz: 99)
        let distinct = Set(ProfilesSyntheticStacks.mixed.map(\.frames)).count
        for round in 0..<30 {
            for var sample in ProfilesSyntheticStacks.mixed {
                sample.timestampNanos &+= UInt64(round)
                profile.add(sample)
            }
        }
        #expect(profile.sampleCount == 30 * 370)
        #expect(profile.distinctStackCount == distinct)
        #expect(profile.samples[370 * 29 + 5].timestampNanos == ProfilesSyntheticStacks.mixed[5].timestampNanos &+ 29)
        #expect(profile.samples[370 * 29 + 5].frames == ProfilesSyntheticStacks.mixed[5].frames)
        #expect(profile.samples[370 * 29 + 5].processName == ProfilesSyntheticStacks.mixed[5].processName)
    }

    @Test func addingByStackIDEqualsAddingSamples() {
        var bySample = Profile(startTimeNanos: 0, frequencyHz: 99)
        var byID = Profile(startTimeNanos: 0, frequencyHz: 99)
        for sample in ProfilesSyntheticStacks.mixed {
            bySample.add(sample)
            byID.add(
                stack: byID.intern(stack: sample.frames), pid: sample.pid, tid: sample.tid,
                threadName: sample.threadName, processName: sample.processName, cgroupID: sample.cgroupID,
                timestampNanos: sample.timestampNanos)
        }
        #expect(Array(byID.samples) == Array(bySample.samples))
        #expect(byID.distinctStackCount == bySample.distinctStackCount)
    }

    @Test func dropsAddUpPerReasonInFirstSeenOrder() {
        var profile = Profile(startTimeNanos: 0, frequencyHz: 99)
        profile.recordDrops(3, reason: "ring buffer full")
        profile.recordDrops(0, reason: "ignored")
        profile.recordDrops(2, reason: "no stack")
        profile.recordDrops(4, reason: "ring buffer full")
        profile.comments = ["nodeprof record"]

        #expect(
            profile.drops == [
                DropCount(reason: "ring buffer full", count: 7),
                DropCount(reason: "no stack", count: 2),
            ])
        #expect(profile.droppedCount == 9)
        #expect(
            profile.allComments == [
                "nodeprof record",
                "dropped 7 samples: ring buffer full",
                "dropped 2 samples: no stack",
            ])
    }
}

@Suite struct ProfileAppendTests {
    /// Windows appended one after another give the same samples as one profile of them all.
    @Test func appendingWindowsKeepsEverySampleInOrder() {
        let samples = ProfilesSyntheticStacks.mixed
        var whole = Profile(startTimeNanos: 100, durationNanos: 50, frequencyHz: 99)
        var second = Profile(startTimeNanos: 150, durationNanos: 70, frequencyHz: 99)
        for sample in samples.prefix(200) { whole.add(sample) }
        // Interned in a different order than in `whole`, so indices must be translated.
        for sample in samples.dropFirst(200).reversed() { second.add(sample) }
        second.recordDrops(3, reason: "lost: ring buffer full")
        second.processAttributes[100] = [Attribute("process.executable.path", "/opt/synthetic/bin/app")]
        whole.recordDrops(2, reason: "lost: ring buffer full")
        whole.append(contentsOf: second)

        #expect(Array(whole.samples) == Array(samples.prefix(200)) + samples.dropFirst(200).reversed())
        #expect(whole.distinctStackCount == Set(samples.map(\.frames)).count)
        #expect(whole.drops == [DropCount(reason: "lost: ring buffer full", count: 5)])
        // The appended window's description of pid 100 (with its path) stays with its samples.
        let described = whole.samples.indices.filter {
            whole.process(ofSampleAt: $0).attributes.first?.key == "process.executable.path"
        }
        #expect(!described.isEmpty)
        #expect(described.allSatisfy { $0 >= 200 && whole.samples[$0].pid == 100 })
        #expect(described.count == samples.dropFirst(200).filter { $0.pid == 100 }.count)
        #expect(whole.startTimeNanos == 100 && whole.durationNanos == 120)
    }
}
