internal import NodeprofCore
internal import ProfilesProtobuf
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
    ///
    /// Processes are packed into requests by an estimate of their encoded size made before
    /// anything is encoded (a process too large alone has its samples cut into parts); a
    /// request that still comes out too large is split again, which the estimate's margin
    /// makes rare.
    public func encode(_ profile: Profile) throws(OTLPEncodingError) -> [OTLPEncodedRequest] {
        let groups = Self.groupByProcess(profile)
        guard !groups.isEmpty else { return [] }
        var output: [OTLPEncodedRequest] = []
        for batch in Self.batches(of: groups, in: profile, limit: configuration.maximumRequestBytes) {
            try split(profile: profile, groups: batch[...], into: &output)
        }
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

    /// One process description's samples: positions of its records in the profile, in order.
    struct ProcessGroup {
        /// The description's position in ``Profile/processes``.
        var process: Int
        var records: [Int32]
    }

    /// One group per process description (a process that republished its context is two
    /// resources), in the order of their first samples.
    static func groupByProcess(_ profile: Profile) -> [ProcessGroup] {
        let records = profile.store.records
        var positions = [Int](repeating: -1, count: profile.store.processes.count)
        var groups: [ProcessGroup] = []
        for (index, record) in records.enumerated() {
            let process = Int(record.process)
            if positions[process] < 0 {
                positions[process] = groups.count
                groups.append(ProcessGroup(process: process, records: []))
            }
            groups[positions[process]].records.append(Int32(index))
        }
        return groups
    }

    /// Groups packed into batches whose estimated encoded size stays within `limit`; a group
    /// estimated above the limit alone is cut into parts that are not.
    static func batches(of groups: [ProcessGroup], in profile: Profile, limit: Int) -> [[ProcessGroup]] {
        var estimator = SizeEstimator(store: profile.store)
        var batches: [[ProcessGroup]] = []
        var current: [ProcessGroup] = []
        var currentBytes = 0
        for group in groups {
            for part in estimator.parts(of: group.records, limit: limit) {
                if !current.isEmpty, currentBytes + part.bytes > limit {
                    batches.append(current)
                    current = []
                    currentBytes = 0
                }
                current.append(ProcessGroup(process: group.process, records: part.records))
                currentBytes += part.bytes
            }
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }

    /// Encodes `groups` as one request; only when the estimate was wrong and it is too large,
    /// halves it and tries again.
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
        let group = groups[groups.startIndex]
        guard group.records.count > 1 else {
            output.append(request)  // one sample cannot be split further
            return
        }
        let middle = group.records.count / 2
        try split(
            profile: profile,
            groups: [ProcessGroup(process: group.process, records: Array(group.records[..<middle]))][...],
            into: &output)
        try split(
            profile: profile,
            groups: [ProcessGroup(process: group.process, records: Array(group.records[middle...]))][...],
            into: &output)
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

/// An upper estimate of the encoded size of a set of samples with what they use in the
/// dictionary (each distinct stack, location, function and mapping counted once per set).
struct SizeEstimator {
    let store: SampleStore
    private var stackSeen: [Int32]
    private var locationSeen: [Int32]
    private var functionSeen: [Int32]
    private var mappingSeen: [Int32]
    private var threadNameSeen: [Int32]
    private var traceContextSeen: [Int32]
    private var generation: Int32 = 0

    init(store: SampleStore) {
        self.store = store
        stackSeen = Array(repeating: -1, count: store.stacks.count)
        locationSeen = Array(repeating: -1, count: store.locations.count)
        functionSeen = Array(repeating: -1, count: store.functions.count)
        mappingSeen = Array(repeating: -1, count: store.mappings.count)
        threadNameSeen = Array(repeating: -1, count: store.strings.count)
        traceContextSeen = Array(repeating: -1, count: store.traceContexts.count)
    }

    /// `records` cut, in order, into parts whose estimate stays within `limit` (a part has at
    /// least one record), with each part's estimate.
    mutating func parts(of records: [Int32], limit: Int) -> [(records: [Int32], bytes: Int)] {
        var parts: [(records: [Int32], bytes: Int)] = []
        var start = 0
        generation += 1
        var total = Self.resourceBytes
        for (position, index) in records.enumerated() {
            let added = bytes(ofRecord: index)
            if position > start, total + added > limit {
                parts.append((Array(records[start..<position]), total))
                start = position
                generation += 1
                total = Self.resourceBytes + bytes(ofRecord: index)
            } else {
                total += added
            }
        }
        parts.append((Array(records[start...]), total))
        return parts
    }

    static let resourceBytes = 512

    /// Per sample: a timestamp (9 bytes) and, merged or not, a sample entry (stack, two
    /// thread attributes, a link: at most 24 bytes); per thread name 64 and the name; per
    /// span 64 and 64 per attribute; per stack 4 bytes and 5 per frame; per location 32; per
    /// function its name and 16; per mapping its path and 96 (addresses, build id
    /// attributes); plus 512 per resource.
    mutating func bytes(of records: [Int32]) -> Int {
        generation += 1
        return records.reduce(Self.resourceBytes) { $0 + bytes(ofRecord: $1) }
    }

    /// What one more record adds to the current set: itself, and its stack, locations,
    /// functions and mappings the set does not have yet.
    private mutating func bytes(ofRecord index: Int32) -> Int {
        var total = 33
        let record = store.records[Int(index)]
        // A thread's two attributes (name and id) and a span's link and attributes, once each.
        if threadNameSeen[Int(record.threadName)] != generation {
            threadNameSeen[Int(record.threadName)] = generation
            total += 64 + store.strings[Int(record.threadName)].utf8.count
        }
        if record.traceContext >= 0, traceContextSeen[Int(record.traceContext)] != generation {
            traceContextSeen[Int(record.traceContext)] = generation
            total += 64 + store.traceContexts[Int(record.traceContext)].attributes.count * 64
        }
        let stack = Int(record.stack)
        guard stackSeen[stack] != generation else { return total }
        stackSeen[stack] = generation
        let locations = store.stacks[stack]
        total += 4 + 5 * locations.count
        for location in locations where locationSeen[Int(location)] != generation {
            locationSeen[Int(location)] = generation
            total += 32
            let entry = store.locations[Int(location)]
            if entry.function >= 0, functionSeen[Int(entry.function)] != generation {
                functionSeen[Int(entry.function)] = generation
                total += 16 + store.functions[Int(entry.function)].utf8.count
            }
            if entry.mapping >= 0, mappingSeen[Int(entry.mapping)] != generation {
                mappingSeen[Int(entry.mapping)] = generation
                total += 96 + store.mappings[Int(entry.mapping)].path.utf8.count
            }
        }
        return total
    }
}

/// Why a request could not be serialized.
public struct OTLPEncodingError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "cannot encode the OTLP profiles request: \(reason)" }
}

/// Per-request state: the dictionary, and the translation of the profile's table indices
/// into the request's (each entry translated once, by array lookup, nothing hashed again).
private struct RequestEncoder {
    let profile: Profile
    let store: SampleStore
    let configuration: OTLPBuilder.Configuration
    var dictionary = OTLPDictionaryBuilder()
    /// Profile table index -> request table index; -1 until translated.
    private var stackIndices: [Int32]
    private var locationIndices: [Int32]
    private var mappingIndices: [Int32]
    private var functionIndices: [Int32]
    private var traceContextIndices: [(link: Int32, attributes: [Int32])?]
    private var threadAttributeIndices: [ThreadKey: [Int32]] = [:]
    private var kernelMapping: Int32?

    init(profile: Profile, configuration: OTLPBuilder.Configuration) {
        self.profile = profile
        self.store = profile.store
        self.configuration = configuration
        stackIndices = Array(repeating: -1, count: store.stacks.count)
        locationIndices = Array(repeating: -1, count: store.locations.count)
        mappingIndices = Array(repeating: -1, count: store.mappings.count)
        functionIndices = Array(repeating: -1, count: store.functions.count)
        traceContextIndices = Array(repeating: nil, count: store.traceContexts.count)
    }

    mutating func resourceProfiles(for group: OTLPBuilder.ProcessGroup) -> OTLPResourceProfiles {
        var resource = OTLPResource()
        var seenKeys: Set<String> = []
        func add(_ attribute: Attribute) {
            // The first value of a key wins: the agent's own attributes come first.
            guard seenKeys.insert(attribute.key).inserted else { return }
            resource.attributes.append(OTLPKeyValue(attribute))
        }
        let process = store.processes[group.process]
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

    /// Samples merge when they share stack, thread and span: all indices of the profile.
    private struct SampleKey: Hashable {
        var stack: Int32
        var tid: Int32
        var threadName: Int32
        var traceContext: Int32
    }

    private struct ThreadKey: Hashable {
        var tid: Int32
        var name: Int32
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
        // First pass: which merged sample each record joins, and how many each gets, so the
        // second pass allocates every array once at its final size.
        var positions: [SampleKey: Int32] = [:]
        var positionOfRecord: [Int32] = []
        positionOfRecord.reserveCapacity(group.records.count)
        var counts: [Int] = []
        var firstRecord: [Int32] = []
        for index in group.records {
            let record = store.records[Int(index)]
            start = min(start, record.timestampNanos)
            end = max(end, record.timestampNanos &+ 1)
            let key = SampleKey(
                stack: record.stack, tid: record.tid, threadName: record.threadName, traceContext: record.traceContext)
            let position: Int32
            if let known = positions[key] {
                position = known
                counts[Int(position)] += 1
            } else {
                position = Int32(counts.count)
                positions[key] = position
                counts.append(1)
                firstRecord.append(index)
            }
            positionOfRecord.append(position)
        }
        var samples: [OTLPSample] = []
        samples.reserveCapacity(counts.count)
        let timestamps = configuration.sampleTimestamps
        for (position, index) in firstRecord.enumerated() {
            let record = store.records[Int(index)]
            var otlpSample = OTLPSample()
            otlpSample.stackIndex = stackIndex(Int(record.stack))
            let (link, attributes) = sampleAttributes(
                tid: record.tid, name: record.threadName, traceContext: record.traceContext)
            otlpSample.linkIndex = link
            otlpSample.attributeIndices = attributes  // shared by every sample of the thread and span
            if timestamps {
                otlpSample.timestampsUnixNano.reserveCapacity(counts[position])
            } else {
                otlpSample.values = [Int64(counts[position])]
            }
            samples.append(otlpSample)
        }
        if timestamps {
            for (offset, index) in group.records.enumerated() {
                samples[Int(positionOfRecord[offset])].timestampsUnixNano.append(
                    store.records[Int(index)].timestampNanos)
            }
        }
        output.samples = samples
        output.timeUnixNano = start
        output.durationNano = end - start
        return output
    }

    private struct SampleAttributesKey: Hashable {
        var thread: ThreadKey
        var traceContext: Int32
    }
    private var sampleAttributeIndices: [SampleAttributesKey: (link: Int32, attributes: [Int32])] = [:]

    /// A sample's link and attribute indices (its thread's, then its span's), made once per
    /// thread and span and shared by their samples.
    private mutating func sampleAttributes(tid: Int32, name: Int32, traceContext: Int32) -> (Int32, [Int32]) {
        let key = SampleAttributesKey(thread: ThreadKey(tid: tid, name: name), traceContext: traceContext)
        if let known = sampleAttributeIndices[key] { return known }
        var attributes = threadAttributes(tid: tid, name: name)
        var link: Int32 = 0
        if traceContext >= 0 {
            let context = traceContextIndices(Int(traceContext))
            link = context.link
            attributes += context.attributes
        }
        sampleAttributeIndices[key] = (link, attributes)
        return (link, attributes)
    }

    /// `thread.id` and `thread.name` of a sample, made once per thread.
    private mutating func threadAttributes(tid: Int32, name: Int32) -> [Int32] {
        let thread = ThreadKey(tid: tid, name: name)
        if let indices = threadAttributeIndices[thread] { return indices }
        let indices = [
            dictionary.attribute("thread.id", OTLPAnyValue(.int(Int64(tid)))),
            dictionary.attribute("thread.name", OTLPAnyValue(.string(store.strings[Int(name)]))),
        ]
        threadAttributeIndices[thread] = indices
        return indices
    }

    /// The link and sample attributes of a span, made once per distinct context.
    private mutating func traceContextIndices(_ index: Int) -> (link: Int32, attributes: [Int32]) {
        if let known = traceContextIndices[index] { return known }
        let context = store.traceContexts[index]
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
        traceContextIndices[index] = indices
        return indices
    }

    private mutating func stackIndex(_ stack: Int) -> Int32 {
        if stackIndices[stack] >= 0 { return stackIndices[stack] }
        let locations = store.stacks[stack].map { locationIndex(Int($0)) }
        let index = dictionary.stack(locations)
        stackIndices[stack] = index
        return index
    }

    private mutating func locationIndex(_ index: Int) -> Int32 {
        if locationIndices[index] >= 0 { return locationIndices[index] }
        let entry = store.locations[index]
        let mapping: Int32
        let frameType: String
        switch entry.kind {
        case .kernel:
            mapping = kernelMappingIndex()
            frameType = "kernel"
        case .native:
            mapping = entry.mapping >= 0 ? mappingIndex(Int(entry.mapping)) : 0
            frameType = "native"
        }
        let function = entry.function >= 0 ? functionIndex(Int(entry.function)) : 0
        let result = dictionary.location(
            address: entry.address, mapping: mapping, function: function,
            attribute: dictionary.attribute("profile.frame.type", OTLPAnyValue(.string(frameType))))
        locationIndices[index] = result
        return result
    }

    private mutating func functionIndex(_ index: Int) -> Int32 {
        if functionIndices[index] >= 0 { return functionIndices[index] }
        let result = dictionary.function(name: dictionary.string(store.functions[index]))
        functionIndices[index] = result
        return result
    }

    private mutating func mappingIndex(_ index: Int) -> Int32 {
        if mappingIndices[index] >= 0 { return mappingIndices[index] }
        let module = store.mappings[index]
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
            mappingIndices[index] = 0
            return 0
        }
        var mapping = OTLPMapping()
        mapping.memoryStart = module.start
        mapping.memoryLimit = module.limit
        mapping.fileOffset = module.fileOffset
        mapping.filenameStrindex = dictionary.string(module.path)
        mapping.attributeIndices = attributes
        let result = dictionary.append(mapping)
        mappingIndices[index] = result
        return result
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
        let index = dictionary.append(mapping)
        kernelMapping = index
        return index
    }
}
