public import Gzip
internal import NodeprofCore
internal import ProfilesProtobuf
internal import SwiftProtobuf

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// Encodes a ``Profile`` as a pprof profile (`profile.proto`, gzip-compressed), the format
/// `go tool pprof` and most profile viewers read.
///
/// What the encoder writes:
/// - sample types `samples/count` and `cpu/nanoseconds` (cpu last, so viewers show it by
///   default, as for Go CPU profiles), period type `cpu/nanoseconds`;
/// - one Mapping per distinct ``Module`` (plus one `[kernel.kallsyms]` mapping for kernel
///   frames), one Function per (name, module), one Location per (mapping, address);
/// - one Sample per distinct (pid, tid, thread, process, stack), values
///   `[count, count * period]`, labels `pid`, `tid`, `thread` and `process` (when known);
///   a sample taken inside a span (thread context) also gets `trace_id` and `span_id` (lower
///   hex) and the span's string attributes as labels, and samples of different spans stay
///   apart;
/// - the profile's comments and drop counts as comments.
///
/// Unsymbolized frames become Locations without Line entries that keep their address and
/// mapping, so pprof prints `<address> [libfoo.so]` and can symbolize them later from the
/// binary (the mapping carries the file offset and build id).
public struct PprofEncoder: Sendable {
    /// zlib compression level for the gzip wrapper (0...9).
    public var compressionLevel: Int32

    public init(compressionLevel: Int32 = 6) {
        self.compressionLevel = compressionLevel
    }

    /// The profile as serialized `profile.proto` bytes, not compressed.
    public func serialize(_ profile: Profile) throws(PprofError) -> [UInt8] {
        do {
            return try message(for: profile).serializedBytes()
        } catch {
            throw .serialization(String(describing: error))
        }
    }

    /// The profile as a pprof file's bytes: serialized and gzip-compressed.
    public func encode(_ profile: Profile) throws(PprofError) -> [UInt8] {
        let bytes = try serialize(profile)
        do {
            return try Gzip.compress(bytes, level: compressionLevel)
        } catch {
            throw .compression(error)
        }
    }

    /// Encodes the profile and writes it to `path` atomically (a temporary file renamed
    /// into place), so readers never see a partial profile.
    public func write(_ profile: Profile, to path: String) throws(PprofError) {
        let bytes = try encode(profile)
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .write(path: path, reason: String(describing: error))
        }
    }

    /// The profile as the generated pprof message.
    func message(for profile: Profile) -> Perftools_Profiles_Profile {
        var builder = PprofBuilder(period: Int64(clamping: profile.periodNanos))
        builder.add(profile.store)
        return builder.finish(profile: profile)
    }
}

extension Profile {
    /// Writes the profile as a gzip-compressed pprof file at `path`.
    public func writePprof(to path: String) throws(PprofError) {
        try PprofEncoder().write(self, to: path)
    }
}

/// Why a profile could not be encoded or written.
public enum PprofError: Error, Sendable, CustomStringConvertible {
    /// The protobuf message could not be serialized.
    case serialization(String)
    /// gzip compression failed.
    case compression(GzipError)
    /// The file could not be written.
    case write(path: String, reason: String)

    public var description: String {
        switch self {
        case .serialization(let reason):
            "cannot serialize pprof profile: \(reason)"
        case .compression(let error):
            "cannot compress pprof profile: \(error)"
        case .write(let path, let reason):
            "cannot write pprof profile to \(path): \(reason); check the directory exists and is writable"
        }
    }
}

/// Names of the pprof vocabulary nodeprof writes (and a decoder will read).
package enum PprofSchema {
    package static let samplesType = "samples"
    package static let countUnit = "count"
    package static let cpuType = "cpu"
    package static let nanosecondsUnit = "nanoseconds"
    package static let kernelMappingName = "[kernel.kallsyms]"

    package enum Label {
        package static let pid = "pid"
        package static let tid = "tid"
        package static let thread = "thread"
        package static let process = "process"
        package static let traceID = "trace_id"
        package static let spanID = "span_id"
    }
}

/// Builds the deduplicated pprof tables sample by sample.
struct PprofBuilder {
    private let period: Int64

    private var strings = StringTable()
    private var mappings: [Perftools_Profiles_Mapping] = []
    private var mappingIDs: [Module: UInt64] = [:]
    private var kernelMapping = KernelMapping()
    private var functions: [Perftools_Profiles_Function] = []
    private var functionIDs: [FunctionKey: UInt64] = [:]
    private var lineLists: [UInt64: [Perftools_Profiles_Line]] = [:]
    private var locations: [Perftools_Profiles_Location] = []
    private var locationIDs: [LocationKey: UInt64] = [:]
    /// Per mapping id - 1: whether some location in it has no function.
    private var mappingHasUnsymbolized: [Bool] = []
    private var samples: [Perftools_Profiles_Sample] = []

    private let pidKey: Int64
    private let tidKey: Int64
    private let threadKey: Int64
    private let processKey: Int64

    init(period: Int64) {
        self.period = period
        pidKey = strings.index(of: PprofSchema.Label.pid)
        tidKey = strings.index(of: PprofSchema.Label.tid)
        threadKey = strings.index(of: PprofSchema.Label.thread)
        processKey = strings.index(of: PprofSchema.Label.process)
    }

    /// Adds every sample of `store`, translating its tables by index: each location,
    /// stack and thread once, then one small integer key per sample.
    mutating func add(_ store: SampleStore) {
        var locationIDs = [UInt64](repeating: 0, count: store.locations.count)
        var stackLocationIDs = [[UInt64]?](repeating: nil, count: store.stacks.count)
        var sampleIndices: [StoreSampleKey: Int] = [:]
        var labelsByKey: [StoreSampleKey: [Perftools_Profiles_Label]] = [:]
        for record in store.records {
            let key = StoreSampleKey(
                process: record.process, tid: record.tid, threadName: record.threadName, stack: record.stack,
                traceContext: record.traceContext)
            if let index = sampleIndices[key] {
                samples[index].value[0] &+= 1
                samples[index].value[1] &+= period
                continue
            }
            let stackIndex = Int(record.stack)
            let stack: [UInt64]
            if let known = stackLocationIDs[stackIndex] {
                stack = known
            } else {
                stack = store.stacks[stackIndex].map { location in
                    if locationIDs[Int(location)] == 0 {
                        locationIDs[Int(location)] = locationID(for: store.frame(ofLocation: location))
                    }
                    return locationIDs[Int(location)]
                }
                stackLocationIDs[stackIndex] = stack
            }
            // Labels depend on the process, thread and span, not the stack: made once each and
            // shared (as the stack's location ids are) by the samples that carry them.
            let labelKey = StoreSampleKey(
                process: record.process, tid: record.tid, threadName: record.threadName, stack: -1,
                traceContext: record.traceContext)
            let sampleLabels: [Perftools_Profiles_Label]
            if let known = labelsByKey[labelKey] {
                sampleLabels = known
            } else {
                let process = store.processes[Int(record.process)]
                sampleLabels = labels(
                    pid: process.pid, tid: record.tid, threadName: store.strings[Int(record.threadName)],
                    processName: process.name,
                    traceContext: record.traceContext < 0 ? nil : store.traceContexts[Int(record.traceContext)])
                labelsByKey[labelKey] = sampleLabels
            }
            var entry = Perftools_Profiles_Sample()
            entry.locationID = stack
            entry.value = [1, period]
            entry.label = sampleLabels
            sampleIndices[key] = samples.count
            samples.append(entry)
        }
    }

    mutating func finish(profile: Profile) -> Perftools_Profiles_Profile {
        var message = Perftools_Profiles_Profile()
        message.sampleType = [
            valueType(PprofSchema.samplesType, PprofSchema.countUnit),
            valueType(PprofSchema.cpuType, PprofSchema.nanosecondsUnit),
        ]
        message.periodType = valueType(PprofSchema.cpuType, PprofSchema.nanosecondsUnit)
        message.period = period
        message.timeNanos = Int64(clamping: profile.startTimeNanos)
        message.durationNanos = Int64(clamping: profile.durationNanos)
        message.comment = profile.allComments.map { strings.index(of: $0) }

        for index in mappings.indices {
            mappings[index].hasFunctions_p = !mappingHasUnsymbolized[index]
        }
        if let id = kernelMapping.id {
            let index = Int(id - 1)
            mappings[index].memoryStart = kernelMapping.lowestAddress
            // The limit is exclusive; saturate at the top of the address space.
            mappings[index].memoryLimit =
                kernelMapping.highestAddress == .max ? .max : kernelMapping.highestAddress + 1
        }
        message.mapping = mappings
        message.function = functions
        message.location = locations
        message.sample = samples
        message.stringTable = strings.strings
        return message
    }

    // MARK: Tables

    private mutating func locationID(for frame: Frame) -> UInt64 {
        let mappingID = mappingID(for: frame)
        let key = LocationKey(mappingID: mappingID, address: frame.address)
        if let id = locationIDs[key] { return id }

        var location = Perftools_Profiles_Location()
        location.id = UInt64(locations.count + 1)
        location.mappingID = mappingID
        location.address = frame.address
        if let name = frame.function {
            // Locations of one function share its one-line list.
            let function = functionID(name: name, frame: frame)
            if let shared = lineLists[function] {
                location.line = shared
            } else {
                var line = Perftools_Profiles_Line()
                line.functionID = function
                location.line = [line]
                lineLists[function] = location.line
            }
        } else if mappingID != 0 {
            mappingHasUnsymbolized[Int(mappingID - 1)] = true
        }
        locationIDs[key] = location.id
        locations.append(location)
        return location.id
    }

    /// 0 (no mapping) for user frames outside any file-backed mapping (JIT code).
    private mutating func mappingID(for frame: Frame) -> UInt64 {
        switch frame.kind {
        case .kernel:
            kernelMapping.include(frame.address)
            if let id = kernelMapping.id { return id }
            var mapping = Perftools_Profiles_Mapping()
            mapping.id = UInt64(mappings.count + 1)
            mapping.filename = strings.index(of: PprofSchema.kernelMappingName)
            kernelMapping.id = mapping.id
            appendMapping(mapping)
            return mapping.id
        case .native:
            guard let module = frame.module else { return 0 }
            if let id = mappingIDs[module] { return id }
            var mapping = Perftools_Profiles_Mapping()
            mapping.id = UInt64(mappings.count + 1)
            mapping.memoryStart = module.start
            mapping.memoryLimit = module.limit
            mapping.fileOffset = module.fileOffset
            mapping.filename = strings.index(of: module.path)
            mapping.buildID = strings.index(of: module.buildID ?? "")
            mappingIDs[module] = mapping.id
            appendMapping(mapping)
            return mapping.id
        }
    }

    private mutating func appendMapping(_ mapping: Perftools_Profiles_Mapping) {
        mappings.append(mapping)
        mappingHasUnsymbolized.append(false)
    }

    private mutating func functionID(name: String, frame: Frame) -> UInt64 {
        let key = FunctionKey(name: name, module: FunctionKey.moduleKey(of: frame))
        if let id = functionIDs[key] { return id }
        var function = Perftools_Profiles_Function()
        function.id = UInt64(functions.count + 1)
        function.name = strings.index(of: name)
        function.systemName = function.name
        functionIDs[key] = function.id
        functions.append(function)
        return function.id
    }

    private mutating func labels(
        pid: Int32, tid: Int32, threadName: String, processName: String?, traceContext: TraceContext?
    ) -> [Perftools_Profiles_Label] {
        var labels = [
            numberLabel(pidKey, Int64(pid)),
            numberLabel(tidKey, Int64(tid)),
            stringLabel(threadKey, threadName),
        ]
        if let processName {
            labels.append(stringLabel(processKey, processName))
        }
        if let context = traceContext {
            labels.append(stringLabel(strings.index(of: PprofSchema.Label.traceID), hexString(context.traceID)))
            labels.append(stringLabel(strings.index(of: PprofSchema.Label.spanID), hexString(context.spanID)))
            for attribute in context.attributes {
                if case .string(let value) = attribute.value {
                    labels.append(stringLabel(strings.index(of: attribute.key), value))
                }
            }
        }
        return labels
    }

    private func numberLabel(_ key: Int64, _ value: Int64) -> Perftools_Profiles_Label {
        var label = Perftools_Profiles_Label()
        label.key = key
        label.num = value
        return label
    }

    private mutating func stringLabel(_ key: Int64, _ value: String) -> Perftools_Profiles_Label {
        var label = Perftools_Profiles_Label()
        label.key = key
        label.str = strings.index(of: value)
        return label
    }

    private mutating func valueType(_ type: String, _ unit: String) -> Perftools_Profiles_ValueType {
        var valueType = Perftools_Profiles_ValueType()
        valueType.type = strings.index(of: type)
        valueType.unit = strings.index(of: unit)
        return valueType
    }
}

/// pprof's string table: index 0 is always "".
package struct StringTable {
    package private(set) var strings: [String] = [""]
    private var indices: [String: Int64] = ["": 0]

    package init() {}

    package mutating func index(of string: String) -> Int64 {
        if let index = indices[string] { return index }
        let index = Int64(strings.count)
        strings.append(string)
        indices[string] = index
        return index
    }
}

/// The address range of kernel frames seen, for the synthetic kernel mapping.
private struct KernelMapping {
    var id: UInt64?
    var lowestAddress: UInt64 = .max
    var highestAddress: UInt64 = 0

    mutating func include(_ address: UInt64) {
        lowestAddress = min(lowestAddress, address)
        highestAddress = max(highestAddress, address)
    }
}

/// A function is its name within the file it lives in: the same name in two libraries
/// is two functions.
struct FunctionKey: Hashable {
    var name: String
    /// The module's path, `[kernel.kallsyms]` for the kernel, "" when unknown.
    var module: String

    static func moduleKey(of frame: Frame) -> String {
        switch frame.kind {
        case .kernel: PprofSchema.kernelMappingName
        case .native: frame.module?.path ?? ""
        }
    }
}

private struct LocationKey: Hashable {
    var mappingID: UInt64
    var address: UInt64
}

/// A pprof sample is one (process, thread, stack, span): indices into the profile's tables.
private struct StoreSampleKey: Hashable {
    var process: Int32
    var tid: Int32
    var threadName: Int32
    var stack: Int32
    var traceContext: Int32
}
