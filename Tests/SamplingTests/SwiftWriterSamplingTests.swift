import Agent
import Foundation
import NodeprofCore
import ProcessTable
import Profiles
import Recording
import Sampling
import Synchronization
import TestSupport
import Testing

/// The Swift writer API (ContextPublisher) in a Swift executable, `span-demo`: recorded with
/// the agent's path, every sample in a span's function links to that span; republishing the
/// context with a larger key map while being sampled shows the new values, none torn.
@Suite(.serialized, .machineExclusive) struct SwiftWriterSamplingTests {
    /// What a sample of span-demo shows: the function it burns CPU in and its span.
    struct Observation: Hashable, CustomStringConvertible {
        var function: String
        var span: String  // "A", "B" or "none"
        var attributes: [String: String]
        var description: String { "\(function)/\(span)\(attributes.isEmpty ? "" : "\(attributes)")" }
    }

    static let functions = ["spanAWork", "spanBWork", "idleWork"]

    static func observations(_ profile: Profile) -> [Observation] { observations(profile.samples) }

    static func observations(_ samples: some Sequence<Profile.Sample>) -> [Observation] {
        samples.compactMap { sample in
            // Demangled Swift names: `span_demo.spanAWork(Swift.Int, inout Swift.UInt64) -> ()`.
            guard
                let function = sample.frames.compactMap(\.function).lazy.compactMap({ name in
                    Self.functions.first { name.contains($0 + "(") }
                }).first
            else { return nil }
            guard let context = sample.traceContext else {
                return Observation(function: function, span: "none", attributes: [:])
            }
            let span =
                switch (context.traceID.first, context.spanID.first) {
                case (0xA1, 0xA2): "A"
                case (0xB1, 0xB2): "B"
                default: "other \(context.traceID) \(context.spanID)"
                }
            var attributes: [String: String] = [:]
            for attribute in context.attributes {
                if case .string(let value) = attribute.value { attributes[attribute.key] = value }
            }
            return Observation(function: function, span: span, attributes: attributes)
        }
    }

    static func share(_ observations: [Observation], function: String, where matches: (Observation) -> Bool)
        -> Double
    {
        let inFunction = observations.filter { $0.function == function }
        return inFunction.isEmpty ? 0 : Double(inFunction.filter(matches).count) / Double(inFunction.count)
    }

    @Test func samplesInASpanCarryItsIdsAndOthersNone() async throws {
        let workload = try ChildProcess(try builtProduct("span-demo"))
        defer { workload.kill() }
        try await Task.sleep(for: .milliseconds(300))
        let pid = workload.pid
        let result = try await runOnDedicatedThread {
            let recording = try Recording(durationSeconds: 3, sampler: .init(frequency: 499, processIDs: [pid]))
            return try recording.run(stop: StopSignal()) { _ in }
        }
        workload.kill()
        let observations = Self.observations(result.profile)
        let summary = Dictionary(grouping: observations, by: \.self).mapValues(\.count)
        #expect(observations.filter { $0.function == "spanAWork" }.count >= 50, "\(summary)")
        #expect(
            Self.share(observations, function: "spanAWork") {
                $0.span == "A" && $0.attributes == ["http.route": "/checkout"]
            } >= 0.95, "\(summary)")
        #expect(
            Self.share(observations, function: "spanBWork") {
                $0.span == "B" && $0.attributes == ["http.route": "/cart"]
            } >= 0.95, "\(summary)")
        #expect(Self.share(observations, function: "idleWork") { $0.span == "none" } == 1, "\(summary)")
        let attributes = result.profile.processAttributes[pid] ?? []
        #expect(attributes.first == Attribute("service.name", .string("span-demo")), "\(attributes)")
        #expect(result.counters.threadContextsFound > 0)
        #expect(result.counters.threadContextsUnreadable == 0)
    }

    /// SIGUSR1 makes span-demo republish (service.version 2.0.0, extra attribute
    /// demo.generation, key map + `demo.generation`) and then use the new key in its records.
    @Test func republishingWhileSampledShowsTheNewValuesNoneTorn() async throws {
        let workload = try ChildProcess(try builtProduct("span-demo"), ["--threads", "2"])
        defer { workload.kill() }
        try await Task.sleep(for: .milliseconds(300))
        let pid = workload.pid
        let windows = Mutex<[Profile]>([])
        let result = try await runOnDedicatedThread {
            let recording = try Recording(durationSeconds: 5, sampler: .init(frequency: 499, processIDs: [pid]))
            let window = RecordingWindow(seconds: 1) { profile in
                let count = windows.withLock {
                    $0.append(profile)
                    return $0.count
                }
                // Republish once the first window is closed: it sees generation 1 only.
                if count == 1 { kill(pid, SIGUSR1) }
            }
            return try recording.run(stop: StopSignal(), window: window) { _ in }
        }
        workload.kill()
        let profiles = windows.withLock { $0 }
        try #require(profiles.count >= 4, "windows: \(profiles.count)")

        // The only legitimate records: A or B, each of generation 1 (route only) or 2 (route
        // and generation). A torn record would show mixed ids, a lost or foreign attribute.
        let legitimate: Set<Observation> = [
            Observation(function: "spanAWork", span: "A", attributes: ["http.route": "/checkout"]),
            Observation(
                function: "spanAWork", span: "A", attributes: ["http.route": "/checkout", "demo.generation": "2"]),
            Observation(function: "spanBWork", span: "B", attributes: ["http.route": "/cart"]),
            Observation(function: "spanBWork", span: "B", attributes: ["http.route": "/cart", "demo.generation": "2"]),
        ]
        var linked = 0
        for (index, profile) in profiles.enumerated() {
            let observations = Self.observations(profile)
            let summary = Dictionary(grouping: observations, by: \.self).mapValues(\.count)
            let withSpan = observations.filter { $0.span != "none" }
            linked += withSpan.count
            #expect(withSpan.allSatisfy(legitimate.contains), "window \(index): \(summary)")
            #expect(observations.filter { $0.function == "idleWork" }.allSatisfy { $0.span == "none" })
            let resource = profile.processAttributes[pid] ?? []
            switch index {
            case 0:  // before the signal
                #expect(!withSpan.contains { $0.attributes["demo.generation"] != nil }, "\(summary)")
                #expect(resource.contains(Attribute("service.version", .string("1.0.0"))), "\(resource)")
            case 1:  // the signal was sent at its start: both generations
                break
            default:  // after: the new values, in the records and in the resource
                for function in ["spanAWork", "spanBWork"] {
                    #expect(
                        Self.share(observations, function: function) { $0.attributes["demo.generation"] == "2" }
                            >= 0.95, "window \(index): \(summary)")
                }
                #expect(resource.contains(Attribute("service.version", .string("2.0.0"))), "\(resource)")
                #expect(resource.contains(Attribute("demo.generation", .string("2"))), "\(resource)")
                #expect(!resource.contains { $0.key.hasPrefix("threadlocal.") })
            }
        }
        #expect(linked >= 300, "samples with a span in all windows: \(linked)")

        // The whole recording (what `record --output` writes) describes the process twice: the
        // samples before the update under 1.0.0, every sample after it under 2.0.0.
        let whole = result.profile
        var lastOld: UInt64 = 0
        var firstNew: UInt64 = .max
        var counts: [String: Int] = [:]
        for index in whole.samples.indices where whole.samples[index].pid == pid {
            let version = whole.process(ofSampleAt: index).attributes.first { $0.key == "service.version" }?.value
            let timestamp = whole.samples[index].timestampNanos
            switch version {
            case .string("1.0.0")?: lastOld = max(lastOld, timestamp)
            case .string("2.0.0")?: firstNew = min(firstNew, timestamp)
            default: break
            }
            counts["\(version.map { "\($0)" } ?? "none")", default: 0] += 1
        }
        #expect(counts.count == 2 && counts.values.allSatisfy { $0 > 50 }, "\(counts)")
        #expect(lastOld < firstNew, "no sample after the update keeps the old resource")
        #expect(whole.processes.filter { $0.pid == pid }.count == 2)
    }
}
