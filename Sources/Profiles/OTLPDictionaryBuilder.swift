package import NodeprofCore
package import ProfilesProtobuf
internal import SwiftProtobuf

#if canImport(FoundationEssentials)
    internal import FoundationEssentials
#else
    internal import Foundation
#endif

/// Builds the one `ProfilesDictionary` an OTLP request shares, interning every entry so each
/// table holds no duplicates, and nothing that no sample uses (entries are only created on
/// demand).
///
/// Entry 0 of every table is the zero value the spec reserves for "unset": the empty
/// string, an all-default mapping, location, function, link and stack, and an attribute
/// with key 0, unit 0 and no value.
package struct OTLPDictionaryBuilder {
    package private(set) var dictionary = OTLPDictionary()

    private var strings: [String: Int32] = ["": 0]
    private var attributes: [AttributeKey: Int32] = [:]
    private var locations: [LocationKey: Int32] = [:]
    /// Arrays locations share instead of allocating their own: the attribute list of each
    /// frame type, the line list of each function.
    private var attributeLists: [Int32: [Int32]] = [:]
    private var lineLists: [Int32: [OTLPLine]] = [:]
    // For entries that arrive as messages (pprof conversion): interned by the message.
    private var mappingMessages: [OTLPMapping: Int32] = [:]
    private var functionMessages: [OTLPFunction: Int32] = [:]
    private var locationMessages: [OTLPLocation: Int32] = [:]
    private var stacks: [[Int32]: Int32] = [:]
    private var links: [OTLPLink: Int32] = [:]

    /// A location as the request knows it: indices only (the profile interned the rest).
    private struct LocationKey: Hashable {
        var address: UInt64
        var mapping: Int32
        var function: Int32
        var attribute: Int32
    }

    private struct AttributeKey: Hashable {
        var key: Int32
        var value: OTLPAnyValue
        var unit: Int32
    }

    package init() {
        dictionary.stringTable = [""]
        dictionary.attributeTable = [OTLPKeyValueAndUnit()]
        dictionary.mappingTable = [OTLPMapping()]
        dictionary.functionTable = [OTLPFunction()]
        dictionary.locationTable = [OTLPLocation()]
        dictionary.stackTable = [OTLPStack()]
        var zeroLink = OTLPLink()
        zeroLink.traceID = Data(count: 16)
        zeroLink.spanID = Data(count: 8)
        dictionary.linkTable = [zeroLink]
    }

    /// The string's index in string_table; "" is 0.
    package mutating func string(_ value: String) -> Int32 {
        if let index = strings[value] { return index }
        let index = Int32(dictionary.stringTable.count)
        dictionary.stringTable.append(value)
        strings[value] = index
        return index
    }

    /// The index of the attribute (key, value, unit) in attribute_table.
    package mutating func attribute(_ key: String, _ value: OTLPAnyValue, unit: String = "") -> Int32 {
        let entry = AttributeKey(key: string(key), value: value, unit: string(unit))
        if let index = attributes[entry] { return index }
        let index = Int32(dictionary.attributeTable.count)
        var attribute = OTLPKeyValueAndUnit()
        attribute.keyStrindex = entry.key
        attribute.value = value
        attribute.unitStrindex = entry.unit
        dictionary.attributeTable.append(attribute)
        attributes[entry] = index
        return index
    }

    /// Appends `mapping` to mapping_table: the caller translates each distinct mapping of
    /// the profile once, so nothing is looked up.
    package mutating func append(_ mapping: OTLPMapping) -> Int32 {
        let index = Int32(dictionary.mappingTable.count)
        dictionary.mappingTable.append(mapping)
        return index
    }

    /// Appends a function named by string index `name` (each profile function is
    /// translated once; its name is unique).
    package mutating func function(name: Int32) -> Int32 {
        var function = OTLPFunction()
        function.nameStrindex = name
        let index = Int32(dictionary.functionTable.count)
        dictionary.functionTable.append(function)
        return index
    }

    /// The index in location_table of the location at `address` in `mapping` (0: none),
    /// in `function` (0: unsymbolized), with its frame-type attribute. Two profile locations
    /// that only differed by a mapping without build id come out equal: they share one.
    package mutating func location(address: UInt64, mapping: Int32, function: Int32, attribute: Int32) -> Int32 {
        let key = LocationKey(address: address, mapping: mapping, function: function, attribute: attribute)
        if let index = locations[key] { return index }
        var location = OTLPLocation()
        location.address = address
        location.mappingIndex = mapping
        if let shared = attributeLists[attribute] {
            location.attributeIndices = shared
        } else {
            location.attributeIndices = [attribute]
            attributeLists[attribute] = location.attributeIndices
        }
        if function != 0 {
            if let shared = lineLists[function] {
                location.lines = shared
            } else {
                var line = OTLPLine()
                line.functionIndex = function
                location.lines = [line]
                lineLists[function] = location.lines
            }
        }
        let index = Int32(dictionary.locationTable.count)
        dictionary.locationTable.append(location)
        locations[key] = index
        return index
    }

    /// The index of `mapping` in mapping_table, interned by the whole message (0 for the
    /// all-default mapping): for entries converted from another format.
    package mutating func mapping(_ mapping: OTLPMapping) -> Int32 {
        Self.intern(mapping, in: &mappingMessages, table: &dictionary.mappingTable)
    }

    /// The index of `function` in function_table, interned by the whole message.
    package mutating func function(_ function: OTLPFunction) -> Int32 {
        Self.intern(function, in: &functionMessages, table: &dictionary.functionTable)
    }

    /// The index of `location` in location_table, interned by the whole message.
    package mutating func location(_ location: OTLPLocation) -> Int32 {
        Self.intern(location, in: &locationMessages, table: &dictionary.locationTable)
    }

    /// The index of `link` in link_table (0 means no link).
    package mutating func link(_ link: OTLPLink) -> Int32 {
        if link.traceID.allSatisfy({ $0 == 0 }) && link.spanID.allSatisfy({ $0 == 0 }) { return 0 }
        return Self.intern(link, in: &links, table: &dictionary.linkTable)
    }

    /// The index of the stack with these locations (leaf first) in stack_table; the empty
    /// stack is 0.
    package mutating func stack(_ locationIndices: [Int32]) -> Int32 {
        if locationIndices.isEmpty { return 0 }
        if let index = stacks[locationIndices] { return index }
        let index = Int32(dictionary.stackTable.count)
        var stack = OTLPStack()
        stack.locationIndices = locationIndices
        dictionary.stackTable.append(stack)
        stacks[locationIndices] = index
        return index
    }

    private static func intern<Entry: Message & Hashable>(
        _ entry: Entry, in index: inout [Entry: Int32], table: inout [Entry]
    ) -> Int32 {
        if entry == Entry() { return 0 }
        if let existing = index[entry] { return existing }
        let position = Int32(table.count)
        table.append(entry)
        index[entry] = position
        return position
    }
}

extension OTLPAnyValue {
    /// The OTLP value of an ``AttributeValue``.
    package init(_ value: AttributeValue) {
        self.init()
        switch value {
        case .string(let string): stringValue = string
        case .bool(let bool): boolValue = bool
        case .int(let int): intValue = int
        case .double(let double): doubleValue = double
        case .bytes(let bytes): bytesValue = Data(bytes)
        case .array(let values):
            var array = OTLPArrayValue()
            array.values = values.map(OTLPAnyValue.init)
            arrayValue = array
        }
    }
}

extension OTLPKeyValue {
    package init(_ attribute: Attribute) {
        self.init()
        key = attribute.key
        value = OTLPAnyValue(attribute.value)
    }
}
