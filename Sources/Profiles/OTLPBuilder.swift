internal import NodeprofCore
internal import SwiftProtobuf

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// Turns a recorded ``Profile`` into OTLP profiles export requests
/// (`opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceRequest`).
///
/// What a request holds:
/// - one shared `ProfilesDictionary`; every table is deduplicated and starts with the
///   zero entry the spec reserves, and holds only entries something refers to;
/// - one `ResourceProfiles` per process description: `process.pid`, `process.executable.name`,
///   `host.name`, plus the description's ``ProcessDescription/attributes`` (such as
///   `process.executable.path`); one per process because a process is what a developer
///   looks for, and the dictionary is shared, so the per-process overhead is only the
///   resource and a few headers (measured in BENCHMARKS.md);
/// - per process one on-CPU `Profile`: sample type `samples`/`count`, period type
///   `cpu`/`nanoseconds`, period 1e9 / frequency, a random non-zero profile id, and the
///   window `[time_unix_nano, time_unix_nano + duration_nano)` that contains every sample;
/// - samples with identical stack, attributes (`thread.id`, `thread.name`) and link merged
///   into one, which keeps each occurrence's timestamp in `timestamps_unix_nano` (no
///   `values`: each timestamp is one sample), or, with ``Configuration/sampleTimestamps``
///   off, their number in `values`;
/// - locations carry `profile.frame.type` (`native` or `kernel`) and a Line per symbolized
///   function; mappings carry `process.executable.build_id.gnu` when the file has one and
///   `process.executable.build_id.htlhash` whenever the file could be read. Kernel frames
///   share one `[kernel.kallsyms]` mapping identified by the running kernel's build id.
///
/// Requests stay below ``Configuration/maximumRequestBytes``: when the processes do not
/// fit, they are spread over several requests, each with its own dictionary; a single
/// process too large for one request has its samples split.
public struct OTLPBuilder: Sendable {
    /// What the builder needs beyond the profile.
    public struct Configuration: Sendable {
        /// `host.name` of every resource.
        public var hostName: String
        /// GNU build id of the running kernel (hex), for the kernel mapping. Without it
        /// kernel locations have no mapping (a mapping must carry a build id).
        public var kernelBuildID: String?
        /// Largest serialized request to produce. The collector's recommended limit is
        /// 64 MiB; the default leaves room for gRPC framing and headers.
        public var maximumRequestBytes: Int
        /// Instrumentation scope name and version.
        public var scopeName: String
        public var scopeVersion: String
        /// Source of profile ids (16 bytes, never all zero); random by default.
        public var makeProfileID: @Sendable () -> [UInt8]
        /// Keep each sample's time (`timestamps_unix_nano`), the default. Without, a merged
        /// sample carries its count in `values`, as pprof does: about a quarter of the gzip
        /// size on a typical recording (BENCHMARKS.md), but no timeline.
        public var sampleTimestamps: Bool

        public init(
            hostName: String, kernelBuildID: String? = nil, maximumRequestBytes: Int = 60 << 20,
            scopeName: String = "nodeprof", scopeVersion: String = "", sampleTimestamps: Bool = true,
            makeProfileID: @escaping @Sendable () -> [UInt8] = OTLPBuilder.randomProfileID
        ) {
            self.hostName = hostName
            self.kernelBuildID = kernelBuildID
            self.maximumRequestBytes = maximumRequestBytes
            self.scopeName = scopeName
            self.scopeVersion = scopeVersion
            self.sampleTimestamps = sampleTimestamps
            self.makeProfileID = makeProfileID
        }
    }

    public var configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// 16 random bytes, never all zero.
    @Sendable public static func randomProfileID() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        while true {
            let bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            if bytes.contains(where: { $0 != 0 }) { return bytes }
        }
    }

    /// The profile as serialized requests, each below the size limit. An empty profile
    /// gives no request.
    public func encode(_ profile: Profile) throws(OTLPEncodingError) -> [OTLPEncodedRequest] {
        let groups = Self.groupByProcess(profile)
        guard !groups.isEmpty else { return [] }
        var output: [OTLPEncodedRequest] = []
        try split(profile: profile, groups: groups[...], into: &output)
        return output
    }

    /// The profile as one serialized request regardless of size (for files).
    public func encodeSingleRequest(_ profile: Profile) throws(OTLPEncodingError) -> OTLPEncodedRequest {
        let groups = Self.groupByProcess(profile)
        return try Self.encoded(request(for: profile, groups: groups[...]))
    }

    static func encoded(_ request: OTLPRequest) throws(OTLPEncodingError) -> OTLPEncodedRequest {
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            throw OTLPEncodingError(reason: String(describing: error))
        }
        var profiles = 0
        var samples = 0
        for resource in request.resourceProfiles {
            for scope in resource.scopeProfiles {
                profiles += scope.profiles.count
                for profile in scope.profiles {
                    for sample in profile.samples {
                        samples +=
                            sample.timestampsUnixNano.isEmpty
                            ? Int(clamping: sample.values.first ?? 1) : sample.timestampsUnixNano.count
                    }
                }
            }
        }
        return OTLPEncodedRequest(bytes: bytes, profileCount: profiles, sampleCount: samples)
    }

    /// One process's samples (indices into the profile's samples, in order).
    struct ProcessGroup {
        /// The description's position in ``Profile/processes``.
        var process: Int
        var samples: [Profile.StoredSample]
    }

    /// One group per process description (a process that republished its context is two
    /// resources), in the order of their first samples.
    static func groupByProcess(_ profile: Profile) -> [ProcessGroup] {
        var groups: [ProcessGroup] = []
        var positions = [Int](repeating: -1, count: profile.processes.count)
        profile.forEachStoredSample { sample in
            let position = positions[sample.process]
            if position >= 0 {
                groups[position].samples.append(sample)
            } else {
                positions[sample.process] = groups.count
                groups.append(ProcessGroup(process: sample.process, samples: [sample]))
            }
        }
        return groups
    }

    private func split(
        profile: Profile, groups: ArraySlice<ProcessGroup>, into output: inout [OTLPEncodedRequest]
    ) throws(OTLPEncodingError) {
        let request = try Self.encoded(request(for: profile, groups: groups))
        if request.bytes.count <= configuration.maximumRequestBytes {
            output.append(request)
            return
        }
        if groups.count > 1 {
            let middle = groups.startIndex + groups.count / 2
            try split(profile: profile, groups: groups[..<middle], into: &output)
            try split(profile: profile, groups: groups[middle...], into: &output)
            return
        }
        // One process alone is too large: halve its samples.
        let group = groups[groups.startIndex]
        guard group.samples.count > 1 else {
            output.append(request)  // one sample cannot be split further
            return
        }
        let middle = group.samples.count / 2
        var first = group
        first.samples = Array(group.samples[..<middle])
        var second = group
        second.samples = Array(group.samples[middle...])
        try split(profile: profile, groups: [first][...], into: &output)
        try split(profile: profile, groups: [second][...], into: &output)
    }

    /// One request holding `groups`, with a dictionary of exactly what they use.
    func request(for profile: Profile, groups: ArraySlice<ProcessGroup>) -> OTLPRequest {
        var encoder = RequestEncoder(profile: profile, configuration: configuration)
        var request = OTLPRequest()
        for group in groups {
            request.resourceProfiles.append(encoder.resourceProfiles(for: group))
        }
        request.dictionary = encoder.dictionary.dictionary
        return request
    }
}

/// Why a request could not be serialized.
public struct OTLPEncodingError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "cannot encode the OTLP profiles request: \(reason)" }
}

/// Per-request state: the dictionary and the caches that translate the profile's stacks,
/// frames and modules into table indices once each.
private struct RequestEncoder {
    let profile: Profile
    let configuration: OTLPBuilder.Configuration
    var dictionary = OTLPDictionaryBuilder()
    private var stackIndices: [Int: Int32] = [:]
    private var locationIndices: [Frame: Int32] = [:]
    private var mappingIndices: [Module: Int32] = [:]
    private var kernelMapping: Int32?

    init(profile: Profile, configuration: OTLPBuilder.Configuration) {
        self.profile = profile
        self.configuration = configuration
    }

    mutating func resourceProfiles(for group: OTLPBuilder.ProcessGroup) -> OTLPResourceProfiles {
        var resource = OTLPResource()
        var seenKeys: Set<String> = []
        func add(_ attribute: Attribute) {
            // The first value of a key wins: the agent's own attributes come first.
            guard seenKeys.insert(attribute.key).inserted else { return }
            resource.attributes.append(OTLPKeyValue(attribute))
        }
        let process = profile.processes[group.process]
        add(Attribute("process.pid", .int(Int64(process.pid))))
        if let name = process.name { add(Attribute("process.executable.name", .string(name))) }
        add(Attribute("host.name", .string(configuration.hostName)))
        for attribute in process.attributes { add(attribute) }

        var scope = OTLPScopeProfiles()
        scope.scope.name = configuration.scopeName
        scope.scope.version = configuration.scopeVersion
        scope.profiles = [otlpProfile(for: group)]

        var resourceProfiles = OTLPResourceProfiles()
        resourceProfiles.resource = resource
        resourceProfiles.scopeProfiles = [scope]
        return resourceProfiles
    }

    private struct SampleKey: Hashable {
        var stack: Int32
        var attributes: [Int32]
        /// Index in link_table, 0 for none: samples of different spans never merge.
        var link: Int32
    }

    private var traceContextIndices: [TraceContext: (link: Int32, attributes: [Int32])] = [:]

    /// The link and sample attributes of a span, made once per distinct context.
    private mutating func traceContextIndices(_ context: TraceContext) -> (link: Int32, attributes: [Int32]) {
        if let known = traceContextIndices[context] { return known }
        var link = OTLPLink()
        link.traceID = Data(context.traceID)
        link.spanID = Data(context.spanID)
        var seen: Set<String> = ["thread.id", "thread.name"]
        var attributes: [Int32] = []
        // The record's attributes as the key map names them; a key the agent sets itself
        // (thread.id, thread.name) keeps the agent's value.
        for attribute in context.attributes where seen.insert(attribute.key).inserted {
            attributes.append(dictionary.attribute(attribute.key, OTLPAnyValue(attribute.value)))
        }
        let indices = (dictionary.link(link), attributes)
        traceContextIndices[context] = indices
        return indices
    }

    private mutating func otlpProfile(for group: OTLPBuilder.ProcessGroup) -> OTLPProfile {
        var output = OTLPProfile()
        output.sampleType.typeStrindex = dictionary.string("samples")
        output.sampleType.unitStrindex = dictionary.string("count")
        output.periodType.typeStrindex = dictionary.string("cpu")
        output.periodType.unitStrindex = dictionary.string("nanoseconds")
        output.period = Int64(clamping: profile.periodNanos)
        output.profileID = Data(configuration.makeProfileID())

        // The window must contain every sample: widen the recording window if a sample's
        // clock conversion put it a little outside.
        var start = profile.startTimeNanos
        var end = profile.startTimeNanos &+ profile.durationNanos
        var positions: [SampleKey: Int] = [:]
        var samples: [OTLPSample] = []
        for sample in group.samples {
            start = min(start, sample.timestampNanos)
            end = max(end, sample.timestampNanos &+ 1)
            var attributes = threadAttributes(tid: sample.tid, name: sample.threadName)
            var link: Int32 = 0
            if let context = sample.traceContext {
                let indices = traceContextIndices(context)
                link = indices.link
                attributes += indices.attributes
            }
            let key = SampleKey(stack: stackIndex(sample.stack), attributes: attributes, link: link)
            let timestamps = configuration.sampleTimestamps
            if let position = positions[key] {
                if timestamps {
                    samples[position].timestampsUnixNano.append(sample.timestampNanos)
                } else {
                    samples[position].values[0] += 1
                }
            } else {
                positions[key] = samples.count
                var otlpSample = OTLPSample()
                otlpSample.stackIndex = key.stack
                otlpSample.attributeIndices = key.attributes
                otlpSample.linkIndex = key.link
                if timestamps {
                    otlpSample.timestampsUnixNano = [sample.timestampNanos]
                } else {
                    otlpSample.values = [1]
                }
                samples.append(otlpSample)
            }
        }
        output.samples = samples
        output.timeUnixNano = start
        output.durationNano = end - start
        return output
    }

    private struct Thread: Hashable {
        var tid: Int32
        var name: String
    }
    private var threadAttributeIndices: [Thread: [Int32]] = [:]

    /// `thread.id` and `thread.name` of a sample, looked up once per thread (hashing an
    /// attribute value message per sample cost more than the rest of the sample).
    private mutating func threadAttributes(tid: Int32, name: String) -> [Int32] {
        let thread = Thread(tid: tid, name: name)
        if let indices = threadAttributeIndices[thread] { return indices }
        let indices = [
            dictionary.attribute("thread.id", OTLPAnyValue(.int(Int64(tid)))),
            dictionary.attribute("thread.name", OTLPAnyValue(.string(name))),
        ]
        threadAttributeIndices[thread] = indices
        return indices
    }

    private mutating func stackIndex(_ stack: Int) -> Int32 {
        if let index = stackIndices[stack] { return index }
        let locations = profile.storedStacks[stack].map { locationIndex($0) }
        let index = dictionary.stack(locations)
        stackIndices[stack] = index
        return index
    }

    private mutating func locationIndex(_ frame: Frame) -> Int32 {
        if let index = locationIndices[frame] { return index }
        var location = OTLPLocation()
        location.address = frame.address
        switch frame.kind {
        case .kernel:
            location.mappingIndex = kernelMappingIndex()
            location.attributeIndices = [dictionary.attribute("profile.frame.type", OTLPAnyValue(.string("kernel")))]
        case .native:
            location.mappingIndex = frame.module.map { mappingIndex($0) } ?? 0
            location.attributeIndices = [dictionary.attribute("profile.frame.type", OTLPAnyValue(.string("native")))]
        }
        if let name = frame.function {
            var function = OTLPFunction()
            function.nameStrindex = dictionary.string(name)
            var line = OTLPLine()
            line.functionIndex = dictionary.function(function)
            location.lines = [line]
        }
        let index = dictionary.location(location)
        locationIndices[frame] = index
        return index
    }

    private mutating func mappingIndex(_ module: Module) -> Int32 {
        if let index = mappingIndices[module] { return index }
        var attributes: [Int32] = []
        if let buildID = module.buildID {
            attributes.append(dictionary.attribute("process.executable.build_id.gnu", OTLPAnyValue(.string(buildID))))
        }
        if let htlHash = module.htlHash {
            attributes.append(
                dictionary.attribute("process.executable.build_id.htlhash", OTLPAnyValue(.string(htlHash))))
        }
        // A mapping must carry a build id; without one the frames keep their address only.
        guard !attributes.isEmpty, module.start < module.limit else {
            mappingIndices[module] = 0
            return 0
        }
        var mapping = OTLPMapping()
        mapping.memoryStart = module.start
        mapping.memoryLimit = module.limit
        mapping.fileOffset = module.fileOffset
        mapping.filenameStrindex = dictionary.string(module.path)
        mapping.attributeIndices = attributes
        let index = dictionary.mapping(mapping)
        mappingIndices[module] = index
        return index
    }

    private mutating func kernelMappingIndex() -> Int32 {
        if let kernelMapping { return kernelMapping }
        guard let buildID = configuration.kernelBuildID else {
            kernelMapping = 0
            return 0
        }
        var mapping = OTLPMapping()
        mapping.filenameStrindex = dictionary.string("[kernel.kallsyms]")
        mapping.attributeIndices = [
            dictionary.attribute("process.executable.build_id.gnu", OTLPAnyValue(.string(buildID)))
        ]
        let index = dictionary.mapping(mapping)
        kernelMapping = index
        return index
    }
}
