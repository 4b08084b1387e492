internal import NodeprofCore
internal import Profiles
internal import ProfilesProtobuf
internal import SwiftProtobuf

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// OTLP -> pprof: one request becomes one pprof profile.
///
/// - A request that is one converted pprof (one resource, one scope marked with
///   `pprof.scope.sample_type_order`, whose profiles have the same number of samples and
///   line up sample by sample) comes back exactly: the profiles zip into pprof samples with
///   one value per sample type, in the original sample type order, none merged.
/// - Any other request is merged: one pprof sample type per distinct OTLP sample type (in
///   order of first appearance) and one pprof sample per distinct (stack, labels), whose
///   value for a sample type sums the OTLP samples': their values, or the number of
///   timestamps for samples without values. Labels: `pid` and `process` from the resource's
///   `process.pid` and `process.executable.name`; every sample attribute (`thread.id` as
///   `tid`, `thread.name` as `thread`, others by their key); the link's ids as hex
///   `trace_id` / `span_id`. Location attributes other than `pprof.location.is_folded`
///   (such as `profile.frame.type`) and other resource attributes have no pprof field and
///   are dropped.
///
/// Every index is range-checked before use; index 0 of any table means "unset", as the
/// spec reserves it.
struct OTLPToPprofConverter {
    private let request: OTLPRequest
    private let limits: ConversionLimits
    private let dictionary: OTLPDictionary

    init(request: OTLPRequest, limits: ConversionLimits) throws(ConversionError) {
        self.request = request
        self.limits = limits
        dictionary = request.dictionary
        try validate()
    }

    // MARK: Validation

    private func validate() throws(ConversionError) {
        let tables: [(String, Int)] = [
            ("mapping_table", dictionary.mappingTable.count), ("location_table", dictionary.locationTable.count),
            ("function_table", dictionary.functionTable.count), ("link_table", dictionary.linkTable.count),
            ("string_table", dictionary.stringTable.count), ("attribute_table", dictionary.attributeTable.count),
            ("stack_table", dictionary.stackTable.count),
        ]
        var total = 0
        for (name, count) in tables {
            total += count
            guard count <= limits.maxEntries, total <= limits.maxEntries else {
                throw .tooLarge(
                    "the OTLP dictionary's \(name) has \(count) entries; the tables may hold \(limits.maxEntries) "
                        + "entries together")
            }
        }
        var profiles = 0
        for resource in request.resourceProfiles {
            for scope in resource.scopeProfiles { profiles += scope.profiles.count }
        }
        guard profiles > 0 else {
            throw .invalid("the OTLP request holds no profiles, so there is nothing to convert to pprof")
        }

        for (index, attribute) in dictionary.attributeTable.enumerated() {
            let path = "attribute_table[\(index)]"
            try checkString(attribute.keyStrindex, path + " key")
            try checkString(attribute.unitStrindex, path + " unit")
            try checkValue(attribute.value, path, depth: 0)
        }
        for (index, mapping) in dictionary.mappingTable.enumerated() {
            let path = "mapping_table[\(index)]"
            try checkString(mapping.filenameStrindex, path + " filename")
            try checkAttributes(mapping.attributeIndices, path)
        }
        for (index, function) in dictionary.functionTable.enumerated() {
            let path = "function_table[\(index)]"
            try checkString(function.nameStrindex, path + " name")
            try checkString(function.systemNameStrindex, path + " system name")
            try checkString(function.filenameStrindex, path + " filename")
        }
        for (index, location) in dictionary.locationTable.enumerated() {
            let path = "location_table[\(index)]"
            try check(location.mappingIndex, path, "mapping", "mapping_table", dictionary.mappingTable.count)
            for (lineIndex, line) in location.lines.enumerated() {
                try check(
                    line.functionIndex, path + " line \(lineIndex)", "function", "function_table",
                    dictionary.functionTable.count)
            }
            try checkAttributes(location.attributeIndices, path)
        }
        for (index, stack) in dictionary.stackTable.enumerated() {
            for location in stack.locationIndices {
                try check(
                    location, "stack_table[\(index)]", "location", "location_table", dictionary.locationTable.count)
            }
        }
        for (index, link) in dictionary.linkTable.enumerated() where index > 0 {
            guard link.traceID.count == 16 || link.traceID.isEmpty, link.spanID.count == 8 || link.spanID.isEmpty
            else {
                throw .invalid(
                    "link_table[\(index)] has a \(link.traceID.count)-byte trace id and a \(link.spanID.count)-byte "
                        + "span id; they must be 16 and 8 bytes")
            }
        }

        for (resourceIndex, resource) in request.resourceProfiles.enumerated() {
            let resourcePath = "resourceProfiles[\(resourceIndex)]"
            try checkKeyValues(resource.resource.attributes, resourcePath + " resource attribute")
            for (scopeIndex, scope) in resource.scopeProfiles.enumerated() {
                let scopePath = resourcePath + ".scopeProfiles[\(scopeIndex)]"
                try checkKeyValues(scope.scope.attributes, scopePath + " scope attribute")
                for (profileIndex, profile) in scope.profiles.enumerated() {
                    try checkProfile(profile, scopePath + ".profiles[\(profileIndex)]")
                }
            }
        }
    }

    private func checkProfile(_ profile: OTLPProfile, _ path: String) throws(ConversionError) {
        try checkString(profile.sampleType.typeStrindex, path + " sample type")
        try checkString(profile.sampleType.unitStrindex, path + " sample type unit")
        try checkString(profile.periodType.typeStrindex, path + " period type")
        try checkString(profile.periodType.unitStrindex, path + " period type unit")
        try checkAttributes(profile.attributeIndices, path)
        for (index, sample) in profile.samples.enumerated() {
            let samplePath = path + ".samples[\(index)]"
            try check(sample.stackIndex, samplePath, "stack", "stack_table", dictionary.stackTable.count)
            try check(sample.linkIndex, samplePath, "link", "link_table", dictionary.linkTable.count)
            try checkAttributes(sample.attributeIndices, samplePath)
        }
    }

    /// Index 0 is "unset" and always valid; others must be inside the table.
    private func check(_ index: Int32, _ path: String, _ entity: String, _ table: String, _ count: Int)
        throws(ConversionError)
    {
        guard index == 0 || (index > 0 && Int(index) < count) else {
            throw .invalid("\(path) refers to \(entity) \(index), but \(table) has \(count) entries")
        }
    }

    private func checkString(_ index: Int32, _ path: String) throws(ConversionError) {
        try check(index, path, "string", "string_table", dictionary.stringTable.count)
    }

    private func checkAttributes(_ indices: [Int32], _ path: String) throws(ConversionError) {
        for index in indices {
            try check(index, path, "attribute", "attribute_table", dictionary.attributeTable.count)
        }
    }

    private func checkKeyValues(_ pairs: [OTLPKeyValue], _ path: String) throws(ConversionError) {
        for pair in pairs {
            try checkString(pair.keyStrindex, path + " key")
            try checkValue(pair.value, path + " " + quoted(key(of: pair)), depth: 0)
        }
    }

    private func checkValue(_ value: OTLPAnyValue, _ path: String, depth: Int) throws(ConversionError) {
        switch value.value {
        case .stringValueStrindex(let index): try checkString(index, path + " value")
        case .arrayValue(let array):
            guard depth < 16 else { throw .invalid("\(path) nests arrays and lists more than 16 levels deep") }
            for element in array.values { try checkValue(element, path, depth: depth + 1) }
        case .kvlistValue(let list):
            guard depth < 16 else { throw .invalid("\(path) nests arrays and lists more than 16 levels deep") }
            for pair in list.values {
                try checkString(pair.keyStrindex, path + " key")
                try checkValue(pair.value, path, depth: depth + 1)
            }
        default: break
        }
    }

    // MARK: Lookups (after validation: out-of-range reads give the unset entry, never trap)

    fileprivate func string(_ index: Int32) -> String {
        index > 0 && Int(index) < dictionary.stringTable.count ? dictionary.stringTable[Int(index)] : ""
    }

    fileprivate func attribute(_ index: Int32) -> OTLPKeyValueAndUnit? {
        index > 0 && Int(index) < dictionary.attributeTable.count ? dictionary.attributeTable[Int(index)] : nil
    }

    fileprivate func stack(_ index: Int32) -> [Int32] {
        index > 0 && Int(index) < dictionary.stackTable.count ? dictionary.stackTable[Int(index)].locationIndices : []
    }

    fileprivate func location(_ index: Int32) -> OTLPLocation {
        index > 0 && Int(index) < dictionary.locationTable.count ? dictionary.locationTable[Int(index)] : OTLPLocation()
    }

    fileprivate func mapping(_ index: Int32) -> OTLPMapping {
        index > 0 && Int(index) < dictionary.mappingTable.count ? dictionary.mappingTable[Int(index)] : OTLPMapping()
    }

    fileprivate func function(_ index: Int32) -> OTLPFunction {
        index > 0 && Int(index) < dictionary.functionTable.count
            ? dictionary.functionTable[Int(index)] : OTLPFunction()
    }

    fileprivate func key(of pair: OTLPKeyValue) -> String {
        pair.keyStrindex != 0 ? string(pair.keyStrindex) : pair.key
    }

    /// The string an AnyValue holds (directly or by string index), else nil.
    fileprivate func stringValue(_ value: OTLPAnyValue) -> String? {
        switch value.value {
        case .stringValue(let text): text
        case .stringValueStrindex(let index): string(index)
        default: nil
        }
    }

    /// The value of the attribute with `key` among `indices`.
    fileprivate func attributeValue(_ key: String, in indices: [Int32]) -> OTLPAnyValue? {
        for index in indices {
            if let entry = attribute(index), string(entry.keyStrindex) == key { return entry.value }
        }
        return nil
    }

    // MARK: Conversion

    func profile() throws(ConversionError) -> Perftools_Profiles_Profile {
        if let zipped = pprofScope() {
            return try exactProfile(zipped)
        }
        return try mergedProfile()
    }

    /// A converted pprof's scope and the pprof position of each profile's sample type, when
    /// the request is exactly one converted pprof whose profiles still line up.
    private func pprofScope() -> (scope: OTLPScopeProfiles, order: [Int])? {
        guard request.resourceProfiles.count == 1, let resource = request.resourceProfiles.first,
            resource.scopeProfiles.count == 1, let scope = resource.scopeProfiles.first,
            let marker = scope.scope.attributes.first(where: { key(of: $0) == PprofOTLPSchema.sampleTypeOrder }),
            case .arrayValue(let array) = marker.value.value
        else { return nil }
        let profiles = scope.profiles
        var order: [Int] = []
        var seen = Set<Int>()
        for element in array.values {
            guard case .intValue(let position) = element.value, position >= 0, position < Int64(profiles.count),
                seen.insert(Int(position)).inserted
            else { return nil }
            order.append(Int(position))
        }
        guard order.count == profiles.count, let first = profiles.first else { return nil }
        for profile in profiles {
            guard profile.samples.count == first.samples.count else { return nil }
            for (sample, reference) in zip(profile.samples, first.samples) {
                guard sample.stackIndex == reference.stackIndex, sample.linkIndex == reference.linkIndex,
                    sample.attributeIndices == reference.attributeIndices, sample.values.count == 1,
                    sample.timestampsUnixNano.isEmpty
                else { return nil }
            }
        }
        return (scope, order)
    }

    private func exactProfile(_ zipped: (scope: OTLPScopeProfiles, order: [Int])) throws(ConversionError)
        -> Perftools_Profiles_Profile
    {
        let profiles = zipped.scope.profiles
        let first = profiles[0]
        guard profiles.count <= limits.maxSampleTypes else {
            throw .tooLarge(
                "the converted pprof has \(profiles.count) sample types, more than the \(limits.maxSampleTypes) accepted"
            )
        }
        var writer = PprofWriter(converter: self, limits: limits, general: false)
        try writer.prepare(stacks: first.samples.map(\.stackIndex))

        var output = Perftools_Profiles_Profile()
        var types = [Perftools_Profiles_ValueType](repeating: .init(), count: profiles.count)
        for (profile, position) in zip(profiles, zipped.order) {
            types[position] = writer.valueType(profile.sampleType)
        }
        output.sampleType = types
        if first.hasPeriodType { output.periodType = writer.valueType(first.periodType) }
        output.period = first.period
        output.timeNanos = Int64(bitPattern: first.timeUnixNano)
        output.durationNanos = Int64(bitPattern: first.durationNano)
        writer.addMetadata(of: [first], scopes: [zipped.scope], to: &output)

        output.sample.reserveCapacity(first.samples.count)
        for index in first.samples.indices {
            let reference = first.samples[index]
            var sample = Perftools_Profiles_Sample()
            sample.locationID = writer.locationIDs(stack: reference.stackIndex)
            let labels = writer.labels(attributes: reference.attributeIndices, link: reference.linkIndex)
            try writer.count(sample.locationID.count + labels.count)
            sample.label = labels.map { writer.label($0) }
            var values = [Int64](repeating: 0, count: profiles.count)
            for (profile, position) in zip(profiles, zipped.order) {
                values[position] = profile.samples[index].values[0]
            }
            sample.value = values
            output.sample.append(sample)
        }
        return try writer.finish(&output)
    }

    /// Samples merge when they share stack, attributes, link and resource labels. The key
    /// uses table indices, not the content they resolve to: hashing a long stack or a large
    /// attribute for every sample would let a small request cost a lot of time, and the spec
    /// forbids duplicate table entries, so equal content has equal indices.
    private struct SampleKey: Hashable {
        var stack: Int32
        var attributes: [Int32]
        var link: Int32
        var resourceLabels: Int
    }

    private struct TypeKey: Hashable {
        var type: String
        var unit: String
    }

    private func mergedProfile() throws(ConversionError) -> Perftools_Profiles_Profile {
        var writer = PprofWriter(converter: self, limits: limits, general: true)
        var allProfiles: [OTLPProfile] = []
        var scopes: [OTLPScopeProfiles] = []
        for resource in request.resourceProfiles {
            for scope in resource.scopeProfiles {
                scopes.append(scope)
                allProfiles += scope.profiles
            }
        }
        try writer.prepare(stacks: allProfiles.lazy.flatMap { $0.samples.lazy.map(\.stackIndex) })

        var output = Perftools_Profiles_Profile()
        var typeColumns: [TypeKey: Int] = [:]
        var types: [Perftools_Profiles_ValueType] = []
        var resourceLabelIDs: [[PprofLabel]: Int] = [:]
        var sampleRows: [SampleKey: Int] = [:]
        var samples: [Perftools_Profiles_Sample] = []
        // Per sample, the (column, value) pairs seen: sparse until the number of columns is known.
        var values: [[(column: Int, value: Int64)]] = []
        var start = UInt64.max
        var end = UInt64.min

        for resource in request.resourceProfiles {
            let resourceLabels = writer.resourceLabels(resource.resource.attributes)
            let resourceLabelID = resourceLabelIDs[resourceLabels] ?? resourceLabelIDs.count
            resourceLabelIDs[resourceLabels] = resourceLabelID
            for scope in resource.scopeProfiles {
                for profile in scope.profiles {
                    let typeKey = TypeKey(
                        type: string(profile.sampleType.typeStrindex), unit: string(profile.sampleType.unitStrindex))
                    let column: Int
                    if let known = typeColumns[typeKey] {
                        column = known
                    } else {
                        guard types.count < limits.maxSampleTypes else {
                            throw .tooLarge(
                                "the OTLP request has more than \(limits.maxSampleTypes) distinct sample types, "
                                    + "the most a pprof profile may have here")
                        }
                        column = types.count
                        typeColumns[typeKey] = column
                        types.append(writer.valueType(profile.sampleType))
                    }
                    if profile.hasPeriodType && !output.hasPeriodType {
                        output.periodType = writer.valueType(profile.periodType)
                        output.period = profile.period
                    }
                    if profile.timeUnixNano != 0 || profile.durationNano != 0 {
                        start = min(start, profile.timeUnixNano)
                        let (sum, overflow) = profile.timeUnixNano.addingReportingOverflow(profile.durationNano)
                        end = max(end, overflow ? .max : sum)
                    }
                    for sample in profile.samples {
                        let key = SampleKey(
                            stack: sample.stackIndex, attributes: sample.attributeIndices.sorted(),
                            link: sample.linkIndex, resourceLabels: resourceLabelID)
                        let row: Int
                        if let known = sampleRows[key] {
                            row = known
                        } else {
                            row = samples.count
                            sampleRows[key] = row
                            var entry = Perftools_Profiles_Sample()
                            entry.locationID = writer.locationIDs(stack: sample.stackIndex)
                            let labels =
                                (resourceLabels
                                + writer.labels(attributes: sample.attributeIndices, link: sample.linkIndex)).sorted()
                            try writer.count(entry.locationID.count + labels.count)
                            entry.label = labels.map { writer.label($0) }
                            samples.append(entry)
                            values.append([])
                        }
                        let weight = Self.weight(sample)
                        if let position = values[row].firstIndex(where: { $0.column == column }) {
                            values[row][position].value = Self.saturatingAdd(values[row][position].value, weight)
                        } else {
                            values[row].append((column, weight))
                        }
                    }
                }
            }
        }
        let (cells, overflow) = samples.count.multipliedReportingOverflow(by: types.count)
        guard !overflow, cells <= limits.maxEntries else {
            throw .tooLarge(
                "the pprof profile would need \(samples.count) samples x \(types.count) sample types values, "
                    + "more than the \(limits.maxEntries) accepted")
        }
        for row in samples.indices {
            var rowValues = [Int64](repeating: 0, count: types.count)
            for (column, value) in values[row] { rowValues[column] = value }
            samples[row].value = rowValues
        }
        output.sampleType = types
        output.sample = samples
        if start <= end {
            output.timeNanos = Int64(clamping: start)
            output.durationNanos = Int64(clamping: end - start)
        }
        writer.addMetadata(of: allProfiles, scopes: scopes, to: &output)
        return try writer.finish(&output)
    }

    /// What one OTLP sample weighs: its values summed (one value, or one per timestamp),
    /// else its number of timestamps (each timestamp is one event).
    static func weight(_ sample: OTLPSample) -> Int64 {
        guard !sample.values.isEmpty else { return Int64(sample.timestampsUnixNano.count) }
        return sample.values.reduce(0, saturatingAdd)
    }

    static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }
}

/// A pprof label before string interning; sorts by key, then value.
struct PprofLabel: Hashable, Comparable {
    var key: String
    /// The string of a string label; nil for a numeric label.
    var string: String?
    var number: Int64 = 0
    var unit: String = ""

    static func < (a: PprofLabel, b: PprofLabel) -> Bool {
        if a.key != b.key { return a.key < b.key }
        switch (a.string, b.string) {
        case (nil, nil): break
        case (nil, _): return true  // numbers first
        case (_, nil): return false
        case (let x?, let y?): if x != y { return x < y }
        }
        if a.number != b.number { return a.number < b.number }
        return a.unit < b.unit
    }
}

/// Builds the pprof tables from the OTLP dictionary: ids are assigned in dictionary order
/// over what the converted samples use, so relative table order (the main binary's mapping
/// first) survives.
private struct PprofWriter {
    let converter: OTLPToPprofConverter
    let limits: ConversionLimits
    /// Not a converted pprof: OTLP names (`thread.id`, ...) become pprof's (`tid`, ...).
    let general: Bool
    private var strings = StringTable()
    private var mappings: [Perftools_Profiles_Mapping] = []
    private var functions: [Perftools_Profiles_Function] = []
    private var locations: [Perftools_Profiles_Location] = []
    private var locationIDs: [Int32: UInt64] = [:]
    private var stackIDs: [Int32: [UInt64]] = [:]
    /// Labels of an attribute, by attribute index and the index of the sample's
    /// `pprof.sample.label_units` attribute (0: none): each is computed once.
    private var attributeLabels: [LabelSource: [PprofLabel]] = [:]
    private var unitLists: [Int32: [String: [String]]] = [:]
    /// Attribute indices whose key is `pprof.sample.label_units`.
    private let labelUnitAttributes: Set<Int32>
    /// Location and label entries written so far (pprof repeats a stack in each sample).
    private var entries = 0
    private var docURL = ""

    private struct LabelSource: Hashable {
        var attribute: Int32
        var units: Int32
    }

    init(converter: OTLPToPprofConverter, limits: ConversionLimits, general: Bool) {
        self.converter = converter
        self.limits = limits
        self.general = general
        labelUnitAttributes = converter.attributes(withKey: PprofOTLPSchema.labelUnits)
    }

    /// Counts `count` more output entries; fails beyond the limit.
    mutating func count(_ count: Int) throws(ConversionError) {
        entries += count
        guard entries <= limits.maxEntries else {
            throw .tooLarge(
                "the pprof profile would need more than \(limits.maxEntries) location and label entries "
                    + "(pprof repeats each stack and label in every sample)")
        }
    }

    /// Creates the mappings, functions and locations the given stacks reach.
    mutating func prepare(stacks: some Sequence<Int32>) throws(ConversionError) {
        var usedStacks = Set<Int32>()
        var usedLocations = Set<Int32>()
        for stack in stacks where usedStacks.insert(stack).inserted {
            usedLocations.formUnion(converter.stack(stack))
        }
        var usedMappings = Set<Int32>()
        var usedFunctions = Set<Int32>()
        for index in usedLocations {
            let location = converter.location(index)
            if location.mappingIndex != 0 { usedMappings.insert(location.mappingIndex) }
            for line in location.lines where line.functionIndex != 0 { usedFunctions.insert(line.functionIndex) }
        }

        var mappingIDs: [Int32: UInt64] = [:]
        for index in usedMappings.sorted() {
            let mapping = converter.mapping(index)
            var output = Perftools_Profiles_Mapping()
            output.id = UInt64(mappings.count + 1)
            output.memoryStart = mapping.memoryStart
            output.memoryLimit = mapping.memoryLimit
            output.fileOffset = mapping.fileOffset
            output.filename = strings.index(of: converter.string(mapping.filenameStrindex))
            let attributes = mapping.attributeIndices
            let buildID =
                stringAttribute(PprofOTLPSchema.buildIDGNU, attributes)
                ?? stringAttribute(PprofOTLPSchema.buildIDGo, attributes) ?? ""
            output.buildID = strings.index(of: buildID)
            output.hasFunctions_p = flag(PprofOTLPSchema.hasFunctions, attributes)
            output.hasFilenames_p = flag(PprofOTLPSchema.hasFilenames, attributes)
            output.hasLineNumbers_p = flag(PprofOTLPSchema.hasLineNumbers, attributes)
            output.hasInlineFrames_p = flag(PprofOTLPSchema.hasInlineFrames, attributes)
            mappingIDs[index] = output.id
            mappings.append(output)
        }
        var functionIDs: [Int32: UInt64] = [:]
        for index in usedFunctions.sorted() {
            let function = converter.function(index)
            var output = Perftools_Profiles_Function()
            output.id = UInt64(functions.count + 1)
            output.name = strings.index(of: converter.string(function.nameStrindex))
            output.systemName = strings.index(of: converter.string(function.systemNameStrindex))
            output.filename = strings.index(of: converter.string(function.filenameStrindex))
            output.startLine = function.startLine
            functionIDs[index] = output.id
            functions.append(output)
        }
        for index in usedLocations.sorted() {
            let location = converter.location(index)
            var output = Perftools_Profiles_Location()
            output.id = UInt64(locations.count + 1)
            output.mappingID = mappingIDs[location.mappingIndex] ?? 0
            output.address = location.address
            output.isFolded = flag(PprofOTLPSchema.isFolded, location.attributeIndices)
            for line in location.lines {
                var outputLine = Perftools_Profiles_Line()
                outputLine.functionID = functionIDs[line.functionIndex] ?? 0
                outputLine.line = line.line
                try PprofNewerFields.setVarint(
                    PprofNewerFields.lineColumnField, UInt64(bitPattern: line.column), in: &outputLine)
                output.line.append(outputLine)
            }
            locationIDs[index] = output.id
            locations.append(output)
        }
    }

    /// pprof location ids of an OTLP stack (leaf first in both).
    mutating func locationIDs(stack: Int32) -> [UInt64] {
        if let known = stackIDs[stack] { return known }
        let ids = converter.stack(stack).map { locationIDs[$0] ?? 0 }
        stackIDs[stack] = ids
        return ids
    }

    mutating func valueType(_ type: OTLPValueType) -> Perftools_Profiles_ValueType {
        var output = Perftools_Profiles_ValueType()
        output.type = strings.index(of: converter.string(type.typeStrindex))
        output.unit = strings.index(of: converter.string(type.unitStrindex))
        return output
    }

    mutating func label(_ label: PprofLabel) -> Perftools_Profiles_Label {
        var output = Perftools_Profiles_Label()
        output.key = strings.index(of: label.key)
        if let string = label.string {
            output.str = strings.index(of: string)
        } else {
            output.num = label.number
            output.numUnit = strings.index(of: label.unit)
        }
        return output
    }

    /// Labels of a sample, not interned yet: one per attribute value (arrays give one per
    /// element), then the link's ids.
    mutating func labels(attributes: [Int32], link: Int32) -> [PprofLabel] {
        let units = attributes.first { labelUnitAttributes.contains($0) } ?? 0
        var result: [PprofLabel] = []
        for index in attributes {
            let source = LabelSource(attribute: index, units: units)
            if let cached = attributeLabels[source] {
                result += cached
                continue
            }
            let computed = labels(of: index, elementUnits: elementUnits(units))
            attributeLabels[source] = computed
            result += computed
        }
        return result + linkLabels(link)
    }

    /// `pid` and `process` from a resource's `process.pid` and `process.executable.name`.
    func resourceLabels(_ attributes: [OTLPKeyValue]) -> [PprofLabel] {
        var result: [PprofLabel] = []
        for pair in attributes {
            switch converter.key(of: pair) {
            case PprofOTLPSchema.processID:
                result += labels(key: PprofSchema.Label.pid, value: pair.value, units: [], unit: "")
            case PprofOTLPSchema.executableName:
                result += labels(key: PprofSchema.Label.process, value: pair.value, units: [], unit: "")
            default: break
            }
        }
        return result
    }

    private func labels(of index: Int32, elementUnits: [String: [String]]) -> [PprofLabel] {
        guard let attribute = converter.attribute(index) else { return [] }
        var key = converter.string(attribute.keyStrindex)
        guard !key.isEmpty, !key.hasPrefix(PprofOTLPSchema.prefix) else { return [] }
        let units = elementUnits[key] ?? []
        if general {
            switch key {
            case PprofOTLPSchema.threadID: key = PprofSchema.Label.tid
            case PprofOTLPSchema.threadName: key = PprofSchema.Label.thread
            default: break
            }
        }
        return labels(key: key, value: attribute.value, units: units, unit: converter.string(attribute.unitStrindex))
    }

    /// One label per scalar; an array gives one per element (element `i` takes `units[i]`
    /// when given, else `unit`).
    private func labels(key: String, value: OTLPAnyValue, units: [String], unit: String) -> [PprofLabel] {
        if case .arrayValue(let array) = value.value {
            return array.values.enumerated().compactMap { position, element in
                label(key: key, value: element, unit: position < units.count ? units[position] : unit)
            }
        }
        return label(key: key, value: value, unit: unit).map { [$0] } ?? []
    }

    private func label(key: String, value: OTLPAnyValue, unit: String) -> PprofLabel? {
        switch value.value {
        case nil: nil
        case .intValue(let number): PprofLabel(key: key, string: nil, number: number, unit: unit)
        default: PprofLabel(key: key, string: render(value, depth: 0))
        }
    }

    /// A non-numeric value as label text.
    private func render(_ value: OTLPAnyValue, depth: Int) -> String {
        switch value.value {
        case nil: return ""
        case .stringValue(let text): return text
        case .stringValueStrindex(let index): return converter.string(index)
        case .boolValue(let flag): return flag ? "true" : "false"
        case .intValue(let number): return String(number)
        case .doubleValue(let number): return String(number)
        case .bytesValue(let bytes): return hexString(bytes)
        case .arrayValue(let array):
            guard depth < 8 else { return "[...]" }
            return "[" + array.values.map { render($0, depth: depth + 1) }.joined(separator: ", ") + "]"
        case .kvlistValue(let list):
            guard depth < 8 else { return "{...}" }
            let pairs = list.values.map { converter.key(of: $0) + ": " + render($0.value, depth: depth + 1) }
            return "{" + pairs.joined(separator: ", ") + "}"
        }
    }

    /// `pprof.sample.label_units` (the attribute at `index`, 0 for none): key -> per-element
    /// units.
    private mutating func elementUnits(_ index: Int32) -> [String: [String]] {
        guard index != 0 else { return [:] }
        if let known = unitLists[index] { return known }
        var result: [String: [String]] = [:]
        if case .kvlistValue(let list) = converter.attribute(index)?.value.value {
            for pair in list.values {
                guard case .arrayValue(let array) = pair.value.value else { continue }
                result[converter.key(of: pair)] = array.values.map { converter.stringValue($0) ?? "" }
            }
        }
        unitLists[index] = result
        return result
    }

    private func linkLabels(_ index: Int32) -> [PprofLabel] {
        guard index > 0 && Int(index) < converter.linkCount else { return [] }
        let link = converter.link(index)
        var result: [PprofLabel] = []
        if link.traceID.contains(where: { $0 != 0 }) {
            result.append(PprofLabel(key: PprofOTLPSchema.traceIDLabel, string: hexString(link.traceID)))
        }
        if link.spanID.contains(where: { $0 != 0 }) {
            result.append(PprofLabel(key: PprofOTLPSchema.spanIDLabel, string: hexString(link.spanID)))
        }
        return result
    }

    private func stringAttribute(_ key: String, _ indices: [Int32]) -> String? {
        converter.attributeValue(key, in: indices).flatMap { converter.stringValue($0) }.flatMap {
            $0.isEmpty ? nil : $0
        }
    }

    private func flag(_ key: String, _ indices: [Int32]) -> Bool {
        if case .boolValue(true) = converter.attributeValue(key, in: indices)?.value { return true }
        return false
    }

    /// Comments, doc_url, drop/keep frames and the default sample type from the `pprof.*`
    /// attributes (the first value found wins; comments are collected without repeats).
    mutating func addMetadata(
        of profiles: [OTLPProfile], scopes: [OTLPScopeProfiles], to output: inout Perftools_Profiles_Profile
    ) {
        var comments: [String] = []
        var seenComments = Set<String>()
        var dropFrames: String?
        var keepFrames: String?
        var docURL: String?
        var seenAttributeLists = Set<[Int32]>()
        for profile in profiles where seenAttributeLists.insert(profile.attributeIndices).inserted {
            let attributes = profile.attributeIndices
            if let value = converter.attributeValue(PprofOTLPSchema.comment, in: attributes) {
                let texts: [String]
                if case .arrayValue(let array) = value.value {
                    texts = array.values.map { converter.stringValue($0) ?? render($0, depth: 0) }
                } else {
                    texts = [converter.stringValue(value) ?? render(value, depth: 0)]
                }
                // A converted pprof's comments come back as they were, repeats included.
                if comments.isEmpty {
                    comments += texts
                    seenComments.formUnion(texts)
                } else {
                    for text in texts where seenComments.insert(text).inserted { comments.append(text) }
                }
            }
            dropFrames = dropFrames ?? stringAttribute(PprofOTLPSchema.dropFrames, attributes)
            keepFrames = keepFrames ?? stringAttribute(PprofOTLPSchema.keepFrames, attributes)
            docURL = docURL ?? stringAttribute(PprofOTLPSchema.docURL, attributes)
        }
        output.comment = comments.map { strings.index(of: $0) }
        if let dropFrames { output.dropFrames = strings.index(of: dropFrames) }
        if let keepFrames { output.keepFrames = strings.index(of: keepFrames) }
        self.docURL = docURL ?? ""
        for scope in scopes {
            if let pair = scope.scope.attributes.first(where: {
                converter.key(of: $0) == PprofOTLPSchema.defaultSampleType
            }), let name = converter.stringValue(pair.value), !name.isEmpty {
                output.defaultSampleType = strings.index(of: name)
                break
            }
        }
    }

    /// Fills in the tables and the newer fields; the profile is complete.
    mutating func finish(_ output: inout Perftools_Profiles_Profile) throws(ConversionError)
        -> Perftools_Profiles_Profile
    {
        let docURLIndex = docURL.isEmpty ? 0 : strings.index(of: docURL)
        output.mapping = mappings
        output.function = functions
        output.location = locations
        output.stringTable = strings.strings
        try PprofNewerFields.setVarint(PprofNewerFields.docURLField, UInt64(docURLIndex), in: &output)
        return output
    }
}

extension OTLPToPprofConverter {
    /// Indices of the attribute table entries whose key is `key`.
    fileprivate func attributes(withKey key: String) -> Set<Int32> {
        var result = Set<Int32>()
        for (index, attribute) in dictionary.attributeTable.enumerated() where index > 0 {
            if string(attribute.keyStrindex) == key { result.insert(Int32(index)) }
        }
        return result
    }

    fileprivate var linkCount: Int { dictionary.linkTable.count }
    fileprivate func link(_ index: Int32) -> OTLPLink { dictionary.linkTable[Int(index)] }
}
