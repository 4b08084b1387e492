import ArgumentParser
import Export
import Foundation

/// The OTLP exporter flags `record` and `agent` share.
struct OTLPOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Export OTLP profiles to this collector (http://host:4317 for gRPC, http://host:4318 for HTTP).",
            valueName: "URL"))
    var otlpEndpoint: String?

    @Option(help: ArgumentHelp("OTLP transport: grpc or http/protobuf.", valueName: "protocol"))
    var otlpProtocol: String?

    @Option(
        name: .customLong("otlp-header"),
        help: ArgumentHelp("Header sent with every export, such as an API key (repeatable).", valueName: "key=value"))
    var otlpHeaders: [String] = []

    @Option(help: ArgumentHelp("CA certificate (PEM) that signs the collector's certificate.", valueName: "FILE"))
    var otlpCaFile: String?

    @Option(help: ArgumentHelp("Client certificate (PEM) for mutual TLS; needs --otlp-client-key.", valueName: "FILE"))
    var otlpClientCert: String?

    @Option(help: ArgumentHelp("Private key (PEM) of --otlp-client-cert.", valueName: "FILE"))
    var otlpClientKey: String?

    /// The exporter configuration from the flags and OTEL_EXPORTER_OTLP_* variables, or nil
    /// when nothing asks for exporting.
    func exporterConfiguration() throws -> OTLPExporterConfiguration? {
        let environment = ProcessInfo.processInfo.environment
        let endpointVariables = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT"]
        let endpointFromEnvironment = endpointVariables.contains { !(environment[$0] ?? "").isEmpty }
        guard otlpEndpoint != nil || endpointFromEnvironment else { return nil }

        var overrides = OTLPExporterConfiguration.Overrides()
        if let otlpProtocol {
            guard let parsed = OTLPExporterConfiguration.TransportProtocol(rawValue: otlpProtocol.lowercased()) else {
                throw ValidationError("--otlp-protocol \(otlpProtocol): use grpc or http/protobuf")
            }
            overrides.transportProtocol = parsed
        }
        let protocolVariables = ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL"]
        if var endpoint = otlpEndpoint {
            guard let url = URLComponents(string: endpoint), url.host != nil, url.scheme != nil else {
                throw ValidationError(
                    "--otlp-endpoint \(endpoint): not a URL; write it as http://HOST:PORT (https:// for TLS)")
            }
            // Port 4317 is OTLP/gRPC's: infer the protocol when nothing else chose one.
            if overrides.transportProtocol == nil, !protocolVariables.contains(where: { environment[$0] != nil }),
                url.port == 4317
            {
                overrides.transportProtocol = .grpc
            }
            let isHTTP = (overrides.transportProtocol ?? .httpProtobuf) == .httpProtobuf
            if isHTTP, url.path.isEmpty || url.path == "/" {
                endpoint = endpoint.hasSuffix("/") ? endpoint : endpoint + "/"
                endpoint += OTLPEndpoint.profilesSignalPath
            }
            overrides.endpoint = endpoint
        }
        if !otlpHeaders.isEmpty {
            overrides.headers = try otlpHeaders.map { header in
                guard let equals = header.firstIndex(of: "="), equals != header.startIndex else {
                    throw ValidationError("--otlp-header \(header): write it as key=value")
                }
                return OTLPHeader(
                    name: String(header[..<equals]).trimmingCharacters(in: .whitespaces),
                    value: String(header[header.index(after: equals)...]))
            }
        }
        overrides.certificateAuthorityFile = otlpCaFile
        overrides.clientCertificateFile = otlpClientCert
        overrides.clientKeyFile = otlpClientKey
        do {
            return try OTLPExporterConfiguration(environment: environment, overrides: overrides) { warning in
                Terminal.status("warning: \(warning)")
            }
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
