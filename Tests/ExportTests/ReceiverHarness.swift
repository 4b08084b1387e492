import Foundation
import NodeprofCore
import Profiles
import TestSupport
import Testing

/// Runs `body` with a fresh receiver, stopping it afterwards (also when `body` throws).
func withReceiver<T: Sendable>(
    tls: OTLPTestReceiver.TLSFiles? = nil, _ body: (OTLPTestReceiver) async throws -> T
) async throws -> T {
    let receiver = try await OTLPTestReceiver.start(tls: tls)
    do {
        let result = try await body(receiver)
        receiver.stop()
        return result
    } catch {
        receiver.stop()
        Issue.record("receiver log:\n\(receiver.log.suffix(4000))")
        throw error
    }
}

/// Valid OTLP profile requests, built by the project's OTLP builder from synthetic stacks.
enum TestRequests {
    static let start: UInt64 = 1_700_000_000_000_000_000

    /// A request with `samples` samples (distinct timestamps 10 ms apart) over a few stacks
    /// and threads: the size grows by about 10 bytes per sample.
    static func make(samples: Int) throws -> OTLPEncodedRequest {
        let stacks = [
            [ProfilesSyntheticStacks.leafA, ProfilesSyntheticStacks.workA, ProfilesSyntheticStacks.main],
            [ProfilesSyntheticStacks.leafB, ProfilesSyntheticStacks.workB, ProfilesSyntheticStacks.main],
            [
                ProfilesSyntheticStacks.fibInner, ProfilesSyntheticStacks.fibOuter, ProfilesSyntheticStacks.fibOuter,
                ProfilesSyntheticStacks.main,
            ],
        ]
        var profile = Profile(
            startTimeNanos: start, durationNanos: UInt64(samples + 1) * 10_000_000, frequencyHz: 100)
        for index in 0..<samples {
            let tid = Int32(101 + index % 3)
            profile.add(
                Profile.Sample(
                    pid: ProfilesSyntheticStacks.pid, tid: tid, threadName: "worker-\(tid)",
                    processName: ProfilesSyntheticStacks.processName, cgroupID: 1,
                    timestampNanos: start + UInt64(index) * 10_000_000, frames: stacks[index % stacks.count]))
        }
        let builder = OTLPBuilder(configuration: .init(hostName: "export-test-node"))
        return try builder.encodeSingleRequest(profile)
    }
}
