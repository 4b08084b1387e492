/// Publish this process's OpenTelemetry context (OTEP 4719) and the per-thread span record
/// (OTEP 4947) for eBPF profilers. No dependency on the agent: applications link this library.
///
/// The process context is one memory mapping named `OTEL_CTX` holding the resource, extra
/// attributes and the thread-context reference data (`threadlocal.schema_version`,
/// `threadlocal.attribute_key_map`). See docs/context-publisher.md.
import CContextPublisher

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Publishes the process context. One context per process: a second `publish` updates it.
public enum ProcessContextPublisher {
    /// Most thread attribute keys (record entries carry a one-byte key index).
    public static let maximumThreadAttributeKeys = Int(OTEL_PROCESS_CONTEXT_MAX_KEYS)

    /// Publishes (or updates) the process context. Resource and attribute pairs are written in
    /// key order. `threadAttributeKeys` is the key map: index i names attribute key i in thread
    /// records; it is append-only across updates (a later call may add keys at the end only).
    ///
    /// Thread-safe; allocates and takes a lock, so call it at start-up or on configuration
    /// changes, not per request.
    @discardableResult
    public static func publish(
        resource: [String: String],
        attributes: [String: String] = [:],
        threadAttributeKeys: [String]
    ) throws(ContextPublisherError) -> ThreadAttributeKeyMap {
        if threadAttributeKeys.count > maximumThreadAttributeKeys {
            throw ContextPublisherError(errno: EINVAL, operation: "otel_process_context_publish")
        }
        let resourcePairs = resource.sorted { $0.key < $1.key }
        let extraPairs = attributes.sorted { $0.key < $1.key }
        // Every string, NUL-terminated, in one buffer; pointers into it are built below.
        var storage: [CChar] = []
        var offsets: [Int] = []
        var embeddedNUL = false
        func append(_ string: String) {
            // C strings end at the first NUL: such a string would be published cut short.
            if string.utf8.contains(0) { embeddedNUL = true }
            offsets.append(storage.count)
            storage.append(contentsOf: string.utf8.map { CChar(bitPattern: $0) })
            storage.append(0)
        }
        for (key, value) in resourcePairs {
            append(key)
            append(value)
        }
        for (key, value) in extraPairs {
            append(key)
            append(value)
        }
        for key in threadAttributeKeys { append(key) }

        if embeddedNUL {
            throw ContextPublisherError(errno: EINVAL, operation: "otel_process_context_publish")
        }
        let rc = storage.withUnsafeBufferPointer { buffer -> Int32 in
            let base = buffer.baseAddress!
            var next = 0
            func pointer() -> UnsafePointer<CChar> {
                defer { next += 1 }
                return base + offsets[next]
            }
            var resourceKVs: [otel_kv] = []
            resourceKVs.reserveCapacity(resourcePairs.count)
            for _ in resourcePairs { resourceKVs.append(otel_kv(key: pointer(), value: pointer())) }
            var extraKVs: [otel_kv] = []
            extraKVs.reserveCapacity(extraPairs.count)
            for _ in extraPairs { extraKVs.append(otel_kv(key: pointer(), value: pointer())) }
            var keys: [UnsafePointer<CChar>?] = []
            keys.reserveCapacity(threadAttributeKeys.count)
            for _ in threadAttributeKeys { keys.append(pointer()) }
            return resourceKVs.withUnsafeBufferPointer { r in
                extraKVs.withUnsafeBufferPointer { e in
                    keys.withUnsafeBufferPointer { k in
                        otel_process_context_publish(
                            r.baseAddress, r.count, e.baseAddress, e.count, k.baseAddress, k.count)
                    }
                }
            }
        }
        if rc != 0 {
            throw ContextPublisherError(errno: -rc, operation: "otel_process_context_publish")
        }
        return ThreadAttributeKeyMap(keys: threadAttributeKeys)
    }

    /// Withdraws the context (timestamp 0, unmap). Mostly for tests and orderly shutdown.
    public static func unpublish() {
        otel_process_context_unpublish()
    }
}

/// The published key map: attribute key names to the one-byte indexes thread records use.
public struct ThreadAttributeKeyMap: Sendable, Equatable {
    /// Index i names attribute key i.
    public let keys: [String]
    private let indexes: [String: UInt8]

    public init(keys: [String]) {
        self.keys = keys
        var indexes: [String: UInt8] = [:]
        // The first occurrence wins; indexes above 255 cannot be encoded.
        for (i, key) in keys.prefix(256).enumerated() where indexes[key] == nil {
            indexes[key] = UInt8(i)
        }
        self.indexes = indexes
    }

    /// The index of `key`, or nil when the key map does not name it.
    public func index(of key: String) -> UInt8? {
        indexes[key]
    }
}
