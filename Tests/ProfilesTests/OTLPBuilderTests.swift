import Foundation
import NodeprofCore
import ProfilesProtobuf
import SwiftProtobuf
import TestSupport
import Testing

@testable import Profiles

@Suite struct OTLPBuilderTests {
    static let start: UInt64 = 1_700_000_000_000_000_000

    static func profile(_ samples: [Profile.Sample], frequency: UInt64 = 99) -> Profile {
        var profile = Profile(startTimeNanos: start, durationNanos: 10_000_000_000, frequencyHz: frequency)
        for sample in samples { profile.add(sample) }
        return profile
    }

    static func decode(_ request: OTLPEncodedRequest) throws -> OTLPRequest {
        try OTLPRequest(serializedBytes: request.bytes)
    }

    static func builder(maximumRequestBytes: Int = 60 << 20) -> OTLPBuilder {
        OTLPBuilder(
            configuration: .init(
                hostName: "node-1", kernelBuildID: "48dc540c8b76393804ca8088dbfa7d42911a9444",
                maximumRequestBytes: maximumRequestBytes, scopeVersion: "0.1.0"))
    }

    /// Resolves every sample of a request to (pid, tid, thread, frames as names, timestamps).
    struct ResolvedSample: Hashable {
        var pid: Int64
        var tid: Int64
        var thread: String
        var functions: [String]
        var timestamp: UInt64
    }

    static func resolve(_ request: OTLPRequest) -> [ResolvedSample] {
        let d = request.dictionary
        var output: [ResolvedSample] = []
        for resource in request.resourceProfiles {
            let pid = resource.resource.attributes.first { $0.key == "process.pid" }?.value.intValue ?? -1
            for scope in resource.scopeProfiles {
                for profile in scope.profiles {
                    for sample in profile.samples {
                        var tid: Int64 = -1
                        var thread = ""
                        for index in sample.attributeIndices {
                            let attribute = d.attributeTable[Int(index)]
                            switch d.stringTable[Int(attribute.keyStrindex)] {
                            case "thread.id": tid = attribute.value.intValue
                            case "thread.name": thread = attribute.value.stringValue
                            default: break
                            }
                        }
                        let functions = d.stackTable[Int(sample.stackIndex)].locationIndices.map { index in
                            let location = d.locationTable[Int(index)]
                            guard let line = location.lines.first else {
                                return String(location.address, radix: 16)
                            }
                            return d.stringTable[Int(d.functionTable[Int(line.functionIndex)].nameStrindex)]
                        }
                        for timestamp in sample.timestampsUnixNano {
                            output.append(
                                ResolvedSample(
                                    pid: pid, tid: tid, thread: thread, functions: functions, timestamp: timestamp))
                        }
                    }
                }
            }
        }
        return output
    }

    static func expected(_ samples: [Profile.Sample]) -> [ResolvedSample] {
        samples.map { sample in
            ResolvedSample(
                pid: Int64(sample.pid), tid: Int64(sample.tid), thread: sample.threadName,
                functions: sample.frames.map { $0.function ?? String($0.address, radix: 16) },
                timestamp: sample.timestampNanos)
        }
    }

    static func sorted(_ samples: [ResolvedSample]) -> [ResolvedSample] {
        samples.sorted { ($0.timestamp, $0.tid, $0.functions.joined()) < ($1.timestamp, $1.tid, $1.functions.joined()) }
    }

    @Test func everySampleSurvivesWithItsStackThreadAndTimestamp() throws {
        let samples = ProfilesSyntheticStacks.mixed
        let requests = try Self.builder().encode(Self.profile(samples))
        #expect(requests.count == 1)
        let request = try Self.decode(requests[0])
        #expect(Self.sorted(Self.resolve(request)) == Self.sorted(Self.expected(samples)))
        #expect(requests[0].sampleCount == samples.count)
        #expect(requests[0].profileCount == 1)
    }

    @Test func tableEntryZeroIsTheReservedZeroValue() throws {
        let request = try Self.decode(try Self.builder().encode(Self.profile(ProfilesSyntheticStacks.mixed))[0])
        let d = request.dictionary
        #expect(d.stringTable.first == "")
        #expect(d.mappingTable.first == OTLPMapping())
        #expect(d.locationTable.first == OTLPLocation())
        #expect(d.functionTable.first == OTLPFunction())
        #expect(d.stackTable.first == OTLPStack())
        #expect(d.attributeTable.first == OTLPKeyValueAndUnit())
        #expect(d.linkTable.first?.traceID == Data(count: 16))
        #expect(d.linkTable.first?.spanID == Data(count: 8))
        #expect(d.linkTable.count == 1)
    }

    @Test func tablesHoldNoDuplicates() throws {
        // 30 rounds of the same stacks: tables must not grow with the sample count.
        var samples: [Profile.Sample] = []
        for round in 0..<30 {
            for var sample in ProfilesSyntheticStacks.mixed {
                sample.timestampNanos += UInt64(round) * 1_000_000_000
                samples.append(sample)
            }
        }
        let request = try Self.decode(try Self.builder().encode(Self.profile(samples))[0])
        let d = request.dictionary
        #expect(Set(d.stringTable).count == d.stringTable.count)
        #expect(Set(d.mappingTable).count == d.mappingTable.count)
        #expect(Set(d.locationTable).count == d.locationTable.count)
        #expect(Set(d.functionTable).count == d.functionTable.count)
        #expect(Set(d.stackTable).count == d.stackTable.count)
        #expect(Set(d.attributeTable).count == d.attributeTable.count)
        // The synthetic set has 6 distinct stacks and 11 distinct frames.
        #expect(d.stackTable.count == 1 + Set(ProfilesSyntheticStacks.mixed.map(\.frames)).count)
        #expect(
            d.locationTable.count == 1 + Set(ProfilesSyntheticStacks.mixed.flatMap(\.frames)).count)
    }

    @Test func identicalSamplesAreMergedKeepingEveryTimestamp() throws {
        let samples = ProfilesSyntheticStacks.basic  // 2 distinct (stack, thread) pairs
        let request = try Self.decode(try Self.builder().encode(Self.profile(samples))[0])
        let profile = request.resourceProfiles[0].scopeProfiles[0].profiles[0]
        #expect(profile.samples.count == 2)
        #expect(profile.samples.map(\.timestampsUnixNano.count).sorted() == [100, 200])
        for sample in profile.samples {
            #expect(sample.values.isEmpty)  // one shape: timestamps only, one sample each
            #expect(sample.linkIndex == 0)
        }
    }

    @Test func withoutTimestampsMergedSamplesCarryTheirCount() throws {
        let builder = OTLPBuilder(configuration: .init(hostName: "node-1", sampleTimestamps: false))
        let encoded = try builder.encode(Self.profile(ProfilesSyntheticStacks.mixed))
        #expect(encoded.map(\.sampleCount) == [ProfilesSyntheticStacks.mixed.count])
        let request = try Self.decode(encoded[0])
        let samples = request.resourceProfiles[0].scopeProfiles[0].profiles[0].samples
        for sample in samples {
            #expect(sample.timestampsUnixNano.isEmpty)
            #expect(sample.values.count == 1)
        }
        // Counts per (leaf, thread) match the input.
        var expected: [String: Int64] = [:]
        for sample in ProfilesSyntheticStacks.mixed {
            expected["\(sample.tid)/\(sample.frames.map { $0.function ?? "?" })", default: 0] += 1
        }
        #expect(samples.map(\.values[0]).sorted() == expected.values.sorted())
        #expect(try otlpConformanceViolations(encoded[0].bytes) == [])
    }

    @Test func profileHeaderFollowsTheSpec() throws {
        let request = try Self.decode(try Self.builder().encode(Self.profile(ProfilesSyntheticStacks.mixed))[0])
        let d = request.dictionary
        let profile = request.resourceProfiles[0].scopeProfiles[0].profiles[0]
        #expect(d.stringTable[Int(profile.sampleType.typeStrindex)] == "samples")
        #expect(d.stringTable[Int(profile.sampleType.unitStrindex)] == "count")
        #expect(d.stringTable[Int(profile.periodType.typeStrindex)] == "cpu")
        #expect(d.stringTable[Int(profile.periodType.unitStrindex)] == "nanoseconds")
        #expect(profile.period == 1_000_000_000 / 99)
        #expect(profile.profileID.count == 16)
        #expect(profile.profileID.contains { $0 != 0 })
        #expect(profile.originalPayloadFormat.isEmpty && profile.originalPayload.isEmpty)
        for sample in profile.samples {
            for timestamp in sample.timestampsUnixNano {
                #expect(timestamp >= profile.timeUnixNano)
                #expect(timestamp < profile.timeUnixNano + profile.durationNano)
            }
        }
        #expect(request.resourceProfiles[0].scopeProfiles[0].scope.name == "nodeprof")
    }

    @Test func windowWidensToCoverSamplesOutsideTheRecordingWindow() throws {
        var early = ProfilesSyntheticStacks.basic[0]
        early.timestampNanos = Self.start - 5_000
        var late = ProfilesSyntheticStacks.basic[1]
        late.timestampNanos = Self.start + 20_000_000_000
        let request = try Self.decode(try Self.builder().encode(Self.profile([early, late]))[0])
        let profile = request.resourceProfiles[0].scopeProfiles[0].profiles[0]
        #expect(profile.timeUnixNano == Self.start - 5_000)
        #expect(profile.timeUnixNano + profile.durationNano == Self.start + 20_000_000_001)
    }

    @Test func profileIDsAreDistinctPerProfile() throws {
        var samples = ProfilesSyntheticStacks.basic
        for index in samples.indices where index % 2 == 0 { samples[index].pid = 200 }
        let request = try Self.decode(try Self.builder().encode(Self.profile(samples))[0])
        let ids = request.resourceProfiles.map { $0.scopeProfiles[0].profiles[0].profileID }
        #expect(ids.count == 2)
        #expect(Set(ids).count == 2)
    }

    @Test func oneResourcePerProcessWithProcessAttributes() throws {
        var samples = ProfilesSyntheticStacks.basic
        for index in samples.indices where index % 3 == 0 {
            samples[index].pid = 200
            samples[index].processName = "other"
        }
        var profile = Self.profile(samples)
        profile.processAttributes[100] = [
            Attribute("process.executable.path", "/opt/synthetic/bin/app"),
            Attribute("process.pid", 999),  // the agent's own value wins
        ]
        let request = try Self.decode(try Self.builder().encode(profile)[0])
        #expect(request.resourceProfiles.count == 2)
        let byPid = Dictionary(
            uniqueKeysWithValues: request.resourceProfiles.map { resource in
                let attributes = Dictionary(
                    uniqueKeysWithValues: resource.resource.attributes.map { ($0.key, $0.value) })
                return (attributes["process.pid"]!.intValue, attributes)
            })
        #expect(byPid[100]?["process.executable.name"]?.stringValue == "app")
        #expect(byPid[100]?["process.executable.path"]?.stringValue == "/opt/synthetic/bin/app")
        #expect(byPid[100]?["host.name"]?.stringValue == "node-1")
        #expect(byPid[200]?["process.executable.name"]?.stringValue == "other")
        #expect(byPid[200]?["process.executable.path"] == nil)
        for resource in request.resourceProfiles {
            let keys = resource.resource.attributes.map(\.key)
            #expect(Set(keys).count == keys.count)
        }
    }

    @Test func locationsCarryFrameTypeAndMappingsBuildIDs() throws {
        var samples = ProfilesSyntheticStacks.mixed
        let app = Module(
            start: 0x40_0000, limit: 0x50_0000, fileOffset: 0, path: "/opt/synthetic/bin/app",
            buildID: "0a1b2c3d4e5f", htlHash: "00112233445566778899aabbccddeeff")
        for index in samples.indices {
            samples[index].frames = samples[index].frames.map { frame in
                var frame = frame
                if frame.module?.path == app.path { frame.module = app }
                return frame
            }
        }
        let request = try Self.decode(try Self.builder().encode(Self.profile(samples))[0])
        let d = request.dictionary
        func attributes(_ indices: [Int32]) -> [String: String] {
            Dictionary(
                uniqueKeysWithValues: indices.map {
                    (
                        d.stringTable[Int(d.attributeTable[Int($0)].keyStrindex)],
                        d.attributeTable[Int($0)].value.stringValue
                    )
                })
        }
        var kinds: Set<String> = []
        for location in d.locationTable.dropFirst() {
            let type = attributes(location.attributeIndices)["profile.frame.type"]
            kinds.insert(type ?? "missing")
            let mapping = d.mappingTable[Int(location.mappingIndex)]
            let name = d.stringTable[Int(mapping.filenameStrindex)]
            if type == "kernel" {
                #expect(name == "[kernel.kallsyms]")
            } else if location.mappingIndex != 0 {
                #expect(name == "/opt/synthetic/bin/app")
                #expect(location.address >= mapping.memoryStart && location.address < mapping.memoryLimit)
            }
        }
        #expect(kinds == ["kernel", "native"])
        for mapping in d.mappingTable.dropFirst() {
            let ids = attributes(mapping.attributeIndices)
            #expect(!ids.isEmpty)
            if d.stringTable[Int(mapping.filenameStrindex)] == "/opt/synthetic/bin/app" {
                #expect(ids["process.executable.build_id.gnu"] == "0a1b2c3d4e5f")
                #expect(ids["process.executable.build_id.htlhash"] == "00112233445566778899aabbccddeeff")
            } else {
                #expect(ids["process.executable.build_id.gnu"] == "48dc540c8b76393804ca8088dbfa7d42911a9444")
            }
        }
        // libsynth.so has no build id: its frames keep their address but no mapping.
        let libsynthAddresses: Set<UInt64> = [0x7f00_0000_1234, 0x7f00_0000_5678]
        for location in d.locationTable where libsynthAddresses.contains(location.address) {
            #expect(location.mappingIndex == 0)
        }
    }

    @Test func largeProfilesAreSplitBelowTheLimitWithoutLosingSamples() throws {
        // 40 processes with distinct stacks; a 16 KiB limit forces several requests.
        var samples: [Profile.Sample] = []
        for pid in 1...40 {
            for var sample in ProfilesSyntheticStacks.mixed.prefix(60) {
                sample.pid = Int32(pid)
                sample.frames = sample.frames.map { frame in
                    var frame = frame
                    if frame.kind == .native { frame.address += UInt64(pid) << 32 }
                    frame.function = frame.function.map { "\($0)_\(pid)" }
                    return frame
                }
                samples.append(sample)
            }
        }
        // One process alone larger than the limit: its samples get split too.
        for index in 0..<3000 {
            var sample = ProfilesSyntheticStacks.basic[0]
            sample.pid = 77
            sample.timestampNanos += UInt64(index)
            sample.frames[0].function = "leaf_\(index % 500)"
            sample.frames[0].address += UInt64(index % 500) * 16
            samples.append(sample)
        }
        let limit = 16 << 10
        let requests = try Self.builder(maximumRequestBytes: limit).encode(Self.profile(samples))
        #expect(requests.count > 2)
        var resolved: [ResolvedSample] = []
        for request in requests {
            #expect(request.bytes.count <= limit)
            let decoded = try Self.decode(request)
            resolved += Self.resolve(decoded)
            // Each request's dictionary covers exactly what it uses: no orphan stacks.
            let used = Set(
                decoded.resourceProfiles.flatMap { $0.scopeProfiles.flatMap { $0.profiles.flatMap { $0.samples } } }
                    .map(\.stackIndex))
            #expect(used.count == decoded.dictionary.stackTable.count - 1)
        }
        #expect(Self.sorted(resolved) == Self.sorted(Self.expected(samples)))
        #expect(requests.map(\.sampleCount).reduce(0, +) == samples.count)

        // Split before encoding: each batch the estimate makes encodes within the limit, so
        // no request is encoded twice; and the estimate is an upper bound of the real size.
        let profile = Self.profile(samples)
        let batches = OTLPBuilder.batches(of: OTLPBuilder.groupByProcess(profile), in: profile, limit: limit)
        #expect(batches.count == requests.count)
        var estimator = SizeEstimator(store: profile.store)
        for batch in batches {
            let bytes = try OTLPBuilder.encoded(Self.builder().request(for: profile, groups: batch[...])).bytes.count
            #expect(bytes <= limit)
            for group in batch {
                let alone = try OTLPBuilder.encoded(Self.builder().request(for: profile, groups: [group][...]))
                #expect(alone.bytes.count <= estimator.bytes(of: group.records))
            }
        }
    }

    /// The official decoder and the conformance checker (every rule of the spec) accept what
    /// the builder writes, including split requests.
    @Test func conformanceCheckerFindsNoViolation() throws {
        var samples = ProfilesSyntheticStacks.mixed
        for index in samples.indices where index % 4 == 0 { samples[index].pid = 300 }
        let module = Module(
            start: 0x40_0000, limit: 0x50_0000, fileOffset: 0, path: "/opt/synthetic/bin/app", buildID: nil,
            htlHash: "00112233445566778899aabbccddeeff")
        samples[0].frames[0].module = module
        var profile = Self.profile(samples)
        profile.processAttributes[100] = [Attribute("process.executable.path", "/opt/synthetic/bin/app")]
        for request in try Self.builder().encode(profile) + Self.builder(maximumRequestBytes: 2048).encode(profile) {
            #expect(try otlpConformanceViolations(request.bytes) == [])
        }
    }

    /// The checker is not a rubber stamp: a request with a broken index fails it.
    @Test func conformanceCheckerRejectsABrokenRequest() throws {
        var request = try Self.decode(try Self.builder().encode(Self.profile(ProfilesSyntheticStacks.basic))[0])
        request.dictionary.locationTable[1].mappingIndex = 99
        let violations = try otlpConformanceViolations(try request.serializedBytes())
        #expect(violations.contains { $0.contains("mapping_index") })
    }

    @Test func emptyProfileGivesNoRequest() throws {
        #expect(try Self.builder().encode(Self.profile([])).isEmpty)
    }

}

@Suite struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ])
    func knownVectors(input: String, digest: String) {
        #expect(hexString(SHA256.hash(Array(input.utf8))) == digest)
    }

    @Test func agreesWithSha256sumOnEveryLengthAroundBlockEdges() throws {
        // Lengths around the 64-byte block and 56-byte padding edges, compared with coreutils.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sha-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var paths: [String] = []
        var digests: [String] = []
        for length in [1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 8193] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let path = directory.appendingPathComponent("\(length)").path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            paths.append(path)
            digests.append(hexString(SHA256.hash(bytes)))
        }
        let output = try runProgram("/usr/bin/sha256sum", paths)
        let expected = output.split(separator: "\n").map { String($0.prefix(64)) }
        #expect(expected == digests)
    }

    @Test func htlHashFollowsTheSemanticConvention() {
        // SHA-256(head || tail || length as big-endian u64), first 16 bytes.
        let head = Array("head".utf8)
        let tail = Array("tail".utf8)
        let reference = SHA256.hash(head + tail + [0, 0, 0, 0, 0, 0, 0x10, 0x01])
        #expect(htlHash(head: head, tail: tail, length: 0x1001) == hexString(reference.prefix(16)))
        #expect(htlHash(head: head, tail: tail, length: 0x1001).count == 32)
    }
}
