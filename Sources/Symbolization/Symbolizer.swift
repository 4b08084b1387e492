import CSymbolization
import Glibc
public import NodeprofCore

/// Counters and cache sizes of a ``Symbolizer``, for metrics and debugging.
public struct SymbolizerStatistics: Sendable, Hashable {
    /// Frames (kernel and user) that got a function name.
    public var framesSymbolized = 0
    /// Frames left without a function name.
    public var framesUnsymbolized = 0
    /// Frames cut off a user stack because a return address lay outside every executable
    /// mapping: the frame-pointer chain had left the stack (code built without frame
    /// pointers), so that address and everything after it were not frames.
    public var framesDiscarded = 0
    /// User stacks cut that way.
    public var stacksCut = 0
    /// Kernel frames among ``framesSymbolized``.
    public var kernelFramesSymbolized = 0
    /// Processes whose maps could not be read when first needed (exited before `observe`).
    public var processesUnknown = 0
    /// Maps snapshots taken (first sight and refreshes).
    public var mapsSnapshots = 0
    /// Snapshots retaken because an address was not covered (dlopen, pid reuse).
    public var mapsRefreshes = 0
    /// Maps lines that did not parse.
    public var mapsLinesSkipped = 0
    /// ELF files mapped and parsed.
    public var elfFilesLoaded = 0
    /// ELF files that could not be opened, parsed, or did not match the maps line's inode.
    public var elfFileErrors = 0
    /// ELF files unmapped to respect the open-file bound.
    public var elfFilesEvicted = 0
    /// The latest ELF error, for a log line.
    public var lastELFError: String?
    /// Why kernel symbols are unavailable, when they are.
    public var kernelSymbolsError: String?

    /// Processes with a maps snapshot.
    public var processesTracked = 0
    /// ELF files currently mapped.
    public var openELFFiles = 0
    /// Cached maps-line-to-file resolutions (including remembered failures).
    public var mappedFileCacheCount = 0
    /// Demangled names in the demangler's cache.
    public var demangleCacheCount = 0
    /// Kernel symbols loaded (0 until the first kernel frame).
    public var kernelSymbolCount = 0

    public init() {}
}

/// The stage that turns a ``StackSample``'s addresses into frames (``SymbolizedStack``).
///
/// It keeps no state per process: each process's executable mappings and name come from a
/// ``ProcessImageSource`` (the agent's process table), which keeps them after the process
/// exits until its samples are done. ELF
/// files are cached by ``FileIdentity`` (build id, else device, inode, size and mtime),
/// never by pid, so one libc serves every process; at most ``maximumOpenFiles`` files stay
/// mapped (least recently used ones are unmapped).
///
/// Files are opened through `/proc/PID/root/<path>` while the process lives (a container's
/// files are in another mount namespace), then `/proc/PID/map_files/<range>` (reaches
/// deleted files), then the host path. When the opened file is on the device the maps line
/// names but has another inode, it is not the mapped file (it was replaced) and is refused.
///
/// Return addresses: every user and kernel frame except the leaf is a return address, the
/// instruction after a call. It is looked up as `address - 1`, inside the call instruction,
/// so a call that ends a function (to a `noreturn` callee) resolves to the caller and not to
/// the next function. ``Frame/address`` keeps the sampled value.
///
/// Frames in anonymous executable memory (JIT code) get a module with the path
/// `[anonymous]` and no function; `[vdso]` frames are symbolized from this process's own
/// vDSO, which the kernel maps identically into every 64-bit process.
///
/// Confined to one thread; not `Sendable`.
public final class Symbolizer {
    /// Largest number of ELF files kept mapped.
    public var maximumOpenFiles = 256
    /// How long a failure to load a file is remembered before it is retried.
    public var fileFailureRetryNanos: UInt64 = 10_000_000_000

    private enum KernelSymbolsState {
        case notLoaded
        case loaded(KernelSymbols)
        case failed(KernelSymbolsError)
    }

    private enum MappedFileResolution {
        case loaded(FileIdentity)
        /// `whileAlive`: the process was alive, so every way to reach the file was tried.
        case failed(atNanos: UInt64, whileAlive: Bool)
    }

    private let procRoot: String
    private var kernel: KernelSymbolsState
    /// Where each process's executable mappings come from: the agent's process table, or
    /// ``ProcessImages`` (reads maps itself) when the symbolizer is used alone.
    public let processes: any ProcessImageSource
    private var mappedFiles: [MappedFileKey: MappedFileResolution] = [:]
    private var files: [FileIdentity: LoadedFile] = [:]
    private var vdso: LoadedFile??
    private let demangler = Demangler()
    private var counters = SymbolizerStatistics()
    private var clock: UInt64 = 0

    static let maximumMappedFileEntries = 65_536

    /// - Parameters:
    ///   - procRoot: where procfs is mounted (`/proc`; the host's procfs inside a container).
    ///   - kernelSymbols: kernel symbols to use; nil loads `<procRoot>/kallsyms` at the first
    ///     kernel frame.
    ///   - processes: where process images come from; nil reads them with a
    ///     ``ProcessImages`` of its own.
    public init(
        procRoot: String = "/proc", kernelSymbols: KernelSymbols? = nil, processes: (any ProcessImageSource)? = nil
    ) {
        self.procRoot = procRoot
        self.kernel = kernelSymbols.map { .loaded($0) } ?? .notLoaded
        self.processes = processes ?? ProcessImages(procRoot: procRoot)
    }

    /// Reads the image of `pid` unless already known. Call it as soon as a pid is first
    /// seen, while the process is likely alive.
    public func observe(pid: Int32) {
        _ = processes.image(of: pid)
    }

    /// Symbolizes one sample: kernel frames first (leaf first), then user frames (leaf first).
    public func symbolize(_ sample: StackSample) -> SymbolizedStack {
        clock &+= 1
        var frames: [Frame] = []
        frames.reserveCapacity(sample.kernelStack.count + sample.userStack.count)

        if !sample.kernelStack.isEmpty {
            let symbols = kernelSymbols()
            for (index, address) in sample.kernelStack.enumerated() {
                let name = symbols?.symbol(containing: Self.lookupAddress(address, index: index))?.name
                count(name != nil, kernel: true)
                frames.append(Frame(kind: .kernel, address: address, function: name, module: nil))
            }
        }

        var processName: String? = nil
        if sample.pid > 0 {
            let image = processes.image(of: sample.pid)
            processName = image?.executableName
            if !sample.userStack.isEmpty {
                if let image {
                    symbolizeUserStack(of: sample, image: image, into: &frames)
                } else {
                    for address in sample.userStack {
                        count(false, kernel: false)
                        frames.append(Frame(kind: .native, address: address, function: nil, module: nil))
                    }
                }
            }
        }
        return SymbolizedStack(frames: frames, processName: processName)
    }

    /// Counters and cache sizes.
    public var statistics: SymbolizerStatistics {
        var statistics = counters
        let images = processes.imageStatistics
        statistics.processesTracked = images.processesTracked
        statistics.processesUnknown = images.processesUnknown
        statistics.mapsSnapshots = images.mapsReads
        statistics.mapsRefreshes = images.mapsRefreshes
        statistics.mapsLinesSkipped = images.mapsLinesSkipped
        statistics.openELFFiles = files.count
        statistics.mappedFileCacheCount = mappedFiles.count
        statistics.demangleCacheCount = demangler.cacheCount
        switch kernel {
        case .loaded(let symbols): statistics.kernelSymbolCount = symbols.count
        case .failed(let error): statistics.kernelSymbolsError = error.description
        case .notLoaded: break
        }
        return statistics
    }

    // MARK: Frames

    /// The address to look up for frame `index`: return addresses (all but the leaf) step
    /// back one byte into the call instruction.
    static func lookupAddress(_ address: UInt64, index: Int) -> UInt64 {
        index == 0 || address == 0 ? address : address - 1
    }

    private func count(_ symbolized: Bool, kernel: Bool) {
        if symbolized {
            counters.framesSymbolized += 1
            if kernel { counters.kernelFramesSymbolized += 1 }
        } else {
            counters.framesUnsymbolized += 1
        }
    }

    private func symbolizeUserStack(of sample: StackSample, image: ProcessImage, into frames: inout [Frame]) {
        let pid = sample.pid
        var image = image
        var refreshed = false
        for (index, address) in sample.userStack.enumerated() {
            let lookup = Self.lookupAddress(address, index: index)
            var mapping = image.mapping(containing: lookup)
            if mapping == nil, !refreshed {
                // Not covered: maybe a library dlopen'ed after the image was read. Re-read once.
                refreshed = true
                if let newer = processes.refreshedImage(of: pid) {
                    image = newer
                    mapping = image.mapping(containing: lookup)
                }
            }
            let frame: Frame
            if let mapping {
                if index > 0, !mapping.permissions.contains(.execute) {
                    cut(sample.userStack.count - index)
                    return
                }
                frame = userFrame(address: address, lookup: lookup, mapping: mapping, pid: pid)
            } else if index > 0 {
                // A return address in no mapping at all: the same broken chain.
                cut(sample.userStack.count - index)
                return
            } else {
                frame = Frame(kind: .native, address: address, function: nil, module: nil)
            }
            count(frame.function != nil, kernel: false)
            frames.append(frame)
        }
    }

    private func cut(_ discarded: Int) {
        counters.stacksCut += 1
        counters.framesDiscarded += discarded
    }

    private func userFrame(address: UInt64, lookup: UInt64, mapping: MemoryMapping, pid: Int32)
        -> Frame
    {
        let loaded: LoadedFile?
        if mapping.isVDSO {
            loaded = vdsoFile(mappingSize: mapping.end - mapping.start)
        } else if mapping.isFileBacked {
            loaded = loadedFile(for: mapping, pid: pid)
        } else {
            loaded = nil
        }
        let module = Module(
            start: mapping.start, limit: mapping.end, fileOffset: mapping.offset,
            path: mapping.isAnonymous ? "[anonymous]" : mapping.path,
            buildID: loaded?.buildIDHex, htlHash: loaded?.htlHash)
        var function: String? = nil
        if let loaded,
            let virtualAddress = loaded.file.virtualAddress(
                ofRuntimeAddress: lookup, mappingStart: mapping.start, mappingOffset: mapping.offset)
        {
            loaded.lastUse = clock
            function = loaded.functionName(containing: virtualAddress, demangler: demangler)
        }
        return Frame(kind: .native, address: address, function: function, module: module)
    }

    // MARK: Kernel symbols

    private func kernelSymbols() -> KernelSymbols? {
        switch kernel {
        case .loaded(let symbols):
            return symbols
        case .failed:
            return nil
        case .notLoaded:
            do {
                let symbols = try KernelSymbols.load(path: "\(procRoot)/kallsyms")
                kernel = .loaded(symbols)
                return symbols
            } catch {
                kernel = .failed(error)
                return nil
            }
        }
    }

    private func isAlive(pid: Int32) -> Bool {
        FileContents.exists("\(procRoot)/\(pid)/maps")
    }

    // MARK: Files

    private func loadedFile(for mapping: MemoryMapping, pid: Int32) -> LoadedFile? {
        let key = MappedFileKey(mapping)
        var alive: Bool? = nil
        switch mappedFiles[key] {
        case .loaded(let identity):
            if let file = files[identity] { return file }
        case .failed(let failedAt, let whileAlive):
            if monotonicNanoseconds() &- failedAt < fileFailureRetryNanos {
                // A failure seen for an exited process may succeed through a live one.
                if whileAlive { return nil }
                alive = isAlive(pid: pid)
                if alive == false { return nil }
            }
        case nil:
            break
        }
        let processAlive = alive ?? isAlive(pid: pid)
        if mappedFiles.count >= Self.maximumMappedFileEntries { mappedFiles.removeAll() }
        do {
            let file = try openMappedFile(mapping, pid: pid, processAlive: processAlive)
            let identity = FileIdentity(file)
            mappedFiles[key] = .loaded(identity)
            if let existing = files[identity] { return existing }
            let loaded = LoadedFile(file: file, identity: identity)
            counters.elfFilesLoaded += 1
            if let problem = loaded.symbolTableError {
                counters.elfFileErrors += 1
                counters.lastELFError = "\(file.name): \(problem)"
            }
            insert(loaded)
            return loaded
        } catch {
            counters.elfFileErrors += 1
            counters.lastELFError = error.description
            mappedFiles[key] = .failed(atNanos: monotonicNanoseconds(), whileAlive: processAlive)
            return nil
        }
    }

    private func insert(_ loaded: LoadedFile) {
        loaded.lastUse = clock
        while files.count >= max(1, maximumOpenFiles),
            let victim = files.min(by: { $0.value.lastUse < $1.value.lastUse })
        {
            files[victim.key] = nil
            counters.elfFilesEvicted += 1
        }
        files[loaded.identity] = loaded
    }

    private func openMappedFile(_ mapping: MemoryMapping, pid: Int32, processAlive: Bool)
        throws(MappedFileError) -> ELFFile
    {
        var candidates: [String] = []
        if processAlive {
            candidates.append("\(procRoot)/\(pid)/root\(mapping.path)")
            candidates.append(
                "\(procRoot)/\(pid)/map_files/\(String(mapping.start, radix: 16))-\(String(mapping.end, radix: 16))")
        }
        candidates.append(mapping.path)

        var reasons: [String] = []
        for path in candidates {
            do {
                let file = try ELFFile(path: path)
                if let status = file.fileStatus, !Self.matches(status, mapping) {
                    reasons.append(
                        "\(path) has inode \(status.inode), not \(mapping.inode): replaced since it was mapped")
                    continue
                }
                return file
            } catch {
                reasons.append(error.description)
            }
        }
        throw MappedFileError(mapping: mapping, reasons: reasons)
    }

    /// False when `status` is provably another file than the one `mapping` maps: same device,
    /// other inode. Different devices happen legitimately (overlayfs and other stacked file
    /// systems report their own device), so then the check cannot decide and says true.
    static func matches(_ status: ELFFileStatus, _ mapping: MemoryMapping) -> Bool {
        guard mapping.inode != 0, status.inode != mapping.inode else { return true }
        return status.deviceMajor != mapping.deviceMajor || status.deviceMinor != mapping.deviceMinor
    }

    /// The vDSO of this process: every process of a kernel maps the same image, so ours is
    /// read from our own memory instead of `/proc/PID/mem`. Nil when the target's mapping
    /// has another size (e.g. a 32-bit process).
    private func vdsoFile(mappingSize: UInt64) -> LoadedFile? {
        if vdso == nil {
            vdso = .some(Self.loadOwnVDSO())
        }
        guard let loaded = vdso ?? nil, UInt64(loaded.file.byteCount) == mappingSize else {
            return nil
        }
        return loaded
    }

    private static func loadOwnVDSO() -> LoadedFile? {
        let base = UInt64(nodeprof_symbolization_vdso_base())
        guard base != 0, let maps = try? ProcessMaps.read(pid: getpid(), procRoot: "/proc"),
            let mapping = maps.mappings.first(where: { $0.isVDSO }), mapping.start == base,
            let start = UnsafeRawPointer(bitPattern: UInt(base))
        else { return nil }
        let bytes = UnsafeRawBufferPointer(start: start, count: Int(mapping.end - mapping.start))
        guard let file = try? ELFFile(copying: bytes, name: "[vdso]") else { return nil }
        return LoadedFile(file: file, identity: FileIdentity(file))
    }
}

/// Why the file behind a maps line could not be used: one reason per path tried.
struct MappedFileError: Error, CustomStringConvertible {
    var mapping: MemoryMapping
    var reasons: [String]

    var description: String {
        "frames in \(mapping.path) stay unsymbolized, no usable copy of the file: "
            + reasons.joined(separator: "; ")
    }
}

/// One mapped ELF file with its symbols and a cache of demangled names.
final class LoadedFile {
    /// Largest number of demangled names cached per file.
    static let maximumCachedNames = 8_192

    let file: ELFFile
    let identity: FileIdentity
    let buildIDHex: String?
    /// OpenTelemetry file id, from the bytes already mapped (no extra read).
    let htlHash: String
    let symbols: ELFSymbolTable?
    let symbolTableError: ELFError?
    var lastUse: UInt64 = 0
    private var names: [Int: String] = [:]

    init(file: ELFFile, identity: FileIdentity) {
        self.file = file
        self.identity = identity
        self.buildIDHex = file.buildID?.hexString
        let size = UInt64(file.byteCount)
        let edge = min(4096, size)
        self.htlHash = NodeprofCore.htlHash(
            head: (try? file.bytes(atOffset: 0, count: edge)) ?? [],
            tail: (try? file.bytes(atOffset: size - edge, count: edge)) ?? [], length: size)
        do {
            symbols = try file.symbolTable()
            symbolTableError = nil
        } catch {
            symbols = nil
            symbolTableError = error
        }
    }

    func functionName(containing virtualAddress: UInt64, demangler: Demangler) -> String? {
        guard let symbols, let index = symbols.index(containing: virtualAddress) else { return nil }
        if let cached = names[index] { return cached }
        guard let raw = symbols.name(at: index) else { return nil }
        let name = demangler.demangle(raw)
        if names.count >= Self.maximumCachedNames { names.removeAll(keepingCapacity: true) }
        names[index] = name
        return name
    }
}

/// What symbolizing one sample gives: its frames (kernel frames first, each stack leaf
/// first) and the name of its process, when known.
public struct SymbolizedStack: Sendable, Hashable {
    public var frames: [Frame]
    public var processName: String?

    public init(frames: [Frame], processName: String?) {
        self.frames = frames
        self.processName = processName
    }
}
