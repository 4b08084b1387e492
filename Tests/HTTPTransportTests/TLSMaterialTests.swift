import AsyncHTTPClient
import Foundation
import HTTPTransport
import NIOSSL
import NodeprofCore
import TestSupport
import Testing

/// The TLS builder both the Kubernetes client and the OTLP exporter use: files are read once,
/// checked to be PEM, and turned into a NIOSSL configuration.
@Suite struct TLSMaterialTests {
    @Test func readsFilesAndInlineDataAndBuildsAConfiguration() throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-tls")
        let files = try TestCertificates.make(in: directory)
        let inlineKey = Array(try Data(contentsOf: URL(fileURLWithPath: files.clientKey)))
        let material = try TLSMaterial(
            ClientTLSSettings(
                certificateAuthority: .file(files.authority), clientCertificate: .file(files.clientCertificate),
                clientKey: .data(inlineKey)))
        #expect(material.certificateAuthority == Array(try Data(contentsOf: URL(fileURLWithPath: files.authority))))
        #expect(material.clientKey == inlineKey)
        let configuration = try material.makeConfiguration()
        guard case .certificates(let roots)? = configuration.trustRoots else {
            Issue.record("the CA is not the trust root: \(String(describing: configuration.trustRoots))")
            return
        }
        #expect(roots.count == 1)
        #expect(configuration.certificateChain.count == 1)
        #expect(configuration.privateKey != nil)
        #expect(configuration.certificateVerification == .fullVerification)
    }

    @Test func nothingGivenTrustsTheSystemAndSkipTurnsVerificationOff() throws {
        let plain = try TLSMaterial(ClientTLSSettings()).makeConfiguration()
        #expect(plain.trustRoots == nil || plain.trustRoots == .default)
        #expect(plain.certificateChain.isEmpty)
        let insecure = try TLSMaterial(ClientTLSSettings(skipServerVerification: true)).makeConfiguration()
        #expect(insecure.certificateVerification == .none)
    }

    @Test func aCertificateWithoutItsKeyIsNotPresented() throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-tls")
        let files = try TestCertificates.make(in: directory)
        let configuration = try TLSMaterial(ClientTLSSettings(clientCertificate: .file(files.clientCertificate)))
            .makeConfiguration()
        #expect(configuration.certificateChain.isEmpty)
    }

    @Test func hostileOrWrongFilesFailWithTheirRoleAndPath() throws {
        let directory = try TemporaryDirectory(prefix: "nodeprof-tls")
        let files = try TestCertificates.make(in: directory)
        let der = directory.file("ca.der")
        try Data([0x30, 0x82, 0x01, 0x0a, 0x02, 0x82]).write(to: URL(fileURLWithPath: der))
        let huge = directory.file("huge.pem")
        try Data(repeating: 0x41, count: TLSMaterial.sizeLimit + 1).write(to: URL(fileURLWithPath: huge))
        let garbage = directory.file("garbage.pem")
        try "-----BEGIN CERTIFICATE-----\nnot base64 at all !!!\n-----END CERTIFICATE-----\n".write(
            toFile: garbage, atomically: true, encoding: .utf8)

        #expect(throws: TLSSetupError.notPEM(role: .certificateAuthority, path: der)) {
            try TLSMaterial(ClientTLSSettings(certificateAuthority: .file(der)))
        }
        #expect(throws: TLSSetupError.notPEM(role: .clientKey, path: nil)) {
            try TLSMaterial(ClientTLSSettings(clientKey: .data([])))
        }
        do {
            _ = try TLSMaterial(ClientTLSSettings(certificateAuthority: .file("/nonexistent/ca.pem")))
            Issue.record("a missing file was read")
        } catch {
            guard case .unreadableFile(.certificateAuthority, "/nonexistent/ca.pem", let readError) = error,
                readError.isNotFound
            else {
                Issue.record("\(error)")
                return
            }
            #expect(error.description.contains("CA certificate"))
        }
        do {
            _ = try TLSMaterial(ClientTLSSettings(clientCertificate: .file(huge)))
            Issue.record("a file over the limit was read")
        } catch {
            guard case .unreadableFile(.clientCertificate, huge, .tooLarge) = error else {
                Issue.record("\(error)")
                return
            }
        }
        // PEM-looking but not a certificate: found when the configuration is built.
        let material = try TLSMaterial(ClientTLSSettings(certificateAuthority: .file(garbage)))
        #expect {
            try material.makeConfiguration()
        } throws: { error in
            guard case .invalidCertificateAuthority = error as? TLSSetupError else { return false }
            return true
        }
        // A key that does not load (the certificate given as the key).
        let mismatched = try TLSMaterial(
            ClientTLSSettings(clientCertificate: .file(files.clientCertificate), clientKey: .file(files.authority)))
        #expect {
            try mismatched.makeConfiguration()
        } throws: { error in
            guard case .invalidClientCertificateOrKey = error as? TLSSetupError else { return false }
            return "\(error)".contains("check they match")
        }
    }
}

@Suite struct LazyHTTPClientTests {
    @Test func createdByTheFirstUseAndRefusedAfterShutdown() async throws {
        let holder = LazyHTTPClient(tls: nil, connectTimeout: .seconds(1), readTimeout: .seconds(1))
        #expect(!holder.isCreated)
        let first = try #require(holder.client())
        #expect(holder.isCreated)
        #expect(holder.client() === first, "one shared client")
        let fresh = try #require(holder.freshConnectionClient())
        #expect(fresh !== first)
        #expect(holder.freshConnectionConfiguration.maximumUsesPerConnection == 1, "one request per connection")
        #expect(holder.configuration.maximumUsesPerConnection == nil)
        #expect(holder.configuration.connectionPool.retryConnectionEstablishment == false)
        #expect("\(holder.configuration.decompression)".contains("disabled"))
        await holder.shutdown()
        #expect(holder.client() == nil)
        #expect(holder.freshConnectionClient() == nil)
        await holder.shutdown()  // twice is harmless
    }

    @Test func aHolderNeverUsedNeedsNoShutdown() {
        // An HTTPClient that is released without shutdown traps; none was created here.
        let holder = LazyHTTPClient(tls: nil, connectTimeout: .seconds(1), readTimeout: .seconds(1))
        #expect(!holder.isCreated)
    }

    @Test func durationsSaturate() {
        #expect(Duration.seconds(2).saturatingNanoseconds == 2_000_000_000)
        #expect(Duration.seconds(Int64.max).saturatingNanoseconds == .max)
        #expect(Duration.seconds(Int64.min).saturatingNanoseconds == .min)
    }
}
