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
