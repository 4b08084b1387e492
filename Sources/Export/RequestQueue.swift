import Profiles

/// A request waiting in, or taken from, the exporter's queue.
struct QueuedRequest: Sendable {
    /// Position in enqueue order; keeps order when an interrupted request goes back.
    let sequence: UInt64
    let request: OTLPEncodedRequest

    var byteCount: Int { request.bytes.count }
}

/// First-in first-out requests with their total size. Popping is O(1) and releases the
/// request at once (its slot is cleared, so dropped requests never outlive the queue bound);
/// the storage is compacted once half of it is spent.
struct RequestQueue: Sendable {
    private var storage: [QueuedRequest?] = []
    private var head = 0
    /// Bytes of the requests in the queue.
    private(set) var byteCount = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var requests: [QueuedRequest] { storage[head...].compactMap { $0 } }

    mutating func append(_ item: QueuedRequest) {
        storage.append(item)
        byteCount += item.byteCount
    }

    mutating func popFirst() -> QueuedRequest? {
        guard head < storage.count, let item = storage[head] else { return nil }
        storage[head] = nil
        head += 1
        byteCount -= item.byteCount
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return item
    }

    /// Puts back a request that was taken out, in sequence order (usually at the front).
    mutating func putBack(_ item: QueuedRequest) {
        let position =
            storage[head...].firstIndex(where: { ($0?.sequence ?? .max) > item.sequence }) ?? storage.endIndex
        storage.insert(item, at: position)
        byteCount += item.byteCount
    }

    mutating func removeAll() -> [QueuedRequest] {
        let all = storage[head...].compactMap { $0 }
        storage.removeAll()
        head = 0
        byteCount = 0
        return all
    }
}
