/// A container image reference split the way the semantic conventions want it:
/// `registry.example.com:5000/shop/web:1.4.2@sha256:…` has name
/// `registry.example.com:5000/shop/web` and tag `1.4.2`.
///
/// A reference with neither tag nor digest means `latest` (what the runtime pulls); with only
/// a digest it has no tag.
public struct ImageReference: Sendable, Hashable {
    public var name: String
    public var tag: String?

    public init?(_ reference: String) {
        guard !reference.isEmpty, reference.utf8.count <= 4096 else { return nil }
        var rest = Substring(reference)
        var hasDigest = false
        if let at = rest.firstIndex(of: "@") {
            hasDigest = true
            rest = rest[..<at]
        }
        // A tag is after the last colon of the last path component; a colon before the first
        // slash can be a registry port (`host:5000/app`).
        let lastSlash = rest.lastIndex(of: "/")
        let lastComponentStart = lastSlash.map { rest.index(after: $0) } ?? rest.startIndex
        if let colon = rest[lastComponentStart...].lastIndex(of: ":") {
            name = String(rest[..<colon])
            let tag = rest[rest.index(after: colon)...]
            self.tag = tag.isEmpty ? nil : String(tag)
        } else {
            name = String(rest)
            tag = hasDigest ? nil : "latest"
        }
        guard !name.isEmpty else { return nil }
    }
}

/// `status.containerStatuses[].imageID` as a repo digest: the runtime may prefix it with a
/// scheme (`docker-pullable://repo@sha256:…`); only `repo@digest` forms are digests.
func repoDigest(imageID: String) -> String? {
    var value = Substring(imageID)
    if let scheme = value.firstRange(of: "://") { value = value[scheme.upperBound...] }
    guard value.contains("@"), !value.hasPrefix("@"), value.utf8.count <= 4096 else { return nil }
    return String(value)
}

/// The 64-hex id of `<runtime>://<id>`, lowercased; nil for an empty or malformed value (a
/// container that has not started yet has no id).
func containerID(fromStatus value: String) -> String? {
    guard let scheme = value.firstRange(of: "://") else { return nil }
    let id = value[scheme.upperBound...]
    guard id.utf8.count == 64, id.utf8.allSatisfy({ isHexDigit($0) }) else { return nil }
    return id.lowercased()
}

func isHexDigit(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
        UInt8(ascii: "A")...UInt8(ascii: "F"):
        return true
    default: return false
    }
}
