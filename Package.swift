// swift-tools-version: 6.2
import PackageDescription

// Strict settings for every Swift target (the hummingbird model).
let strictSwift: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// Warnings are errors in this package's C targets. These are SE-0480 warning-control settings
// (tools 6.2), not unsafeFlags: SwiftPM applies them when nodeprof is the root package and drops
// them when it is someone else's dependency, so `ContextPublisher` builds as a versioned
// dependency (SwiftPM refuses unsafeFlags in those) and a newer compiler's new warning cannot
// break an application's build.
let strictC: [CSetting] = [
    .enableWarning("all"),
    .enableWarning("extra"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "nodeprof",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "nodeprof", targets: ["nodeprof"]),
        // For applications: publish process and thread context (no dependency on the agent).
        .library(name: "ContextPublisher", targets: ["ContextPublisher"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Exact: the committed generated code (hack/gen-proto) matches this runtime version.
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        // OTLP export (Sources/Export): gRPC and HTTP transports.
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        // Kubernetes (Sources/KubernetesAPI): kubeconfig files are YAML.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // `nodeprof agent`: services and the Prometheus exposition of its metrics (swift-metrics
        // comes in through swift-prometheus; the agent registers on its registry directly).
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // MARK: C targets
        .systemLibrary(
            name: "CLibbpf",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(
            name: "CSampling",
            dependencies: ["CLibbpf"],
            cSettings: strictC
        ),
        .target(
            name: "CSymbolization",
            cSettings: strictC,
            linkerSettings: [.linkedLibrary("stdc++")]
        ),

        .target(
            name: "CProcessContext",
            cSettings: strictC
        ),
        // The writer library's C part: the TLS variable must be a real ELF TLS symbol. Built
        // with the compiler's default TLS dialect: `-mtls-dialect=gnu2` would need unsafeFlags,
        // which a versioned dependency may not carry. Linked into an executable (SwiftPM's way)
        // the linker relaxes the access to local exec whatever the dialect; an application
        // that builds a shared library and wants TLSDESC passes `-Xcc -mtls-dialect=gnu2`
        // (docs/context-publisher.md, "Building and linking").
        .target(
            name: "CContextPublisher",
            cSettings: strictC
        ),

        // MARK: Swift modules (one job each, see docs/architecture.md)
        .target(name: "NodeprofCore", swiftSettings: strictSwift),
        .target(
            name: "Sampling",
            dependencies: ["NodeprofCore", "CSampling"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "Symbolization",
            dependencies: ["NodeprofCore", "CSymbolization"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "ProcessContext",
            dependencies: ["NodeprofCore", "Symbolization", "CProcessContext"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "ContextPublisher",
            dependencies: ["CContextPublisher"],
            swiftSettings: strictSwift
        ),
        // gzip (RFC 1952) through zlib: pprof files and OTLP/HTTP bodies.
        .target(
            name: "Gzip",
            dependencies: ["CZlib"],
            swiftSettings: strictSwift
        ),
        // The generated pprof and OTLP protobuf code (hack/gen-proto), public: the wire types.
        .target(
            name: "ProfilesProtobuf",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Generated/README.md", "Generated/STAMP"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "Profiles",
            dependencies: [
                "NodeprofCore", "Gzip", "ProfilesProtobuf",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSwift
        ),
        // pprof <-> OTLP <-> OTLP/JSON conversion of whole files (`nodeprof convert`, record's
        // .json output); shares the OTLP dictionary builder and pprof string table of Profiles
        // (package access).
        .target(
            name: "ProfileConversion",
            dependencies: [
                "NodeprofCore", "Gzip", "Profiles", "ProfilesProtobuf",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSwift
        ),
        // The HTTP client and TLS setup shared by the Kubernetes API client and the OTLP
        // exporters: one lazily created AsyncHTTPClient, one PEM/TLS configuration builder.
        .target(
            name: "HTTPTransport",
            dependencies: [
                "NodeprofCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "Export",
            dependencies: [
                "NodeprofCore", "Profiles", "ProfilesProtobuf", "Gzip", "HTTPTransport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        // A generic Kubernetes API client: any resource, get/list/watch/create/update/patch/delete.
        .target(
            name: "KubernetesAPI",
            dependencies: [
                "NodeprofCore", "HTTPTransport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSwift
        ),
        // One entry per live process, read once, kept current by kernel events; cgroup parsing.
        .target(
            name: "ProcessTable",
            dependencies: ["NodeprofCore", "Symbolization", "ProcessContext"],
            swiftSettings: strictSwift
        ),
        // The pipeline: sampler -> process table -> symbolizer -> profiles, in windows.
        .target(
            name: "Recording",
            dependencies: ["NodeprofCore", "Sampling", "Symbolization", "ProcessTable", "Profiles"],
            swiftSettings: strictSwift
        ),
        // Pod metadata: the pod cache, owners and semantic-convention attributes.
        .target(
            name: "KubeMetadata",
            dependencies: [
                "NodeprofCore", "KubernetesAPI",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "Agent",
            dependencies: [
                "NodeprofCore", "Sampling", "Symbolization", "Profiles", "Export", "KubeMetadata", "KubernetesAPI",
                "ProcessContext", "ProcessTable", "Recording",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "nodeprof",
            dependencies: [
                "Agent", "NodeprofCore", "Sampling", "Symbolization", "Profiles", "ProfileConversion", "Export",
                "KubeMetadata", "KubernetesAPI", "ProcessContext", "ProcessTable", "Recording",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),

        // Benchmarks (hack/bench), no product: `swift build --product nodeprof-bench` builds an
        // executable target of the root package all the same. It shares TestSupport with the
        // tests (the OTLP receiver driver, SplitMix64).
        .executableTarget(
            name: "nodeprof-bench",
            dependencies: [
                "TestSupport", "Sampling", "Symbolization", "NodeprofCore", "Agent", "Profiles", "Gzip", "Export", "KubeMetadata",
                "KubernetesAPI", "ProcessContext", "ProcessTable", "Recording", "ContextPublisher", "CContextPublisher",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),

        // An application instrumented with the writer library (docs/context-publisher.md).
        // Its unsafeFlags export otel_thread_ctx_v1 into .dynsym so that profilers find it;
        // SwiftPM has no safe setting for that, and unsafeFlags are allowed here because the
        // target is no product: nothing outside this package builds it.
        .executableTarget(
            name: "span-demo",
            dependencies: ["ContextPublisher"],
            path: "Examples/span-demo",
            swiftSettings: strictSwift,
            linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic-symbol=otel_thread_ctx_v1"])]
        ),

        // MARK: Tests
        .target(
            name: "TestSupport",
            dependencies: ["NodeprofCore", "Profiles"],
            path: "Tests/TestSupport",
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "NodeprofCoreTests",
            dependencies: ["NodeprofCore"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SymbolizationTests",
            dependencies: ["Symbolization", "NodeprofCore", "TestSupport"],
            resources: [.copy("Hostile")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "GzipTests",
            dependencies: ["Gzip"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ProfilesTests",
            dependencies: [
                "Profiles", "ProfilesProtobuf", "Gzip", "NodeprofCore", "TestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ProfileConversionTests",
            dependencies: [
                "ProfileConversion", "Profiles", "ProfilesProtobuf", "Gzip", "NodeprofCore", "TestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ExportTests",
            dependencies: [
                "Export", "Profiles", "ProfilesProtobuf", "NodeprofCore", "TestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "HTTPTransportTests",
            dependencies: [
                "HTTPTransport", "NodeprofCore", "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "KubernetesAPITests",
            dependencies: [
                "KubernetesAPI", "NodeprofCore", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "KubeMetadataTests",
            dependencies: [
                "KubeMetadata", "KubernetesAPI", "NodeprofCore", "TestSupport", "ProcessTable",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ProcessTableTests",
            dependencies: [
                "ProcessTable", "ProcessContext", "Symbolization", "NodeprofCore", "TestSupport", "CContextPublisher",
            ],
            exclude: ["Fixtures"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ProcessContextTests",
            dependencies: ["ProcessContext", "NodeprofCore", "TestSupport"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ContextPublisherTests",
            dependencies: ["ContextPublisher", "ProcessContext", "NodeprofCore", "TestSupport"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "AgentTests",
            dependencies: [
                "Agent", "KubeMetadata", "KubernetesAPI", "Sampling", "Profiles", "NodeprofCore", "TestSupport",
                "ProcessTable", "Recording",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SamplingTests",
            dependencies: [
                "Sampling", "Agent", "Symbolization", "Profiles", "NodeprofCore", "TestSupport", "ProcessContext",
                "ProcessTable", "Recording", "CContextPublisher",
            ],
            swiftSettings: strictSwift
        ),
    ]
)
