import Foundation
import TestSupport
import Testing

/// `ContextPublisher` as an application gets it: a versioned dependency resolved by git. SwiftPM
/// refuses unsafeFlags in the targets of such a dependency's products, which a path dependency
/// or this package's own build would not notice. The test commits this checkout's tracked
/// files (working-tree changes included) to a temporary bare repository tagged 99.0.0, builds a
/// small package that depends on it `from: "99.0.0"`, runs that package's executable (it
/// publishes a process context and attaches a span on its main thread) and reads both back
/// with `nodeprof context`.
@Suite(.serialized) struct VersionedDependencyTests {
    static let trace = "0af7651916cd43dd8448eb211c80319c"
    static let span = "b7ad6b7169203331"

    static let manifest = """
        // swift-tools-version: 6.0
        import PackageDescription

        let package = Package(
            name: "context-app",
            dependencies: [.package(url: "REPOSITORY", from: "99.0.0")],
            targets: [
                .executableTarget(
                    name: "context-app",
                    dependencies: [.product(name: "ContextPublisher", package: "nodeprof-git")],
                    // The application's own choice (it is the root package): export the TLS
                    // variable so that profilers find it in .dynsym.
                    linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic-symbol=otel_thread_ctx_v1"])]
                )
            ]
        )
        """

    static let program = """
        import ContextPublisher
        import Foundation

        // Publishes, attaches a span on this thread, says so in the file named by argv[1], waits.
        let keys = try ProcessContextPublisher.publish(
            resource: ["service.name": "context-app", "service.version": "9.9.9"],
            attributes: ["deployment.environment.name": "test"],
            threadAttributeKeys: ["http.route"])
        let span = ThreadSpan(
            traceID: TraceID(hex: "\(trace)")!, spanID: SpanID(hex: "\(span)")!, flags: 1,
            attributes: ["http.route": "/versioned"], keys: keys)
        guard ThreadContext.set(span) else { fatalError("the span's attributes did not fit") }
        FileManager.default.createFile(atPath: CommandLine.arguments[1], contents: Data("ready\\n".utf8))
        while true { sleep(60) }
        """

    /// Runs `git ARGUMENTS` in `directory`.
    @discardableResult
    static func git(_ arguments: [String], in directory: String) throws -> String {
        try runProgram("/usr/bin/env", ["git", "-C", directory] + arguments)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(.timeLimit(.minutes(10))) func anApplicationBuildsAgainstTheTaggedPackageAndPublishes() async throws {
        let root = repositoryRoot()
        let directory = try TemporaryDirectory(prefix: "nodeprof-versioned")

        // The commit under test: HEAD, or HEAD plus the tracked working-tree changes (`git stash
        // create` makes that commit without touching the checkout; it prints nothing when clean).
        let stash = try Self.git(["stash", "create"], in: root)
        let commit = stash.isEmpty ? try Self.git(["rev-parse", "HEAD"], in: root) : stash
        let repository = directory.file("nodeprof-git")
        try runProgram("/usr/bin/env", ["git", "init", "--quiet", "--bare", repository])
        try Self.git(["push", "--quiet", repository, "\(commit):refs/heads/main"], in: root)
        try Self.git(["tag", "99.0.0", commit], in: repository)

        let app = directory.file("context-app")
        try FileManager.default.createDirectory(
            atPath: "\(app)/Sources/context-app", withIntermediateDirectories: true)
        try Self.manifest.replacingOccurrences(of: "REPOSITORY", with: "file://\(repository)")
            .write(toFile: "\(app)/Package.swift", atomically: true, encoding: .utf8)
        try Self.program.write(toFile: "\(app)/Sources/context-app/main.swift", atomically: true, encoding: .utf8)

        // SwiftPM resolves nodeprof's whole dependency graph (it builds only ContextPublisher):
        // the other packages come from the user's SwiftPM cache, where hack/test's own build
        // put them. A file:// repository is cloned directly, not cached.
        let build = try runProgramCapturing("/usr/bin/env", ["swift", "build", "--package-path", app])
        #expect(!build.stderr.contains("unsafe"), "\(build.stderr)")
        try #require(build.status == 0, "swift build of the application failed:\n\(build.stdout)\n\(build.stderr)")
        let resolved = try String(contentsOfFile: "\(app)/Package.resolved", encoding: .utf8)
        #expect(resolved.contains("\"version\" : \"99.0.0\""), "\(resolved)")

        let executable = "\(app)/.build/debug/context-app"
        let readyFile = directory.file("ready")
        let child = try ChildProcess(executable, [readyFile])
        defer { child.kill() }
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: readyFile) {
            try await Task.sleep(for: .milliseconds(20))
        }
        try #require(FileManager.default.fileExists(atPath: readyFile), "context-app never said it was ready")

        let result = try runProgramCapturing(try builtProduct("nodeprof"), ["context", "\(child.pid)", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["published"] as? Bool == true, "\(result.stdout)")
        let resource = (report["resource"] as? [[String: String]] ?? []).reduce(into: [String: String]()) {
            $0[$1["key"] ?? ""] = $1["value"]
        }
        #expect(resource == ["service.name": "context-app", "service.version": "9.9.9"])
        #expect(report["attributeKeyMap"] as? [String] == ["http.route"])
        let threads = try #require(report["threads"] as? [[String: Any]], "\(result.stdout)")
        let inSpan = threads.filter { $0["state"] as? String == "span" }
        try #require(inSpan.count == 1, "one thread (the main thread) runs the span: \(threads)")
        #expect(inSpan[0]["traceID"] as? String == Self.trace)
        #expect(inSpan[0]["spanID"] as? String == Self.span)
        #expect(inSpan[0]["flags"] as? Int == 1)
        #expect((inSpan[0]["attributes"] as? [[String: String]]) == [["key": "http.route", "value": "/versioned"]])
    }
}
