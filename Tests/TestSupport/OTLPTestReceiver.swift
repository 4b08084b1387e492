public import Foundation

/// `hack/otlp/receiver.py` run as a child process: a real OTLP profiles receiver (grpcio and
/// the official opentelemetry-proto code, a conformance check of every request) on free
/// ports, with its control API for faults and outages (see hack/otlp/README.md).
///
/// Unchecked Sendable: every stored property is immutable after `start`; `Process` is only
/// asked `isRunning` and told to stop.
public final class OTLPTestReceiver: @unchecked Sendable {
    /// One export the receiver saw (a record of `GET /requests`).
    public struct Record: Decodable, Sendable {
        public struct Summary: Decodable, Sendable {
            public var profiles: Int
            /// Sample messages (merged samples count once).
            public var samples: Int
            /// Samples counted one per timestamp (or by value), as
            /// `OTLPEncodedRequest.sampleCount` counts them.
            public var totalWeight: Int
            /// Leaf functions by weight, heaviest first.
            public var topFunctions: [FunctionWeight]
        }

        /// A `[name, weight]` pair of the summary.
        public struct FunctionWeight: Decodable, Sendable {
            public var name: String
            public var weight: Int

            public init(from decoder: any Decoder) throws {
                var pair = try decoder.unkeyedContainer()
                name = try pair.decode(String.self)
                weight = try pair.decode(Int.self)
            }
        }

        public var index: Int
        /// "grpc" or "http".
        public var transport: String
        /// Arrival, Unix seconds.
        public var time: Double
        public var wireBytes: Int?
        public var messageBytes: Int?
        public var gzip: Bool
        public var tls: Bool
        public var clientCertCn: String?
        /// Request headers (gRPC metadata), keys lowercased.
        public var headers: [String: String]
        /// "ok", "partial", "grpc UNAVAILABLE", "http 503", ...
        public var outcome: String
        public var decodeError: String?
        public var summary: Summary?
        public var violations: [String]

        enum CodingKeys: String, CodingKey {
            case index, time, wireBytes, messageBytes, gzip, tls, clientCertCn, headers, outcome, decodeError
            case summary, violations
            case transport = "protocol"
        }
    }

    /// A ResourceProfiles of a recorded request's summary, with its attribute keys exactly as
    /// sent (read with JSONSerialization: a snake-case key strategy would rename keys such as
    /// `k8s.pod.start_time`).
    public struct Resource: Sendable {
        /// The request's index.
        public var request: Int
        public var attributes: [String: JSONValue]
        public var samples: Int
        public var weight: Int
        public var firstTimestampUnixNano: UInt64?
        public var lastTimestampUnixNano: UInt64?

        /// A string attribute (nil when absent or not a string).
        public func string(_ key: String) -> String? {
            if case .string(let value)? = attributes[key] { return value }
            return nil
        }

        public var pid: Int? {
            if case .number(let value)? = attributes["process.pid"] { return Int(value) }
            return nil
        }
    }

    /// A JSON value of the receiver's summaries (attribute values; maps become null).
    public enum JSONValue: Sendable, Hashable {
        case string(String)
        case number(Double)
        case array([JSONValue])
        case null

        init(any value: Any) {
            switch value {
            case let string as String: self = .string(string)
            // Booleans arrive as numbers (JSONSerialization cannot tell them apart here).
            case let number as NSNumber: self = .number(number.doubleValue)
            case let array as [Any]: self = .array(array.map(JSONValue.init(any:)))
            default: self = .null
            }
        }
    }

    /// Every ResourceProfiles of every decoded request so far, in arrival order.
    public func resources() async throws -> [Resource] {
        let data = try await control("GET", "/requests")
        guard let records = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw FixtureError("GET /requests did not return a JSON list")
        }
        var resources: [Resource] = []
        for record in records {
            guard let summary = record["summary"] as? [String: Any],
                let list = summary["resources"] as? [[String: Any]]
            else { continue }
            let index = record["index"] as? Int ?? -1
            for entry in list {
                let attributes = (entry["attributes"] as? [String: Any] ?? [:]).mapValues(JSONValue.init(any:))
                resources.append(
                    Resource(
                        request: index, attributes: attributes, samples: entry["samples"] as? Int ?? 0,
                        weight: entry["weight"] as? Int ?? 0,
                        firstTimestampUnixNano: (entry["first_timestamp_unix_nano"] as? NSNumber)?.uint64Value,
                        lastTimestampUnixNano: (entry["last_timestamp_unix_nano"] as? NSNumber)?.uint64Value))
            }
        }
        return resources
    }

    public struct Status: Decodable, Sendable {
        public var ingestUp: Bool
        public var requestsRecorded: Int
        /// Unix time at which a `down(seconds:)` outage ends (nil while ingest is up).
        public var upAt: Double?
    }

    /// Certificate files for the receiver's TLS listeners.
    public struct TLSFiles: Sendable {
        public var certificate: String
        public var key: String
        public var clientCertificateAuthority: String?

        public init(certificate: String, key: String, clientCertificateAuthority: String? = nil) {
            self.certificate = certificate
            self.key = key
            self.clientCertificateAuthority = clientCertificateAuthority
        }
    }

    public let grpcPort: Int
    public let httpPort: Int
    public let controlPort: Int
    private let tool: PythonTool

    public var grpcEndpoint: String { "http://127.0.0.1:\(grpcPort)" }
    public var httpEndpoint: String { "http://127.0.0.1:\(httpPort)" }

    private init(tool: PythonTool) {
        self.tool = tool
        grpcPort = tool.port("grpc_port")
        httpPort = tool.port("http_port")
        controlPort = tool.port("control_port")
    }

    /// Starts a receiver on free ports and waits for its ready line.
    public static func start(tls: TLSFiles? = nil) async throws -> OTLPTestReceiver {
        var arguments = ["--grpc-port", "0", "--http-port", "0", "--control-port", "0"]
        if let tls {
            arguments += ["--tls-cert", tls.certificate, "--tls-key", tls.key]
            if let authority = tls.clientCertificateAuthority { arguments += ["--tls-client-ca", authority] }
        }
        return OTLPTestReceiver(
            tool: try await PythonTool.start(
                script: "hack/otlp/receiver.py", arguments: arguments,
                required: ["grpc_port", "http_port", "control_port"]))
    }

    /// Stops the receiver: SIGTERM, then SIGKILL if it is still there after 5 s.
    public func stop() { tool.stop() }

    /// The receiver's stderr so far, for failure messages.
    public var log: String { tool.log }

    // MARK: Control API

    /// Every export recorded so far.
    public func records() async throws -> [Record] {
        try Self.decoder.decode([Record].self, from: try await control("GET", "/requests"))
    }

    public func status() async throws -> Status {
        try Self.decoder.decode(Status.self, from: try await control("GET", "/status"))
    }

    /// Queues faults (a JSON list), consumed in order by incoming exports.
    public func addFaults(_ json: String) async throws {
        _ = try await control("POST", "/faults", body: json)
    }

    /// Closes the ingest listeners; they reopen after `seconds` (the status says when).
    @discardableResult
    public func down(seconds: Double) async throws -> Status {
        try Self.decoder.decode(
            Status.self, from: try await control("POST", "/down", body: "{\"seconds\": \(seconds)}"))
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }()

    /// Sends a control request with the venv's Python (urllib) as the HTTP client: small,
    /// and independent of the HTTP code under test.
    private func control(_ method: String, _ path: String, body: String? = nil) async throws -> Data {
        try await tool.control(port: controlPort, method, path, body: body)
    }
}
