internal import NodeprofCore
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
struct OTLPDictionaryBuilder {
    private(set) var dictionary = OTLPDictionary()

    private var strings: [String: Int32] = ["": 0]
    private var attributes: [AttributeKey: Int32] = [:]
    private var mappings: [OTLPMapping: Int32] = [:]
    private var functions: [OTLPFunction: Int32] = [:]
    private var locations: [OTLPLocation: Int32] = [:]
    private var stacks: [[Int32]: Int32] = [:]
    private var links: [OTLPLink: Int32] = [:]

    private struct AttributeKey: Hashable {
        var key: Int32
        var value: OTLPAnyValue
        var unit: Int32
    }

    init() {
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
    mutating func string(_ value: String) -> Int32 {
        if let index = strings[value] { return index }
        let index = Int32(dictionary.stringTable.count)
        dictionary.stringTable.append(value)
        strings[value] = index
        return index
    }

    /// The index of the attribute (key, value, unit) in attribute_table.
    mutating func attribute(_ key: String, _ value: OTLPAnyValue, unit: String = "") -> Int32 {
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

    /// The index of `mapping` in mapping_table (0 for the all-default mapping).
    mutating func mapping(_ mapping: OTLPMapping) -> Int32 {
        Self.intern(mapping, in: &mappings, table: &dictionary.mappingTable)
    }

    /// The index of `function` in function_table (0 for the all-default function).
    mutating func function(_ function: OTLPFunction) -> Int32 {
        Self.intern(function, in: &functions, table: &dictionary.functionTable)
    }

    /// The index of `location` in location_table (0 for the all-default location).
    mutating func location(_ location: OTLPLocation) -> Int32 {
        Self.intern(location, in: &locations, table: &dictionary.locationTable)
    }

    /// The index of `link` in link_table (0 means no link).
    mutating func link(_ link: OTLPLink) -> Int32 {
        if link.traceID.allSatisfy({ $0 == 0 }) && link.spanID.allSatisfy({ $0 == 0 }) { return 0 }
        return Self.intern(link, in: &links, table: &dictionary.linkTable)
    }

    /// The index of the stack with these locations (leaf first) in stack_table; the empty
    /// stack is 0.
    mutating func stack(_ locationIndices: [Int32]) -> Int32 {
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
    init(_ value: AttributeValue) {
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
    init(_ attribute: Attribute) {
        self.init()
        key = attribute.key
        value = OTLPAnyValue(attribute.value)
    }
}
