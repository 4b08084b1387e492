import Foundation
import Gzip
import NodeprofCore
import Profiles
import ProfilesProtobuf
import SwiftProtobuf
import TestSupport
import Testing

@Suite struct PprofEncoderTests {
    static let start: UInt64 = 1_700_000_000_123_456_789

    static func profile(_ samples: [Profile.Sample]) -> Profile {
        var profile = Profile(startTimeNanos: start, durationNanos: 5_000_000_000, frequencyHz: 99)
        for sample in samples {
            profile.add(sample)
        }
        return profile
    }

    /// Encodes, gunzips and decodes with the generated types, as a consumer would.
    static func roundTrip(_ profile: Profile) throws -> Perftools_Profiles_Profile {
        let file = try PprofEncoder().encode(profile)
        let bytes = try Gzip.decompress(file, maxOutputBytes: 64 << 20)
        return try Perftools_Profiles_Profile(serializedBytes: bytes)
    }

    @Test func headerDescribesACPUProfile() throws {
        var profile = Self.profile(ProfilesSyntheticStacks.basic)
        profile.comments = ["nodeprof record --frequency 99"]
        profile.recordDrops(3, reason: "ring buffer full")
        let decoded = try Self.roundTrip(profile)
        let strings = decoded.stringTable

        #expect(
            decoded.sampleType.map { [strings[Int($0.type)], strings[Int($0.unit)]] } == [
                ["samples", "count"], ["cpu", "nanoseconds"],
            ])
        #expect(strings[Int(decoded.periodType.type)] == "cpu")
        #expect(strings[Int(decoded.periodType.unit)] == "nanoseconds")
        #expect(decoded.period == 10_101_010)
        #expect(decoded.timeNanos == Int64(Self.start))
        #expect(decoded.durationNanos == 5_000_000_000)
        #expect(
            decoded.comment.map { strings[Int($0)] } == [
                "nodeprof record --frequency 99", "dropped 3 samples: ring buffer full",
            ])
    }

    @Test func tablesAreDeduplicatedWithConsistentIDs() throws {
        let decoded = try Self.roundTrip(Self.profile(ProfilesSyntheticStacks.mixed))
        let strings = decoded.stringTable

        // Strings: "" first, no duplicates, every index in range.
        #expect(strings.first == "")
        #expect(Set(strings).count == strings.count)
        func string(_ index: Int64) -> String? {
            strings.indices.contains(Int(index)) ? strings[Int(index)] : nil
        }

        // Ids are 1...n in table order.
        #expect(decoded.mapping.map(\.id) == Array(1...UInt64(decoded.mapping.count)))
        #expect(decoded.function.map(\.id) == Array(1...UInt64(decoded.function.count)))
        #expect(decoded.location.map(\.id) == Array(1...UInt64(decoded.location.count)))

        // Functions: one per name here (fib has two addresses but is one function).
        let functionNames = decoded.function.compactMap { string($0.name) }
        #expect(functionNames.count == decoded.function.count)
        #expect(Set(functionNames).count == functionNames.count)
        #expect(
            Set(functionNames) == [
                "main", "work_a", "leaf_a", "work_b", "leaf_b", "fib", "write",
                "copy_user_generic_string", "vfs_write", "do_syscall_64",
            ])

        // Locations: one per (mapping, address), references resolve.
        let keys = decoded.location.map { "\($0.mappingID)/\($0.address)" }
        #expect(Set(keys).count == keys.count)
        #expect(decoded.location.count == 13)
        let functionIDs = Set(decoded.function.map(\.id))
        let mappingIDs = Set(decoded.mapping.map(\.id))
        for location in decoded.location {
            #expect(mappingIDs.contains(location.mappingID))
            #expect(location.line.allSatisfy { functionIDs.contains($0.functionID) })
        }
        let locationIDs = Set(decoded.location.map(\.id))
        #expect(decoded.sample.allSatisfy { $0.locationID.allSatisfy(locationIDs.contains) })

        // Mappings: app, libsynth, kernel.
        #expect(decoded.mapping.count == 3)
        let byName = Dictionary(
            uniqueKeysWithValues: decoded.mapping.map { (string($0.filename) ?? "?", $0) })
        let app = try #require(byName[ProfilesSyntheticStacks.app.path])
        #expect(app.memoryStart == 0x40_0000)
        #expect(app.memoryLimit == 0x50_0000)
        #expect(app.fileOffset == 0)
        #expect(string(app.buildID) == "0a1b2c3d4e5f")
        #expect(app.hasFunctions_p)
        let lib = try #require(byName[ProfilesSyntheticStacks.libsynth.path])
        #expect(lib.fileOffset == 0x1000)
        #expect(lib.buildID == 0)
        #expect(!lib.hasFunctions_p, "libsynth.so has unsymbolized locations")
        let kernel = try #require(byName["[kernel.kallsyms]"])
        #expect(kernel.hasFunctions_p)
        let kernelAddresses = ProfilesSyntheticStacks.kernelStack.map(\.address)
        #expect(kernelAddresses.allSatisfy { kernel.memoryStart <= $0 && $0 < kernel.memoryLimit })

        // Unsymbolized frames keep address and mapping, and have no line.
        let unsymbolized = decoded.location.filter(\.line.isEmpty)
        #expect(
            Set(unsymbolized.map(\.address)) == [
                ProfilesSyntheticStacks.unsymbolizedCallback.address,
                ProfilesSyntheticStacks.unsymbolizedLeaf.address,
            ])
        #expect(unsymbolized.allSatisfy { $0.mappingID == lib.id })
    }

    @Test func identicalSamplesAreMerged() throws {
        let decoded = try Self.roundTrip(Self.profile(ProfilesSyntheticStacks.mixed))
        let strings = decoded.stringTable
        let period: Int64 = 10_101_010

        #expect(decoded.sample.count == 5)
        #expect(decoded.sample.allSatisfy { $0.value == [$0.value[0], $0.value[0] * period] })
        #expect(decoded.sample.map { $0.value[0] } == [200, 100, 40, 20, 10])

        // The leaf_a stack, leaf first, with its labels.
        let functionName = Dictionary(
            uniqueKeysWithValues: decoded.function.map { ($0.id, strings[Int($0.name)]) })
        let locationName = Dictionary(
            uniqueKeysWithValues: decoded.location.map { location in
                (location.id, location.line.first.flatMap { functionName[$0.functionID] } ?? "?")
            })
        let first = decoded.sample[0]
        #expect(first.locationID.map { locationName[$0] } == ["leaf_a", "work_a", "main"])
        var labels: [String: String] = [:]
        for label in first.label {
            labels[strings[Int(label.key)]] =
                label.str != 0 ? strings[Int(label.str)] : "\(label.num)"
        }
        #expect(labels == ["pid": "100", "tid": "101", "thread": "worker-a", "process": "app"])
    }

    @Test func samplesDifferingOnlyInThreadAreNotMerged() throws {
        var samples = ProfilesSyntheticStacks.repeated(
            3, tid: 7, thread: "a", [ProfilesSyntheticStacks.main])
        samples += ProfilesSyntheticStacks.repeated(
            2, tid: 7, thread: "b", [ProfilesSyntheticStacks.main])
        samples[0].processName = nil
        let decoded = try Self.roundTrip(Self.profile(samples))
        #expect(decoded.sample.map { $0.value[0] } == [1, 2, 2])
        #expect(decoded.location.count == 1)
        let strings = decoded.stringTable
        #expect(!decoded.sample[0].label.contains { strings[Int($0.key)] == "process" })
        #expect(decoded.sample[1].label.contains { strings[Int($0.key)] == "process" })
    }

    @Test func emptyProfileEncodes() throws {
        let decoded = try Self.roundTrip(Self.profile([]))
        #expect(decoded.sample.isEmpty)
        #expect(decoded.location.isEmpty)
        #expect(decoded.stringTable.first == "")
    }

    @Test func unmappedFramesHaveNoMapping() throws {
        let jit = Frame(kind: .native, address: 0x1234_5678, function: nil, module: nil)
        let decoded = try Self.roundTrip(
            Self.profile(ProfilesSyntheticStacks.repeated(1, tid: 1, thread: "t", [jit])))
        #expect(decoded.mapping.isEmpty)
        #expect(decoded.location.map(\.mappingID) == [0])
        #expect(decoded.location.map(\.address) == [0x1234_5678])
    }

    @Test func writeStoresTheEncodedFile() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("nodeprof-pprof-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("cpu.pb.gz").path

        let profile = Self.profile(ProfilesSyntheticStacks.basic)
        try profile.writePprof(to: path)
        let written = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(written == (try PprofEncoder().encode(profile)))
    }

    @Test func writeToAMissingDirectoryFailsWithThePath() {
        let path = "/nonexistent-nodeprof-dir/cpu.pb.gz"
        #expect {
            try Self.profile([]).writePprof(to: path)
        } throws: { error in
            guard case .write(let failedPath, _) = error as? PprofError else { return false }
            return failedPath == path && "\(error)".contains(path)
        }
    }
}
