import CContextPublisher
import CSampling
import Foundation
import Glibc
import NodeprofCore
import Sampling
import TestSupport
import Testing

/// Kernel tests: these load the real BPF program and open real perf events. They need root
/// (CI runs as root) and fail, never skip, without it.
@Suite(.serialized, .machineExclusive)
struct SamplerTests {
    @Test func samplesOnlySelectedProcessWithStacks() throws {
        let dir = try TemporaryDirectory()
        let workload = try ChildProcess(try buildCallTreeWorkload(in: dir))
        let sampler = try Sampler(configuration: .init(frequency: 499, processIDs: [workload.pid]))
        var samples: [StackSample] = []
        let deadline = Date().addingTimeInterval(1.0)
        while Date() < deadline {
            try sampler.poll(timeoutMilliseconds: 100) { samples.append($0) }
        }
        let counters = try sampler.counters()
        workload.kill()

        #expect(samples.count > 100, "expected ~500 samples of a busy process in 1 s, got \(samples.count)")
        #expect(samples.allSatisfy { $0.pid == workload.pid && $0.tid == workload.pid })
        #expect(samples.allSatisfy { $0.threadName == "calltree" })
        let withUser = samples.filter { $0.userStack.count >= 3 }
        #expect(
            Double(withUser.count) >= 0.9 * Double(samples.count),
            "user stacks with >= 3 frames: \(withUser.count)/\(samples.count)")
        #expect(counters.filteredOut > 0, "other processes (this test) should be filtered out")
        #expect(counters.received == UInt64(samples.count))
        #expect(counters.malformedRecords == 0)
        #expect(counters.lostRingBufferFull == 0)
        // Wall-clock timestamps: within the last minute.
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        #expect(samples.allSatisfy { $0.timestampNanos <= now && now - $0.timestampNanos < 60_000_000_000 })
    }

    @Test func wholeMachineCountsEveryOutcome() throws {
        let sampler = try Sampler(configuration: .init(frequency: 199))
        var received = 0
        let deadline = Date().addingTimeInterval(0.5)
        while Date() < deadline {
            received += try sampler.poll(timeoutMilliseconds: 50) { _ in }
        }
        // Drain what is still queued, then every invocation must be accounted for.
        while try sampler.poll(timeoutMilliseconds: 0, { _ in }) > 0 {}
        let c = try sampler.counters()
        #expect(c.seen > 0)
        #expect(c.filteredOut == 0)
        #expect(c.seen == c.submitted + c.idleDropped + c.lostRingBufferFull + c.internalErrors)
        #expect(c.internalErrors == 0)
        #expect(c.received <= c.submitted)
    }

    @Test func rejectsBadConfiguration() {
        #expect(throws: SamplerError.self) { try Sampler(configuration: .init(frequency: 0)) }
        #expect(throws: SamplerError.self) { try Sampler(configuration: .init(frequency: 10_000_000)) }
        #expect(throws: SamplerError.self) { try Sampler(configuration: .init(ringBufferBytes: 5000)) }
        #expect(throws: SamplerError.self) { try Sampler(configuration: .init(processIDs: [])) }
    }

    @Test func ringBufferSizeFollowsCPUsAndFrequency() {
        #expect(SamplerConfiguration.defaultRingBufferBytes(cpus: 2, frequency: 99) == 256 << 10)
        #expect(SamplerConfiguration.defaultRingBufferBytes(cpus: 2, frequency: 999) == 1 << 20)
        #expect(SamplerConfiguration.defaultRingBufferBytes(cpus: 64, frequency: 99) == 4 << 20)
        #expect(SamplerConfiguration.defaultRingBufferBytes(cpus: 100_000, frequency: 100_000) == 256 << 20)
    }

    @Test func cpuListParsing() {
        #expect(parseCPUList("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
        #expect(parseCPUList("0") == [0])
        #expect(parseCPUList("") == nil)
        #expect(parseCPUList("3-1") == nil)
        #expect(parseCPUList("0-99999999") == nil)
        #expect(parseCPUList("a-b") == nil)
        #expect(parseCPUList("1--2") == nil)
    }

    /// The record as BPF's BTF describes it must match the C/Swift view of the header.
    @Test func recordLayoutMatchesBTF() throws {
        typealias Record = nodeprof_sample
        let members: [(String, Int)] = [
            ("version", MemoryLayout<Record>.offset(of: \.version)!),
            ("flags", MemoryLayout<Record>.offset(of: \.flags)!),
            ("timestamp_ns", MemoryLayout<Record>.offset(of: \.timestamp_ns)!),
            ("cgroup_id", MemoryLayout<Record>.offset(of: \.cgroup_id)!),
            ("pid", MemoryLayout<Record>.offset(of: \.pid)!),
            ("tid", MemoryLayout<Record>.offset(of: \.tid)!),
            ("cpu", MemoryLayout<Record>.offset(of: \.cpu)!),
            ("kernel_stack_len", MemoryLayout<Record>.offset(of: \.kernel_stack_len)!),
            ("user_stack_len", MemoryLayout<Record>.offset(of: \.user_stack_len)!),
            ("comm", MemoryLayout<Record>.offset(of: \.comm)!),
            ("frames", MemoryLayout<Record>.offset(of: \.frames)!),
            ("thread_ctx_len", MemoryLayout<Record>.offset(of: \.thread_ctx_len)!),
            ("thread_ctx_room", MemoryLayout<Record>.offset(of: \.thread_ctx_room)!),
        ]
        for (name, swiftOffset) in members {
            var size: UInt32 = 0
            var offset: UInt32 = 0
            let rc = nodeprof_sampler_btf_struct_layout("nodeprof_sample", name, &size, &offset)
            try #require(rc == 0, "member \(name) not found in the object's BTF: \(rc)")
            #expect(Int(size) == MemoryLayout<Record>.size, "struct size")
            #expect(Int(offset) == swiftOffset, "offset of \(name)")
        }
    }

    /// The OTEP 4947 record header as BPF reads it (the object's BTF), as the writer library
    /// lays it out (C `otel_thread_record`) and as the Swift decoder reads it agree.
    @Test func threadRecordLayoutAgreesAcrossBPFCAndSwift() throws {
        typealias Writer = otel_thread_record
        typealias Layout = TraceContext.RecordLayout
        let members: [(name: String, writer: Int, swift: Int)] = [
            ("trace_id", MemoryLayout<Writer>.offset(of: \.trace_id)!, Layout.traceIDOffset),
            ("span_id", MemoryLayout<Writer>.offset(of: \.span_id)!, Layout.spanIDOffset),
            ("valid", MemoryLayout<Writer>.offset(of: \.valid)!, Layout.validOffset),
            ("trace_flags", MemoryLayout<Writer>.offset(of: \.trace_flags)!, Layout.traceFlagsOffset),
            ("attrs_data_size", MemoryLayout<Writer>.offset(of: \.attrs_data_size)!, Layout.attributesSizeOffset),
        ]
        for member in members {
            var size: UInt32 = 0
            var offset: UInt32 = 0
            let rc = nodeprof_sampler_btf_struct_layout("nodeprof_thread_record_header", member.name, &size, &offset)
            try #require(rc == 0, "member \(member.name) not in the object's BTF: \(rc)")
            #expect(Int(size) == Layout.headerSize, "BPF header size")
            #expect(Int(offset) == member.writer, "\(member.name): BPF \(offset), writer \(member.writer)")
            #expect(member.swift == member.writer, "\(member.name): Swift \(member.swift), writer \(member.writer)")
        }
        // The writer's attribute area starts where BPF copies from, and all three agree on the
        // record's capacity (BPF keeps room for the whole record in every sample).
        #expect(MemoryLayout<Writer>.offset(of: \.attrs_data)! == Layout.headerSize)
        #expect(MemoryLayout<Writer>.size == Layout.headerSize + Layout.attributesCapacity)
        #expect(Int(OTEL_THREAD_RECORD_ATTRS_CAPACITY) == Layout.attributesCapacity)
        #expect(MemoryLayout.size(ofValue: nodeprof_sample().thread_ctx_room) == MemoryLayout<Writer>.size)
        // The value types too: two bytes of size, one of valid and flags.
        #expect(MemoryLayout.size(ofValue: Writer().attrs_data_size) == 2)
        #expect(MemoryLayout.size(ofValue: Writer().valid) == 1)
    }
}
