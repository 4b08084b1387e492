import GRPCCore
import GRPCProtobuf
import Profiles
import TestSupport
import Testing

@testable import Export

/// Which answers are retried and how long the exporter waits: the OTLP spec's tables,
/// Retry-After parsing, backoff growth, cap and jitter bounds.
@Suite struct RetryPolicyTests {
    typealias Code = OTLPRetryClassification.GRPCStatusCode

    // MARK: Classification

    static let retryableGRPCCodes: Set<Code> = [
        .cancelled, .deadlineExceeded, .aborted, .outOfRange, .unavailable, .dataLoss,
    ]

    @Test(arguments: Code.allCases)
    func grpcCodesFollowTheSpecTable(code: Code) {
        let expected = Self.retryableGRPCCodes.contains(code)
        if code == .resourceExhausted {
            // Retryable only when the server says it can recover (RetryInfo).
            #expect(OTLPRetryClassification.isRetryable(code, hasRetryInfo: true))
            #expect(!OTLPRetryClassification.isRetryable(code, hasRetryInfo: false))
        } else {
            #expect(OTLPRetryClassification.isRetryable(code, hasRetryInfo: false) == expected)
            #expect(OTLPRetryClassification.isRetryable(code, hasRetryInfo: true) == expected)
        }
    }

    @Test func grpcCodeNumbersMatchTheWire() {
        #expect(Code.allCases.count == 17)
        #expect(Code.unavailable.rawValue == 14 && Code.invalidArgument.rawValue == 3)
        for code in Code.allCases {
            #expect(code.rawValue == RPCError.Code(Status.Code(rawValue: code.rawValue)!)?.rawValue ?? 0)
        }
    }

    @Test func httpStatusesFollowTheSpecTable() {
        for status in 100...599 {
            #expect(
                OTLPRetryClassification.isRetryable(httpStatus: status) == [429, 502, 503, 504].contains(status),
                "HTTP \(status)")
        }
    }

    /// A failed gRPC call as the client sees it: code, message and status details.
    static func rpcError(_ code: RPCError.Code, retryDelay: Duration? = nil) -> RPCError {
        let details: [ErrorDetails] = retryDelay.map { [.retryInfo(delay: $0)] } ?? []
        return RPCError(GoogleRPCStatus(code: code, message: "injected", details: details))
    }

    @Test func grpcErrorsAreClassifiedWithTheirRetryInfo() {
        #expect(
            GRPCExportTransport.outcome(of: Self.rpcError(.unavailable))
                == .retryable(reason: "gRPC UNAVAILABLE: injected", retryAfter: nil))
        #expect(
            GRPCExportTransport.outcome(of: Self.rpcError(.unavailable, retryDelay: .seconds(2)))
                == .retryable(reason: "gRPC UNAVAILABLE: injected", retryAfter: .seconds(2)))
        #expect(
            GRPCExportTransport.outcome(of: Self.rpcError(.resourceExhausted))
                == .permanent(reason: "gRPC RESOURCE_EXHAUSTED: injected"))
        #expect(
            GRPCExportTransport.outcome(of: Self.rpcError(.resourceExhausted, retryDelay: .milliseconds(2500)))
                == .retryable(reason: "gRPC RESOURCE_EXHAUSTED: injected", retryAfter: .milliseconds(2500)))
        // RetryInfo does not make a permanent error retryable.
        #expect(
            GRPCExportTransport.outcome(of: Self.rpcError(.invalidArgument, retryDelay: .seconds(1)))
                == .permanent(reason: "gRPC INVALID_ARGUMENT: injected"))
        // Undecodable status details are ignored, not fatal.
        let garbage = RPCError(
            code: .resourceExhausted, message: "x", metadata: ["grpc-status-details-bin": .binary([0xFF, 0x01])])
        #expect(GRPCExportTransport.outcome(of: garbage) == .permanent(reason: "gRPC RESOURCE_EXHAUSTED: x"))
    }

    static let now: Int64 = 784_111_777 - 100  // 100 s before Sun, 06 Nov 1994 08:49:37 GMT

    @Test func httpResponsesAreClassified() {
        func outcome(_ status: Int, retryAfter: String? = nil, body: [UInt8] = [], type: String? = nil)
            -> OTLPExportAttemptOutcome
        {
            HTTPExportTransport.outcome(
                status: status, contentType: type, retryAfter: retryAfter, body: body, nowUnixSeconds: Self.now)
        }
        #expect(outcome(200) == .success(OTLPExportResult()))
        let partial = OTLPExportResult(rejectedProfiles: 5, errorMessage: "too old")
        #expect(outcome(200, body: partial.serializedResponse()) == .success(partial))
        guard case .success(let unreadable) = outcome(200, body: [0xFF, 0xFF, 0xFF]) else {
            Issue.record("a 200 with an unreadable body is still a success")
            return
        }
        #expect(unreadable.rejectedProfiles == 0 && unreadable.errorMessage.contains("unreadable"))

        #expect(outcome(503, retryAfter: "3") == .retryable(reason: "HTTP 503", retryAfter: .seconds(3)))
        #expect(
            outcome(429, retryAfter: "Sun, 06 Nov 1994 08:49:37 GMT")
                == .retryable(reason: "HTTP 429", retryAfter: .seconds(100)))
        #expect(outcome(429, retryAfter: "soon") == .retryable(reason: "HTTP 429", retryAfter: nil))
        #expect(outcome(502) == .retryable(reason: "HTTP 502", retryAfter: nil))
        #expect(outcome(504, body: Array("gateway".utf8)) == .retryable(reason: "HTTP 504: gateway", retryAfter: nil))
        // Retry-After on a permanent failure changes nothing.
        #expect(
            outcome(400, retryAfter: "1", body: Array(" bad data\n".utf8)) == .permanent(reason: "HTTP 400: bad data"))

        let status = GoogleRPCStatus(code: .invalidArgument, message: "profile_id is all zero", details: [])
        let statusBytes: [UInt8] = (try? status.serializedBytes()) ?? []
        #expect(
            outcome(400, body: statusBytes, type: "application/x-protobuf")
                == .permanent(reason: "HTTP 400: profile_id is all zero"))
        for permanent in [401, 403, 404, 408, 413, 415, 500, 501] {
            guard case .permanent = outcome(permanent) else {
                Issue.record("HTTP \(permanent) must not be retried")
                continue
            }
        }
        guard case .permanent(let reason) = outcome(301) else {
            Issue.record("a redirect is not followed")
            return
        }
        #expect(reason.contains("redirect"))
        // Control characters in a body are escaped before they reach a log.
        #expect(
            outcome(400, body: Array("a\u{1B}[31mb".utf8)) == .permanent(reason: "HTTP 400: a\\u{1b}[31mb"))
    }

    // MARK: Retry-After

    static let retryAfterCases: [(String, Duration?)] = [
        ("120", .seconds(120)), ("0", .zero), (" 5 ", .seconds(5)), ("007", .seconds(7)),
        ("Sun, 06 Nov 1994 08:49:37 GMT", .seconds(100)),  // IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", .seconds(100)),  // RFC 850
        ("Sun Nov  6 08:49:37 1994", .seconds(100)),  // asctime
        ("Sun, 06 Nov 1994 08:48:37 GMT", .seconds(40)),
        ("Sat, 05 Nov 1994 08:49:37 GMT", .zero),  // in the past: retry now
        ("99999999999999999999999", RetryAfter.longest),  // capped later by the policy
        ("", nil), ("   ", nil), ("-5", nil), ("1.5", nil), ("+5", nil), ("5s", nil), ("soon", nil),
        ("Sun, 31 Feb 1994 08:49:37 GMT", nil), ("Sun, 06 Nov 1994 25:00:00 GMT", nil),
        ("Sun, 06 Nov 1994 08:60:00 GMT", nil), ("Sun, 06 Nov 1994 08:49:37 PST", nil),
        ("Sun, 06 Nov 94 08:49:37 GMT", nil), ("Sun, 06 Foo 1994 08:49:37 GMT", nil),
        ("Funday, 06-Nov-94 08:49:37 GMT", nil), ("Sun, 6 Nov 1994 08:49:37 GMT", nil),
        ("Sun, 06 Nov 1994 8:49:37 GMT", nil), ("Sun,06 Nov 1994 08:49:37 GMT", nil),
    ]

    @Test(arguments: retryAfterCases)
    func retryAfterAcceptsSecondsAndAllThreeDateForms(header: String, expected: Duration?) {
        #expect(RetryAfter.delay(header, nowUnixSeconds: Self.now) == expected)
    }

    @Test func rfc850YearsAreReadNearTheCurrentYear() {
        // Sent in 2025: "94" is 1994 (2094 would be more than 50 years ahead), "30" is 2030.
        #expect(
            RetryAfter.unixSeconds(ofHTTPDate: "Sunday, 06-Nov-94 08:49:37 GMT", currentYear: 2025) == 784_111_777)
        #expect(
            RetryAfter.unixSeconds(ofHTTPDate: "Friday, 01-Mar-30 00:00:00 GMT", currentYear: 2025)
                == Int64(RetryAfter.daysSinceEpoch(year: 2030, month: 3, day: 1)) * 86_400)
    }

    @Test func calendarArithmeticMatchesKnownDates() {
        #expect(RetryAfter.daysSinceEpoch(year: 1970, month: 1, day: 1) == 0)
        #expect(RetryAfter.daysSinceEpoch(year: 2000, month: 2, day: 29) * 86_400 == 951_782_400)
        #expect(RetryAfter.daysSinceEpoch(year: 2099, month: 3, day: 1) * 86_400 == 4_076_006_400)
        #expect(RetryAfter.unixSeconds(ofHTTPDate: "Sun, 29 Feb 1998 00:00:00 GMT", currentYear: 2025) == nil)
        #expect(RetryAfter.unixSeconds(ofHTTPDate: "Tue, 29 Feb 2000 00:00:00 GMT", currentYear: 2025) == 951_782_400)
    }

    // MARK: Backoff

    @Test func backoffCeilingGrowsThenIsCapped() {
        let policy = OTLPRetryPolicy(initialBackoff: .seconds(1), maxBackoff: .seconds(30), multiplier: 2)
        let ceilings = (0..<8).map { policy.backoffCeiling(forRetry: $0) }
        #expect(ceilings == [1, 2, 4, 8, 16, 30, 30, 30].map { .seconds($0) })
        #expect(policy.backoffCeiling(forRetry: 1_000_000) == .seconds(30))
        #expect(policy.backoffCeiling(forRetry: -3) == .seconds(1))
        let constant = OTLPRetryPolicy(initialBackoff: .seconds(2), maxBackoff: .seconds(2), multiplier: 1)
        #expect(constant.backoffCeiling(forRetry: 50) == .seconds(2))
    }

    @Test(arguments: [OTLPRetryPolicy.Jitter.full, .equal])
    func jitterStaysWithinItsBounds(jitter: OTLPRetryPolicy.Jitter) {
        let policy = OTLPRetryPolicy(
            initialBackoff: .milliseconds(100), maxBackoff: .seconds(10), multiplier: 3, jitter: jitter)
        var generator = SplitMix64(seed: 42)
        for retry in 0..<10 {
            let ceiling = policy.backoffCeiling(forRetry: retry)
            let lower = jitter == .full ? Duration.zero : ceiling / 2
            var draws: Set<Duration> = []
            for _ in 0..<500 {
                let delay = policy.backoff(forRetry: retry, using: &generator)
                #expect(delay >= lower && delay <= ceiling, "retry \(retry): \(delay) outside \(lower)...\(ceiling)")
                draws.insert(delay)
            }
            #expect(draws.count > 100, "the delays are spread, not fixed")
        }
    }

    @Test func receiverDelaysAreHonouredButBounded() {
        let policy = OTLPRetryPolicy(maxThrottleDelay: .seconds(60))
        var generator = SplitMix64(seed: 1)
        #expect(policy.delay(forRetry: 5, receiverDelay: .seconds(7), using: &generator) == .seconds(7))
        #expect(policy.delay(forRetry: 0, receiverDelay: .seconds(3600), using: &generator) == .seconds(60))
        #expect(policy.delay(forRetry: 0, receiverDelay: .seconds(-5), using: &generator) == .zero)
        let backoff = policy.delay(forRetry: 0, receiverDelay: nil, using: &generator)
        #expect(backoff >= .milliseconds(500) && backoff <= .seconds(1))
    }

    // MARK: Log summaries

    @Test func repeatedMessagesAreCountedNotRepeated() {
        var limiter = RepeatedMessageLimiter(interval: .seconds(60))
        #expect(limiter.record("a", now: .seconds(0)) == .log(previous: nil, previousRepeats: 0, repeatsOfThis: 0))
        for second in 1...10 {
            #expect(limiter.record("a", now: .seconds(second)) == .suppress)
        }
        // A reminder once the interval has passed, with the count.
        #expect(limiter.record("a", now: .seconds(61)) == .log(previous: nil, previousRepeats: 0, repeatsOfThis: 10))
        #expect(limiter.record("a", now: .seconds(62)) == .suppress)
        // A different message reports the run that ended.
        #expect(limiter.record("b", now: .seconds(63)) == .log(previous: "a", previousRepeats: 1, repeatsOfThis: 0))
        #expect(limiter.record("b", now: .seconds(64)) == .suppress)
        let ended = limiter.reset()
        #expect(ended?.message == "b" && ended?.repeats == 1)
        #expect(limiter.reset() == nil)
        #expect(limiter.record("b", now: .seconds(65)) == .log(previous: nil, previousRepeats: 0, repeatsOfThis: 0))
    }
}
