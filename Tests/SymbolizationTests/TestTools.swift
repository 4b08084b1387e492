import Foundation
import Testing

/// A failure of a helper tool the tests run.
struct ToolFailure: Error, CustomStringConvertible {
    var description: String
}

/// Runs command-line tools (cc, nm, readelf, addr2line, ...) for the tests.
enum Tool {
    /// Runs `executable` with `arguments` and returns its standard output; throws when it
    /// exits with a non-zero status.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try path(of: executable))
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let inputPipe = Pipe()
        process.standardInput = inputPipe
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
        }
        try inputPipe.fileHandleForWriting.close()
        // Drain stderr concurrently so a chatty tool cannot block on a full pipe.
        let errorData = ErrorCollector(errors.fileHandleForReading)
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ToolFailure(
                description:
                    "\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus): \(errorData.text())"
            )
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Resolves a tool name through PATH (plus the Swift toolchain's directory).
    static func path(of executable: String) throws -> String {
        if executable.hasPrefix("/") { return executable }
        let directories =
            (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
            + ["/usr/bin", "/bin", "/opt/swift/usr/bin"]
        for directory in directories {
            let candidate = directory + "/" + executable
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ToolFailure(description: "\(executable) not found in PATH")
    }

    /// Compiles C `source` into `output` with `cc`.
    /// `libraries` come after the source, where the linker needs them.
    static func compileC(_ source: String, output: String, flags: [String], libraries: [String] = [])
        throws
    {
        let sourcePath = output + ".c"
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        try run("cc", flags + ["-o", output, sourcePath] + libraries)
    }
}

/// Reads a pipe to the end on a background thread.
final class ErrorCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            let all = handle.readDataToEndOfFile()
            lock.lock()
            data = all
            lock.unlock()
            done.signal()
        }
    }

    func text() -> String {
        done.wait()
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A directory under the system temporary directory, removed by ``remove()``.
struct TemporaryDirectory {
    let path: String

    init(_ prefix: String = "nodeprof-symbolization") throws {
        var base = NSTemporaryDirectory()
        while base.count > 1, base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/\(prefix)-XXXXXX").utf8CString)
        let created = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        guard let created else { throw ToolFailure(description: "mkdtemp failed: errno \(errno)") }
        path = created
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// One line of `nm` output.
struct NMSymbol {
    var address: UInt64
    var size: UInt64?
    var type: Character
    var name: String

    /// Parses `nm` (optionally `-S`) output, dropping symbol versions (`printf@@GLIBC_2.2.5`).
    static func parse(_ output: String) -> [NMSymbol] {
        output.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 3 || fields.count == 4, let address = UInt64(fields[0], radix: 16)
            else { return nil }
            let size = fields.count == 4 ? UInt64(fields[1], radix: 16) : nil
            guard let type = fields[fields.count - 2].first, fields[fields.count - 2].count == 1 else {
                return nil
            }
            var name = String(fields[fields.count - 1])
            if let at = name.firstIndex(of: "@") { name = String(name[..<at]) }
            return NMSymbol(address: address, size: size, type: type, name: name)
        }
    }
}

/// The build id `readelf -n` prints for `path`, or nil.
func readelfBuildID(_ path: String) throws -> String? {
    let output = try Tool.run("readelf", ["-n", path])
    for line in output.split(separator: "\n") {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("Build ID:") {
            return trimmed.dropFirst("Build ID:".count).trimmingCharacters(in: .whitespaces)
        }
    }
    return nil
}

let libcPath = "/lib/x86_64-linux-gnu/libc.so.6"
let swiftCorePath = "/opt/swift/usr/lib/swift/linux/libswiftCore.so"

/// A small C program with known functions.
let knownFunctionsSource = """
    #include <stdio.h>
    __attribute__((noinline)) int alpha_function(int x) { return x * 3 + 1; }
    __attribute__((noinline)) int beta_function(int x) { return alpha_function(x) + 2; }
    __attribute__((noinline)) static int gamma_local(int x) { return beta_function(x) * 5; }
    int main(int argc, char **argv) { (void)argv; printf("%d\\n", gamma_local(argc)); return 0; }
    """
