import Agent
import Foundation
import Glibc
import NodeprofCore
import ProcessContext
import ProcessTable
import Recording
import Sampling
import TestSupport
import Testing

/// The process table driven by the kernel's process events, against real processes that
/// exec, exit and publish their context late. Kernel tests: root, real BPF, never skipped.
@Suite(.serialized, .machineExclusive) struct ProcessTableEventsTests {
    /// argv[1]: `late MS` burns MS ms, publishes (service.name=late), prints `published`,
    /// then burns; `exec MS PATH` burns MS ms in before_exec() then execs PATH `after`;
    /// `after` burns in after_exec(); `exit MS` burns MS ms and exits.
    static let program = """
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <time.h>
        #include <unistd.h>
        #include "otel_context.h"
        static volatile unsigned long sink;
        static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
        __attribute__((noinline)) void before_publish(double until) { while (now() < until) sink++; }
        __attribute__((noinline)) void after_publish(void) { for (;;) sink += 2; }
        __attribute__((noinline)) void before_exec(double until) { while (now() < until) sink += 3; }
        __attribute__((noinline)) void after_exec(void) { for (;;) sink += 4; }
        int main(int argc, char **argv) {
            setvbuf(stdout, NULL, _IOLBF, 0);
            if (argc > 1 && !strcmp(argv[1], "after")) after_exec();
            double ms = argc > 2 ? atof(argv[2]) / 1000 : 0;
            if (!strcmp(argv[1], "late")) {
                before_publish(now() + ms);
                otel_kv resource[] = {{"service.name", "late"}};
                if (otel_process_context_publish(resource, 1, 0, 0, 0, 0) != 0) return 2;
                printf("published\\n");
                after_publish();
            }
            if (!strcmp(argv[1], "exec")) {
                before_exec(now() + ms);
                execl(argv[3], argv[3], "after", (char *)0);
                return 3;
            }
            if (!strcmp(argv[1], "exit")) { before_exec(now() + ms); return 0; }
            return 1;
        }
        """

    /// The program's path as the kernel shows it (`/proc/PID/exe` is canonical).
    func build(_ directory: TemporaryDirectory, name: String = "lifecycle") throws -> String {
        let path = try compileC(
            Self.program, in: directory, name: name,
            flags: framePointerFlags + (try buildContextPublisherLibrary(in: directory)))
        guard let canonical = realpath(path, nil) else { throw FixtureError("realpath \(path): errno \(errno)") }
        defer { free(canonical) }
        return String(cString: canonical)
    }

    /// Polls `sampler` into `table` until `done` says so or `seconds` pass.
    func drive(
        _ sampler: Sampler, _ table: ProcessTable, seconds: Double,
        sample: (StackSample, ProcessEntry?) -> Void = { _, _ in },
        event: (ProcessEvent) -> Void = { _ in }, done: () -> Bool
    ) throws {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while monotonicNanoseconds() < deadline, !done() {
            try sampler.poll(
                timeoutMilliseconds: 50,
                events: { received in
                    table.handle(received)
                    event(received)
                },
                { received in sample(received, table.entry(pid: received.pid, cgroupID: received.cgroupID)) })
        }
    }

    @Test func aProcessThatExecsIsReadAgainAsItsNewProgram() throws {
        let directory = try TemporaryDirectory()
        let first = try build(directory, name: "first")
        let second = try build(directory, name: "second")
        let child = try ChildProcess(first, ["exec", "600", second])
        defer { child.kill() }
        let sampler = try Sampler(configuration: .init(frequency: 199, processIDs: [child.pid]))
        let table = ProcessTable()
        var paths: [UInt64: String] = [:]
        var sawExec = false
        var afterExec: Set<String> = []
        try drive(
            sampler, table, seconds: 10,
            sample: { _, entry in
                guard let entry, let path = entry.executablePath else { return }
                paths[entry.version] = path
                if sawExec { afterExec.insert(path) }
            },
            event: { event in if event.kind == .exec, event.pid == child.pid { sawExec = true } },
            done: { afterExec.contains(second) && paths.count >= 2 })
        #expect(sawExec, "the exec came as an event")
        #expect(Set(paths.values) == [first, second], "one version per program: \(paths)")
        #expect(afterExec == [second], "no sample after the exec was described as the old program")
        let statistics = table.statistics
        #expect(statistics.execEvents >= 1 && statistics.evictedOnExec == 1)
        #expect(statistics.mapsReads == 2 && statistics.executableReads == 2, "one read of each per program")
    }

    @Test func anExitedProcessIsEvictedAtOnceAfterItsSamples() throws {
        let directory = try TemporaryDirectory()
        let program = try build(directory)
        let child = try ChildProcess(program, ["exit", "400"])
        defer { child.kill() }
        let sampler = try Sampler(configuration: .init(frequency: 199, processIDs: [child.pid]))
        let table = ProcessTable()
        var samples = 0
        var exited = false
        var entryLeftAfterExit: Bool?
        try drive(
            sampler, table, seconds: 10,
            sample: { sample, _ in if sample.pid == child.pid, !exited { samples += 1 } },
            event: { event in
                guard event.kind == .exit, event.pid == child.pid else { return }
                exited = true
                entryLeftAfterExit = table.existingEntry(pid: child.pid) != nil
            },
            done: { exited })
        #expect(samples > 10, "the process was sampled before it exited")
        #expect(exited, "its exit came as an event")
        #expect(entryLeftAfterExit == false, "evicted as the exit was handled")
        #expect(table.statistics.evictedOnExit == 1)
        #expect(table.statistics.processes == 0)
    }

    @Test func aContextPublishedLateIsSeenWhenItIsPublished() throws {
        let directory = try TemporaryDirectory()
        let program = try build(directory)
        let child = try ChildProcess(program, ["late", "700"])
        defer { child.kill() }
        let sampler = try Sampler(configuration: .init(frequency: 199, processIDs: [child.pid]))
        #expect(sampler.contextEventsUnavailable == nil, "the prctl tracepoint is attached as root")
        // No rescans: only the event can make the table look again.
        let table = ProcessTable(configuration: .init(contextEventsAvailable: true))
        var sampledWithoutContext = 0
        var seenAt: UInt64?
        var publishedAt: UInt64?
        try drive(
            sampler, table, seconds: 10,
            sample: { _, entry in
                if entry != nil, entry?.context == nil, publishedAt == nil { sampledWithoutContext += 1 }
            },
            event: { event in
                guard event.kind == .contextPublished, event.pid == child.pid else { return }
                publishedAt = event.timestampNanos
                if table.existingEntry(pid: child.pid)?.context?.resource.contains(
                    Attribute("service.name", .string("late"))) == true
                {
                    seenAt = wallClockNanoseconds()
                }
            },
            done: { seenAt != nil })
        #expect(sampledWithoutContext > 10, "sampled before it published")
        let published = try #require(publishedAt, "the publication came as an event")
        let seen = try #require(seenAt, "the context was read as the event was handled")
        // The bound: seen within one second of publishing (a poll is 50 ms here).
        #expect(seen &- published < 1_000_000_000)
        #expect(table.statistics.contextEvents >= 1)
    }

    /// 1,000 short processes a second for 10 s under a whole-machine recording: the table
    /// stays small (exits evict) and no sample or event is lost to it.
    @Test func aForkExecStormKeepsTheTableBoundedAndLosesNothing() async throws {
        let directory = try TemporaryDirectory()
        let spawner = try compileC(
            """
            #include <spawn.h>
            #include <stdio.h>
            #include <sys/wait.h>
            #include <time.h>
            #include <unistd.h>
            extern char **environ;
            int main(void) {
                char *args[] = {"/bin/true", 0};
                struct timespec start; clock_gettime(CLOCK_MONOTONIC, &start);
                long spawned = 0;
                for (;;) {
                    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                    double elapsed = (t.tv_sec - start.tv_sec) + (t.tv_nsec - start.tv_nsec) / 1e9;
                    if (elapsed >= 10) break;
                    if (spawned >= elapsed * 1000) { usleep(200); continue; }
                    pid_t pid;
                    if (posix_spawn(&pid, "/bin/true", 0, 0, args, environ) == 0) { waitpid(pid, 0, 0); spawned++; }
                }
                printf("%ld\\n", spawned);
                return 0;
            }
            """, in: directory, name: "storm")
        let output = directory.file("spawned")
        let result = try await runOnDedicatedThread {
            let recording = try Recording(durationSeconds: 11, sampler: .init(frequency: 99))
            let storm = try ChildProcess("/bin/sh", ["-c", "\(spawner) > \(output)"])
            defer { storm.kill() }
            return try recording.run(stop: StopSignal()) { _ in }
        }
        let spawned =
            Int(try String(contentsOfFile: output, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
            ?? 0
        // Paced at 1,000 a second; a loaded machine spawns fewer, which the bounds below follow.
        #expect(spawned >= 3_000, "the storm ran (\(spawned) processes)")
        let table = result.processTable
        #expect(table.exitEvents >= spawned, "every exit came as an event")
        #expect(table.execEvents >= spawned)
        #expect(table.processes < 2_000, "exits evict: \(table.processes) entries left")
        #expect(result.counters.processEventsLost == 0)
        #expect(result.counters.lostRingBufferFull == 0)
        #expect(result.counters.submitted == result.counters.received, "every sample was drained")
    }
}

/// The fallback where the kernel cannot report publications: a rescan finds a late context.
@Suite(.machineExclusive) struct ProcessTableRescanTests {
    @Test func withoutEventsARescanFindsALateContextAndReadsEachFileOnce() throws {
        let directory = try TemporaryDirectory()
        let program = try ProcessTableEventsTests().build(directory)
        let child = try ChildProcess(program, ["late", "300"])
        defer { child.kill() }
        let table = ProcessTable(configuration: .init(contextEventsAvailable: false, rescanNanos: 50_000_000))
        let first = try #require(table.entry(pid: child.pid))
        #expect(first.context == nil)
        #expect(first.executablePath == program)
        #expect(table.statistics.mapsReads == 1 && table.statistics.executableReads == 1)
        let deadline = monotonicNanoseconds() + 5_000_000_000
        var entry = first
        while entry.context == nil, monotonicNanoseconds() < deadline {
            usleep(20_000)
            entry = try #require(table.entry(pid: child.pid))
        }
        #expect(entry.context?.resource == [Attribute("service.name", .string("late"))])
        #expect(entry.version != first.version, "a new description once it published")
        #expect(entry.attributes.first == Attribute("service.name", .string("late")))
        #expect(entry.attributes.last == Attribute("process.executable.path", .string(program)))
        #expect(table.statistics.executableReads == 1, "the executable is read once")
        // Published: no more rescans, only header checks.
        let reads = table.statistics.mapsReads
        for _ in 0..<5 {
            usleep(60_000)
            _ = table.entry(pid: child.pid)
        }
        #expect(table.statistics.mapsReads == reads)
    }
}
