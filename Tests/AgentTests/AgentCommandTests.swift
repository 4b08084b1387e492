import Foundation
import TestSupport
import Testing

/// `nodeprof agent`'s flag and configuration errors: one clear line, a non-zero exit, and
/// nothing started.
@Suite struct AgentCommandTests {
    func agent(_ arguments: [String], environment: [String: String] = [:]) throws -> ProgramResult {
        var environment = environment
        environment["PATH"] = "/usr/bin:/bin"
        return try runProgramCapturing(try builtProduct("nodeprof"), ["agent"] + arguments, environment: environment)
    }

    @Test func withoutACollectorItSaysWhatToPass() throws {
        let result = try agent(["--kubernetes", "off"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("--otlp-endpoint"), "\(result.stderr)")
    }

    @Test(arguments: [
        (["--listen-address", "nowhere"], "--listen-address"),
        (["--listen-address", "127.0.0.1:99999"], "--listen-address"),
        (["--export-interval", "100ms"], "--export-interval"),
        (["--frequency", "0"], "--frequency"),
        (["--shutdown-timeout", "1s"], "--shutdown-timeout"),
        (["--kubernetes", "maybe"], "--kubernetes"),
        (["--log-level", "loud"], "--log-level"),
    ])
    func badFlagsAreRefused(arguments: [String], mentioning flag: String) throws {
        let result = try agent(arguments + ["--otlp-endpoint", "http://127.0.0.1:4318"])
        #expect(result.status != 0)
        #expect(result.stderr.contains(flag), "\(result.stderr)")
    }

    @Test func kubernetesOnWithoutAClusterIsAClearError() throws {
        let result = try agent(["--kubernetes", "on", "--otlp-endpoint", "http://127.0.0.1:4318"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("KUBERNETES_SERVICE_HOST"), "\(result.stderr)")
    }

    @Test func kubeconfigProblemsNameTheFileAndTheFix() throws {
        let directory = try TemporaryDirectory()
        let missing = try agent(["--kubeconfig", directory.file("absent"), "--otlp-endpoint", "http://127.0.0.1:4318"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains(directory.file("absent")), "\(missing.stderr)")

        let exec = directory.file("exec.yaml")
        try """
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
        users: [{name: u, user: {exec: {command: aws, args: [eks, get-token]}}}]
        contexts: [{name: x, context: {cluster: c, user: u}}]
        current-context: x
        """.write(toFile: exec, atomically: true, encoding: .utf8)
        let plugin = try agent(["--kubeconfig", exec, "--otlp-endpoint", "http://127.0.0.1:4318"])
        #expect(plugin.status != 0)
        #expect(plugin.stderr.contains("token"), "\(plugin.stderr)")
    }
}
