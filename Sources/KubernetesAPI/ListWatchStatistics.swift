import Synchronization

/// Why a watch ended, as the `cause` label of the restart metric says it. Each case says
/// what happened, not what the agent guesses about the network.
public enum WatchRestartCause: String, Sendable, Hashable, CaseIterable {
    /// The server ended the watch normally: its `timeoutSeconds`, or it closed the response
    /// cleanly. Resumed from the last resourceVersion.
    case streamEnded = "stream_ended"
    /// The response broke mid-stream (the connection closed without the response's end: a
    /// server restart, a proxy). Resumed from the last resourceVersion.
    case streamInterrupted = "stream_interrupted"
    /// Nothing arrived, not even a bookmark, for the client's read idle timeout.
    case stalled
    /// 410 Expired (an ERROR event or the watch request's status): re-listed at once.
    case expired
    /// An ERROR event other than 410.
    case errorEvent = "error_event"
    /// The watch request could not connect.
    case connectFailed = "connect_failed"
    /// The watch request's connection closed before any response byte, also on a new
    /// connection.
    case connectionClosedBeforeResponse = "connection_closed_before_response"
    case tlsFailed = "tls_failed"
    /// No response head within the request timeout.
    case timedOut = "timed_out"
    /// 401: the token file is re-read before the next request.
    case unauthorized
    /// 403: RBAC does not allow the watch.
    case forbidden
    /// 429.
    case throttled
    /// 500-599.
    case http5xx = "http_5xx"
    /// Anything else (an unexpected status, a reply that is not JSON).
    case other
}

/// Counters of one ``ListWatch``, readable at any time through ``ListWatch/statistics``.
public struct ListWatchStatistics: Sendable, Hashable {
    /// Why a watch ended and another started (or a list), by cause.
    public struct WatchRestarts: Sendable, Hashable {
        private var counts: [WatchRestartCause: Int] = [:]

        public subscript(cause: WatchRestartCause) -> Int {
            get { counts[cause, default: 0] }
            set { counts[cause] = newValue }
        }

        public var total: Int { counts.values.reduce(0, +) }

        /// Every cause with its count, in ``WatchRestartCause`` order (zeros included): the
        /// `cause` label of a restart metric.
        public var byCause: [(cause: WatchRestartCause, count: Int)] {
            WatchRestartCause.allCases.map { ($0, self[$0]) }
        }
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
    /// Watch streams cut off mid-response (a server restart, a proxy): resumed, not counted
    /// as failures.
    public var streamsInterrupted = 0
    /// Requests sent (list pages and watches, failed or not).
    public var requests = 0
    /// Failed requests and streams, by kind.
    public var unauthorized = 0
    public var forbidden = 0
    public var throttled = 0
    public var serverErrors = 0
    /// No connection could be made, or it closed before the response even on a new
    /// connection.
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
