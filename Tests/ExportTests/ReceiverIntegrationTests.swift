import Foundation
import Logging
import Profiles
import TestSupport
import Testing

@testable import Export

typealias TransportProtocol = OTLPExporterConfiguration.TransportProtocol

/// A configuration for `receiver` over `transportProtocol`, read from the environment
/// variables as the agent would, with fast retries for tests.
func receiverConfiguration(
    _ receiver: OTLPTestReceiver, _ transportProtocol: TransportProtocol, extraEnvironment: [String: String] = [:]
) throws -> OTLPExporterConfiguration {
    let port = transportProtocol == .grpc ? receiver.grpcPort : receiver.httpPort
    var environment = [
        "OTEL_EXPORTER_OTLP_PROTOCOL": transportProtocol.rawValue,
        // For HTTP the generic endpoint is a base URL: /v1development/profiles is appended.
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(port)",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "10000",
    ]
    environment.merge(extraEnvironment) { $1 }
    var configuration = try OTLPExporterConfiguration(environment: environment)
    configuration.retry = OTLPRetryPolicy(
        initialBackoff: .milliseconds(200), maxBackoff: .seconds(1), multiplier: 2, jitter: .equal,
        maxElapsedTime: .seconds(120), maxThrottleDelay: .seconds(10))
    return configuration
}

/// The exporter against the real test receiver (hack/otlp/receiver.py) over both
/// protocols: retries, permanent errors, throttling, partial success, gzip and headers,
/// TLS. One test at a time (each starts its own receiver).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ReceiverIntegrationTests {
    static let protocols: [TransportProtocol] = [.grpc, .httpProtobuf]

    /// Sends `requests` through a fresh exporter and returns its statistics once flushed.
    static func export(
        _ requests: [OTLPEncodedRequest], with configuration: OTLPExporterConfiguration
    ) async throws -> OTLPExporterStatistics {
        let exporter = try OTLPExporter(configuration: configuration, logger: Logger(label: "export-test"))
        return try await whileRunning(exporter) { exporter in
            for request in requests { await exporter.enqueue(request) }
            let flushed = await exporter.flush(timeout: .seconds(60))
            #expect(flushed.isComplete)
            return await exporter.statistics
        }
    }

    @Test(arguments: protocols)
    func aTransientFailureIsRetriedAndDeliveredOnce(transportProtocol: TransportProtocol) async throws {
        let request = try TestRequests.make(samples: 300)
        try await withReceiver { receiver in
            try await receiver.addFaults(
                transportProtocol == .grpc
                    ? #"[{"grpc_status": "UNAVAILABLE", "message": "warming up"}]"#
                    : #"[{"http_status": 503, "message": "warming up"}]"#)
            let statistics = try await Self.export([request], with: receiverConfiguration(receiver, transportProtocol))

            let records = try await receiver.records()
            #expect(records.map(\.outcome) == [transportProtocol == .grpc ? "grpc UNAVAILABLE" : "http 503", "ok"])
            #expect(records.filter { $0.outcome == "ok" }.count == 1, "delivered exactly once")
            #expect(records.last?.summary?.totalWeight == request.sampleCount)
            #expect(records.last?.violations == [], "the builder's request is valid")
            #expect(statistics.attempts == 2 && statistics.retries == 1)
            #expect(
                statistics.succeeded == .init(requests: 1, profiles: request.profileCount, samples: request.sampleCount)
            )
            #expect(statistics.lastError?.contains("warming up") == true)
        }
    }

    @Test(arguments: protocols)
    func badDataIsDroppedWithoutRetry(transportProtocol: TransportProtocol) async throws {
        let first = try TestRequests.make(samples: 30)
        let second = try TestRequests.make(samples: 40)
        try await withReceiver { receiver in
            try await receiver.addFaults(
                transportProtocol == .grpc
                    ? #"[{"grpc_status": "INVALID_ARGUMENT", "message": "profile rejected by policy"}]"#
                    : #"[{"http_status": 400, "body": "profile rejected by policy"}]"#)
            // The second request comes after the first, so a retry of the first would show up.
            let statistics = try await Self.export(
                [first, second], with: receiverConfiguration(receiver, transportProtocol))

            let records = try await receiver.records()
            #expect(
                records.map(\.outcome) == [transportProtocol == .grpc ? "grpc INVALID_ARGUMENT" : "http 400", "ok"])
            #expect(statistics.dropped(.permanentError) == .init(requests: 1, profiles: 1, samples: first.sampleCount))
            #expect(statistics.succeeded.samples == second.sampleCount)
            #expect(statistics.attempts == 2 && statistics.retries == 0)
            #expect(statistics.lastError?.contains("profile rejected by policy") == true, "the server's message")
        }
    }

    @Test(arguments: protocols)
    func theReceiversRetryDelayIsWaited(transportProtocol: TransportProtocol) async throws {
        let request = try TestRequests.make(samples: 50)
        try await withReceiver { receiver in
            // gRPC: RESOURCE_EXHAUSTED is retryable only with RetryInfo; HTTP: 429 + Retry-After.
            try await receiver.addFaults(
                transportProtocol == .grpc
                    ? #"[{"grpc_status": "RESOURCE_EXHAUSTED", "retry_delay_seconds": 2}]"#
                    : #"[{"http_status": 429, "retry_after": "2"}]"#)
            let statistics = try await Self.export([request], with: receiverConfiguration(receiver, transportProtocol))

            let records = try await receiver.records()
            #expect(records.count == 2)
            #expect(records.last?.outcome == "ok")
            if records.count == 2 {
                // Backoff alone would have waited at most 1 s; only the receiver's delay explains 2 s.
                let gap = records[1].time - records[0].time
                #expect(gap >= 1.99, "waited \(gap) s between attempts; the receiver asked for 2 s")
            }
            #expect(statistics.retries == 1 && statistics.succeeded.requests == 1)
        }
    }

    @Test(arguments: protocols)
    func aPartialSuccessIsCountedNotRetried(transportProtocol: TransportProtocol) async throws {
        let request = try TestRequests.make(samples: 60)
        try await withReceiver { receiver in
            try await receiver.addFaults(
                #"[{"partial_success": {"rejected_profiles": 5, "error_message": "too old"}}]"#)
            let statistics = try await Self.export([request], with: receiverConfiguration(receiver, transportProtocol))

            let records = try await receiver.records()
            #expect(records.map(\.outcome) == ["partial"])
            #expect(statistics.partiallySucceeded.requests == 1)
            #expect(statistics.rejectedProfiles == 5)
            #expect(statistics.attempts == 1)
        }
    }

    @Test(arguments: protocols)
    func gzipAndCustomHeadersArrive(transportProtocol: TransportProtocol) async throws {
        let request = try TestRequests.make(samples: 500)
        try await withReceiver { receiver in
            let headers = ["OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cr3t, x-tenant=team%20a"]
            let gzip = try receiverConfiguration(receiver, transportProtocol, extraEnvironment: headers)
            #expect(gzip.compression == .gzip, "the default")
            var plain = gzip
            plain.compression = .none
            _ = try await Self.export([request], with: gzip)
            _ = try await Self.export([request], with: plain)

            let records = try await receiver.records()
            #expect(records.map(\.outcome) == ["ok", "ok"])
            guard records.count == 2 else { return }
            #expect(records[0].gzip)
            #expect(records[0].messageBytes == request.bytes.count)
            #expect((records[0].wireBytes ?? .max) < request.bytes.count)
            #expect(!records[1].gzip)
            #expect(records[1].wireBytes == request.bytes.count)
            for record in records {
                #expect(record.headers["x-api-key"] == "s3cr3t")
                #expect(record.headers["x-tenant"] == "team a")
                #expect(record.headers["user-agent"]?.contains("nodeprof") == true)
                if transportProtocol == .httpProtobuf {
                    #expect(record.headers["content-type"] == "application/x-protobuf")
                }
            }
        }
    }

    @Test(arguments: protocols)
    func mutualTLSWithAPrivateCA(transportProtocol: TransportProtocol) async throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-tls")
        let files = try TestCertificates.make(in: directory)
        let request = try TestRequests.make(samples: 20)
        let receiverTLS = OTLPTestReceiver.TLSFiles(
            certificate: files.serverCertificate, key: files.serverKey, clientCertificateAuthority: files.authority)
        try await withReceiver(tls: receiverTLS) { receiver in
            let port = transportProtocol == .grpc ? receiver.grpcPort : receiver.httpPort
            let environment = [
                "OTEL_EXPORTER_OTLP_PROTOCOL": transportProtocol.rawValue,
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:\(port)",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": files.authority,
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": files.clientCertificate,
                "OTEL_EXPORTER_OTLP_CLIENT_KEY": files.clientKey,
            ]
            var configuration = try OTLPExporterConfiguration(environment: environment)
            configuration.retry = OTLPRetryPolicy(
                initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(200), maxElapsedTime: .seconds(2))
            let statistics = try await Self.export([request], with: configuration)
            #expect(statistics.succeeded.requests == 1)

            // Without the private CA the receiver's certificate is not trusted: nothing arrives,
            // and the refusal is permanent (not retried) with a message that names the problem.
            var untrusting = configuration
            untrusting.tls.certificateAuthorityFile = nil
            let refused = try await Self.export([request], with: untrusting)
            #expect(refused.dropped(.permanentError).requests == 1)
            #expect(refused.attempts == 1 && refused.retries == 0)
            #expect(refused.succeeded.requests == 0)
            #expect(
                refused.lastError?.contains("certificate failed verification") == true, "\(refused.lastError ?? "")")

            let records = try await receiver.records()
            #expect(records.map(\.outcome) == ["ok"])
            #expect(records.first?.tls == true)
            #expect(records.first?.clientCertCn == "nodeprof-test-client")
        }
    }
}
