import Foundation
import Gzip
import NodeprofCore
import ProfileConversion
import ProfilesProtobuf
import SwiftProtobuf
import TestSupport
import Testing

/// `nodeprof convert` as a user runs it: the built binary, real files, exit status and the
/// one-line messages.
@Suite struct ConversionCLITests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    let directory: TemporaryDirectory
    let nodeprof: String

    init() throws {
        directory = try TemporaryDirectory(prefix: "nodeprof-convert-cli")
        nodeprof = try builtProduct("nodeprof")
    }

    func run(_ arguments: [String]) throws -> Run {
        let result = try runProgramCapturing(nodeprof, ["convert"] + arguments)
        return Run(status: result.status, stdout: result.stdout, stderr: result.stderr)
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = directory.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Expects a failure with exactly one line on standard error containing `fragment`, and
    /// no output file.
    func expectFailure(_ arguments: [String], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        let result = try run(arguments)
        #expect(result.status != 0, sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
        #expect(lines.first?.hasPrefix("Error: ") == true, "\(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(fragment), "\(result.stderr)", sourceLocation: sourceLocation)
        if let output = arguments.last {
            #expect(!FileManager.default.fileExists(atPath: output), sourceLocation: sourceLocation)
        }
    }

    @Test func convertsPprofToOTLPToJSONAndBack() throws {
        let pprof = try write(Gzip.compress(ConversionFixtures.rich().serializedBytes()), "rich.pb.gz")
        let otlp = directory.file("rich.otlp")
        let toOTLP = try run([pprof, otlp])
        #expect(toOTLP.status == 0, "\(toOTLP.stderr)")
        #expect(
            toOTLP.stdout
                == "wrote \(otlp): pprof: 3 sample types, 7 samples -> OTLP: 3 profiles, 3 sample types, 21 samples\n")

        let json = directory.file("rich.json")
        #expect(try run([otlp, json]).status == 0)
        let back = directory.file("back.pprof")
        let toPprof = try run([json, back])
        #expect(toPprof.status == 0, "\(toPprof.stderr)")
        let original = CanonicalPprof(try ConversionFixtures.rich())
        original.expectEqual(try CanonicalPprof(pprofBytes: [UInt8](Data(contentsOf: URL(fileURLWithPath: back)))))
    }

    @Test func flagsOverrideExtensionsAndKeepOriginal() throws {
        let input = try write(ConversionFixtures.rich().serializedBytes(), "profile.bin")
        let output = directory.file("request.data")
        let result = try run(["--from", "pprof", "--to", "otlp", "--keep-original", "--no-local-files", input, output])
        #expect(result.status == 0, "\(result.stderr)")
        let request = try decodeRequest([UInt8](Data(contentsOf: URL(fileURLWithPath: output))))
        let first = try #require(request.resourceProfiles.first?.scopeProfiles.first?.profiles.first)
        #expect(first.originalPayloadFormat == "pprof")
        #expect(!request.dictionary.stringTable.contains("process.executable.build_id.htlhash"))
    }

    @Test func truncatedInput() throws {
        let whole = try Gzip.compress(ConversionFixtures.rich().serializedBytes())
        let truncated = try write(Array(whole.prefix(whole.count / 2)), "truncated.pb.gz")
        try expectFailure([truncated, directory.file("out.otlp")], "truncated")

        let request = try PprofOTLPConversion.otlpRequest(fromPprof: whole)
        let cut = try write(Array(request.prefix(request.count - 10)), "cut.otlp")
        try expectFailure([cut, directory.file("out.pb.gz")], "cannot convert \(cut): ")
    }

    @Test func garbageInput() throws {
        var generator = SplitMix64(seed: 7)
        let garbage = try write((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }, "garbage.pb.gz")
        try expectFailure([garbage, directory.file("out.otlp")], "not a pprof profile")
        let text = try write(Array("this is not json".utf8), "notes.json")
        try expectFailure([text, directory.file("out.pb.gz")], "not OTLP/JSON")
    }

    @Test func unreadableAndUnknownFiles() throws {
        try expectFailure([directory.file("missing.pb.gz"), directory.file("out.otlp")], "No such file")
        let pprof = try write(ConversionFixtures.rich().serializedBytes(), "ok.pb")
        try expectFailure([pprof, directory.file("out.txt")], "cannot tell the format of OUT")
        try expectFailure([directory.file("in.csv"), directory.file("out.otlp")], "cannot tell the format of IN")
        try expectFailure([pprof, directory.file("again.pb.gz")], "both pprof")
        try expectFailure([pprof, "/nonexistent-directory/out.otlp"], "cannot write /nonexistent-directory/out.otlp")
    }

    @Test func helpExplainsFormatsAndMapping() throws {
        let help = try runProgramCapturing(nodeprof, ["convert", "--help"])
        #expect(help.status == 0)
        for text in [
            ".pb.gz", ".otlp", ".json", "pprof.scope.sample_type_order", "process.executable.build_id.gnu",
            "--keep-original",
        ] {
            #expect(help.stdout.contains(text), "missing \(text) in:\n\(help.stdout)")
        }
    }
}
