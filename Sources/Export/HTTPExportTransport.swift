import AsyncHTTPClient
import GRPCCore
import GRPCProtobuf
import Gzip
import HTTPTransport
import NIOCore
import NIOHTTP1
import NodeprofCore
import Profiles

/// OTLP/HTTP with binary protobuf: `POST` to the endpoint through AsyncHTTPClient.
///
/// The body is the request, gzip-compressed when configured (`Content-Encoding: gzip`);
/// redirects are not followed (a POST body would be lost or resent elsewhere); the timeout
/// bounds the whole attempt.
final class HTTPExportTransport: OTLPExportTransport {
    /// Responses are an `ExportProfilesServiceResponse` or a `google.rpc.Status`; both small.
    static let maxResponseBytes = 1 << 20

    /// Created by the first export: a transport that never exports needs no shutdown.
    private let client: LazyHTTPClient
    private let url: String
    private let headers: HTTPHeaders
    private let compression: OTLPExporterConfiguration.Compression
    private let timeout: TimeAmount

    init(configuration: OTLPExporterConfiguration) throws(OTLPConfigurationError) {
        let endpoint = configuration.endpoint
        let tlsConfiguration = endpoint.usesTLS ? try configuration.tls.nioConfiguration() : nil
        let timeout = TimeAmount.nanoseconds(configuration.timeout.saturatingNanoseconds)
        client = LazyHTTPClient(
            tls: tlsConfiguration, connectTimeout: min(configuration.timeout, .seconds(10)),
            readTimeout: configuration.timeout)
        url = endpoint.url
        compression = configuration.compression
        self.timeout = timeout

        var headers = HTTPHeaders()
        for header in configuration.headers {
            headers.add(name: header.name, value: header.value)
        }
        headers.replaceOrAdd(name: "content-type", value: "application/x-protobuf")
        if compression == .gzip { headers.replaceOrAdd(name: "content-encoding", value: "gzip") }
        headers.replaceOrAdd(name: "user-agent", value: "nodeprof")
        self.headers = headers
    }

    func export(_ request: [UInt8]) async -> OTLPExportAttemptOutcome {
        var body = request
        if compression == .gzip {
            do {
                body = try Gzip.compress(request, level: 6)
            } catch {
                return .permanent(reason: "cannot gzip the request: \(error)")
            }
        }
        var httpRequest = HTTPClientRequest(url: url)
        httpRequest.method = .POST
        httpRequest.headers = headers
        httpRequest.body = .bytes(body)

        let response: HTTPClientResponse
        do {
            guard let client = client.client() else {
                return .retryable(reason: "the HTTP transport is shut down", retryAfter: nil)
            }
            response = try await client.execute(httpRequest, timeout: timeout)
        } catch {
            // A refused certificate is refused again on every attempt: permanent.
            if let failure = TLSVerificationFailure.find(in: error) {
                return .permanent(reason: failure.description)
            }
            // Connection refused or reset, other TLS failures, timeout: transient (OTLP spec,
            // "All Other Responses" and "OTLP/HTTP Connection").
            return .retryable(
                reason: "HTTP request failed: \(String(describing: error).escapedForMessage)", retryAfter: nil)
        }
        var responseBody: [UInt8] = []
        if var buffer = try? await response.body.collect(upTo: Self.maxResponseBytes) {
            responseBody = buffer.readBytes(length: buffer.readableBytes) ?? []
        }
        return Self.outcome(
            status: Int(response.status.code), contentType: response.headers.first(name: "content-type"),
            retryAfter: response.headers.first(name: "retry-after"), body: responseBody,
            nowUnixSeconds: Int64(wallClockNanoseconds() / 1_000_000_000))
    }

    func shutdown() async {
        await client.shutdown()
    }

    /// Classifies a response (OTLP spec, "OTLP/HTTP Response"): 2xx carries an
    /// `ExportProfilesServiceResponse`; failures carry a `google.rpc.Status` whose message is
    /// reported, and Retry-After is honoured on retryable ones ("OTLP/HTTP Throttling").
    static func outcome(
        status: Int, contentType: String?, retryAfter: String?, body: [UInt8], nowUnixSeconds: Int64
    ) -> OTLPExportAttemptOutcome {
        if (200..<300).contains(status) {
            do {
                return .success(try OTLPExportResult(serializedResponse: body))
            } catch {
                return .success(OTLPExportResult(errorMessage: "accepted, but the response is unreadable: \(error)"))
            }
        }
        let delay = retryAfter.flatMap { RetryAfter.delay($0, nowUnixSeconds: nowUnixSeconds) }
        return OTLPRetryClassification.httpFailure(
            status: status, message: errorMessage(body: body, contentType: contentType), retryAfter: delay)
    }

    /// The receiver's explanation: the `google.rpc.Status` message of a protobuf body, else
    /// the body as text (escaped and bounded by the classification).
    static func errorMessage(body: [UInt8], contentType: String?) -> String {
        if contentType?.lowercased().hasPrefix("application/x-protobuf") == true,
            let status = try? GoogleRPCStatus(serializedBytes: body)
        {
            return status.message
        }
        return String(decoding: body.prefix(1024), as: UTF8.self).trimmingASCIIWhitespace()
    }
}
