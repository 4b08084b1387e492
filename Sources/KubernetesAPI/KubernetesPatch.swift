import FoundationEssentials

/// A PATCH body and the content type that tells the API server how to apply it.
public struct KubernetesPatch: Sendable, Hashable {
    /// The `Content-Type` of the request.
    public var contentType: String
    /// The patch document (JSON; for apply, JSON is valid YAML).
    public var body: [UInt8]
    /// Query parameters the patch type needs (`fieldManager`, `force` for apply).
    public var query: [String: String]

    /// RFC 7386 JSON merge patch (`application/merge-patch+json`): objects merge, `null`
    /// deletes a field, lists are replaced whole. Works on every resource.
    public static func merge(_ document: [UInt8]) -> KubernetesPatch {
        KubernetesPatch(contentType: "application/merge-patch+json", body: document, query: [:])
    }

    /// A merge patch of `document` encoded as JSON.
    public static func merge(encoding document: some Encodable) throws(KubernetesAPIError) -> KubernetesPatch {
        .merge(try encodedJSON(document))
    }

    /// RFC 6902 JSON patch (`application/json-patch+json`): a list of operations, applied in
    /// order, all or nothing. A `test` operation on `/metadata/resourceVersion` makes it
    /// conditional.
    public static func json(_ operations: [JSONPatchOperation]) throws(KubernetesAPIError) -> KubernetesPatch {
        KubernetesPatch(contentType: "application/json-patch+json", body: try encodedJSON(operations), query: [:])
    }

    /// Strategic merge patch (`application/strategic-merge-patch+json`): built-in types only;
    /// custom resources answer 415.
    public static func strategicMerge(_ document: [UInt8]) -> KubernetesPatch {
        KubernetesPatch(contentType: "application/strategic-merge-patch+json", body: document, query: [:])
    }

    /// Server-side apply (`application/apply-patch+yaml`): `document` is the full intent of
    /// `fieldManager` (with `apiVersion`, `kind` and `metadata.name`); fields it no longer
    /// sets are removed if it owned them. `force` takes over fields other managers own
    /// instead of failing with 409.
    public static func apply(_ document: [UInt8], fieldManager: String, force: Bool = false) -> KubernetesPatch {
        var query = ["fieldManager": fieldManager]
        if force { query["force"] = "true" }
        return KubernetesPatch(contentType: "application/apply-patch+yaml", body: document, query: query)
    }

    static func encodedJSON(_ value: some Encodable) throws(KubernetesAPIError) -> [UInt8] {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Array(try encoder.encode(value))
        } catch {
            throw .invalidRequest(path: "", reason: "the body does not encode as JSON: \(error)")
        }
    }
}

/// One RFC 6902 operation. `path` and `from` are JSON pointers (`/metadata/labels/app`;
/// `~1` stands for `/` and `~0` for `~` in a key: see ``escapedPointerToken(_:)``).
public struct JSONPatchOperation: Sendable, Hashable, Encodable {
    public enum Operation: String, Sendable, Hashable, Encodable {
        case add, remove, replace, move, copy, test
    }

    public var op: Operation
    public var path: String
    /// The value of add, replace and test, as JSON text (encoded verbatim).
    public var value: JSONValue?
    /// The source of move and copy.
    public var from: String?

    public init(op: Operation, path: String, value: JSONValue? = nil, from: String? = nil) {
        self.op = op
        self.path = path
        self.value = value
        self.from = from
    }

    /// A key as one JSON pointer token.
    public static func escapedPointerToken(_ key: String) -> String {
        key.replacing("~", with: "~0").replacing("/", with: "~1")
    }
}

/// A JSON value for patches, built from Swift values.
public indirect enum JSONValue: Sendable, Hashable, Encodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if value.rounded() == value, abs(value) < 1e15 {
                try container.encode(Int64(value))
            } else {
                try container.encode(value)
            }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}
