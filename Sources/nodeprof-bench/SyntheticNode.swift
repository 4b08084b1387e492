import Foundation
import NodeprofCore
import Profiles
import TestSupport

/// A made-up but realistically shaped busy node, for measuring encoders on more processes
/// than a small test machine runs.
///
/// Deterministic: the same parameters give the same processes, stacks and samples. What it
/// models:
/// - `processes` processes, each running its own executable (its own GNU build id and
///   htlhash) and a subset of the usual shared libraries (libc, ld.so, libstdc++, libssl,
///   libcrypto, libz, libm), which every process maps at its own ASLR address but with the
///   same build ids and htlhashes;
/// - 20 to 80 distinct stacks per process, 8 to 40 user frames deep, grown as a tree (most
///   stacks extend a prefix of an earlier one), so callers repeat as in a real program;
///   functions return to one of three call sites, leaf addresses fall anywhere in the
///   function;
/// - about one sample in ten (``Parameters/kernelShare``) with 5 to 15 kernel frames on top
///   (syscalls, page faults, timer interrupts), kernel addresses shared by all processes;
/// - a few named threads per process;
/// - application function names of 20 to 80 characters in C++, Rust and Go styles, drawn
///   from one pool, so unrelated executables share some names (common frameworks);
/// - samples: every CPU busy at every tick of the sampling clock, the process picked with a
///   Zipf-like skew (the busiest few processes take most samples), the thread and stack
///   skewed too.
struct SyntheticNode {
    struct Parameters {
        var processes = 200
        var cpus = 16
        var frequencyHz: UInt64 = 99
        /// Share of samples that carry kernel frames.
        var kernelShare = 0.1
        var seed: UInt64 = 1
    }

    /// A function as laid out in a file: its name and where its code is.
    private struct Function {
        var name: String
        var offset: UInt64
        var size: UInt64
        /// Return addresses inside the function (offsets from the file's text start).
        var callSites: [UInt64]
    }

    /// A file mapped into processes: the executable or a shared library.
    private struct Image {
        var path: String
        var buildID: String
        var htlHash: String
        var fileOffset: UInt64
        var textSize: UInt64
        var functions: [Function]
    }

    private struct Thread {
        var tid: Int32
        var name: String
    }

    private struct Process {
        var pid: Int32
        var name: String
        var executablePath: String
        var cgroupID: UInt64
        var threads: [Thread]
        var threadPicker: SkewedPicker
        /// Stacks without kernel frames, leaf first.
        var userStacks: [[Frame]]
        var userStackPicker: SkewedPicker
        /// Stacks with kernel frames on top of user frames, leaf first.
        var kernelStacks: [[Frame]]
        var kernelStackPicker: SkewedPicker
    }

    let parameters: Parameters
    private let processes: [Process]
    private let processPicker: SkewedPicker

    init(parameters: Parameters = Parameters()) {
        self.parameters = parameters
        var random = SplitMix64(seed: parameters.seed)
        let names = FunctionNames.applicationPool(count: 4000, using: &random)
        let libraries = SharedLibraries.all(using: &random)
        let kernel = KernelPaths(using: &random)
        processes = (0..<parameters.processes).map { index in
            Self.makeProcess(index: index, names: names, libraries: libraries, kernel: kernel, using: &random)
        }
        processPicker = SkewedPicker(count: parameters.processes, exponent: 1.0)
    }

    /// Number of distinct stacks over all processes.
    var stackCount: Int {
        processes.reduce(0) { $0 + $1.userStacks.count + $1.kernelStacks.count }
    }

    /// A profile of `seconds` of the node, starting at `startTimeNanos`. Different
    /// `sampleSeed`s give different samples of the same processes and stacks (successive
    /// windows of one node).
    func profile(startTimeNanos: UInt64, seconds: Double, sampleSeed: UInt64 = 0) -> Profile {
        var random = SplitMix64(seed: parameters.seed &* 0x9E37_79B9 &+ sampleSeed &+ 1)
        let durationNanos = UInt64(seconds * 1e9)
        var profile = Profile(
            startTimeNanos: startTimeNanos, durationNanos: durationNanos, frequencyHz: parameters.frequencyHz)
        // Intern every stack once: adding a sample is then a small record.
        var userStackIDs: [[Profile.StackID]] = []
        var kernelStackIDs: [[Profile.StackID]] = []
        for process in processes {
            userStackIDs.append(process.userStacks.map { profile.intern(stack: $0) })
            kernelStackIDs.append(process.kernelStacks.map { profile.intern(stack: $0) })
            profile.processAttributes[process.pid] = [
                Attribute("process.executable.path", .string(process.executablePath))
            ]
        }
        let period = profile.periodNanos
        let ticks = Int(seconds * Double(parameters.frequencyHz))
        for tick in 0..<ticks {
            for cpu in 0..<parameters.cpus {
                let which = processPicker.pick(using: &random)
                let process = processes[which]
                let thread = process.threads[process.threadPicker.pick(using: &random)]
                let stack =
                    Double.random(in: 0..<1, using: &random) < parameters.kernelShare
                    ? kernelStackIDs[which][process.kernelStackPicker.pick(using: &random)]
                    : userStackIDs[which][process.userStackPicker.pick(using: &random)]
                // CPUs' timers are not aligned: spread them over the period, plus jitter.
                let offset = UInt64(tick) * period + UInt64(cpu) * period / UInt64(parameters.cpus)
                let timestamp = startTimeNanos + offset + UInt64.random(in: 0..<10_000, using: &random)
                profile.add(
                    stack: stack, pid: process.pid, tid: thread.tid, threadName: thread.name,
                    processName: process.name, cgroupID: process.cgroupID,
                    timestampNanos: min(timestamp, startTimeNanos + durationNanos - 1))
            }
        }
        return profile
    }

    // MARK: Building the node

    private static let processNames = [
        "postgres", "nginx", "envoy", "java", "python3", "node", "redis-server", "mysqld", "kubelet", "containerd",
        "etcd", "coredns", "prometheus", "grafana-server", "fluent-bit", "otelcol-contrib", "haproxy", "memcached",
        "mongod", "clickhouse-server", "kafka-server", "zookeeper", "beam.smp", "vault", "consul", "traefik",
        "php-fpm8.2", "ruby", "dotnet", "gunicorn", "uwsgi", "celery", "elasticsearch", "cassandra", "minio",
        "nats-server", "pilot-agent", "cilium-agent", "kube-proxy", "containerd-shim",
    ]

    private static let threadNames = [
        "worker", "io", "grpc-exec", "tokio-rt-w", "GC Thread#", "pool-1-thr", "http-nio", "flush", "bg-compact",
        "netpoll", "timer", "signal",
    ]

    private static func makeProcess(
        index: Int, names: [String], libraries: [SharedLibraries.Library], kernel: KernelPaths,
        using random: inout SplitMix64
    ) -> Process {
        let pid = Int32(1000 + index * 37)
        let name = processNames[index % processNames.count]
        let functions = FunctionLayout.lay(
            names: (0..<Int.random(in: 40...160, using: &random)).map { _ in names.randomElement(using: &random)! },
            using: &random)
        let executable = Image(
            path: "/usr/local/bin/\(name)", buildID: random.hex(bytes: 20), htlHash: random.hex(bytes: 16),
            fileOffset: 0x2000, textSize: functions.last.map { $0.offset + $0.size } ?? 0x1000, functions: functions)

        // Files as mapped in this process: the executable at a PIE address, libraries at
        // their own random bases (same files, same build ids, different addresses).
        var mapped: [(image: Image, module: Module)] = []
        var libraryWeights: [Double] = []
        for (image, share, weight) in [(executable, 1.0, 0.0)]
            + libraries.map({ ($0.image, $0.usedByShare, $0.callWeight) })
        where share > Double.random(in: 0..<1, using: &random) {
            libraryWeights.append(weight)
            let base: UInt64 = image.path == executable.path ? 0x5500_0000_0000 : 0x7F00_0000_0000
            let start = base + UInt64.random(in: 0..<0x00FF_FFFF, using: &random) << 12
            let module = Module(
                start: start, limit: start + image.textSize, fileOffset: image.fileOffset, path: image.path,
                buildID: image.buildID, htlHash: image.htlHash)
            mapped.append((image, module))
        }
        let libc = mapped.firstIndex { $0.image.path.hasSuffix("/libc.so.6") } ?? 0
        let libraryPicker = WeightedPicker(weights: libraryWeights)

        func frame(_ mappedIndex: Int, _ function: Function, leaf: Bool) -> Frame {
            let module = mapped[mappedIndex].module
            // A caller frame holds a return address (one of the function's call sites); the
            // leaf holds wherever the CPU was.
            let offset =
                leaf
                ? function.offset + UInt64.random(in: 0..<function.size, using: &random)
                : function.callSites.randomElement(using: &random)!
            return Frame(kind: .native, address: module.start + offset, function: function.name, module: module)
        }

        // Stacks, root first while growing.
        let stackCount = Int.random(in: 20...80, using: &random)
        let kernelStackCount = max(2, stackCount / 10)
        let root: [Frame] = [
            frame(0, executable.functions[0], leaf: false),  // the entry point
            frame(libc, mapped[libc].image.functions[0], leaf: false),  // __libc_start_call_main
            frame(0, executable.functions[1], leaf: false),  // main
        ]
        var rootFirst: [[Frame]] = []
        for _ in 0..<(stackCount - kernelStackCount) {
            let depth = Int.random(in: 8...40, using: &random)
            var stack = root
            if let earlier = rootFirst.randomElement(using: &random), Double.random(in: 0..<1, using: &random) < 0.8 {
                // Share a caller chain with an earlier stack, then diverge.
                stack = Array(earlier.prefix(Int.random(in: 3...min(depth - 1, earlier.count - 1), using: &random)))
            }
            while stack.count < depth {
                let isLeaf = stack.count == depth - 1
                // Mostly the program's own code; library calls, more often at the leaf.
                let inLibrary = Double.random(in: 0..<1, using: &random) < (isLeaf ? 0.5 : 0.2) && mapped.count > 1
                let which = inLibrary ? libraryPicker.pick(using: &random) : 0
                let function = mapped[which].image.functions.randomElement(using: &random)!
                stack.append(frame(which, function, leaf: isLeaf))
            }
            rootFirst.append(stack)
        }
        let userStacks = rootFirst.map { Array($0.reversed()) }
        let kernelStacks = (0..<kernelStackCount).map { _ in
            kernel.stack(using: &random) + userStacks.randomElement(using: &random)!
        }

        let threadCount = [1, 1, 2, 3, 4, 4, 6, 8].randomElement(using: &random)!
        let threadKind = threadNames.randomElement(using: &random)!
        let threads = (0..<threadCount).map { number in
            Thread(
                tid: pid + Int32(number),
                name: number == 0 ? String(name.prefix(15)) : String("\(threadKind)-\(number)".prefix(15)))
        }
        return Process(
            pid: pid, name: name, executablePath: executable.path, cgroupID: random.next() >> 32,
            threads: threads, threadPicker: SkewedPicker(count: threads.count, exponent: 1.2),
            userStacks: userStacks, userStackPicker: SkewedPicker(count: userStacks.count, exponent: 1.0),
            kernelStacks: kernelStacks, kernelStackPicker: SkewedPicker(count: kernelStacks.count, exponent: 1.0))
    }

    // MARK: Files and names

    /// Lays out functions one after another, each 64 bytes to 8 KiB, with three call sites.
    private enum FunctionLayout {
        static func lay(names: [String], using random: inout SplitMix64) -> [Function] {
            var offset: UInt64 = 0x1000
            var functions: [Function] = []
            var seen: Set<String> = []
            for name in names where seen.insert(name).inserted {
                let size = UInt64.random(in: 0x40...0x2000, using: &random) & ~0xF
                let sites = (0..<3).map { _ in offset + UInt64.random(in: 5..<size, using: &random) }
                functions.append(Function(name: name, offset: offset, size: size, callSites: sites))
                offset += size
            }
            return functions
        }
    }

    private enum SharedLibraries {
        struct Library {
            var image: Image
            /// Share of processes that map it.
            var usedByShare: Double
            /// How often code calls into it, relative to the others.
            var callWeight: Double
        }

        static func all(using random: inout SplitMix64) -> [Library] {
            let specifications: [(path: String, share: Double, weight: Double, fileOffset: UInt64, names: [String])] = [
                (
                    "/usr/lib/x86_64-linux-gnu/libc.so.6", 1.0, 5, 0x28000,
                    [
                        "__libc_start_call_main", "__libc_start_main_impl", "malloc", "_int_malloc", "free",
                        "_int_free", "__memmove_avx_unaligned_erms", "__memset_avx2_unaligned_erms",
                        "__strlen_avx2", "__memcmp_avx2_movbe", "pthread_cond_wait@@GLIBC_2.3.2",
                        "___pthread_mutex_lock", "__pthread_mutex_unlock_usercnt", "__GI___poll", "epoll_wait",
                        "__libc_read", "__libc_write", "__libc_recv", "__libc_send", "clock_gettime@@GLIBC_2.17",
                        "__futex_abstimed_wait_common", "start_thread", "clone3", "__GI___qsort_r", "msort_with_tmp",
                        "__strchr_avx2", "__vfprintf_internal", "__GI___snprintf", "realloc", "_int_realloc",
                    ]
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", 1.0, 0.2, 0x1000,
                    ["_dl_runtime_resolve_xsavec", "_dl_fixup", "_dl_lookup_symbol_x", "do_lookup_x"]
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30", 0.6, 3, 0x9a000,
                    [
                        "operator new(unsigned long)", "operator delete(void*, unsigned long)",
                        "std::__detail::_Prime_rehash_policy::_M_next_bkt(unsigned long) const",
                        "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >::_M_mutate(unsigned long, unsigned long, char const*, unsigned long)",
                        "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >::_M_append(char const*, unsigned long)",
                        "std::_Rb_tree_insert_and_rebalance(bool, std::_Rb_tree_node_base*, std::_Rb_tree_node_base*, std::_Rb_tree_node_base&)",
                        "std::_Hash_bytes(void const*, unsigned long, unsigned long)",
                        "std::condition_variable::wait(std::unique_lock<std::mutex>&)",
                        "std::ostream::sentry::sentry(std::ostream&)", "__cxa_throw", "__dynamic_cast",
                    ]
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libssl.so.3", 0.4, 1, 0x22000,
                    [
                        "SSL_read", "SSL_write", "ssl3_read_bytes", "ssl3_write_bytes", "tls_get_more_records",
                        "tls13_enc", "ssl3_read_n", "tls_write_records_default", "SSL_do_handshake",
                        "tls_process_server_hello",
                    ]
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", 0.4, 2, 0x8a000,
                    [
                        "EVP_EncryptUpdate", "EVP_DecryptUpdate", "aesni_gcm_encrypt", "aesni_gcm_decrypt",
                        "gcm_ghash_avx", "sha256_block_data_order_avx2", "SHA256_Update", "BN_mod_exp_mont_consttime",
                        "bn_mul_mont_fixed_top", "ecp_nistz256_point_double", "EVP_DigestUpdate", "CRYPTO_malloc",
                        "ossl_gcm_cipher", "ossl_aes_gcm_cipher_update",
                    ]
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", 0.3, 1, 0x2000,
                    ["deflate", "deflate_slow", "longest_match", "inflate", "inflate_fast", "crc32_z", "adler32_z"]
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libm.so.6", 0.3, 1, 0xe000,
                    ["__exp_fma", "__log_fma", "__pow_fma", "__sin_fma", "__cos_fma", "__ieee754_sqrt"]
                ),
            ]
            return specifications.map { specification in
                let functions = FunctionLayout.lay(names: specification.names, using: &random)
                let image = Image(
                    path: specification.path, buildID: random.hex(bytes: 20), htlHash: random.hex(bytes: 16),
                    fileOffset: specification.fileOffset,
                    textSize: (functions.last.map { $0.offset + $0.size } ?? 0x1000) + 0x10_0000, functions: functions)
                return Library(image: image, usedByShare: specification.share, callWeight: specification.weight)
            }
        }
    }

    /// Kernel call paths, root first, at fixed kernel addresses shared by every process.
    private struct KernelPaths {
        private static let paths: [[String]] = [
            [
                "entry_SYSCALL_64_after_hwframe", "do_syscall_64", "x64_sys_call", "__x64_sys_read", "ksys_read",
                "vfs_read", "sock_read_iter", "sock_recvmsg", "inet_recvmsg", "tcp_recvmsg", "tcp_recvmsg_locked",
                "skb_copy_datagram_iter", "__skb_datagram_iter", "_copy_to_iter", "rep_movs_alternative",
            ],
            [
                "entry_SYSCALL_64_after_hwframe", "do_syscall_64", "x64_sys_call", "__x64_sys_write", "ksys_write",
                "vfs_write", "sock_write_iter", "sock_sendmsg", "tcp_sendmsg", "tcp_sendmsg_locked", "tcp_push",
                "__tcp_push_pending_frames", "tcp_write_xmit", "__tcp_transmit_skb", "ip_queue_xmit",
            ],
            [
                "asm_exc_page_fault", "exc_page_fault", "do_user_addr_fault", "handle_mm_fault", "__handle_mm_fault",
                "do_anonymous_page", "vma_alloc_folio", "__folio_alloc", "__alloc_pages", "get_page_from_freelist",
                "clear_page_erms",
            ],
            [
                "entry_SYSCALL_64_after_hwframe", "do_syscall_64", "x64_sys_call", "__x64_sys_futex", "do_futex",
                "futex_wake", "wake_up_q", "try_to_wake_up", "_raw_spin_unlock_irqrestore",
            ],
            [
                "entry_SYSCALL_64_after_hwframe", "do_syscall_64", "x64_sys_call", "__x64_sys_epoll_wait",
                "do_epoll_wait", "ep_poll", "schedule_hrtimeout_range", "schedule", "__schedule",
                "finish_task_switch.isra.0",
            ],
            [
                "asm_sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt", "__sysvec_apic_timer_interrupt",
                "hrtimer_interrupt", "__hrtimer_run_queues", "tick_nohz_handler", "update_process_times",
                "sched_tick", "task_tick_fair", "update_curr",
            ],
        ]
        private var addresses: [String: UInt64] = [:]

        init(using random: inout SplitMix64) {
            for name in Self.paths.joined() where addresses[name] == nil {
                addresses[name] = 0xFFFF_FFFF_8100_0000 + UInt64.random(in: 0..<0x00FF_FFFF, using: &random) << 4
            }
        }

        /// 5 to 15 kernel frames, leaf first.
        func stack(using random: inout SplitMix64) -> [Frame] {
            let path = Self.paths.randomElement(using: &random)!
            let depth = Int.random(in: min(5, path.count)...min(15, path.count), using: &random)
            return path.prefix(depth).reversed().map { name in
                Frame(kind: .kernel, address: addresses[name]! + 0x1d, function: name, module: nil)
            }
        }
    }

    private enum FunctionNames {
        static let namespaces = [
            "app", "core", "net", "http", "grpc", "storage", "db", "cache", "sched", "io", "json", "proto", "auth",
            "metrics", "log", "util", "rpc", "fs", "queue", "worker", "index", "query", "txn", "wal",
        ]
        static let types = [
            "ConnectionPool", "RequestHandler", "BufferedReader", "FrameDecoder", "SessionManager", "IndexWriter",
            "QueryPlanner", "BlockCache", "EventLoop", "TaskScheduler", "MessageRouter", "TokenValidator",
            "HistogramSink", "SegmentMerger", "StreamEncoder", "LeaseTracker", "ShardMap", "WriteAheadLog",
            "CompactionJob", "RetryBudget", "Server", "Client", "Conn", "Batch",
        ]
        static let methods = [
            "handle", "process", "readFrame", "writeBatch", "encode", "decode", "flush", "lookup", "insert",
            "compact", "schedule", "dispatch", "validate", "serialize", "parseHeader", "acquire", "release", "poll",
            "resolve", "update", "run", "step", "apply", "commit",
        ]
        static let suffixes = ["", "Locked", "Async", "Impl", "Internal", "Slow", "Fast", "Once"]
        static let arguments = [
            "()", "(int)", "(unsigned long)", "(std::string const&)", "(char const*, unsigned long)", "(void*)",
            "(Request const&, Response*)", "(std::vector<unsigned char, std::allocator<unsigned char> > const&)",
            "(bool) const", "() const",
        ]

        /// `count` distinct names of 20 to 80 characters.
        static func applicationPool(count: Int, using random: inout SplitMix64) -> [String] {
            var names: [String] = []
            var seen: Set<String> = []
            while names.count < count {
                let name = make(using: &random)
                guard (20...80).contains(name.count), seen.insert(name).inserted else { continue }
                names.append(name)
            }
            return names
        }

        private static func make(using random: inout SplitMix64) -> String {
            let outer = namespaces.randomElement(using: &random)!
            let inner = namespaces.randomElement(using: &random)!
            let type = types.randomElement(using: &random)!
            let method = methods.randomElement(using: &random)! + suffixes.randomElement(using: &random)!
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:  // C++, demangled
                return "\(outer)::\(inner)::\(type)::\(method)\(arguments.randomElement(using: &random)!)"
            case 6..<8:  // Rust
                let closure = Bool.random(using: &random) ? "::{{closure}}" : ""
                return "\(outer)_\(inner)::\(inner)::\(type)::\(snakeCase(method))\(closure)"
            default:  // Go
                return
                    "github.com/acme/\(outer)/\(inner).(*\(type)).\(method.prefix(1).uppercased())\(method.dropFirst())"
            }
        }

        private static func snakeCase(_ name: String) -> String {
            var result = ""
            for character in name {
                if character.isUppercase {
                    result += "_" + character.lowercased()
                } else {
                    result.append(character)
                }
            }
            return result
        }
    }
}

/// Picks `0..<count` with probability proportional to `1 / (index + 1)^exponent`.
struct SkewedPicker {
    private let weighted: WeightedPicker

    init(count: Int, exponent: Double) {
        precondition(count > 0, "nothing to pick from")
        weighted = WeightedPicker(weights: (1...count).map { 1 / pow(Double($0), exponent) })
    }

    func pick(using random: inout some RandomNumberGenerator) -> Int {
        weighted.pick(using: &random)
    }
}

/// Picks an index with probability proportional to its weight.
struct WeightedPicker {
    private let cumulative: [Double]

    init(weights: [Double]) {
        var total = 0.0
        cumulative = weights.map { weight in
            total += weight
            return total
        }
        precondition(total > 0, "nothing to pick from")
    }

    func pick(using random: inout some RandomNumberGenerator) -> Int {
        let target = Double.random(in: 0..<cumulative[cumulative.count - 1], using: &random)
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > target { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

/// TestSupport's SplitMix64 (seedable, so every run builds the same node) makes hex ids too.
extension SplitMix64 {
    /// `bytes` random bytes as lowercase hex (build ids, htlhashes).
    mutating func hex(bytes: Int) -> String {
        hexString((0..<bytes).map { _ in UInt8.random(in: .min ... .max, using: &self) })
    }
}
