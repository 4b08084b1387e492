public import Foundation
public import Glibc
import NodeprofCore
import Synchronization

/// The children this process started, ended (SIGTERM, then SIGKILL after 10 s) when it is
/// interrupted: fake-node only removes its cgroups and processes when it gets to exit.
public enum ChildRegistry {
    private static let children = Mutex<[pid_t: String]>([:])
    private static let sources = Mutex<[any DispatchSourceSignal]>([])

    static func add(_ pid: pid_t, _ name: String) { children.withLock { $0[pid] = name } }
    static func remove(_ pid: pid_t) { _ = children.withLock { $0.removeValue(forKey: pid) } }

    /// SIGINT, SIGTERM and SIGHUP stop every registered child, then exit 128 + signal.
    public static func installSignalHandlers() {
        sources.withLock { sources in
            guard sources.isEmpty else { return }
            for number in [SIGINT, SIGTERM, SIGHUP] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler {
                    let pids = children.withLock { $0 }
                    FileHandle.standardError.write(
                        Data(
                            "nodeprof-bench: signal \(number): stopping \(pids.values.sorted().joined(separator: ", "))\n"
                                .utf8))
                    stopAll(pids.keys.sorted())
                    exit(128 + number)
                }
                source.resume()
                sources.append(source)
            }
        }
    }

    /// SIGTERM to each, then waits up to 10 s for all of them, then SIGKILL.
    public static func stopAll(_ pids: [pid_t]) {
        for pid in pids { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        var left = Set(pids)
        while !left.isEmpty && Date() < deadline {
            for pid in left {
                var status: Int32 = 0
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid || (result < 0 && errno == ECHILD) { left.remove(pid) }
            }
            if !left.isEmpty { usleep(50_000) }
        }
        for pid in left {
            let name = children.withLock { $0[pid] } ?? "?"
            FileHandle.standardError.write(
                Data("nodeprof-bench: \(name) (\(pid)) ignored SIGTERM for 10 s: SIGKILL\n".utf8))
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}

/// A child started with posix_spawn: its stdout can be read line by line, its stderr goes
/// to a file (or nowhere), and its exit comes with its resource usage (wait4).
public final class ChildProcess: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public struct Exit: Sendable {
        public var status: Int32
        public var usage: rusage
        /// Exited normally with this code (nil when a signal ended it).
        public var code: Int32? { status & 0x7f == 0 ? (status >> 8) & 0xff : nil }
        public var userSeconds: Double { Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 }
        public var systemSeconds: Double { Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6 }
        public var maxResidentKiB: Int { usage.ru_maxrss }
    }

    public let pid: pid_t
    public let name: String
    public let started = Date()
    private let stdoutDescriptor: Int32
    private var buffer: [UInt8] = []
    public private(set) var exit: Exit?
    /// What dropping it does while the child runs: SIGKILL at once (tests), or SIGTERM and
    /// SIGKILL after 10 s (tools that clean up on exit).
    private let killsWhenDropped: Bool

    /// Starts `executable` with `arguments`, its output going where the test's goes; SIGKILL
    /// when dropped (a test's workload).
    public convenience init(_ executable: String, _ arguments: [String] = []) throws {
        try self.init(
            [executable] + arguments, name: String(executable.split(separator: "/").last ?? ""), captureStdout: false,
            stderrPath: nil, inheritOutput: true)
    }

    /// Starts `arguments` (the first is the executable's path): stdout to a pipe read by
    /// ``readLine(timeoutSeconds:)`` or to /dev/null, stderr to `stderrPath` or /dev/null;
    /// stopped gracefully when dropped. Signals are reset to their defaults in the child and
    /// its signal mask is cleared (a test runner or the bench may block or ignore some).
    public convenience init(_ arguments: [String], name: String, captureStdout: Bool, stderrPath: String?) throws {
        try self.init(arguments, name: name, captureStdout: captureStdout, stderrPath: stderrPath, inheritOutput: false)
    }

    private init(
        _ arguments: [String], name: String, captureStdout: Bool, stderrPath: String?, inheritOutput: Bool
    ) throws {
        self.name = name
        self.killsWhenDropped = inheritOutput
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeDescriptors: [Int32] = [-1, -1]
        if captureStdout {
            guard pipe(&pipeDescriptors) == 0 else { throw Failure(description: "pipe: \(errno)") }
            posix_spawn_file_actions_adddup2(&actions, pipeDescriptors[1], 1)
            posix_spawn_file_actions_addclose(&actions, pipeDescriptors[0])
            posix_spawn_file_actions_addclose(&actions, pipeDescriptors[1])
        } else if !inheritOutput {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        if !inheritOutput {
            posix_spawn_file_actions_addopen(
                &actions, 2, stderrPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, number) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, arguments[0], &actions, &attributes, argv, environ)
        if captureStdout { close(pipeDescriptors[1]) }
        guard result == 0 else {
            if captureStdout { close(pipeDescriptors[0]) }
            throw Failure(description: "cannot start \(arguments[0]): \(SystemCall.errnoName(result))")
        }
        pid = child
        stdoutDescriptor = captureStdout ? pipeDescriptors[0] : -1
        ChildRegistry.add(child, name)
    }

    deinit {
        if exit == nil {
            if killsWhenDropped { kill() } else { _ = stop(timeoutSeconds: 10) }
        }
        if stdoutDescriptor >= 0 { close(stdoutDescriptor) }
    }

    /// SIGKILL, and reaps the child.
    public func kill() {
        guard exit == nil else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        var usage = rusage()
        if wait4(pid, &status, 0, &usage) == pid { exit = Exit(status: status, usage: usage) }
        ChildRegistry.remove(pid)
    }

    /// The next line of stdout, without its newline; nil at EOF; throws after `timeoutSeconds`.
    public func readLine(timeoutSeconds: Double) throws -> String? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw Failure(description: "\(name) printed no line within \(timeoutSeconds) s") }
            var poller = pollfd(fd: stdoutDescriptor, events: Int16(POLLIN), revents: 0)
            let ready = try SystemCall.retryingOnInterrupt("poll \(name)'s stdout") {
                Glibc.poll(&poller, 1, Int32(min(left, 1) * 1000))
            }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = try SystemCall.retryingOnInterrupt("read \(name)'s stdout") {
                read(stdoutDescriptor, &chunk, chunk.count)
            }
            guard count > 0 else {
                if buffer.isEmpty { return nil }
                let line = String(decoding: buffer, as: UTF8.self)
                buffer.removeAll()
                return line
            }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    /// A JSON object line (a tool's ready line), skipping lines that are not one.
    public func readJSONLine(timeoutSeconds: Double) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while let line = try readLine(timeoutSeconds: max(0.1, deadline.timeIntervalSinceNow)) {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
                return object
            }
        }
        throw Failure(description: "\(name) exited before printing its ready line")
    }

    public var isRunning: Bool {
        if exit != nil { return false }
        _ = poll()
        return exit == nil
    }

    /// Reaps the child if it has exited.
    @discardableResult
    public func poll() -> Exit? {
        if let exit { return exit }
        var status: Int32 = 0
        var usage = rusage()
        if wait4(pid, &status, WNOHANG, &usage) == pid {
            exit = Exit(status: status, usage: usage)
            ChildRegistry.remove(pid)
        }
        return exit
    }

    public func signal(_ number: Int32) {
        if exit == nil { Glibc.kill(pid, number) }
    }

    /// Waits up to `timeoutSeconds` for the child to exit.
    public func wait(timeoutSeconds: Double) -> Exit? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while poll() == nil && Date() < deadline { usleep(5_000) }
        return exit
    }

    /// SIGTERM, then SIGKILL after `timeoutSeconds`.
    @discardableResult
    public func stop(timeoutSeconds: Double = 10) -> Exit? {
        if let exit { return exit }
        Glibc.kill(pid, SIGTERM)
        if let exit = wait(timeoutSeconds: timeoutSeconds) { return exit }
        Glibc.kill(pid, SIGKILL)
        return wait(timeoutSeconds: 5)
    }
}
