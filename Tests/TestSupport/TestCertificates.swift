import Foundation

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl command line.
public enum TestCertificates {
    public struct Files: Sendable {
        public var authority: String
        public var serverCertificate: String
        public var serverKey: String
        public var clientCertificate: String
        public var clientKey: String
    }

    public static func make(in directory: TemporaryDirectory) throws -> Files {
        func openssl(_ arguments: [String]) throws {
            let result = try runProgramCapturing("/usr/bin/openssl", arguments)
            guard result.status == 0 else {
                throw FixtureError("openssl \(arguments.joined(separator: " ")) failed: \(result.stderr)")
            }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let files = Files(
            authority: directory.file("ca.pem"), serverCertificate: directory.file("server.pem"),
            serverKey: directory.file("server.key"), clientCertificate: directory.file("client.pem"),
            clientKey: directory.file("client.key"))
        try openssl(
            ["req", "-x509"] + ec + [
                "-keyout", directory.file("ca.key"), "-out", files.authority, "-days", "2",
                "-subj", "/CN=nodeprof-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        for (name, commonName, extensions) in [
            ("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", "nodeprof-test-client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let extensionFile = directory.file("\(name).ext")
            try extensions.write(toFile: extensionFile, atomically: true, encoding: .utf8)
            try openssl(
                ["req"] + ec + [
                    "-keyout", directory.file("\(name).key"), "-out", directory.file("\(name).csr"),
                    "-subj", "/CN=\(commonName)",
                ])
            try openssl([
                "x509", "-req", "-in", directory.file("\(name).csr"), "-CA", files.authority, "-CAkey",
                directory.file("ca.key"), "-CAcreateserial", "-out", directory.file("\(name).pem"), "-days", "2",
                "-extfile", extensionFile,
            ])
        }
        return files
    }
}
