import ArgumentParser
import Foundation
import NodeprofCore
import ProfileConversion

/// `nodeprof convert IN OUT`: pprof <-> OTLP <-> OTLP/JSON, by file extension.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a profile between pprof, OTLP and OTLP/JSON.",
        discussion: """
            Formats, chosen by the file extension (--from / --to override it):
              .pb.gz .pprof .pb .prof  pprof (read raw or gzip, written gzip)
              .otlp   OTLP ExportProfilesServiceRequest, binary (written raw)
              .json   the same request as OTLP/JSON, ids in hex

            pprof -> OTLP keeps all pprof content; converting back gives the
            same profile (ids renumbered):
              sample types   one OTLP Profile per type in one ScopeProfiles,
                             every pprof sample in each (not merged); scope
                             attributes pprof.scope.sample_type_order and
                             pprof.scope.default_sample_type
              labels         sample attributes (numbers keep their unit; a
                             repeated key becomes an array)
              comments etc.  pprof.profile.comment, .doc_url, .drop_frames,
                             .keep_frames
              build id       process.executable.build_id.gnu (hex) or .go;
                             none: .htlhash of the local file if readable
              mapping flags  pprof.mapping.has_functions (and the others)
              is_folded      location attribute pprof.location.is_folded

            OTLP -> pprof: a converted pprof comes back as it was. Any other
            request (such as nodeprof's export) becomes one pprof: one sample
            type per OTLP sample type, values (or the number of timestamps),
            labels pid, process, tid, thread, other sample attributes by
            name, and trace_id / span_id (hex) from the sample's link.

            Examples:
              nodeprof convert cpu.pb.gz cpu.otlp
              nodeprof convert cpu.otlp cpu.json                 # read an OTLP request
              nodeprof convert export.json cpu.pb.gz && go tool pprof -top cpu.pb.gz
              nodeprof convert --from pprof --to json profile.bin profile.txt
            """)

    @Argument(help: ArgumentHelp("The profile to read.", valueName: "IN"))
    var input: String

    @Argument(help: ArgumentHelp("Where to write the converted profile (replaced atomically).", valueName: "OUT"))
    var output: String

    @Option(help: "Format of IN: pprof, otlp or json (default: from its extension).")
    var from: FormatArgument?

    @Option(help: "Format of OUT: pprof, otlp or json (default: from its extension).")
    var to: FormatArgument?

    @Flag(help: "pprof -> OTLP: keep the pprof in the first profile's original_payload (format \"pprof\").")
    var keepOriginal = false

    @Flag(
        name: .customLong("no-local-files"),
        help: "pprof -> OTLP: do not hash files at the mappings' paths (for profiles from another machine).")
    var noLocalFiles = false

    func run() throws {
        let source = try from?.format ?? Self.format(of: input, role: "IN", flag: "--from")
        let target = try to?.format ?? Self.format(of: output, role: "OUT", flag: "--to")
        guard source != target else {
            throw ConvertFailure(
                "IN and OUT are both \(source): nothing to convert; pick another format for OUT (or pass --to)")
        }
        let options = PprofOTLPConversion.Options(keepOriginalPayload: keepOriginal, hashLocalFiles: !noLocalFiles)
        let bytes: [UInt8]
        do {
            bytes = try FileContents.read(input, limit: options.limits.maxInputBytes)
        } catch {
            throw ConvertFailure(Self.readFailure(error, path: input))
        }
        let result: PprofOTLPConversion.Output
        do {
            result = try PprofOTLPConversion.convert(bytes, from: source, to: target, options: options)
        } catch {
            throw ConvertFailure("cannot convert \(input): \(error)")
        }
        do {
            try Data(result.bytes).write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            let directory = URL(fileURLWithPath: output).deletingLastPathComponent().path
            throw ConvertFailure(
                "cannot write \(output): \(Self.reason(error)); check that \(directory) exists and is writable")
        }
        print("wrote \(output): \(result.summary)")
    }

    /// The format a file name implies.
    static func format(of path: String, role: String, flag: String) throws -> ProfileFormat {
        let name = path.lowercased()
        if [".pb.gz", ".pprof", ".pb", ".prof"].contains(where: { name.hasSuffix($0) }) { return .pprof }
        if name.hasSuffix(".otlp") { return .otlp }
        if name.hasSuffix(".json") { return .otlpJSON }
        throw ConvertFailure(
            "cannot tell the format of \(role) \(path) from its extension: use .pb.gz, .pprof, .pb or .prof (pprof), "
                + ".otlp (OTLP) or .json (OTLP/JSON), or pass \(flag)")
    }

    static func readFailure(_ error: FileReadError, path: String) -> String {
        switch error {
        case .systemCall(_, _, let number):
            let advice = number == ENOENT ? "; check the path" : number == EACCES ? "; check its permissions" : ""
            return "cannot read \(path): \(SystemCall.errnoName(number))\(advice)"
        case .tooLarge(_, let limit):
            return "cannot read \(path): larger than the \(limit) bytes accepted"
        }
    }

    private static func reason(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain
        {
            return SystemCall.errnoName(Int32(underlying.code))
        }
        return nsError.localizedDescription
    }
}

/// `--from` / `--to` values.
enum FormatArgument: String, ExpressibleByArgument, CaseIterable {
    case pprof, otlp, json

    var format: ProfileFormat {
        switch self {
        case .pprof: .pprof
        case .otlp: .otlp
        case .json: .otlpJSON
        }
    }
}

/// A conversion failure, printed as one line ("Error: ...") with a non-zero exit status.
struct ConvertFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
