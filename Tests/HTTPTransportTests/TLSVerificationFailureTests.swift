import HTTPTransport
import NIOSSL
import Testing

/// Which errors are a refused server certificate (permanent for an exporter), and what the
/// message says. The real handshake failures are exercised against the OTLP test receiver
/// (ExportTests, `mutualTLSWithAPrivateCA`).
@Suite struct TLSVerificationFailureTests {
    struct Wrapper: Error, CustomStringConvertible {
        var cause: any Error
        var description: String { "connection failed: \(cause)" }
    }

    struct Opaque: Error, CustomStringConvertible {
        var description: String { "handshake: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED" }
    }

    @Test func aHostnameFailureIsFoundThroughCauses() throws {
        let error = Wrapper(cause: Wrapper(cause: NIOSSLExtraError.failedToValidateHostname))
        let failure = try #require(TLSVerificationFailure.find(in: error, causes: { ($0 as? Wrapper)?.cause }))
        guard case .hostnameMismatch = failure.problem else {
            Issue.record("not a hostname mismatch: \(failure)")
            return
        }
        #expect(failure.description.contains("does not name"))
    }

    @Test func aWrapperThatPrintsItsCauseStillCounts() throws {
        let failure = try #require(TLSVerificationFailure.find(in: Wrapper(cause: Opaque())))
        #expect(failure.problem == .untrustedCertificate)
        #expect(failure.description.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"))
    }

    @Test func otherFailuresAreNotCertificateFailures() {
        #expect(TLSVerificationFailure.find(in: NIOSSLError.uncleanShutdown) == nil)
        #expect(TLSVerificationFailure.find(in: NIOSSLExtraError.invalidSNIHostname) == nil)
        #expect(TLSVerificationFailure.find(in: Wrapper(cause: NIOSSLError.readInInvalidTLSState)) == nil)
        // A cycle of causes ends.
        #expect(TLSVerificationFailure.find(in: Wrapper(cause: NIOSSLError.uncleanShutdown), causes: { $0 }) == nil)
    }
}
