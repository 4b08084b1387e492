public import NodeprofCore
public import Profiles

/// Symbolized samples with known stacks, for tests of profiles and their encoders.
///
/// Two sets share one synthetic process (pid 100, `app`):
/// - ``basic``: 300 user-space samples, 200 `main -> work_a -> leaf_a` on thread
///   `worker-a` (tid 101) and 100 `main -> work_b -> [unsymbolized libsynth.so] -> leaf_b`
///   on thread `worker-b` (tid 102). leaf_a is 2/3 of the samples, leaf_b 1/3.
/// - ``mixed``: ``basic`` plus 40 samples in the kernel (a `write` syscall from work_b),
///   20 samples with an unsymbolized leaf in libsynth.so, and 10 samples of a recursive
///   `fib` (three frames deep), 370 samples in all.
public enum ProfilesSyntheticStacks {
    public static let pid: Int32 = 100
    public static let processName = "app"

    public static let app = Module(
        start: 0x40_0000, limit: 0x50_0000, fileOffset: 0, path: "/opt/synthetic/bin/app",
        buildID: "0a1b2c3d4e5f")
    public static let libsynth = Module(
        start: 0x7f00_0000_0000, limit: 0x7f00_0010_0000, fileOffset: 0x1000,
        path: "/opt/synthetic/lib/libsynth.so", buildID: nil)

    public static let main = user(0x40_1010, "main")
    public static let workA = user(0x40_2020, "work_a")
    public static let leafA = user(0x40_3030, "leaf_a")
    public static let workB = user(0x40_4040, "work_b")
    public static let leafB = user(0x40_5050, "leaf_b")
    public static let fibOuter = user(0x40_6010, "fib")
    public static let fibInner = user(0x40_6020, "fib")
    /// A return address in libsynth.so without a symbol (file offset 0x2234).
    public static let unsymbolizedCallback = Frame(
        kind: .native, address: 0x7f00_0000_1234, function: nil, module: libsynth)
    /// An unsymbolized leaf in libsynth.so (file offset 0x6678).
    public static let unsymbolizedLeaf = Frame(
        kind: .native, address: 0x7f00_0000_5678, function: nil, module: libsynth)
    public static let write = Frame(
        kind: .native, address: 0x7f00_0000_9abc, function: "write", module: libsynth)

    public static let kernelStack = [
        kernel(0xffff_ffff_8130_0010, "copy_user_generic_string"),
        kernel(0xffff_ffff_8120_0020, "vfs_write"),
        kernel(0xffff_ffff_8110_0030, "do_syscall_64"),
    ]

    public static var basic: [Profile.Sample] {
        repeated(200, tid: 101, thread: "worker-a", [leafA, workA, main])
            + repeated(
                100, tid: 102, thread: "worker-b", [leafB, unsymbolizedCallback, workB, main])
    }

    public static var mixed: [Profile.Sample] {
        basic
            + repeated(40, tid: 102, thread: "worker-b", kernelStack + [write, workB, main])
            + repeated(20, tid: 101, thread: "worker-a", [unsymbolizedLeaf, workA, main])
            + repeated(10, tid: 103, thread: "fib", [fibInner, fibOuter, fibOuter, main])
    }

    public static func repeated(
        _ count: Int, tid: Int32, thread: String, _ frames: [Frame]
    ) -> [Profile.Sample] {
        (0..<count).map { index in
            Profile.Sample(
                pid: pid, tid: tid, threadName: thread, processName: processName, cgroupID: 1,
                timestampNanos: 1_700_000_000_000_000_000 + UInt64(index) * 10_000_000,
                frames: frames)
        }
    }

    private static func user(_ address: UInt64, _ name: String) -> Frame {
        Frame(kind: .native, address: address, function: name, module: app)
    }

    private static func kernel(_ address: UInt64, _ name: String) -> Frame {
        Frame(kind: .kernel, address: address, function: name, module: nil)
    }
}
