internal import Glibc
internal import NodeprofCore
internal import Profiles
internal import ProfilesProtobuf
internal import SwiftProtobuf

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// pprof -> OTLP: one pprof profile becomes one request with one `ResourceProfiles`, one
/// `ScopeProfiles` and one `Profile` per pprof sample type (see ``PprofOTLPConversion``).
///
/// The input is validated completely before anything is converted: every id reference,
/// string index and count, so conversion itself cannot fail or trap.
struct PprofToOTLPConverter {
    private let source: Perftools_Profiles_Profile
    private let options: PprofOTLPConversion.Options
    private let originalPayload: [UInt8]?
    private var dictionary = OTLPDictionaryBuilder()

    /// Position in the pprof tables of each id.
    private var mappingPositions: [UInt64: Int] = [:]
    private var functionPositions: [UInt64: Int] = [:]
    private var locationPositions: [UInt64: Int] = [:]
    /// htlhash by file path (nil: unreadable), so each file is read once.
    private var fileHashes: [String: String?] = [:]

    init(profile: Perftools_Profiles_Profile, options: PprofOTLPConversion.Options, originalPayload: [UInt8]?)
        throws(ConversionError)
    {
        source = profile
        self.options = options
        self.originalPayload = originalPayload
        try validate()
    }

    // MARK: Validation

    private var strings: [String] { source.stringTable }

    /// The string at `index`, or an error naming `field`.
    private func string(_ index: Int64, _ field: @autoclosure () -> String) throws(ConversionError) -> String {
        guard index >= 0, index < Int64(strings.count) else {
            throw .invalid(
                "pprof \(field()) refers to string \(index), but the string table has \(strings.count) strings")
        }
        return strings[Int(index)]
    }

    /// The string at an index already validated.
    private func text(_ index: Int64) -> String {
        index >= 0 && index < Int64(strings.count) ? strings[Int(index)] : ""
    }

    private mutating func validate() throws(ConversionError) {
        let limit = options.limits.maxEntries
        let tables: [(String, Int)] = [
            ("strings", strings.count), ("samples", source.sample.count), ("locations", source.location.count),
            ("functions", source.function.count), ("mappings", source.mapping.count),
            ("sample types", source.sampleType.count), ("comments", source.comment.count),
        ]
        for (name, count) in tables where count > limit {
            throw .tooLarge("the pprof profile has \(count) \(name), more than the \(limit) accepted")
        }
        guard let first = strings.first, first.isEmpty else {
            throw .invalid(
                "pprof string table entry 0 must be the empty string, but it is \(quoted(strings.first ?? ""))")
        }
        guard !source.sampleType.isEmpty else {
            throw .invalid("the pprof profile has no sample types, so there is nothing OTLP can carry")
        }
        guard source.sampleType.count <= options.limits.maxSampleTypes else {
            throw .tooLarge(
                "the pprof profile has \(source.sampleType.count) sample types (one OTLP profile each), more than "
                    + "the \(options.limits.maxSampleTypes) accepted")
        }
        // Every pprof sample is repeated in each of the N profiles, with its attributes.
        let types = source.sampleType.count
        var labels = 0
        for sample in source.sample { labels += sample.label.count }
        for (name, count) in [("samples", source.sample.count), ("sample attribute references", labels)] {
            let (total, overflow) = count.multipliedReportingOverflow(by: types)
            if overflow || total > limit {
                throw .tooLarge(
                    "the OTLP request would need \(types) x \(count) \(name) (one set per sample type), "
                        + "more than the \(limit) accepted")
            }
        }

        for (position, type) in source.sampleType.enumerated() {
            _ = try string(type.type, "sample_type[\(position)].type")
            _ = try string(type.unit, "sample_type[\(position)].unit")
        }
        if source.hasPeriodType {
            _ = try string(source.periodType.type, "period_type.type")
            _ = try string(source.periodType.unit, "period_type.unit")
        }
        _ = try string(source.dropFrames, "drop_frames")
        _ = try string(source.keepFrames, "keep_frames")
        _ = try string(source.defaultSampleType, "default_sample_type")
        let docURL = PprofNewerFields.varint(PprofNewerFields.docURLField, in: source.unknownFields)
        _ = try string(Int64(bitPattern: docURL), "doc_url")
        for (position, comment) in source.comment.enumerated() {
            _ = try string(comment, "comment[\(position)]")
        }

        try validateMappings()
        try validateFunctions()
        try validateLocations()
        try validateSamples()
    }

    private mutating func validateMappings() throws(ConversionError) {
        for (position, mapping) in source.mapping.enumerated() {
            let id = mapping.id
            guard id != 0 else { throw .invalid("pprof mapping[\(position)] has id 0; ids start at 1") }
            guard mappingPositions.updateValue(position, forKey: id) == nil else {
                throw .invalid("pprof mapping id \(id) is used by two mappings")
            }
            _ = try string(mapping.filename, "mapping \(id) filename")
            _ = try string(mapping.buildID, "mapping \(id) build_id")
            let bothZero = mapping.memoryStart == 0 && mapping.memoryLimit == 0
            guard bothZero || mapping.memoryStart < mapping.memoryLimit else {
                throw .invalid(
                    "pprof mapping \(id) has memory_start \(hex(mapping.memoryStart)) not below memory_limit "
                        + "\(hex(mapping.memoryLimit)); OTLP needs start < limit (or both 0)")
            }
        }
    }

    private mutating func validateFunctions() throws(ConversionError) {
        for (position, function) in source.function.enumerated() {
            let id = function.id
            guard id != 0 else { throw .invalid("pprof function[\(position)] has id 0; ids start at 1") }
            guard functionPositions.updateValue(position, forKey: id) == nil else {
                throw .invalid("pprof function id \(id) is used by two functions")
            }
            _ = try string(function.name, "function \(id) name")
            _ = try string(function.systemName, "function \(id) system_name")
            _ = try string(function.filename, "function \(id) filename")
            guard function.startLine >= 0 else {
                throw .invalid("pprof function \(id) has start_line \(function.startLine); OTLP needs >= 0")
            }
        }
    }

    private mutating func validateLocations() throws(ConversionError) {
        for (position, location) in source.location.enumerated() {
            let id = location.id
            guard id != 0 else { throw .invalid("pprof location[\(position)] has id 0; ids start at 1") }
            guard locationPositions.updateValue(position, forKey: id) == nil else {
                throw .invalid("pprof location id \(id) is used by two locations")
            }
            if location.mappingID != 0 && mappingPositions[location.mappingID] == nil {
                throw .invalid(
                    "pprof location \(id) refers to mapping \(location.mappingID), but the profile has no "
                        + "mapping with that id (it has \(source.mapping.count) mappings)")
            }
            for (index, line) in location.line.enumerated() {
                if line.functionID != 0 && functionPositions[line.functionID] == nil {
                    throw .invalid(
                        "pprof location \(id) line \(index) refers to function \(line.functionID), but the "
                            + "profile has no function with that id (it has \(source.function.count) functions)")
                }
                guard line.line >= 0 else {
                    throw .invalid("pprof location \(id) line \(index) has line number \(line.line); OTLP needs >= 0")
                }
                let column = PprofNewerFields.varint(PprofNewerFields.lineColumnField, in: line.unknownFields)
                guard Int64(bitPattern: column) >= 0 else {
                    throw .invalid("pprof location \(id) line \(index) has a negative column; OTLP needs >= 0")
                }
            }
        }
    }

    private func validateSamples() throws(ConversionError) {
        let types = source.sampleType.count
        for (position, sample) in source.sample.enumerated() {
            guard sample.value.count == types else {
                throw .invalid(
                    "pprof sample[\(position)] has \(sample.value.count) values, but the profile has \(types) "
                        + "sample types")
            }
            for id in sample.locationID where locationPositions[id] == nil {
                throw .invalid(
                    "pprof sample[\(position)] refers to location \(id), but the profile has no location with "
                        + "that id (it has \(source.location.count) locations)")
            }
            for (index, label) in sample.label.enumerated() {
                let key = try string(label.key, "sample[\(position)] label \(index) key")
                guard !key.isEmpty else {
                    throw .invalid("pprof sample[\(position)] label \(index) has an empty key")
                }
                _ = try string(label.str, "sample[\(position)] label \(key) str")
                _ = try string(label.numUnit, "sample[\(position)] label \(key) num_unit")
            }
        }
    }

    // MARK: Conversion

    /// The request; the input was validated by `init`.
    mutating func request() throws(ConversionError) -> OTLPRequest {
        // Only what a sample reaches goes into the dictionary (OTLP forbids orphans); each
        // table is filled in pprof order, so the mapping order (main binary first) survives.
        var usedLocations = [Bool](repeating: false, count: source.location.count)
        for sample in source.sample {
            for id in sample.locationID {
                if let position = locationPositions[id] { usedLocations[position] = true }
            }
        }
        var usedMappings = [Bool](repeating: false, count: source.mapping.count)
        var usedFunctions = [Bool](repeating: false, count: source.function.count)
        for (position, location) in source.location.enumerated() where usedLocations[position] {
            if let mapping = mappingPositions[location.mappingID] { usedMappings[mapping] = true }
            for line in location.line {
                if let function = functionPositions[line.functionID] { usedFunctions[function] = true }
            }
        }

        var mappingIndices = [Int32](repeating: 0, count: source.mapping.count)
        for (position, mapping) in source.mapping.enumerated() where usedMappings[position] {
            mappingIndices[position] = otlpMapping(mapping)
        }
        var functionIndices = [Int32](repeating: 0, count: source.function.count)
        for (position, function) in source.function.enumerated() where usedFunctions[position] {
            functionIndices[position] = otlpFunction(function)
        }
        var locationIndices = [Int32](repeating: 0, count: source.location.count)
        for (position, location) in source.location.enumerated() where usedLocations[position] {
            locationIndices[position] = otlpLocation(
                location, mappings: mappingIndices, functions: functionIndices)
        }

        var stacks: [Int32] = []
        var attributes: [[Int32]] = []
        stacks.reserveCapacity(source.sample.count)
        attributes.reserveCapacity(source.sample.count)
        for sample in source.sample {
            stacks.append(
                dictionary.stack(sample.locationID.map { id in locationIndices[locationPositions[id] ?? 0] }))
            attributes.append(sampleAttributes(sample))
        }

        let profileAttributes = self.profileAttributes()
        var scope = OTLPScopeProfiles()
        scope.scope.name = PprofOTLPSchema.scopeName
        for (typeIndex, type) in source.sampleType.enumerated() {
            var profile = OTLPProfile()
            profile.sampleType.typeStrindex = dictionary.string(text(type.type))
            profile.sampleType.unitStrindex = dictionary.string(text(type.unit))
            if source.hasPeriodType {
                profile.periodType.typeStrindex = dictionary.string(text(source.periodType.type))
                profile.periodType.unitStrindex = dictionary.string(text(source.periodType.unit))
            }
            profile.period = source.period
            profile.timeUnixNano = UInt64(bitPattern: source.timeNanos)
            profile.durationNano = UInt64(bitPattern: source.durationNanos)
            profile.profileID = Data(options.makeProfileID())
            profile.attributeIndices = profileAttributes
            if typeIndex == 0, let originalPayload {
                profile.originalPayloadFormat = PprofOTLPSchema.originalPayloadFormat
                profile.originalPayload = Data(originalPayload)
            }
            profile.samples = source.sample.indices.map { position in
                var sample = OTLPSample()
                sample.stackIndex = stacks[position]
                sample.attributeIndices = attributes[position]
                sample.values = [source.sample[position].value[typeIndex]]
                return sample
            }
            scope.profiles.append(profile)
        }
        scope.scope.attributes = scopeAttributes()

        var resourceProfiles = OTLPResourceProfiles()
        resourceProfiles.scopeProfiles = [scope]
        var request = OTLPRequest()
        request.resourceProfiles = [resourceProfiles]
        request.dictionary = dictionary.dictionary
        return request
    }

    private func scopeAttributes() -> [OTLPKeyValue] {
        var attributes = [
            OTLPKeyValue(
                Attribute(
                    PprofOTLPSchema.sampleTypeOrder,
                    .array(source.sampleType.indices.map { .int(Int64($0)) })))
        ]
        if source.defaultSampleType != 0 {
            attributes.append(
                OTLPKeyValue(Attribute(PprofOTLPSchema.defaultSampleType, .string(text(source.defaultSampleType)))))
        }
        return attributes
    }

    private mutating func profileAttributes() -> [Int32] {
        var attributes: [Int32] = []
        if !source.comment.isEmpty {
            let comments = source.comment.map { AttributeValue.string(text($0)) }
            attributes.append(dictionary.attribute(PprofOTLPSchema.comment, OTLPAnyValue(.array(comments))))
        }
        let docURL = Int64(bitPattern: PprofNewerFields.varint(PprofNewerFields.docURLField, in: source.unknownFields))
        for (key, index) in [
            (PprofOTLPSchema.docURL, docURL), (PprofOTLPSchema.dropFrames, source.dropFrames),
            (PprofOTLPSchema.keepFrames, source.keepFrames),
        ] where index != 0 {
            attributes.append(dictionary.attribute(key, OTLPAnyValue(.string(text(index)))))
        }
        return attributes
    }

    private mutating func otlpMapping(_ mapping: Perftools_Profiles_Mapping) -> Int32 {
        var output = OTLPMapping()
        output.memoryStart = mapping.memoryStart
        output.memoryLimit = mapping.memoryLimit
        output.fileOffset = mapping.fileOffset
        let filename = text(mapping.filename)
        output.filenameStrindex = dictionary.string(filename)
        var attributes: [Int32] = []
        let buildID = text(mapping.buildID)
        if !buildID.isEmpty {
            let key = Self.isHex(buildID) ? PprofOTLPSchema.buildIDGNU : PprofOTLPSchema.buildIDGo
            attributes.append(dictionary.attribute(key, OTLPAnyValue(.string(buildID))))
        } else if options.hashLocalFiles, let hash = htlHash(ofFile: filename) {
            // Without a build id the spec's MUST (a build id on every mapping) can only be
            // met by hashing the file, which must be the one profiled: see docs/conversion.md.
            attributes.append(dictionary.attribute(PprofOTLPSchema.buildIDHTLHash, OTLPAnyValue(.string(hash))))
        }
        for (flag, key) in [
            (mapping.hasFunctions_p, PprofOTLPSchema.hasFunctions),
            (mapping.hasFilenames_p, PprofOTLPSchema.hasFilenames),
            (mapping.hasLineNumbers_p, PprofOTLPSchema.hasLineNumbers),
            (mapping.hasInlineFrames_p, PprofOTLPSchema.hasInlineFrames),
        ] where flag {
            attributes.append(dictionary.attribute(key, OTLPAnyValue(.bool(true))))
        }
        output.attributeIndices = attributes
        return dictionary.mapping(output)
    }

    private mutating func otlpFunction(_ function: Perftools_Profiles_Function) -> Int32 {
        var output = OTLPFunction()
        output.nameStrindex = dictionary.string(text(function.name))
        output.systemNameStrindex = dictionary.string(text(function.systemName))
        output.filenameStrindex = dictionary.string(text(function.filename))
        output.startLine = function.startLine
        return dictionary.function(output)
    }

    private mutating func otlpLocation(
        _ location: Perftools_Profiles_Location, mappings: [Int32], functions: [Int32]
    ) -> Int32 {
        var output = OTLPLocation()
        output.address = location.address
        if let position = mappingPositions[location.mappingID] { output.mappingIndex = mappings[position] }
        output.lines = location.line.map { line in
            var otlpLine = OTLPLine()
            if let position = functionPositions[line.functionID] { otlpLine.functionIndex = functions[position] }
            otlpLine.line = line.line
            otlpLine.column = Int64(
                bitPattern: PprofNewerFields.varint(PprofNewerFields.lineColumnField, in: line.unknownFields))
            return otlpLine
        }
        if location.isFolded {
            output.attributeIndices = [dictionary.attribute(PprofOTLPSchema.isFolded, OTLPAnyValue(.bool(true)))]
        }
        if output == OTLPLocation() {
            output.attributeIndices = [
                dictionary.attribute(PprofOTLPSchema.emptyLocation, OTLPAnyValue(.bool(true)))
            ]
        }
        return dictionary.location(output)
    }

    /// One attribute per label key (keys are unique in an attribute list): a key seen once
    /// keeps its value; a repeated key becomes an array in label order.
    private mutating func sampleAttributes(_ sample: Perftools_Profiles_Sample) -> [Int32] {
        struct Element {
            var value: AttributeValue
            var unit: String
            var isNumber: Bool
        }
        var keys: [String] = []
        var elements: [String: [Element]] = [:]
        for label in sample.label {
            let key = text(label.key)
            // As Go's reader: a label with a string is a string label, otherwise a number.
            let element =
                label.str != 0
                ? Element(value: .string(text(label.str)), unit: "", isNumber: false)
                : Element(value: .int(label.num), unit: text(label.numUnit), isNumber: true)
            if elements[key] == nil { keys.append(key) }
            elements[key, default: []].append(element)
        }

        var attributes: [Int32] = []
        var mixedUnits: [(key: String, units: [String])] = []
        for key in keys {
            let values = elements[key] ?? []
            if values.count == 1 {
                attributes.append(dictionary.attribute(key, OTLPAnyValue(values[0].value), unit: values[0].unit))
                continue
            }
            var units: [String] = []
            for element in values where element.isNumber && !units.contains(element.unit) {
                units.append(element.unit)
            }
            if units.count > 1 {
                mixedUnits.append((key, values.map { $0.isNumber ? $0.unit : "" }))
            }
            attributes.append(
                dictionary.attribute(
                    key, OTLPAnyValue(.array(values.map(\.value))), unit: units.count == 1 ? units[0] : ""))
        }
        if !mixedUnits.isEmpty {
            var list = Opentelemetry_Proto_Common_V1_KeyValueList()
            list.values = mixedUnits.map { OTLPKeyValue(Attribute($0.key, .array($0.units.map { .string($0) }))) }
            var value = OTLPAnyValue()
            value.kvlistValue = list
            attributes.append(dictionary.attribute(PprofOTLPSchema.labelUnits, value))
        }
        return attributes
    }

    // MARK: Build ids

    /// True for a GNU build id as pprof writes it: an even number of hex digits.
    static func isHex(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count % 2 == 0 && text.utf8.allSatisfy { Self.hexDigitValue($0) != nil }
    }

    static func hexDigitValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The htlhash of the regular file at the absolute `path` on this machine, or nil.
    private mutating func htlHash(ofFile path: String) -> String? {
        if let known = fileHashes[path] { return known }
        let hash = Self.htlHash(ofFile: path)
        fileHashes[path] = hash
        return hash
    }

    static func htlHash(ofFile path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }  // "[vdso]", "[kernel.kallsyms]", relative names
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_size > 0 else {
            return nil
        }
        let length = UInt64(status.st_size)
        let window = Int(min(length, 4096))
        guard let head = readFully(descriptor, count: window, offset: 0),
            let tail = readFully(descriptor, count: window, offset: Int64(length) - Int64(window))
        else { return nil }
        return NodeprofCore.htlHash(head: head, tail: tail, length: length)
    }

    private static func readFully(_ descriptor: Int32, count: Int, offset: Int64) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = try? SystemCall.retryingOnInterrupt("pread") {
                buffer.withUnsafeMutableBytes { raw in
                    pread(descriptor, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                }
            }
            guard let result, result > 0 else { return nil }
            done += result
        }
        return buffer
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// A string quoted for an error message, shortened so hostile input cannot bloat it.
func quoted(_ text: String) -> String {
    text.count > 80 ? "\"\(text.prefix(80))...\" (\(text.count) characters)" : "\"\(text)\""
}
