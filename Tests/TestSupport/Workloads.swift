import Foundation
import Glibc

/// Errors from test fixtures (compiling workloads, starting processes).
public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A fresh temporary directory, removed when the value is released.
public final class TemporaryDirectory {
    public let path: String

    public init(prefix: String = "nodeprof-test") throws {
        var template = Array("\(NSTemporaryDirectory())/\(prefix)-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FixtureError("mkdtemp failed: errno \(errno)")
        }
        path = String(cString: result)
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs a program to completion and returns its standard output; throws on a non-zero
/// exit with the program's standard error in the message.
@discardableResult
public func runProgram(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws
    -> String
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes before waiting so a chatty child never blocks on a full pipe.
    let errData = LockedData()
    let errThread = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
    errThread.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !errData.isSet { usleep(1000) }
    let stdout = String(decoding: outData, as: UTF8.self)
    guard process.terminationStatus == 0 else {
        let stderr = String(decoding: errData.get(), as: UTF8.self)
        throw FixtureError(
            "\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(stderr)")
    }
    return stdout
}

private final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ value: Data) { lock.lock(); data = value; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return data != nil }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data ?? Data() }
}

/// Compiles C source with the system compiler. `flags` go before the output.
public func compileC(_ source: String, in directory: TemporaryDirectory, name: String, flags: [String] = []) throws
    -> String
{
    let sourcePath = directory.file("\(name).c")
    try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
    let output = directory.file(name)
    try runProgram("/usr/bin/cc", flags + ["-o", output, sourcePath])
    return output
}

/// The C workload with a known call tree: main -> work_a -> leaf_a burns two thirds of
/// the CPU time, main -> work_b -> leaf_b one third. Frame pointers on, no inlining, and
/// CPU time measured per thread so preemption does not skew the 2:1 split.
public let callTreeWorkloadSource = #"""
    #include <stdint.h>
    #include <time.h>

    static volatile uint64_t sink;

    static uint64_t thread_cpu_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }

    __attribute__((noinline)) void leaf_a(uint64_t ns) {
        uint64_t end = thread_cpu_ns() + ns;
        uint64_t x = sink;
        do {
            for (int i = 0; i < 200000; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
            sink = x;
        } while (thread_cpu_ns() < end);
    }

    __attribute__((noinline)) void leaf_b(uint64_t ns) {
        uint64_t end = thread_cpu_ns() + ns;
        uint64_t x = sink;
        do {
            for (int i = 0; i < 200000; i++) x = x * 2862933555777941757ull + 3037000493ull;
            sink = x;
        } while (thread_cpu_ns() < end);
    }

    __attribute__((noinline)) void work_a(void) { leaf_a(20000000); sink++; }
    __attribute__((noinline)) void work_b(void) { leaf_b(10000000); sink++; }

    int main(void) {
        for (;;) {
            work_a();
            work_b();
        }
    }
    """#

/// A workload that spends its time in the kernel: reads /dev/zero in 1 MiB chunks.
public let syscallWorkloadSource = #"""
    #include <fcntl.h>
    #include <stdlib.h>
    #include <unistd.h>

    int main(void) {
        int fd = open("/dev/zero", O_RDONLY);
        if (fd < 0) return 1;
        char *buf = malloc(1 << 20);
        for (;;) {
            if (read(fd, buf, 1 << 20) < 0) return 2;
        }
    }
    """#

/// Workloads whose call tree a frame-pointer walk must see: frame pointers everywhere, no
/// inlining, no tail calls.
public let framePointerFlags = [
    "-O1", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-inline", "-fno-optimize-sibling-calls",
]

/// Compiles the call-tree workload with frame pointers and no inlining.
public func buildCallTreeWorkload(in directory: TemporaryDirectory) throws -> String {
    try compileC(
        callTreeWorkloadSource, in: directory, name: "calltree",
        flags: framePointerFlags + ["-g"])
}

/// Compiles the syscall workload.
public func buildSyscallWorkload(in directory: TemporaryDirectory) throws -> String {
    try compileC(syscallWorkloadSource, in: directory, name: "readzero", flags: ["-O1", "-fno-omit-frame-pointer"])
}

/// A 40-deep recursion with 512-byte frames that burns CPU at the bottom: the stack is far
/// larger than the sampler's bulk copy, so the walk must continue frame by frame.
public let deepStackWorkloadSource = #"""
    #include <stdint.h>
    #include <string.h>

    static volatile uint64_t sink;

    __attribute__((noinline)) void store(uint64_t x) { sink = x; }

    /* Not a leaf (it calls store), so gcc gives it a frame: a frameless leaf would hide its
     * caller from any frame-pointer walk. */
    __attribute__((noinline)) void spin(void) {
        uint64_t x = sink;
        for (int i = 0; i < 5000000; i++) x = x * 6364136223846793005ull + 1;
        store(x);
    }

    __attribute__((noinline)) void descend(int depth) {
        volatile char pad[512];
        memset((char *)pad, depth, sizeof(pad));
        if (depth == 0) spin(); else descend(depth - 1);
        sink += pad[depth % 512];
    }

    int main(void) {
        for (;;) descend(39);
    }
    """#

/// Compiles the deep-stack workload with frame pointers.
public func buildDeepStackWorkload(in directory: TemporaryDirectory) throws -> String {
    try compileC(
        deepStackWorkloadSource, in: directory, name: "deepstack",
        flags: framePointerFlags)
}

/// The writer library's C part (Sources/CContextPublisher) built as applications link it: a
/// TLSDESC shared library `libotelctx.so` in `directory`. Returns the flags that compile and
/// link a C program against it (include path, the library, an rpath to find it).
public func buildContextPublisherLibrary(in directory: TemporaryDirectory) throws -> [String] {
    let root = repositoryRoot()
    let include = "\(root)/Sources/CContextPublisher/include"
    let library = directory.file("libotelctx.so")
    try runProgram(
        "/usr/bin/cc",
        [
            "-shared", "-fPIC", "-O1", "-mtls-dialect=gnu2", "-I", include, "-o", library,
            "\(root)/Sources/CContextPublisher/otel_context.c",
        ])
    return ["-I", include, "-Wl,--no-as-needed", library, "-Wl,-rpath,\(directory.path)"]
}
