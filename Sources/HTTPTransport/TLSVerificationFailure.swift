public import NIOSSL

/// A server certificate the client refused: the same certificate is refused on every attempt,
/// so retrying cannot help and the caller should say what is wrong with it.
public struct TLSVerificationFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Problem: Sendable, Hashable {
        /// The chain did not verify: an unknown CA, an expired or not yet valid certificate.
        case untrustedCertificate
        /// The certificate does not name the host the client connected to.
        case hostnameMismatch(expected: String)
    }

    public var problem: Problem
    /// What the TLS library said.
    public var detail: String

    public var description: String {
        switch problem {
        case .untrustedCertificate:
            "the server's TLS certificate failed verification (\(detail)): it is not signed by a CA this "
                + "client trusts, or it has expired or is not valid yet; give the CA that signed it "
                + "(OTEL_EXPORTER_OTLP_CERTIFICATE or --otlp-certificate) or renew the certificate"
        case .hostnameMismatch(let expected):
            "the server's TLS certificate does not name \(expected) (\(detail)): connect with a name the "
                + "certificate was issued for, or reissue it with that name"
        }
    }

    /// The certificate failure inside `error` (itself, a NIOSSL handshake or hostname error, or
    /// one of the causes a transport wraps it in, found through `causes`), nil for any other
    /// error.
    public static func find(in error: any Error, causes: (any Error) -> (any Error)? = { _ in nil })
        -> TLSVerificationFailure?
    {
        var current: (any Error)? = error
        var depth = 0
        while let candidate = current, depth < 8 {
            if let failure = candidate as? TLSVerificationFailure { return failure }
            if let failure = classify(candidate) { return failure }
            current = causes(candidate)
            depth += 1
        }
        // A wrapper this code does not know still prints its cause.
        let text = String(describing: error)
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return TLSVerificationFailure(problem: .untrustedCertificate, detail: "CERTIFICATE_VERIFY_FAILED")
        }
        if text.contains("failedToValidateHostname") {
            return TLSVerificationFailure(
                problem: .hostnameMismatch(expected: "the host it connected to"), detail: "failedToValidateHostname")
        }
        return nil
    }

    private static func classify(_ error: any Error) -> TLSVerificationFailure? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            // "Couldn't find NAME in certificate from peer"
            let text = String(describing: extra)
            var expected = "the host it connected to"
            if let start = text.firstRange(of: "Couldn't find "),
                let end = text.firstRange(of: " in certificate from peer")
            {
                expected = String(text[start.upperBound..<end.lowerBound])
            }
            return TLSVerificationFailure(
                problem: .hostnameMismatch(expected: expected), detail: "failedToValidateHostname")
        }
        if case .handshakeFailed(let boring)? = error as? NIOSSLError {
            let text = String(describing: boring)
            if text.contains("CERTIFICATE_VERIFY_FAILED") {
                return TLSVerificationFailure(problem: .untrustedCertificate, detail: "CERTIFICATE_VERIFY_FAILED")
            }
        }
        return nil
    }
}
