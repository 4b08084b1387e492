import CSampling
import NodeprofCore
import Testing

@testable import Sampling

/// The ring-buffer record decoder against well-formed and hostile records.
@Suite struct RecordDecodingTests {
    typealias Record = nodeprof_sample
    let clock = ClockTranslation()
    let framesOffset = MemoryLayout<Record>.offset(of: \.frames)!

    /// A record with `kernel` and `user` frames, `size` bytes long (default: exactly enough).
    func record(kernel: [UInt64], user: [UInt64], version: UInt32 = UInt32(NODEPROF_RECORD_VERSION), size: Int? = nil)
        -> [UInt8]
    {
        var bytes = [UInt8](repeating: 0, count: max(size ?? 0, framesOffset + (kernel.count + user.count) * 8))
        func put<T>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value) { bytes.replaceSubrange(offset..<offset + $0.count, with: $0) }
        }
        put(version, at: MemoryLayout<Record>.offset(of: \.version)!)
        put(UInt32(NODEPROF_FLAG_USTACK_TRUNCATED), at: MemoryLayout<Record>.offset(of: \.flags)!)
        put(UInt32(42), at: MemoryLayout<Record>.offset(of: \.pid)!)
        put(UInt32(43), at: MemoryLayout<Record>.offset(of: \.tid)!)
        put(UInt64(7), at: MemoryLayout<Record>.offset(of: \.cgroup_id)!)
        put(UInt32(kernel.count), at: MemoryLayout<Record>.offset(of: \.kernel_stack_len)!)
        put(UInt32(user.count), at: MemoryLayout<Record>.offset(of: \.user_stack_len)!)
        let comm = Array("worker".utf8)
        bytes.replaceSubrange(
            MemoryLayout<Record>.offset(of: \.comm)!..<MemoryLayout<Record>.offset(of: \.comm)! + comm.count,
            with: comm)
        for (i, frame) in (kernel + user).enumerated() { put(frame, at: framesOffset + i * 8) }
        return Array(bytes.prefix(size ?? bytes.count))
    }

    func decode(_ bytes: [UInt8]) -> StackSample? {
        bytes.withUnsafeBytes { decodeSample($0, clock: clock) }
    }

    @Test func wellFormedRecord() throws {
        let sample = try #require(decode(record(kernel: [0xffff_1000, 0xffff_2000], user: [0x401000])))
        #expect(sample.pid == 42 && sample.tid == 43 && sample.cgroupID == 7)
        #expect(sample.threadName == "worker")
        #expect(sample.kernelStack == [0xffff_1000, 0xffff_2000])
        #expect(sample.userStack == [0x401000])
        #expect(sample.stackErrors == [.userStackTruncated])
    }

    @Test func hostileRecordsAreRejected() {
        let good = record(kernel: [1, 2], user: [3])
        // Every truncation of a valid record.
        for length in 0..<good.count {
            #expect(decode(Array(good.prefix(length))) == nil, "truncated to \(length) bytes")
        }
        #expect(decode(record(kernel: [1], user: [2], version: 99)) == nil)
        // Lengths past the depth limit, or past the bytes actually present.
        var tooDeep = record(kernel: [], user: [], size: framesOffset + 8 * 300)
        withUnsafeBytes(of: UInt32(200)) {
            tooDeep.replaceSubrange(
                MemoryLayout<Record>.offset(of: \.user_stack_len)!..<MemoryLayout<Record>.offset(of: \.user_stack_len)!
                    + 4,
                with: $0)
        }
        #expect(decode(tooDeep) == nil)
        var overclaimed = record(kernel: [1], user: [2])
        withUnsafeBytes(of: UInt32(100)) {
            overclaimed.replaceSubrange(
                MemoryLayout<Record>.offset(of: \.kernel_stack_len)!..<MemoryLayout<Record>.offset(
                    of: \.kernel_stack_len)! + 4,
                with: $0)
        }
        #expect(decode(overclaimed) == nil)
        // A comm without a terminating NUL is cut at 16 bytes, not read past.
        var longName = good
        let comm = MemoryLayout<Record>.offset(of: \.comm)!
        longName.replaceSubrange(comm..<comm + 16, with: [UInt8](repeating: UInt8(ascii: "x"), count: 16))
        #expect(decode(longName)?.threadName == String(repeating: "x", count: 16))
    }
}
