import Synchronization

/// Counters of one ``ListWatch``, readable at any time through ``ListWatch/statistics``.
public struct ListWatchStatistics: Sendable, Hashable {
    /// Why a watch ended and another started (or a list).
    public struct WatchRestarts: Sendable, Hashable {
        /// Ended normally: the server's `timeoutSeconds`, or it closed the response.
        public var closed = 0
        /// 410 Expired, as an ERROR event or as the watch request's status: re-listed.
        public var expired = 0
        /// An ERROR event other than 410.
        public var errorEvent = 0
        /// Nothing arrived, not even a bookmark, for the client's read idle timeout.
        public var stalled = 0
        /// 401: the token file is re-read before the next request.
        public var unauthorized = 0
        /// The watch request or stream failed (connection, TLS, 403, 429, 5xx, ...).
        public var failed = 0

        public var total: Int { closed + expired + errorEvent + stalled + unauthorized + failed }
    }

    /// Applied watch events by type.
    public struct Events: Sendable, Hashable {
        public var added = 0
        public var modified = 0
        public var deleted = 0
    }

    /// Complete LISTs, each emitted as ``ListWatchEvent/replaced(_:)``.
    public var lists = 0
    /// LISTs after the first (after a 410 or a failed list).
    public var relists = 0
    /// LIST pages received.
    public var listPages = 0
    /// Lists started again from scratch because a `continue` token expired (410).
    public var listRestarts = 0
    /// Watch requests the server accepted.
    public var watchesStarted = 0
    public var watchRestarts = WatchRestarts()
    public var events = Events()
    public var bookmarks = 0
    /// Frames that are not a JSON object, objects that are not valid JSON, events without a
    /// `type`, objects cut short by the end of a stream.
    public var malformed = 0
    /// Events whose `type` is none of ADDED, MODIFIED, DELETED, BOOKMARK, ERROR.
    public var unknownType = 0
    /// Objects (in lists and events) that do not decode as the watched type, or lack
    /// `metadata.uid` or `metadata.name`.
    public var decodeFailures = 0
    /// Events larger than the event size cap, skipped.
    public var oversized = 0
    /// Waits before a retry.
    public var backoffs = 0
    /// Requests sent (list pages and watches, failed or not).
    public var requests = 0
    /// Failed requests and streams, by kind.
    public var unauthorized = 0
    public var forbidden = 0
    public var throttled = 0
    public var serverErrors = 0
    public var connectionFailures = 0
    public var timeouts = 0
    public var otherFailures = 0
    /// The resourceVersion the next watch starts from (opaque).
    public var resourceVersion: String?
    /// Wall-clock time (ns since the Unix epoch) of the last completed list, event or bookmark:
    /// the consumer's view was current then.
    public var lastSyncUnixNanoseconds: UInt64?

    public init() {}
}

/// The statistics shared by a list-watch's iterator (which writes) and its readers.
final class ListWatchStatisticsBox: Sendable {
    private let state = Mutex(ListWatchStatistics())

    var snapshot: ListWatchStatistics { state.withLock { $0 } }

    func update(_ body: (inout ListWatchStatistics) -> Void) {
        state.withLock { body(&$0) }
    }
}
