public import Foundation
import Glibc

/// A tiny protobuf encoder for test payloads (the decoder under test is the only reader).
public enum Proto {
    public static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var out: [UInt8] = []
        while value >= 0x80 {
            out.append(UInt8(value & 0x7f) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
        return out
    }
    public static func field(_ number: Int, _ bytes: [UInt8]) -> [UInt8] {
        varint(UInt64(number << 3 | 2)) + varint(UInt64(bytes.count)) + bytes
    }
    public static func string(_ value: String) -> [UInt8] { field(1, Array(value.utf8)) }
    public static func array(_ values: [[UInt8]]) -> [UInt8] { field(5, values.flatMap { field(1, $0) }) }
    public static func keyValue(_ key: String, _ anyValue: [UInt8]) -> [UInt8] {
        field(1, Array(key.utf8)) + field(2, anyValue)
    }
    /// ProcessContext { resource { attributes }, attributes }.
    public static func context(resource: [[UInt8]], attributes: [[UInt8]]) -> [UInt8] {
        field(1, resource.flatMap { field(1, $0) }) + attributes.flatMap { field(2, $0) }
    }

    /// The payload of the brief: checkout 1.4.2 in prod, with thread-context reference data.
    public static func checkout(name: String = "checkout", version: String = "1.4.2") -> [UInt8] {
        context(
            resource: [keyValue("service.name", string(name)), keyValue("service.version", string(version))],
            attributes: [
                keyValue("deployment.environment.name", string("prod")),
                keyValue("threadlocal.schema_version", string("tlsdesc_v1_dev")),
                keyValue("threadlocal.attribute_key_map", array([string("http.route"), string("user.tier")])),
            ])
    }

    public static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}

/// C program publishing a process context by hand per the writer protocol. Modes (argv[1]):
/// valid HEX [HEX2]: publish HEX; on SIGUSR1 republish HEX2 (timestamp 0, swap, new timestamp);
/// badsig, version99, size0, size4g, badptr, stuck0, small: hostile headers;
/// writer HEX HEX2 (same length): a thread rewrites the payload in place continuously;
/// fork N HEX: N children each publish HEX and print `pid=<pid>`.
/// With PUBLISHER_BURN=BUSY_MS:PERIOD_MS in the environment, every process (children too)
/// burns CPU BUSY_MS of every PERIOD_MS once published, so a profiler samples it.
let publisherSource = #"""
    #define _GNU_SOURCE
    #include <pthread.h>
    #include <signal.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    #include <sys/prctl.h>
    #include <time.h>
    #include <unistd.h>

    struct header {
        char signature[8];
        uint32_t version;
        uint32_t payload_size;
        volatile uint64_t published_at;
        uint64_t payload;
    } __attribute__((packed));

    static struct header *hdr;
    static volatile sig_atomic_t republish;

    static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }

    static uint8_t *unhex(const char *text, uint32_t *size) {
        size_t n = strlen(text) / 2;
        uint8_t *out = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) sscanf(text + 2 * i, "%2hhx", &out[i]);
        *size = (uint32_t)n;
        return out;
    }

    static struct header *create_mapping(size_t file_size) {
        int fd = memfd_create("OTEL_CTX", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0) { perror("memfd_create"); exit(2); }
        if (ftruncate(fd, (off_t)file_size) != 0) { perror("ftruncate"); exit(2); }
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { perror("mmap"); exit(2); }
        close(fd);
        return p;
    }

    static void publish(uint32_t version, const uint8_t *payload, uint32_t size, uint64_t ts) {
        hdr = create_mapping(4096);
        memcpy(hdr->signature, "OTEL_CTX", 8);
        hdr->version = version;
        hdr->payload_size = size;
        hdr->payload = (uint64_t)(uintptr_t)payload;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        hdr->published_at = ts;
        prctl(0x53564d41, 0, (unsigned long)hdr, 4096, "OTEL_CTX");
    }

    static void on_usr1(int sig) { (void)sig; republish = 1; }

    static long burn_busy_ms, burn_period_ms;
    static volatile uint64_t burn_sink;

    /* Sleeps about 1 ms, or burns CPU (PUBLISHER_BURN=BUSY:PERIOD) for BUSY of every PERIOD ms. */
    static void idle_or_burn(void) {
        if (burn_period_ms <= 0) { usleep(1000); return; }
        uint64_t period = (uint64_t)burn_period_ms * 1000000ull;
        /* Each process at its own phase: publishers forked together do not all burn at once. */
        uint64_t phase = (now_ns() + (uint64_t)getpid() * 7919ull * 1000000ull) % period;
        if (phase < (uint64_t)burn_busy_ms * 1000000ull) {
            for (int i = 0; i < 100000; i++) burn_sink += (uint64_t)i * 2654435761u;
        } else {
            /* Until the next busy phase: hundreds of publishers waking every millisecond
             * would load the scheduler more than their work. A signal cuts the sleep short. */
            usleep((useconds_t)((period - phase) / 1000));
        }
    }

    static uint8_t *variant_a, *variant_b, *live;
    static uint32_t variant_size;

    static void *rewriter(void *arg) {
        (void)arg;
        for (uint64_t i = 0;; i++) {
            hdr->published_at = 0;
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            const uint8_t *src = (i & 1) ? variant_b : variant_a;
            for (uint32_t j = 0; j < variant_size; j++) ((volatile uint8_t *)live)[j] = src[j];
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            hdr->published_at = now_ns() + i + 1;
            /* Odd rounds rewrite again at once; even rounds leave a short stable window. */
            if (i & 1) usleep(50);
        }
        return NULL;
    }

    int main(int argc, char **argv) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        const char *burn = getenv("PUBLISHER_BURN");
        if (burn) sscanf(burn, "%ld:%ld", &burn_busy_ms, &burn_period_ms);
        const char *mode = argc > 1 ? argv[1] : "valid";
        uint32_t size = 0;
        uint8_t *payload = unhex(argc > 2 ? argv[2] : "0a00", &size);
        if (!strcmp(mode, "valid")) {
            /* Test runners may start us with signals blocked. */
            sigset_t usr1;
            sigemptyset(&usr1);
            sigaddset(&usr1, SIGUSR1);
            sigprocmask(SIG_UNBLOCK, &usr1, NULL);
            signal(SIGUSR1, on_usr1);
            publish(2, payload, size, now_ns());
        } else if (!strcmp(mode, "badsig")) {
            publish(2, payload, size, now_ns());
            memcpy(hdr->signature, "OTEL_CTY", 8);
        } else if (!strcmp(mode, "version99")) {
            publish(99, payload, size, now_ns());
        } else if (!strcmp(mode, "size0")) {
            publish(2, payload, 0, now_ns());
        } else if (!strcmp(mode, "size4g")) {
            publish(2, payload, 0xFFFFFFFFu, now_ns());
        } else if (!strcmp(mode, "badptr")) {
            void *hole = mmap(NULL, 65536, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            munmap(hole, 65536);
            publish(2, hole, size, now_ns());
        } else if (!strcmp(mode, "stuck0")) {
            publish(2, payload, size, 0);
        } else if (!strcmp(mode, "small")) {
            hdr = create_mapping(0); /* 4096 bytes mapped over an empty file: nothing readable */
        } else if (!strcmp(mode, "writer")) {
            uint32_t size_b = 0;
            variant_a = payload;
            variant_b = unhex(argv[3], &size_b);
            variant_size = size < size_b ? size : size_b;
            live = malloc(variant_size);
            memcpy(live, variant_a, variant_size);
            publish(2, live, variant_size, now_ns());
            pthread_t thread;
            pthread_create(&thread, NULL, rewriter, NULL);
        } else if (!strcmp(mode, "fork")) {
            int n = atoi(argv[2]);
            payload = unhex(argv[3], &size);
            for (int i = 0; i < n; i++) {
                pid_t pid = fork();
                if (pid == 0) {
                    prctl(PR_SET_PDEATHSIG, SIGKILL);
                    publish(2, payload, size, now_ns());
                    if (burn_period_ms > 0) for (;;) idle_or_burn();
                    for (;;) pause();
                }
                if (pid < 0) { perror("fork"); return 3; }
                printf("pid=%d\n", pid);
            }
        }
        printf("ready\n");
        for (;;) {
            /* Poll: a signal between the check and pause() would be lost. */
            idle_or_burn();
            if (republish) {
                republish = 0;
                uint32_t size2 = 0;
                uint8_t *payload2 = unhex(argc > 3 ? argv[3] : "", &size2);
                hdr->published_at = 0;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                hdr->payload = (uint64_t)(uintptr_t)payload2;
                hdr->payload_size = size2;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                hdr->published_at = now_ns();
                printf("ready\n");
            }
        }
    }
    """#

/// The compiled publisher, built once per test process.
public let publisherExecutable: Result<String, any Error> = Result {
    let directory = try TemporaryDirectory(prefix: "nodeprof-ctx")
    // Kept for the test process's lifetime: the executable lives in it.
    retainedDirectories.append(directory)
    return try compileC(publisherSource, in: directory, name: "publisher", flags: ["-O1", "-pthread"])
}
nonisolated(unsafe) private var retainedDirectories: [TemporaryDirectory] = []

/// A running publisher: started, read until `ready`, killed with SIGKILL on release
/// (processes started from Swift Testing inherit a blocked SIGTERM).
public final class Publisher {
    public let process = Process()
    private let output = Pipe()
    private var buffered = Data()
    public private(set) var childPids: [Int32] = []

    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: try publisherExecutable.get())
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        try waitUntilReady()
    }

    public var pid: Int32 { process.processIdentifier }

    public func waitUntilReady() throws {
        while true {
            while let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffered[buffered.startIndex..<newline], as: UTF8.self)
                buffered = Data(buffered[(newline + 1)...])
                if line == "ready" { return }
                if line.hasPrefix("pid="), let child = Int32(line.dropFirst(4)) { childPids.append(child) }
            }
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw FixtureError("publisher exited early") }
            buffered.append(chunk)
        }
    }

    public func signal(_ number: Int32) { Glibc.kill(pid, number) }

    public func kill() {
        guard process.isRunning else { return }
        Glibc.kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    deinit { kill() }
}
