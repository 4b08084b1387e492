import CSymbolization
import Glibc

/// Turns mangled symbol names into readable ones, with a bounded cache.
///
/// - C++ (`_Z...`): the C++ runtime's `__cxa_demangle`.
/// - Rust legacy (`_ZN...17h<16 hex>E`): the same demangler, then the `::h<hash>` suffix is
///   dropped and Rust's `$LT$`-style escapes are decoded, as rustc's own demangler prints.
/// - Swift (`$s`, `_$s`, `$S`, `_$S`, `$e`, `_$e`, `_T0`): the Swift runtime's `swift_demangle`.
/// - Rust v0 (`_R...`) and anything else are returned unchanged.
///
/// Holds its cache, so it is a reference type; confine an instance to one thread.
public final class Demangler {
    /// Names kept per cache generation; the cache holds at most twice this many.
    public let generationCapacity: Int
    // Two generations approximate LRU without bookkeeping per lookup: when the current
    // generation fills up it becomes the previous one and the old previous one is dropped;
    // hits in the previous generation are promoted.
    private var current: [String: String] = [:]
    private var previous: [String: String] = [:]

    public init(cacheCapacity: Int = 32_768) {
        generationCapacity = max(1, cacheCapacity / 2)
    }

    /// Number of cached names.
    public var cacheCount: Int { current.count + previous.count }

    /// The demangled form of `name`, or `name` itself when it is not mangled in a scheme
    /// this demangler knows.
    public func demangle(_ name: String) -> String {
        if let cached = current[name] { return cached }
        let result = previous[name] ?? Self.demangleUncached(name)
        if current.count >= generationCapacity {
            previous = current
            current = [:]
            current.reserveCapacity(generationCapacity)
        }
        current[name] = result
        return result
    }

    /// Longest name handed to a runtime demangler. Symbol names come from files any
    /// container can ship, and the demanglers recurse on nesting; real names stay far below.
    public static let maximumMangledLength = 16 * 1024

    /// Demangles without touching a cache.
    public static func demangleUncached(_ name: String) -> String {
        let utf8 = name.utf8
        guard utf8.count <= maximumMangledLength else { return name }
        if isSwiftMangled(utf8) {
            return swift(name) ?? name
        }
        if utf8.starts(with: "_Z".utf8) {
            guard let demangled = cxx(name) else { return name }
            return isRustLegacy(utf8) ? rustLegacyCleanup(demangled) : demangled
        }
        return name
    }

    private static let swiftPrefixes = ["$s", "_$s", "$S", "_$S", "$e", "_$e", "_T0"].map {
        Array($0.utf8)
    }

    static func isSwiftMangled(_ utf8: String.UTF8View) -> Bool {
        swiftPrefixes.contains { utf8.starts(with: $0) }
    }

    private static func swift(_ name: String) -> String? {
        var name = name
        return name.withUTF8 { buffer -> String? in
            guard let base = buffer.baseAddress else { return nil }
            let raw = UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self)
            guard let result = nodeprof_symbolization_swift_demangle(raw, buffer.count) else { return nil }
            defer { free(result) }
            return String(cString: result)
        }
    }

    private static func cxx(_ name: String) -> String? {
        name.withCString { mangled -> String? in
            guard let result = nodeprof_symbolization_cxa_demangle(mangled) else { return nil }
            defer { free(result) }
            return String(cString: result)
        }
    }

    /// `_ZN` ... `17h` + 16 hex digits + `E`: the hash Rust appends to every legacy path.
    static func isRustLegacy(_ utf8: String.UTF8View) -> Bool {
        let bytes = Array(utf8)
        guard bytes.count > 3 + 20, bytes.starts(with: Array("_ZN".utf8)), bytes.last == UInt8(ascii: "E")
        else { return false }
        let hash = bytes[(bytes.count - 20)..<(bytes.count - 1)]
        guard hash.starts(with: Array("17h".utf8)) else { return false }
        return hash.dropFirst(3).allSatisfy { isHexDigit($0) }
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    /// Drops `::h<16 hex>` and decodes Rust's escapes in each path component.
    static func rustLegacyCleanup(_ demangled: String) -> String {
        var text = Array(demangled.utf8)
        if text.count >= 19, text[text.count - 19..<text.count - 16].elementsEqual("::h".utf8),
            text.suffix(16).allSatisfy(isHexDigit)
        {
            text.removeLast(19)
        }
        var output: [UInt8] = []
        output.reserveCapacity(text.count)
        var index = 0
        var componentStart = true
        while index < text.count {
            let byte = text[index]
            // Components that would start with `$` are emitted as `_$` by rustc.
            if componentStart, byte == UInt8(ascii: "_"), index + 1 < text.count,
                text[index + 1] == UInt8(ascii: "$")
            {
                index += 1
                componentStart = false
                continue
            }
            componentStart = false
            if byte == UInt8(ascii: ":"), index + 1 < text.count, text[index + 1] == UInt8(ascii: ":") {
                output.append(contentsOf: "::".utf8)
                index += 2
                componentStart = true
                continue
            }
            if byte == UInt8(ascii: "."), index + 1 < text.count, text[index + 1] == UInt8(ascii: ".") {
                output.append(contentsOf: "::".utf8)
                index += 2
                componentStart = true
                continue
            }
            if byte == UInt8(ascii: "$"),
                let close = text[(index + 1)...].firstIndex(of: UInt8(ascii: "$")),
                let decoded = decodeRustEscape(text[(index + 1)..<close])
            {
                output.append(contentsOf: decoded)
                index = close + 1
                continue
            }
            output.append(byte)
            index += 1
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static func decodeRustEscape(_ code: ArraySlice<UInt8>) -> [UInt8]? {
        switch String(decoding: code, as: UTF8.self) {
        case "SP": return Array("@".utf8)
        case "BP": return Array("*".utf8)
        case "RF": return Array("&".utf8)
        case "LT": return Array("<".utf8)
        case "GT": return Array(">".utf8)
        case "LP": return Array("(".utf8)
        case "RP": return Array(")".utf8)
        case "C": return Array(",".utf8)
        case let escape where escape.hasPrefix("u") && escape.count > 1 && escape.count <= 7:
            guard let value = UInt32(escape.dropFirst(), radix: 16),
                let scalar = Unicode.Scalar(value)
            else { return nil }
            return Array(String(Character(scalar)).utf8)
        default: return nil
        }
    }
}
