import Foundation

/// Path of an executable product built next to the test bundle (`swift build` builds
/// every product, so `nodeprof` sits beside the xctest bundle).
public func builtProduct(_ name: String) throws -> String {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        directory.deleteLastPathComponent()
    }
    throw FixtureError("cannot find the built product \(name) near \(CommandLine.arguments[0]); run swift build first")
}

/// Result of running a program that may fail.
public struct ProgramResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program and returns its exit status and both outputs, whatever the status.
public func runProgramCapturing(_ executable: String, _ arguments: [String], environment: [String: String]? = nil)
    throws -> ProgramResult
{
    let dir = try TemporaryDirectory()
    let outPath = dir.file("stdout")
    let errPath = dir.file("stderr")
    FileManager.default.createFile(atPath: outPath, contents: nil)
    FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try process.run()
    process.waitUntilExit()
    return ProgramResult(
        status: process.terminationStatus,
        stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// The Go toolchain's `go`, needed to run `go tool pprof`. Fails with the fix when absent.
public func goTool() throws -> String {
    for path in ["/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
    where FileManager.default.isExecutableFile(atPath: path) {
        return path
    }
    throw FixtureError("`go` is not installed: run hack/setup (installs Debian's golang-go)")
}

/// Runs `go tool pprof ARGS` with a private cache so it works on a fresh machine.
public func goToolPprof(_ arguments: [String]) throws -> String {
    let go = try goTool()
    let home = try TemporaryDirectory(prefix: "nodeprof-gohome")
    var env = ProcessInfo.processInfo.environment
    env["HOME"] = home.path
    env["GOCACHE"] = home.file("gocache")
    env["PPROF_TMPDIR"] = home.path
    env["GOFLAGS"] = "-mod=mod"
    env["GOTOOLCHAIN"] = "local"
    return try runProgram(go, ["tool", "pprof"] + arguments, environment: env)
}

/// The repository's root directory (where Package.swift is), found from this file's path.
public func repositoryRoot(_ file: StaticString = #filePath) -> String {
    var url = URL(fileURLWithPath: "\(file)")
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
    }
    return FileManager.default.currentDirectoryPath
}

/// Runs the OTLP conformance checker (`hack/otlp/check.py`, official opentelemetry-proto
/// code in .venv, installed by hack/setup) on a serialized ExportProfilesServiceRequest and
/// returns its violations (empty when the request follows every rule).
public func otlpConformanceViolations(_ request: [UInt8]) throws -> [String] {
    try otlpCheck(request).violations
}

/// The conformance checker's violations and the request's recorded samples (its summary's
/// `total_weight`: timestamps, or counts without them).
public func otlpCheck(_ request: [UInt8]) throws -> (violations: [String], recordedSamples: Int) {
    let root = repositoryRoot()
    let directory = try TemporaryDirectory()
    let path = directory.file("request.otlp")
    try Data(request).write(to: URL(fileURLWithPath: path))
    let result = try runProgramCapturing("\(root)/.venv/bin/python", ["\(root)/hack/otlp/check.py", "--json", path])
    guard result.status == 0 || result.status == 1 else {
        throw FixtureError("hack/otlp/check.py failed (\(result.status)): \(result.stderr)\(result.stdout)")
    }
    guard let line = result.stdout.split(separator: "\n").first,
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let violations = object["violations"] as? [String]
    else { throw FixtureError("hack/otlp/check.py printed no JSON: \(result.stdout)") }
    let summary = object["summary"] as? [String: Any]
    return (violations, (summary?["total_weight"] as? Int) ?? 0)
}
