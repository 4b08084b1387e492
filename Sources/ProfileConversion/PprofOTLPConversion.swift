internal import Gzip
public import Profiles
internal import ProfilesProtobuf
internal import SwiftProtobuf

/// Converts profiles between pprof (`profile.proto`) and OpenTelemetry OTLP profiles
/// (`ExportProfilesServiceRequest`, binary or OTLP/JSON), losslessly for pprof content.
///
/// pprof -> OTLP (see docs/conversion.md for the full table):
/// - OTLP's `Profile` has one sample type, so a pprof with N sample types becomes N
///   `Profile`s in one `ScopeProfiles`, sharing the request's dictionary. The i-th carries
///   `values[i]` of every pprof sample; every profile keeps every pprof sample, in pprof
///   order, so the N profiles zip back into the pprof samples. Samples are never merged:
///   pprof may hold several samples with the same stack and labels, and merging would
///   change how many samples come back (and which value belongs to which sample).
/// - The scope carries `pprof.scope.sample_type_order` (the pprof position of each profile's
///   sample type) and `pprof.scope.default_sample_type`; this marks the scope as one pprof.
/// - pprof labels become sample attributes (numeric labels keep `num_unit` as the
///   attribute's unit; a key repeated in a sample becomes one attribute with an array value).
/// - pprof-only fields become `pprof.*` attributes (semantic conventions' pprof namespace
///   where it has a name): `pprof.profile.comment`, `pprof.profile.doc_url`,
///   `pprof.profile.drop_frames`, `pprof.profile.keep_frames`, `pprof.mapping.has_*`,
///   `pprof.location.is_folded`, plus two of ours, `pprof.location.empty` and
///   `pprof.sample.label_units`.
/// - A mapping's build id becomes `process.executable.build_id.gnu` (hex) or `.go`
///   (anything else); a mapping without one gets `process.executable.build_id.htlhash` when
///   its file is readable here.
///
/// OTLP -> pprof: a request holding exactly one pprof-marked scope whose profiles line up
/// comes back as that pprof. Any other request (our agent's, say) becomes one pprof that
/// merges every profile: one sample type per distinct OTLP sample type, one pprof sample
/// per distinct (stack, labels), with resource, sample and link attributes as labels.
public enum PprofOTLPConversion {
    /// What to do beyond the conversion itself (pprof -> OTLP).
    public struct Options: Sendable {
        /// Sets `original_payload_format` = "pprof" and `original_payload` = the serialized
        /// pprof (not gzip-compressed) on the first profile of the scope. Off by default:
        /// it roughly doubles the request.
        public var keepOriginalPayload: Bool
        /// Reads the files of mappings that have no build id (by their path, on this
        /// machine) to compute `process.executable.build_id.htlhash`. Turn off for profiles
        /// from another machine, where a file at the same path may be a different build.
        public var hashLocalFiles: Bool
        /// Bounds for hostile input.
        public var limits: ConversionLimits
        /// Source of profile ids (16 bytes, never all zero); random by default.
        public var makeProfileID: @Sendable () -> [UInt8]

        public init(
            keepOriginalPayload: Bool = false, hashLocalFiles: Bool = true, limits: ConversionLimits = .init(),
            makeProfileID: @escaping @Sendable () -> [UInt8] = OTLPBuilder.randomProfileID
        ) {
            self.keepOriginalPayload = keepOriginalPayload
            self.hashLocalFiles = hashLocalFiles
            self.limits = limits
            self.makeProfileID = makeProfileID
        }
    }

    /// A conversion's result and what went in and came out.
    public struct Output: Sendable {
        /// The converted file's bytes (pprof: gzip-compressed; OTLP: the serialized request;
        /// JSON: pretty-printed UTF-8).
        public var bytes: [UInt8]
        public var input: Counts
        public var output: Counts
        /// One line for a human: "pprof: 2 sample types, 11 samples -> OTLP: 2 profiles, 22 samples".
        public var summary: String { "\(input) -> \(output)" }
    }

    /// Sizes of one side of a conversion.
    public struct Counts: Sendable, Hashable, CustomStringConvertible {
        public var format: ProfileFormat
        /// Sample types (pprof) or distinct sample types over all profiles (OTLP).
        public var sampleTypes: Int
        /// Samples (pprof), or samples summed over all profiles (OTLP).
        public var samples: Int
        /// OTLP profiles; 1 for pprof.
        public var profiles: Int

        public var description: String {
            let types = "\(sampleTypes) sample type" + (sampleTypes == 1 ? "" : "s")
            let samples = "\(samples) sample" + (samples == 1 ? "" : "s")
            switch format {
            case .pprof: return "pprof: \(types), \(samples)"
            case .otlp, .otlpJSON:
                let profiles = "\(profiles) profile" + (profiles == 1 ? "" : "s")
                return "\(format): \(profiles), \(types), \(samples)"
            }
        }
    }

    // MARK: Byte-level API

    /// A pprof profile (gzip-compressed or raw `profile.proto`) as a serialized OTLP
    /// `ExportProfilesServiceRequest` (not compressed).
    public static func otlpRequest(fromPprof bytes: [UInt8], options: Options = .init()) throws(ConversionError)
        -> [UInt8]
    {
        try convert(bytes, from: .pprof, to: .otlp, options: options).bytes
    }

    /// An OTLP `ExportProfilesServiceRequest` (gzip-compressed or raw) as a gzip-compressed
    /// pprof profile.
    public static func pprof(fromOTLPRequest bytes: [UInt8], limits: ConversionLimits = .init())
        throws(ConversionError) -> [UInt8]
    {
        try convert(bytes, from: .otlp, to: .pprof, options: Options(limits: limits)).bytes
    }

    /// A pprof profile as an OTLP/JSON request (see ``OTLPJSON``).
    public static func otlpJSON(fromPprof bytes: [UInt8], options: Options = .init()) throws(ConversionError)
        -> [UInt8]
    {
        try convert(bytes, from: .pprof, to: .otlpJSON, options: options).bytes
    }

    /// An OTLP/JSON request as a gzip-compressed pprof profile.
    public static func pprof(fromOTLPJSON bytes: [UInt8], limits: ConversionLimits = .init())
        throws(ConversionError) -> [UInt8]
    {
        try convert(bytes, from: .otlpJSON, to: .pprof, options: Options(limits: limits)).bytes
    }

    /// Converts `bytes` from one format to another, with counts for a summary. Converting
    /// a format to itself re-encodes it (OTLP <-> OTLP/JSON is also allowed).
    public static func convert(
        _ bytes: [UInt8], from source: ProfileFormat, to target: ProfileFormat, options: Options = .init()
    ) throws(ConversionError) -> Output {
        switch source {
        case .pprof:
            let profile = try decodePprof(bytes, limits: options.limits)
            let input = counts(of: profile)
            switch target {
            case .pprof:
                return Output(bytes: try encodePprof(profile), input: input, output: input)
            case .otlp, .otlpJSON:
                let serialized = options.keepOriginalPayload ? try serialize(profile) : nil
                var converter = try PprofToOTLPConverter(
                    profile: profile, options: options, originalPayload: serialized)
                let request = try converter.request()
                return Output(
                    bytes: try encodeOTLP(request, as: target), input: input,
                    output: counts(of: request, format: target))
            }
        case .otlp, .otlpJSON:
            let request =
                source == .otlp
                ? try decodeOTLP(bytes, limits: options.limits)
                : try OTLPJSON.decodeRequest(bytes, limits: options.limits)
            let input = counts(of: request, format: source)
            switch target {
            case .pprof:
                let profile = try OTLPToPprofConverter(request: request, limits: options.limits).profile()
                return Output(bytes: try encodePprof(profile), input: input, output: counts(of: profile))
            case .otlp, .otlpJSON:
                return Output(
                    bytes: try encodeOTLP(request, as: target), input: input,
                    output: counts(of: request, format: target))
            }
        }
    }

    // MARK: Decoding and encoding

    /// The gzip magic number (RFC 1952).
    static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// The input with gzip removed when it starts with the gzip magic, bounded by the limits.
    static func unwrap(_ bytes: [UInt8], format: ProfileFormat, limits: ConversionLimits) throws(ConversionError)
        -> [UInt8]
    {
        guard !bytes.isEmpty else { throw .unreadable("the \(format) input is empty") }
        guard isGzip(bytes) else {
            guard bytes.count <= limits.maxInputBytes else {
                throw .tooLarge(
                    "the \(format) input is \(bytes.count) bytes, more than the \(limits.maxInputBytes) bytes accepted")
            }
            return bytes
        }
        do {
            return try Gzip.decompress(bytes, maxOutputBytes: limits.maxInputBytes)
        } catch {
            if case .outputTooLarge = error {
                throw .tooLarge("the \(format) input \(error)")
            }
            throw .unreadable("the \(format) input is gzip-compressed, but \(error); check the file is complete")
        }
    }

    static func decodePprof(_ bytes: [UInt8], limits: ConversionLimits) throws(ConversionError)
        -> Perftools_Profiles_Profile
    {
        let raw = try unwrap(bytes, format: .pprof, limits: limits)
        let profile: Perftools_Profiles_Profile
        do {
            profile = try Perftools_Profiles_Profile(serializedBytes: raw, options: decodingOptions)
        } catch {
            throw .unreadable(
                "the input is not a pprof profile: protobuf decoding failed (\(describe(error))); "
                    + "check the file is complete and really pprof")
        }
        // Random bytes sometimes decode as a message of unknown fields only.
        guard !profile.stringTable.isEmpty else {
            throw .unreadable(
                "the input is not a pprof profile: it has no string table (every pprof profile has one)")
        }
        return profile
    }

    static func decodeOTLP(_ bytes: [UInt8], limits: ConversionLimits) throws(ConversionError) -> OTLPRequest {
        let raw = try unwrap(bytes, format: .otlp, limits: limits)
        let request: OTLPRequest
        do {
            request = try OTLPRequest(serializedBytes: raw, options: decodingOptions)
        } catch {
            throw .unreadable(
                "the input is not an OTLP profiles request: protobuf decoding failed (\(describe(error))); "
                    + "check the file is complete and really an ExportProfilesServiceRequest")
        }
        try checkLooksLikeRequest(request, format: .otlp)
        return request
    }

    /// Random bytes sometimes decode as a request of unknown fields only.
    static func checkLooksLikeRequest(_ request: OTLPRequest, format: ProfileFormat) throws(ConversionError) {
        guard !request.resourceProfiles.isEmpty || request.hasDictionary else {
            throw .unreadable(
                "the input is not an OTLP profiles request: it has neither resourceProfiles nor a dictionary")
        }
    }

    private static var decodingOptions: BinaryDecodingOptions {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 64
        return options
    }

    static func serialize(_ profile: Perftools_Profiles_Profile) throws(ConversionError) -> [UInt8] {
        do {
            return try profile.serializedBytes()
        } catch {
            throw .internalError("cannot serialize the pprof profile: \(error)")
        }
    }

    static func encodePprof(_ profile: Perftools_Profiles_Profile) throws(ConversionError) -> [UInt8] {
        let bytes = try serialize(profile)
        do {
            return try Gzip.compress(bytes)
        } catch {
            throw .internalError("cannot compress the pprof profile: \(error)")
        }
    }

    static func encodeOTLP(_ request: OTLPRequest, as format: ProfileFormat) throws(ConversionError) -> [UInt8] {
        if format == .otlpJSON { return try OTLPJSON.encode(request) }
        do {
            return try request.serializedBytes()
        } catch {
            throw .internalError("cannot serialize the OTLP request: \(error)")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case BinaryDecodingError.truncated: "the data ends in the middle of a field: truncated"
        case BinaryDecodingError.malformedProtobuf: "malformed protobuf data"
        case BinaryDecodingError.invalidUTF8: "a string is not valid UTF-8"
        case BinaryDecodingError.messageDepthLimit: "messages nested too deeply"
        case BinaryDecodingError.trailingGarbage: "garbage after the data"
        default: String(describing: error)
        }
    }

    // MARK: Counts

    static func counts(of profile: Perftools_Profiles_Profile) -> Counts {
        Counts(format: .pprof, sampleTypes: profile.sampleType.count, samples: profile.sample.count, profiles: 1)
    }

    static func counts(of request: OTLPRequest, format: ProfileFormat) -> Counts {
        var profiles = 0
        var samples = 0
        var types: Set<[Int32]> = []
        for resource in request.resourceProfiles {
            for scope in resource.scopeProfiles {
                profiles += scope.profiles.count
                for profile in scope.profiles {
                    samples += profile.samples.count
                    types.insert([profile.sampleType.typeStrindex, profile.sampleType.unitStrindex])
                }
            }
        }
        return Counts(format: format, sampleTypes: types.count, samples: samples, profiles: profiles)
    }
}

/// The file formats ``PprofOTLPConversion`` reads and writes.
public enum ProfileFormat: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// pprof `profile.proto`, gzip-compressed when written (read either way).
    case pprof
    /// A binary OTLP `ExportProfilesServiceRequest`, not compressed when written (read
    /// either way).
    case otlp
    /// The same request in the OTLP/JSON encoding (ids as hex), pretty-printed.
    case otlpJSON = "json"

    public var description: String {
        switch self {
        case .pprof: "pprof"
        case .otlp: "OTLP"
        case .otlpJSON: "OTLP/JSON"
        }
    }
}

/// Bounds that keep hostile input from exhausting memory or time.
public struct ConversionLimits: Sendable, Hashable {
    /// Largest input after gzip decompression (bytes).
    public var maxInputBytes: Int
    /// Most entries any one table may hold, in the input or the output (samples, stacks,
    /// locations, strings, attribute references...).
    public var maxEntries: Int
    /// Most sample types: each pprof sample type becomes an OTLP profile, each distinct OTLP
    /// sample type a value in every pprof sample.
    public var maxSampleTypes: Int

    public init(maxInputBytes: Int = 1 << 30, maxEntries: Int = 100_000_000, maxSampleTypes: Int = 10_000) {
        self.maxInputBytes = maxInputBytes
        self.maxEntries = maxEntries
        self.maxSampleTypes = maxSampleTypes
    }
}

/// Why a conversion failed: the input cannot be read, breaks a rule of its format, or is
/// too large. The description says what is wrong and where, in one line.
public struct ConversionError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Not the format it claims to be: empty, truncated, corrupt gzip, garbage.
        case unreadable
        /// Decodes, but breaks a rule of its format (an index out of range, say).
        case invalid
        /// Larger than ``ConversionLimits`` allow.
        case tooLarge
        /// A bug on our side (the converted message could not be serialized).
        case internalError
    }

    public var kind: Kind
    public var message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    static func unreadable(_ message: String) -> Self { Self(kind: .unreadable, message: message) }
    static func invalid(_ message: String) -> Self { Self(kind: .invalid, message: message) }
    static func tooLarge(_ message: String) -> Self { Self(kind: .tooLarge, message: message) }
    static func internalError(_ message: String) -> Self { Self(kind: .internalError, message: message) }
}
