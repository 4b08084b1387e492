import Export
import TestSupport
import Testing

/// `OTLPExporterConfiguration(environment:)` against the OTel SDK rules, with hostile values.
@Suite struct ConfigurationTests {
    typealias Configuration = OTLPExporterConfiguration

    static let endpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT"
    static let profilesEndpointVariable = "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT"

    @Test func emptyEnvironmentGivesTheDefaults() throws {
        let configuration = try Configuration(environment: [:])
        #expect(configuration.transportProtocol == .httpProtobuf)
        #expect(configuration.endpoint.url == "http://localhost:4318/v1development/profiles")
        #expect(configuration.compression == .gzip)
        #expect(configuration.timeout == .seconds(10))
        #expect(configuration.headers.isEmpty)
        #expect(configuration.tls == Configuration.TLS())
        #expect(configuration.queueLimitBytes == 64 << 20)

        let grpc = try Configuration(environment: ["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"])
        #expect(grpc.endpoint.url == "http://localhost:4317")
        #expect(!grpc.endpoint.usesTLS)
    }

    /// Environment, then the endpoint URL it must produce.
    static let endpointCases: [([String: String], String)] = [
        // OTEL_EXPORTER_OTLP_ENDPOINT is a base URL for HTTP: the signal path is appended.
        ([endpointVariable: "http://collector:4318"], "http://collector:4318/v1development/profiles"),
        ([endpointVariable: "http://collector:4318/"], "http://collector:4318/v1development/profiles"),
        (
            [endpointVariable: "http://collector:4318/mycollector"],
            "http://collector:4318/mycollector/v1development/profiles"
        ),
        (
            [endpointVariable: "http://collector:4318/mycollector/"],
            "http://collector:4318/mycollector/v1development/profiles"
        ),
        (
            [endpointVariable: "http://collector:4318/base?tenant=a"],
            "http://collector:4318/base/v1development/profiles?tenant=a"
        ),
        (
            [endpointVariable: "https://collector.example.com"],
            "https://collector.example.com:443/v1development/profiles"
        ),
        ([endpointVariable: "HTTP://collector"], "http://collector:80/v1development/profiles"),
        ([endpointVariable: "http://[::1]:4318"], "http://[::1]:4318/v1development/profiles"),
        ([endpointVariable: "  http://10.0.0.1:4318 \n"], "http://10.0.0.1:4318/v1development/profiles"),
        ([endpointVariable: "http://collector:4318#fragment"], "http://collector:4318/v1development/profiles"),
        // The profiles variable is used as-is (root path when it has none) and wins.
        ([profilesEndpointVariable: "http://collector:4318/custom/path"], "http://collector:4318/custom/path"),
        ([profilesEndpointVariable: "http://collector:4318"], "http://collector:4318/"),
        (
            [profilesEndpointVariable: "https://profiles:443/p", endpointVariable: "http://generic:4318"],
            "https://profiles:443/p"
        ),
        // An empty variable counts as unset.
        (
            [profilesEndpointVariable: "", endpointVariable: "http://generic:1"],
            "http://generic:1/v1development/profiles"
        ),
        ([profilesEndpointVariable: "  ", endpointVariable: ""], "http://localhost:4318/v1development/profiles"),
        // gRPC endpoints are used as-is; without a scheme, INSECURE chooses plaintext.
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "http://collector:4317"], "http://collector:4317"),
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "http://collector:4317/"], "http://collector:4317"),
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "https://collector"], "https://collector:443"),
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "collector:4317"], "https://collector:4317"),
        (
            [
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "collector:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": "TRUE",
            ],
            "http://collector:4317"
        ),
        (
            [
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "https://c:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            ],
            "https://c:4317"
        ),
        (
            [
                "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                profilesEndpointVariable: "http://c:4317",
            ], "http://c:4317"
        ),
    ]

    @Test(arguments: endpointCases)
    func endpointFollowsTheSpec(environment: [String: String], expected: String) throws {
        let configuration = try Configuration(environment: environment)
        #expect(configuration.endpoint.url == expected)
        #expect(configuration.endpoint.usesTLS == expected.hasPrefix("https://"))
    }

    /// Environment, then the setting the error must name.
    static let invalidCases: [([String: String], String)] = [
        ([endpointVariable: "ftp://collector:4318"], endpointVariable),
        ([endpointVariable: "collector:4318"], endpointVariable),  // HTTP needs a scheme
        ([endpointVariable: "http://"], endpointVariable),
        ([endpointVariable: "http://:4318"], endpointVariable),
        ([endpointVariable: "http://collector:0"], endpointVariable),
        ([endpointVariable: "http://collector:65536"], endpointVariable),
        ([endpointVariable: "http://collector:-1"], endpointVariable),
        ([endpointVariable: "http://collector:43a8"], endpointVariable),
        ([endpointVariable: "http://collector:"], endpointVariable),
        ([endpointVariable: "http://collector:99999999999999999999999"], endpointVariable),
        ([endpointVariable: "http://user:secret@collector:4318"], endpointVariable),
        ([endpointVariable: "http://coll ector:4318"], endpointVariable),
        ([endpointVariable: "http://collector\u{0}:4318"], endpointVariable),
        ([endpointVariable: "http://colléctor:4318"], endpointVariable),
        ([endpointVariable: "http://[::1:4318"], endpointVariable),
        ([endpointVariable: "http://[zz]:4318"], endpointVariable),
        ([endpointVariable: "http://::1:4318"], endpointVariable),
        ([endpointVariable: "http://c%41:4318"], endpointVariable),
        ([profilesEndpointVariable: "://collector"], profilesEndpointVariable),
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "http://collector:4317/v1"], endpointVariable),
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", endpointVariable: "http://collector:4317?q=1"], endpointVariable),
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"], "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (["OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"], "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (["OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL": "grpc/protobuf"], "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL"),
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "10s"], "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "-1"], "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "1.5"], "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "1e3"], "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "0x10"], "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "+5"], "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "２"], "OTEL_EXPORTER_OTLP_TIMEOUT"),  // a non-ASCII digit
        (["OTEL_EXPORTER_OTLP_TIMEOUT": "2147483648"], "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT": "99999999999999999999999"], "OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT"),
        (["OTEL_EXPORTER_OTLP_COMPRESSION": "deflate"], "OTEL_EXPORTER_OTLP_COMPRESSION"),
        (["OTEL_EXPORTER_OTLP_COMPRESSION": "gzip,none"], "OTEL_EXPORTER_OTLP_COMPRESSION"),
        (["OTEL_EXPORTER_OTLP_CLIENT_KEY": "/etc/key.pem"], "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        (["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/etc/cert.pem"], "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
    ]

    @Test(arguments: invalidCases)
    func invalidValuesThrowNamingTheVariable(environment: [String: String], setting: String) {
        #expect {
            try Configuration(environment: environment)
        } throws: { error in
            guard let error = error as? OTLPConfigurationError else { return false }
            // The message names the variable and says what to do.
            return error.setting == setting && error.description.contains(setting) && !error.problem.isEmpty
        }
    }

    @Test func enumValuesIgnoreCaseAndSurroundingSpace() throws {
        let configuration = try Configuration(environment: [
            "OTEL_EXPORTER_OTLP_PROTOCOL": " GRPC ", "OTEL_EXPORTER_OTLP_COMPRESSION": "None",
        ])
        #expect(configuration.transportProtocol == .grpc)
        #expect(configuration.compression == Configuration.Compression.none)
        let http = try Configuration(environment: ["OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/Protobuf"])
        #expect(http.transportProtocol == .httpProtobuf)
    }

    /// Timeout text, then the duration.
    static let timeoutCases: [(String, Duration)] = [
        ("10000", .seconds(10)), (" 250 ", .milliseconds(250)), ("1", .milliseconds(1)), ("007", .milliseconds(7)),
        ("2147483647", .milliseconds(Int32.max)),
        // 0 means no limit (the SDK spec); the spec's suggested stand-in is 2^31-1 ms.
        ("0", .milliseconds(Int32.max)),
        // Empty is unset: the default.
        ("", .seconds(10)),
    ]

    @Test(arguments: timeoutCases)
    func timeoutIsMilliseconds(text: String, expected: Duration) throws {
        let configuration = try Configuration(environment: ["OTEL_EXPORTER_OTLP_TIMEOUT": text])
        #expect(configuration.timeout == expected)
    }

    /// Headers text, then the headers it gives.
    static let headerCases: [(String, [OTLPHeader])] = [
        ("api-key=secret", [OTLPHeader(name: "api-key", value: "secret")]),
        (
            " API-Key = abc%20def , x-tenant=t1 ",
            [OTLPHeader(name: "api-key", value: "abc def"), OTLPHeader(name: "x-tenant", value: "t1")]
        ),
        ("a=1,,b=2,", [OTLPHeader(name: "a", value: "1"), OTLPHeader(name: "b", value: "2")]),
        ("a=x=y", [OTLPHeader(name: "a", value: "x=y")]),
        ("a=", [OTLPHeader(name: "a", value: "")]),
        ("a=%E2%9C%93%2C", [OTLPHeader(name: "a", value: "✓,")]),
        ("authorization=Bearer%20t0k3n", [OTLPHeader(name: "authorization", value: "Bearer t0k3n")]),
    ]

    @Test(arguments: headerCases)
    func headersArePercentDecodedAndTrimmed(text: String, expected: [OTLPHeader]) throws {
        let configuration = try Configuration(environment: ["OTEL_EXPORTER_OTLP_HEADERS": text])
        #expect(configuration.headers == expected)
    }

    /// Malformed header lists, then a piece of the expected complaint.
    static let malformedHeaderCases: [(String, String)] = [
        ("novalue", "entry 1 has no \"=\""),
        ("a=1,broken", "entry 2 has no \"=\""),
        ("=secret", "entry 1 has an empty key"),
        ("a b=secret", "not a valid header name"),
        ("a\u{1}=secret", "not a valid header name"),
        ("k=secret%zz", "invalid %-escape"),
        ("k=secret%4", "invalid %-escape"),
        ("k=secret%", "invalid %-escape"),
        ("k=secret%FF", "not UTF-8"),
        ("k=secret%0D%0AInjected:%20yes", "control characters"),
        ("k=secret%00", "control characters"),
        ("content-type=secret", "set by the exporter"),
        ("grpc-timeout=secret", "set by the exporter"),
        ("ok=1,=secret,also bad=secret", "entry 2 has an empty key; entry 3"),
    ]

    @Test(arguments: malformedHeaderCases)
    func malformedHeadersAreReportedWithoutTheirValues(text: String, complaint: String) {
        #expect {
            try Configuration(environment: ["OTEL_EXPORTER_OTLP_PROFILES_HEADERS": text])
        } throws: { error in
            guard let error = error as? OTLPConfigurationError else { return false }
            return error.setting == "OTEL_EXPORTER_OTLP_PROFILES_HEADERS" && error.description.contains(complaint)
                && !error.description.contains("secret")
        }
    }

    @Test func profilesVariablesWinOverGenericOnesAndOverridesWinOverBoth() throws {
        let environment = [
            "OTEL_EXPORTER_OTLP_HEADERS": "source=generic",
            "OTEL_EXPORTER_OTLP_PROFILES_HEADERS": "source=profiles",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
            "OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT": "2000",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4317",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": "/generic/ca.pem",
            "OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE": "/profiles/ca.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/generic/cert.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/generic/key.pem",
        ]
        let fromEnvironment = try Configuration(environment: environment)
        #expect(fromEnvironment.headers == [OTLPHeader(name: "source", value: "profiles")])
        #expect(fromEnvironment.timeout == .seconds(2))
        #expect(fromEnvironment.compression == Configuration.Compression.none)
        #expect(fromEnvironment.transportProtocol == .grpc)
        #expect(fromEnvironment.endpoint.url == "http://generic:4317")
        #expect(fromEnvironment.tls.certificateAuthorityFile == "/profiles/ca.pem")
        #expect(fromEnvironment.tls.clientCertificateFile == "/generic/cert.pem")
        #expect(fromEnvironment.tls.clientKeyFile == "/generic/key.pem")

        let overrides = Configuration.Overrides(
            endpoint: "https://flag:4318/path", transportProtocol: .httpProtobuf,
            headers: [OTLPHeader(name: "source", value: "flag")], compression: .gzip, timeout: .seconds(3),
            certificateAuthorityFile: "/flag/ca.pem")
        let explicit = try Configuration(environment: environment, overrides: overrides)
        #expect(explicit.headers == [OTLPHeader(name: "source", value: "flag")])
        #expect(explicit.timeout == .seconds(3))
        #expect(explicit.compression == .gzip)
        #expect(explicit.transportProtocol == .httpProtobuf)
        // An explicit endpoint is used as-is, like the profiles variable.
        #expect(explicit.endpoint.url == "https://flag:4318/path")
        #expect(explicit.tls.certificateAuthorityFile == "/flag/ca.pem")
    }

    @Test func theProtocolDecidesHowTheGenericEndpointIsRead() throws {
        let environment = ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"]
        let http = try Configuration(environment: environment)
        #expect(http.endpoint.path == "/v1development/profiles")
        let grpc = try Configuration(environment: environment, overrides: .init(transportProtocol: .grpc))
        #expect(grpc.endpoint.url == "http://collector:4318")
    }

    @Test(arguments: ["yes", "1", "on", "truthy", " t r u e "])
    func booleansOtherThanTrueAreFalseWithAWarning(value: String) throws {
        var warnings: [String] = []
        let configuration = try Configuration(
            environment: [
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": value,
            ], warning: { warnings.append($0) })
        #expect(configuration.endpoint.usesTLS, "not insecure: TLS")
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("OTEL_EXPORTER_OTLP_INSECURE") == true)
    }

    @Test func falseAndEmptyBooleansGiveNoWarning() throws {
        for value in ["false", "FALSE", ""] {
            var warnings: [String] = []
            _ = try Configuration(
                environment: ["OTEL_EXPORTER_OTLP_INSECURE": value], warning: { warnings.append($0) })
            #expect(warnings.isEmpty, "value \(value)")
        }
    }

    @Test func certificatesForAPlaintextEndpointAreWarnedAbout() throws {
        var warnings: [String] = []
        _ = try Configuration(
            environment: [
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
            ], warning: { warnings.append($0) })
        #expect(warnings.count == 1)
    }

    @Test func validationRejectsNonsense() {
        var configuration = Configuration()
        configuration.queueLimitBytes = 0
        #expect(throws: OTLPConfigurationError.self) { try configuration.validate() }
        configuration = Configuration()
        configuration.maxConcurrentExports = 0
        #expect(throws: OTLPConfigurationError.self) { try configuration.validate() }
        configuration = Configuration()
        configuration.retry.multiplier = 0.5
        #expect(throws: OTLPConfigurationError.self) { try configuration.validate() }
        configuration = Configuration()
        configuration.retry.maxBackoff = .milliseconds(10)
        #expect(throws: OTLPConfigurationError.self) { try configuration.validate() }
        configuration = Configuration()
        configuration.tls.clientKeyFile = "/key.pem"
        #expect(throws: OTLPConfigurationError.self) { try configuration.validate() }
        #expect(throws: Never.self) { try Configuration().validate() }
    }

    @Test func headerValuesStayOutOfDescriptions() {
        let header = OTLPHeader(name: "Authorization", value: "Bearer secret")
        #expect(header.name == "authorization")
        #expect(!"\(header)".contains("secret"))
    }
}
