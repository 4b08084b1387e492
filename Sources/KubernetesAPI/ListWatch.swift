import FoundationEssentials
public import Logging
import NodeprofCore

/// What a ``ListWatch`` reports. A consumer that applies them in order holds the server's
/// state: after ``replaced(_:)`` it drops every object it holds that is not in the list.
public enum ListWatchEvent<Object: KubernetesObject>: Sendable {
    /// The full state after a LIST (the first, and every re-list after an expiry).
    case replaced([Object])
    case added(Object)
    case modified(Object)
    case deleted(Object)
}

/// LIST then WATCH of one kind of object, forever: an `AsyncSequence` of
/// ``ListWatchEvent``s that ends only when the iterating task is cancelled.
///
/// The protocol (see docs/kubernetes.md, "The API client"):
/// - LIST with `limit` and `continue` paging, each item decoded as its bytes arrive; an
///   expired continue token (410) lists again from scratch. The list's resourceVersion is
///   where the watch starts.
/// - WATCH with `allowWatchBookmarks=true` and a `timeoutSeconds` drawn at random from
///   ``Configuration/watchTimeoutSeconds`` (so that many agents do not restart together);
///   every event and BOOKMARK moves the resourceVersion forward; bookmarks emit nothing.
/// - A watch that ends normally (timeout, server close) or is cut off mid-stream resumes
///   from the last resourceVersion without a list; so does a stalled one (silence longer
///   than the client's ``KubernetesClientConfiguration/readIdleTimeout``). 410 (ERROR event
///   or status) lists again at once. Other ERROR events, connection failures, 401, 403, 429
///   and 5xx wait (``KubernetesBackoff``, honouring Retry-After) and watch again from the
///   last version; a 401 makes the client re-read its token file first. Each restart is
///   counted by its ``WatchRestartCause``.
/// - A resume is immediate only after a healthy watch (one that applied an event or a
///   bookmark, or lasted a second); otherwise it backs off, so a server that ends every
///   watch at once is not hammered; likewise a third 410 in a row right after a list. The
///   backoff resets after a healthy watch.
/// - Events that are malformed, of an unknown type, too large, or whose object does not
///   decode (or has no uid or name) are counted, logged at a limited rate, and skipped.
///
/// Everything runs in the iterating task: cancelling it cancels the request in flight and
/// ends the sequence (`nil`). Iterate a `ListWatch` once; its statistics are shared.
public struct ListWatch<Object: KubernetesObject>: AsyncSequence, Sendable {
    public typealias Element = ListWatchEvent<Object>
    public typealias Failure = Never

    public struct Configuration: Sendable, Hashable {
        /// The collection, e.g. `/api/v1/pods`.
        public var path: String
        /// E.g. `spec.nodeName=node-1`.
        public var fieldSelector: String?
        public var labelSelector: String?
        /// Objects per LIST page (`limit`); 0 asks for everything at once.
        public var pageSize: Int
        /// The `timeoutSeconds` of each watch is drawn from this range (client-go: 5 to 10
        /// minutes).
        public var watchTimeoutSeconds: ClosedRange<Int>
        public var backoff: KubernetesBackoff
        /// Larger watch events are skipped and counted as oversized.
        public var maxEventBytes: Int
        /// Repeated warnings (skipped events, the same failure) are logged at most this often,
        /// with the count of those not logged.
        public var logInterval: Duration

        public init(
            path: String, fieldSelector: String? = nil, labelSelector: String? = nil, pageSize: Int = 500,
            watchTimeoutSeconds: ClosedRange<Int> = 240...360, backoff: KubernetesBackoff = KubernetesBackoff(),
            maxEventBytes: Int = KubernetesWatchStream.defaultMaxEventBytes, logInterval: Duration = .seconds(60)
        ) {
            self.path = path
            self.fieldSelector = fieldSelector
            self.labelSelector = labelSelector
            self.pageSize = pageSize
            self.watchTimeoutSeconds = watchTimeoutSeconds
            self.backoff = backoff
            self.maxEventBytes = maxEventBytes
            self.logInterval = logInterval
        }

        /// The selectors as query parameters.
        var selectorQuery: [String: String] {
            var query: [String: String] = [:]
            if let fieldSelector, !fieldSelector.isEmpty { query["fieldSelector"] = fieldSelector }
            if let labelSelector, !labelSelector.isEmpty { query["labelSelector"] = labelSelector }
            return query
        }
    }

    public let client: KubernetesClient
    public let configuration: Configuration
    let logger: Logger
    private let box = ListWatchStatisticsBox()
    /// Called after each LIST page is received with its number in the list (1 for the first):
    /// lets tests change the server between pages.
    var listPageObserver: (@Sendable (Int) -> Void)?

    public init(client: KubernetesClient, configuration: Configuration, logger: Logger? = nil) {
        self.client = client
        self.configuration = configuration
        self.logger = logger ?? client.logger
    }

    /// The counters so far; safe to read from any task while the sequence runs.
    public var statistics: ListWatchStatistics { box.snapshot }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(
            client: client, configuration: configuration, logger: logger, box: box, listPageObserver: listPageObserver)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        private enum Phase {
            case list
            case watch
            case streaming
        }

        /// Why a watch ended; decides between resuming, re-listing and backing off.
        private enum Ending {
            case closed
            case interrupted(KubernetesAPIError)
            case expired
            case stalled
            case errorEvent(APIStatus)
            case failed(KubernetesAPIError)
        }

        /// A watch that lasted this long was healthy even without events.
        private static var healthyWatchDuration: UInt64 { 1_000_000_000 }

        private let client: KubernetesClient
        private let configuration: Configuration
        private let logger: Logger
        private let box: ListWatchStatisticsBox
        private let listPageObserver: (@Sendable (Int) -> Void)?
        private let decoder = JSONDecoder()
        private var random = SystemRandomNumberGenerator()
        private var limiter: LogLimiter

        private var phase = Phase.list
        private var stream: KubernetesWatchStream.AsyncIterator?
        private var resourceVersion: String?
        private var hasListed = false
        /// Consecutive failures since the last healthy watch: the backoff attempt number.
        private var failures = 0
        /// Consecutive lists cut short by an expired continue token.
        private var listExpiries = 0
        /// Consecutive watches that ended in 410 without being healthy: a server that
        /// answers every watch with 410 gets backoff, not a hot list/watch loop.
        private var watchExpiries = 0
        private var pendingDelay: Duration?
        private var watchStart: UInt64 = 0
        private var watchApplied = false

        init(
            client: KubernetesClient, configuration: Configuration, logger: Logger, box: ListWatchStatisticsBox,
            listPageObserver: (@Sendable (Int) -> Void)?
        ) {
            self.client = client
            self.configuration = configuration
            self.logger = logger
            self.box = box
            self.listPageObserver = listPageObserver
            limiter = LogLimiter(interval: configuration.logInterval)
        }

        public mutating func next() async -> ListWatchEvent<Object>? {
            while !Task.isCancelled {
                if let delay = pendingDelay {
                    pendingDelay = nil
                    box.update { $0.backoffs += 1 }
                    do {
                        try await Task.sleep(for: delay)
                    } catch {
                        return nil
                    }
                }
                switch phase {
                case .list:
                    if let event = await list() { return event }
                case .watch:
                    await startWatch()
                case .streaming:
                    if let event = await readStream() { return event }
                }
            }
            stream = nil
            return nil
        }

        // MARK: List

        private mutating func list() async -> ListWatchEvent<Object>? {
            let box = self.box
            let observer = listPageObserver
            do {
                // Items are decoded one by one as each page's body arrives: the raw list is
                // never held, only the decoded objects the consumer gets.
                var items: [Object] = []
                var failures: [String] = []
                let version = try await client.listEach(
                    Object.self, path: configuration.path, query: configuration.selectorQuery,
                    limit: configuration.pageSize, maxItemBytes: configuration.maxEventBytes,
                    onRequest: { box.update { $0.requests += 1 } },
                    onPage: { page in
                        box.update { $0.listPages += 1 }
                        observer?(page)
                    }
                ) { item in
                    switch item {
                    case .success(let object):
                        if let reason = Self.identityProblem(object.metadata) {
                            failures.append(reason)
                        } else {
                            items.append(object)
                        }
                    case .failure(let failure):
                        failures.append(failure.reason)
                    }
                }
                for reason in failures { warn("decode", "skipped a listed object that does not decode: \(reason)") }
                resourceVersion = version
                let relist = hasListed
                box.update { statistics in
                    statistics.lists += 1
                    if relist { statistics.relists += 1 }
                    statistics.decodeFailures += failures.count
                    statistics.resourceVersion = version
                    statistics.lastSyncUnixNanoseconds = wallClockNanoseconds()
                }
                hasListed = true
                listExpiries = 0
                phase = .watch
                logger.debug(
                    "listed \(configuration.path)",
                    metadata: ["objects": "\(items.count)", "resourceVersion": "\(version)"])
                return .replaced(items)
            } catch {
                guard let error = apiError(error) else { return nil }
                if case .expired = error {
                    // The continue token outlived the server's history: list from scratch,
                    // at once the first times, with backoff if it keeps happening.
                    box.update { $0.listRestarts += 1 }
                    listExpiries += 1
                    if listExpiries > 2 { backOff(after: error) }
                    logger.debug("list \(configuration.path) expired while paging; listing again from scratch")
                } else {
                    count(error)
                    warn(error)
                    backOff(after: error)
                }
            }
            return nil
        }

        // MARK: Watch

        private mutating func startWatch() async {
            let timeout = Int.random(in: configuration.watchTimeoutSeconds, using: &random)
            box.update { $0.requests += 1 }
            do {
                stream = try await client.watch(
                    path: configuration.path, query: configuration.selectorQuery, resourceVersion: resourceVersion,
                    timeoutSeconds: timeout, maxEventBytes: configuration.maxEventBytes
                ).makeAsyncIterator()
                box.update { $0.watchesStarted += 1 }
                watchStart = monotonicNanoseconds()
                watchApplied = false
                phase = .streaming
            } catch {
                guard let error = apiError(error) else { return }
                watchStart = monotonicNanoseconds()
                watchApplied = false
                if case .expired = error {
                    restart(.expired)
                } else {
                    restart(.failed(error))
                }
            }
        }

        private mutating func readStream() async -> ListWatchEvent<Object>? {
            let frame: JSONObjectFramer.Frame?
            do {
                frame = try await stream?.next()
            } catch {
                guard let error = apiError(error) else { return nil }
                switch error {
                case .timedOut: restart(.stalled)
                case .streamInterrupted: restart(.interrupted(error))
                default: restart(.failed(error))
                }
                return nil
            }
            guard let frame else {
                restart(.closed)
                return nil
            }
            switch frame {
            case .malformed(let byteCount):
                box.update { $0.malformed += 1 }
                warn("malformed", "skipped \(byteCount) bytes of the watch stream that are not a JSON object")
                return nil
            case .oversized(let byteCount):
                box.update { $0.oversized += 1 }
                warn(
                    "oversized",
                    "skipped a watch event of \(byteCount) bytes, over the \(configuration.maxEventBytes) byte limit")
                return nil
            case .object(let bytes):
                return apply(bytes)
            }
        }

        /// Decodes one watch event and returns what it means for the consumer, if anything.
        private mutating func apply(_ bytes: [UInt8]) -> ListWatchEvent<Object>? {
            let envelope: WatchEventEnvelope<Object>
            do {
                envelope = try decoder.decode(WatchEventEnvelope<Object>.self, from: Data(bytes))
            } catch {
                box.update { $0.malformed += 1 }
                warn("malformed", "skipped a watch event that is not valid JSON (\(bytes.count) bytes)")
                return nil
            }
            guard let type = envelope.type else {
                box.update { $0.malformed += 1 }
                warn("malformed", "skipped a watch event without a type")
                return nil
            }
            switch type {
            case "ADDED", "MODIFIED", "DELETED", "BOOKMARK":
                if let version = envelope.resourceVersion, !version.isEmpty {
                    resourceVersion = version
                }
            case "ERROR":
                let status = envelope.status ?? APIStatus(message: "an ERROR event without a Status")
                if status.code == 410 || status.reason == "Expired" || status.reason == "Gone" {
                    restart(.expired)
                } else {
                    restart(.errorEvent(status))
                }
                return nil
            default:
                box.update { $0.unknownType += 1 }
                warn("unknownType", "skipped a watch event of unknown type \"\(type.boundedForMessage(limit: 40))\"")
                return nil
            }
            if type == "BOOKMARK" {
                watchApplied = true
                let version = resourceVersion
                box.update { statistics in
                    statistics.bookmarks += 1
                    statistics.resourceVersion = version
                    statistics.lastSyncUnixNanoseconds = wallClockNanoseconds()
                }
                return nil
            }
            let object: Object
            switch envelope.object {
            case .success(let decoded)?:
                if let problem = Self.identityProblem(decoded.metadata) {
                    box.update { $0.decodeFailures += 1 }
                    warn("decode", "skipped a \(type) event: \(problem)")
                    return nil
                }
                object = decoded
            case .failure(let failure)?:
                box.update { $0.decodeFailures += 1 }
                warn("decode", "skipped a \(type) event whose object does not decode: \(failure.reason)")
                return nil
            case nil:
                box.update { $0.decodeFailures += 1 }
                warn("decode", "skipped a \(type) event without an object")
                return nil
            }
            watchApplied = true
            let version = resourceVersion
            box.update { statistics in
                switch type {
                case "ADDED": statistics.events.added += 1
                case "MODIFIED": statistics.events.modified += 1
                default: statistics.events.deleted += 1
                }
                statistics.resourceVersion = version
                statistics.lastSyncUnixNanoseconds = wallClockNanoseconds()
            }
            switch type {
            case "ADDED": return .added(object)
            case "MODIFIED": return .modified(object)
            default: return .deleted(object)
            }
        }

        /// Ends the current watch and decides what comes next: resume, re-list, or wait.
        private mutating func restart(_ ending: Ending) {
            stream = nil
            let healthy = watchApplied || monotonicNanoseconds() &- watchStart >= Self.healthyWatchDuration
            if healthy {
                failures = 0
                watchExpiries = 0
            }
            watchApplied = false
            switch ending {
            case .closed:
                box.update { $0.watchRestarts[.streamEnded] += 1 }
                phase = .watch
                if !healthy { backOff(after: nil) }
            case .interrupted(let error):
                // The server was reachable and the watch worked: resume like a normal end.
                box.update {
                    $0.watchRestarts[.streamInterrupted] += 1
                    $0.streamsInterrupted += 1
                }
                warn(
                    "interrupted",
                    "the watch of \(configuration.path) was cut off mid-stream: \(error); resuming from resourceVersion \(resourceVersion ?? "none")",
                    level: .notice)
                phase = .watch
                if !healthy { backOff(after: nil) }
            case .stalled:
                box.update {
                    $0.watchRestarts[.stalled] += 1
                    $0.timeouts += 1
                }
                warn(
                    "stalled", "the watch of \(configuration.path) received nothing for the read idle timeout; resuming"
                )
                phase = .watch
                if !healthy { backOff(after: nil) }
            case .expired:
                // The history the watch needed is gone: only a list can tell what changed,
                // and every moment of waiting delays it; so list at once, unless watches
                // keep expiring right away.
                box.update { $0.watchRestarts[.expired] += 1 }
                logger.debug("watch of \(configuration.path) expired (410); listing again")
                phase = .list
                watchExpiries += 1
                if watchExpiries > 2 { backOff(after: nil) }
            case .errorEvent(let status):
                box.update { $0.watchRestarts[.errorEvent] += 1 }
                warn(
                    "errorEvent",
                    "the watch of \(configuration.path) reported an error (\(status.code.map(String.init) ?? "no code") \(status.reason ?? "")): \((status.message ?? "").boundedForMessage()); watching again"
                )
                phase = .watch
                backOff(after: nil)
            case .failed(let error):
                let cause = Self.restartCause(of: error)
                box.update { $0.watchRestarts[cause] += 1 }
                count(error)
                warn(error)
                phase = .watch
                backOff(after: error)
            }
        }

        /// The restart metric's cause for a failed watch request.
        static func restartCause(of error: KubernetesAPIError) -> WatchRestartCause {
            switch error {
            case .connectionFailed: .connectFailed
            case .connectionClosedBeforeResponse: .connectionClosedBeforeResponse
            case .streamInterrupted: .streamInterrupted
            case .tlsFailed: .tlsFailed
            case .timedOut: .timedOut
            case .unauthorized: .unauthorized
            case .forbidden: .forbidden
            case .expired: .expired
            case .tooManyRequests: .throttled
            case .serverError: .http5xx
            default: .other
            }
        }

        /// The failure to handle, or nil when the task is cancelled (`next()` then ends). The
        /// client throws only API errors and cancellation; anything else is still a failure
        /// to back off from, never a reason to loop at once.
        private func apiError(_ error: any Error) -> KubernetesAPIError? {
            if Task.isCancelled { return nil }
            if let error = error as? KubernetesAPIError { return error }
            return .connectionFailed(server: client.configuration.server, reason: "\(error)".boundedForMessage())
        }

        private mutating func backOff(after error: KubernetesAPIError?) {
            pendingDelay = configuration.backoff.delay(
                forAttempt: failures, retryAfter: error?.retryAfter, using: &random)
            failures += 1
        }

        private func count(_ error: KubernetesAPIError) {
            box.update { statistics in
                switch error {
                case .unauthorized: statistics.unauthorized += 1
                case .forbidden: statistics.forbidden += 1
                case .tooManyRequests: statistics.throttled += 1
                case .serverError: statistics.serverErrors += 1
                case .connectionFailed, .tlsFailed, .connectionClosedBeforeResponse: statistics.connectionFailures += 1
                case .streamInterrupted: statistics.streamsInterrupted += 1
                case .timedOut: statistics.timeouts += 1
                default: statistics.otherFailures += 1
                }
            }
        }

        // MARK: Logging

        private mutating func warn(_ error: KubernetesAPIError) {
            let key: String
            let level: Logger.Level
            switch error {
            case .forbidden:
                (key, level) = ("forbidden", .error)
            case .unauthorized:
                (key, level) = ("unauthorized", .warning)
            case .tlsFailed:
                (key, level) = ("tls", .error)
            default:
                (key, level) = ("failure", .warning)
            }
            warn(key, error.description, level: level)
        }

        /// Logs `message` unless a message of the same `key` was logged less than the log
        /// interval ago; the next one logged says how many were not.
        private mutating func warn(_ key: String, _ message: String, level: Logger.Level = .warning) {
            let now = Duration.nanoseconds(Int64(truncatingIfNeeded: monotonicNanoseconds()))
            guard let suppressed = limiter.record(key, now: now) else { return }
            var text = message
            if suppressed > 0 { text += " (and \(suppressed) similar since the last report)" }
            logger.log(level: level, "\(text)", metadata: ["resource": "\(configuration.path)"])
        }

        /// Why an object cannot be tracked (no uid or no name), or nil.
        static func identityProblem(_ metadata: ObjectMeta) -> String? {
            guard let uid = metadata.uid, !uid.isEmpty else { return "the object has no metadata.uid" }
            guard let name = metadata.name, !name.isEmpty else { return "the object has no metadata.name" }
            return nil
        }
    }
}

/// One watch event decoded as far as it goes: the type, the object as the watched type (or
/// why not), the Status of an ERROR, and the resourceVersion of any object that has one.
/// Only a reply that is not a JSON object fails to decode.
struct WatchEventEnvelope<Object: Decodable>: Decodable {
    var type: String?
    var object: Result<Object, DecodeFailure>?
    var status: APIStatus?
    var resourceVersion: String?

    private enum CodingKeys: String, CodingKey {
        case type, object
    }

    private struct MetadataProbe: Decodable {
        struct Metadata: Decodable {
            var resourceVersion: String?
        }
        var metadata: Metadata?
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = try? container.decodeIfPresent(String.self, forKey: .type)
        guard container.contains(.object) else { return }
        resourceVersion = (try? container.decode(MetadataProbe.self, forKey: .object))?.metadata?.resourceVersion
        switch type {
        case "ERROR":
            status = try? container.decode(APIStatus.self, forKey: .object)
        case "ADDED", "MODIFIED", "DELETED":
            do {
                object = .success(try container.decode(Object.self, forKey: .object))
            } catch {
                object = .failure(DecodeFailure(reason: "\(error)".boundedForMessage(limit: 300)))
            }
        default:
            break
        }
    }
}

/// Per-key rate limit of log messages: the first is logged, then at most one per interval.
struct LogLimiter {
    let interval: Duration
    private var entries: [String: (lastLogged: Duration, suppressed: Int)] = [:]

    init(interval: Duration) {
        self.interval = interval
    }

    /// `nil` to suppress, else the number suppressed since the last one logged.
    mutating func record(_ key: String, now: Duration) -> Int? {
        if let entry = entries[key], now - entry.lastLogged < interval {
            entries[key]?.suppressed += 1
            return nil
        }
        let suppressed = entries[key]?.suppressed ?? 0
        entries[key] = (now, 0)
        return suppressed
    }
}
