public import Profiles

/// Sends one serialized `ExportProfilesServiceRequest` to a receiver and says what came of it.
///
/// The contract: ``export(_:)`` makes exactly one attempt, never throws and never retries;
/// every failure comes back classified, so the queue and retry logic in ``OTLPExporter`` can be
/// tested with a fake transport. Compression, headers, TLS and the per-attempt timeout are the
/// transport's business. Calls may overlap (one per concurrent export).
public protocol OTLPExportTransport: Sendable {
    /// Makes one attempt to deliver `request` (uncompressed protobuf bytes, sent as-is).
    func export(_ request: [UInt8]) async -> OTLPExportAttemptOutcome

    /// Closes connections. No export is made afterwards.
    func shutdown() async
}

/// What one export attempt came to.
public enum OTLPExportAttemptOutcome: Sendable, Hashable {
    /// The receiver accepted the request; the result may report a partial success.
    case success(OTLPExportResult)
    /// A transient failure (OTLP spec, "Failures"): try again, after `retryAfter` when the
    /// receiver said so (RetryInfo, Retry-After).
    case retryable(reason: String, retryAfter: Duration?)
    /// The receiver refused the data for good (such as HTTP 400 or INVALID_ARGUMENT): drop it.
    case permanent(reason: String)
}

/// Which receiver answers are worth retrying: the tables of the OTLP protocol spec.
public enum OTLPRetryClassification {
    /// gRPC status codes (the numeric values of `grpc-status`).
    public enum GRPCStatusCode: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16

        /// The canonical upper-case name, such as `UNAVAILABLE`.
        public var description: String {
            switch self {
            case .ok: "OK"
            case .cancelled: "CANCELLED"
            case .unknown: "UNKNOWN"
            case .invalidArgument: "INVALID_ARGUMENT"
            case .deadlineExceeded: "DEADLINE_EXCEEDED"
            case .notFound: "NOT_FOUND"
            case .alreadyExists: "ALREADY_EXISTS"
            case .permissionDenied: "PERMISSION_DENIED"
            case .resourceExhausted: "RESOURCE_EXHAUSTED"
            case .failedPrecondition: "FAILED_PRECONDITION"
            case .aborted: "ABORTED"
            case .outOfRange: "OUT_OF_RANGE"
            case .unimplemented: "UNIMPLEMENTED"
            case .internal: "INTERNAL"
            case .unavailable: "UNAVAILABLE"
            case .dataLoss: "DATA_LOSS"
            case .unauthenticated: "UNAUTHENTICATED"
            }
        }
    }

    /// Whether a failed gRPC export may be retried (OTLP spec, "OTLP/gRPC Response",
    /// "Failures"): CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and
    /// DATA_LOSS are; RESOURCE_EXHAUSTED only when the status carries RetryInfo (the server
    /// can recover); every other code is not.
    public static func isRetryable(_ code: GRPCStatusCode, hasRetryInfo: Bool) -> Bool {
        switch code {
        case .cancelled, .deadlineExceeded, .aborted, .outOfRange, .unavailable, .dataLoss: true
        case .resourceExhausted: hasRetryInfo
        default: false
        }
    }

    /// The outcome of a gRPC export that failed with `code` (RetryInfo's delay, when present,
    /// is honoured per "OTLP/gRPC Throttling").
    public static func grpcFailure(
        code: GRPCStatusCode, message: String, retryInfoDelay: Duration?
    ) -> OTLPExportAttemptOutcome {
        let reason = message.isEmpty ? "gRPC \(code)" : "gRPC \(code): \(message.escapedForMessage)"
        if isRetryable(code, hasRetryInfo: retryInfoDelay != nil) {
            return .retryable(reason: reason, retryAfter: retryInfoDelay)
        }
        return .permanent(reason: reason)
    }

    /// Whether an HTTP status may be retried (OTLP spec, "OTLP/HTTP Response", "Retryable
    /// Response Codes"): 429, 502, 503 and 504; all other 4xx and 5xx MUST NOT be.
    public static func isRetryable(httpStatus: Int) -> Bool {
        [429, 502, 503, 504].contains(httpStatus)
    }

    /// The outcome of an HTTP export answered with a status other than 2xx. `retryAfter` is
    /// the Retry-After header already converted to a delay ("OTLP/HTTP Throttling").
    public static func httpFailure(status: Int, message: String, retryAfter: Duration?) -> OTLPExportAttemptOutcome {
        let reason = "HTTP \(status)" + (message.isEmpty ? "" : ": \(message.escapedForMessage)")
        if isRetryable(httpStatus: status) {
            return .retryable(reason: reason, retryAfter: retryAfter)
        }
        if (300..<400).contains(status) {
            return .permanent(reason: reason + " (the endpoint redirects; configure the final URL)")
        }
        return .permanent(reason: reason)
    }
}
