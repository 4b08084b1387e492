public import NodeprofCore

/// A CPU profile held in memory: the symbolized samples of one collection window and what
/// is needed to interpret them.
///
/// The profile is format-agnostic. Samples are kept as recorded (with their timestamps) so
/// every encoder can aggregate them its own way: ``PprofEncoder`` merges identical stacks,
/// an OTLP builder keeps per-sample timestamps, ``TopFunctions`` folds them per function.
public struct Profile: Sendable {
    /// Start of the collection window, nanoseconds since the Unix epoch.
    public var startTimeNanos: UInt64
    /// Length of the collection window in nanoseconds.
    public var durationNanos: UInt64
    /// Sampling frequency per CPU, in Hz (samples per second of on-CPU time).
    public let frequencyHz: UInt64
    /// Samples in the order they were added.
    public var samples: Samples { Samples(store: store) }
    /// Interned storage: each distinct stack and name is kept once, a sample is ~40 bytes.
    var store = SampleStore()
    /// Samples that never made it into ``samples``, by reason.
    public private(set) var drops: [DropCount] = []
    /// Free-form notes carried into the encoded profile (pprof comments), such as the
    /// command line that produced it.
    public var comments: [String] = []
    /// The sampled processes, each as it described itself when sampled: a process that
    /// republished its context or exec'd during the profile appears once per description,
    /// and each sample points at the one it was taken under. Attribution may change a
    /// description's ``ProcessDescription/attributes`` in place; never reorder or remove.
    public var processes: [ProcessDescription] {
        get { store.processes }
        set { store.processes = newValue }
    }

    /// The attributes of each pid's first description, by pid: a view of ``processes`` for
    /// profiles that hold one description per process. Setting it sets the attributes of
    /// every description of that pid (adding one without samples when there is none).
    public var processAttributes: [Int32: [Attribute]] {
        get {
            var result: [Int32: [Attribute]] = [:]
            for process in store.processes where result[process.pid] == nil { result[process.pid] = process.attributes }
            return result
        }
        set {
            for (pid, attributes) in newValue {
                var found = false
                for index in store.processes.indices where store.processes[index].pid == pid {
                    store.processes[index].attributes = attributes
                    found = true
                }
                if !found { _ = store.intern(ProcessDescription(pid: pid, name: nil, attributes: attributes)) }
            }
        }
    }

    /// Creates an empty profile.
    ///
    /// - Precondition: `frequencyHz` is in `1...1_000_000_000`; callers validate
    ///   configuration (or decoded input) before creating a profile.
    public init(startTimeNanos: UInt64, durationNanos: UInt64 = 0, frequencyHz: UInt64) {
        precondition(
            (1...1_000_000_000).contains(frequencyHz),
            "sampling frequency \(frequencyHz) Hz is outside 1 Hz...1 GHz")
        self.startTimeNanos = startTimeNanos
        self.durationNanos = durationNanos
        self.frequencyHz = frequencyHz
    }

    /// Time each sample stands for, in nanoseconds (1e9 / frequency, rounded down).
    public var periodNanos: UInt64 { 1_000_000_000 / frequencyHz }

    /// Number of samples added.
    public var sampleCount: Int { store.records.count }

    /// Number of distinct stacks among the samples.
    public var distinctStackCount: Int { store.stacks.count }

    /// The frames of a stack interned with ``intern(stack:)``.
    public func frames(of stack: StackID) -> [Frame] { store.frames(ofStack: Int(stack.index)) }

    /// Number of samples dropped, over all reasons.
    public var droppedCount: UInt64 {
        drops.reduce(0) { $0 &+ $1.count }
    }

    /// Adds one sample.
    public mutating func add(_ sample: Sample) {
        store.add(sample)
    }

    /// A stack stored in this profile (valid for this profile only).
    public struct StackID: Hashable, Sendable {
        fileprivate let index: Int32
    }

    /// Stores `frames` once and returns its id, for callers that see the same stack many
    /// times and want to add samples without handing over (and hashing) the frames again.
    public mutating func intern(stack frames: [Frame]) -> StackID {
        StackID(index: store.intern(stack: frames))
    }

    /// A process description stored in this profile (valid for this profile only).
    public struct ProcessID: Hashable, Sendable {
        fileprivate let index: Int32
        /// Its position in ``processes``.
        public var position: Int { Int(index) }
    }

    /// Stores `process` once (an equal description is stored once) and returns its id, for
    /// callers that add many samples of one process.
    public mutating func intern(process: ProcessDescription) -> ProcessID {
        ProcessID(index: store.intern(process))
    }

    /// Adds one sample whose stack was interned with ``intern(stack:)`` and whose process
    /// with ``intern(process:)``; `traceContext` is the span its thread was running.
    public mutating func add(
        stack: StackID, process: ProcessID, tid: Int32, threadName: String, cgroupID: UInt64,
        timestampNanos: UInt64, traceContext: TraceContext? = nil
    ) {
        store.add(
            stack: stack.index, process: process.index, tid: tid, threadName: threadName, cgroupID: cgroupID,
            timestampNanos: timestampNanos, traceContext: traceContext)
    }

    /// Adds one sample whose stack was interned with ``intern(stack:)``, of a process known
    /// by pid and name only; `traceContext` is the span its thread was running, when known.
    public mutating func add(
        stack: StackID, pid: Int32, tid: Int32, threadName: String, processName: String?, cgroupID: UInt64,
        timestampNanos: UInt64, traceContext: TraceContext? = nil
    ) {
        let process = store.intern(ProcessDescription(pid: pid, name: processName))
        store.add(
            stack: stack.index, process: process, tid: tid, threadName: threadName, cgroupID: cgroupID,
            timestampNanos: timestampNanos, traceContext: traceContext)
    }

    /// The description of the process the sample at `index` of ``samples`` was taken under.
    public func process(ofSampleAt index: Int) -> ProcessDescription {
        store.processes[Int(store.records[index].process)]
    }

    /// Number of samples of each description in ``processes``, by position (without
    /// rebuilding the samples).
    public var sampleCountsByProcess: [Int] {
        var counts = [Int](repeating: 0, count: store.processes.count)
        for record in store.records { counts[Int(record.process)] += 1 }
        return counts
    }

    /// Number of samples that carry a trace context.
    public var samplesWithTraceContext: Int { store.records.reduce(0) { $0 + ($1.traceContext >= 0 ? 1 : 0) } }

    /// Adds every sample and drop count of `other` (a later window of the same recording):
    /// its stacks are interned once each, so this costs one small record per sample. The
    /// window widens to cover both; comments and process attributes of `other` are added
    /// when new.
    public mutating func append(contentsOf other: Profile) {
        // Each of `other`'s table entries is interned here once, then records are copied with
        // their indices translated.
        store.append(other.store)
        for drop in other.drops { recordDrops(drop.count, reason: drop.reason) }
        for comment in other.comments where !comments.contains(comment) { comments.append(comment) }
        let end = max(startTimeNanos &+ durationNanos, other.startTimeNanos &+ other.durationNanos)
        startTimeNanos = min(startTimeNanos, other.startTimeNanos)
        durationNanos = end &- startTimeNanos
    }

    /// Counts `count` samples lost for `reason` ("ring buffer full", "no stack").
    ///
    /// Counts for the same reason add up; reasons keep the order they were first seen in.
    public mutating func recordDrops(_ count: UInt64, reason: String) {
        guard count > 0 else { return }
        // A profile sees a handful of reasons, so a linear scan beats hashing.
        if let index = drops.firstIndex(where: { $0.reason == reason }) {
            drops[index].count &+= count
        } else {
            drops.append(DropCount(reason: reason, count: count))
        }
    }

    /// ``comments`` followed by one line per drop reason, as encoders write them.
    public var allComments: [String] {
        comments + drops.map { "dropped \($0.count) samples: \($0.reason)" }
    }
}

/// How many samples were lost for one reason.
public struct DropCount: Sendable, Hashable {
    public var reason: String
    public var count: UInt64

    public init(reason: String, count: UInt64) {
        self.reason = reason
        self.count = count
    }
}

extension Profile {
    /// One sample as the profile holds it, with its stack rebuilt as frames: for readers
    /// (tests, the top-N table) and for building profiles by hand. Encoders read the tables.
    public struct Sample: Sendable, Hashable {
        public var pid: Int32
        public var tid: Int32
        public var threadName: String
        /// Name of the process (the executable's base name), when known.
        public var processName: String?
        public var cgroupID: UInt64
        public var timestampNanos: UInt64
        /// Leaf first, kernel frames before user frames.
        public var frames: [Frame]
        /// The span the thread was running when sampled, when the process publishes one.
        public var traceContext: TraceContext?

        public init(
            pid: Int32, tid: Int32, threadName: String, processName: String?, cgroupID: UInt64,
            timestampNanos: UInt64, frames: [Frame], traceContext: TraceContext? = nil
        ) {
            self.pid = pid
            self.tid = tid
            self.threadName = threadName
            self.processName = processName
            self.cgroupID = cgroupID
            self.timestampNanos = timestampNanos
            self.frames = frames
            self.traceContext = traceContext
        }
    }

    /// The samples of a profile, rebuilt from the tables on access.
    public struct Samples: RandomAccessCollection, Sendable {
        fileprivate let store: SampleStore

        public var startIndex: Int { 0 }
        public var endIndex: Int { store.records.count }

        public subscript(position: Int) -> Sample {
            let record = store.records[position]
            let process = store.processes[Int(record.process)]
            return Sample(
                pid: process.pid, tid: record.tid, threadName: store.strings[Int(record.threadName)],
                processName: process.name, cgroupID: record.cgroupID, timestampNanos: record.timestampNanos,
                frames: store.frames(ofStack: Int(record.stack)),
                traceContext: record.traceContext < 0 ? nil : store.traceContexts[Int(record.traceContext)])
        }
    }

    /// A code location: an address, the mapping it lies in and the function it belongs to
    /// (indices into ``mappings`` and ``functionNames``, -1 for none).
    public struct Location: Sendable, Hashable {
        public var kind: FrameKind
        public var address: UInt64
        public var mapping: Int32
        public var function: Int32
    }

    /// Function names, each once (a function is its name).
    public var functionNames: [String] { store.functions }
    /// The files frames were in, each once.
    public var mappings: [Module] { store.mappings }
    /// The distinct locations, each once.
    public var locations: [Location] { store.locations }
    /// The distinct stacks as location indices, leaf first.
    public var stacks: [[Int32]] { store.stacks }
}

/// Samples and what they refer to, each interned once when it is added (at symbolization
/// time), in the shape of the encoders' dictionaries: functions, mappings, locations and
/// stacks are tables of plain values, and a sample is a small record of indices. Encoders
/// translate indices; nothing is hashed again per sample.
struct SampleStore: Sendable {
    struct Record: Sendable {
        var timestampNanos: UInt64
        var cgroupID: UInt64
        var process: Int32
        var tid: Int32
        var stack: Int32
        var threadName: Int32
        var traceContext: Int32  // -1: none
    }

    var records: [Record] = []
    var processes: [ProcessDescription] = []
    var processIndex: [ProcessDescription: Int32] = [:]
    var functions: [String] = []
    var functionIndex: [String: Int32] = [:]
    var mappings: [Module] = []
    var mappingIndex: [Module: Int32] = [:]
    var locations: [Profile.Location] = []
    var locationIndex: [Profile.Location: Int32] = [:]
    var stacks: [[Int32]] = []
    var stackIndex: [[Int32]: Int32] = [:]
    var strings: [String] = []
    var stringIndex: [String: Int32] = [:]
    /// Distinct trace contexts: a span's samples share one.
    var traceContexts: [TraceContext] = []
    var traceContextIndex: [TraceContext: Int32] = [:]

    mutating func add(_ sample: Profile.Sample) {
        add(
            stack: intern(stack: sample.frames),
            process: intern(ProcessDescription(pid: sample.pid, name: sample.processName)), tid: sample.tid,
            threadName: sample.threadName, cgroupID: sample.cgroupID, timestampNanos: sample.timestampNanos,
            traceContext: sample.traceContext)
    }

    mutating func add(
        stack: Int32, process: Int32, tid: Int32, threadName: String, cgroupID: UInt64, timestampNanos: UInt64,
        traceContext: TraceContext?
    ) {
        records.append(
            Record(
                timestampNanos: timestampNanos, cgroupID: cgroupID, process: process, tid: tid, stack: stack,
                threadName: intern(threadName), traceContext: traceContext.map { intern($0) } ?? -1))
    }

    /// Equal descriptions share one entry. Attribution may edit entries in place afterwards,
    /// so the index is kept by the value each entry had when it was interned.
    mutating func intern(_ process: ProcessDescription) -> Int32 {
        Self.intern(process, in: &processes, index: &processIndex)
    }

    mutating func intern(_ context: TraceContext) -> Int32 {
        Self.intern(context, in: &traceContexts, index: &traceContextIndex)
    }

    mutating func intern(_ string: String) -> Int32 {
        Self.intern(string, in: &strings, index: &stringIndex)
    }

    /// Interns each frame's function, mapping and location, then the stack of locations.
    mutating func intern(stack frames: [Frame]) -> Int32 {
        var locationIndices: [Int32] = []
        locationIndices.reserveCapacity(frames.count)
        var lastModule: (module: Module, index: Int32)?
        for frame in frames {
            var mapping: Int32 = -1
            if let module = frame.module {
                // Consecutive frames mostly lie in one file: compare before hashing.
                if let last = lastModule, last.module == module {
                    mapping = last.index
                } else {
                    mapping = Self.intern(module, in: &mappings, index: &mappingIndex)
                    lastModule = (module, mapping)
                }
            }
            let function = frame.function.map { Self.intern($0, in: &functions, index: &functionIndex) } ?? -1
            let location = Profile.Location(
                kind: frame.kind, address: frame.address, mapping: mapping, function: function)
            locationIndices.append(Self.intern(location, in: &locations, index: &locationIndex))
        }
        return Self.intern(locationIndices, in: &stacks, index: &stackIndex)
    }

    func frame(ofLocation index: Int32) -> Frame {
        let location = locations[Int(index)]
        return Frame(
            kind: location.kind, address: location.address,
            function: location.function < 0 ? nil : functions[Int(location.function)],
            module: location.mapping < 0 ? nil : mappings[Int(location.mapping)])
    }

    func frames(ofStack index: Int) -> [Frame] {
        stacks[index].map { frame(ofLocation: $0) }
    }

    /// Adds `other`'s samples, translating each of its table entries once.
    mutating func append(_ other: SampleStore) {
        let functions = other.functions.map { Self.intern($0, in: &self.functions, index: &functionIndex) }
        let mappings = other.mappings.map { Self.intern($0, in: &self.mappings, index: &mappingIndex) }
        let locations = other.locations.map { location -> Int32 in
            var translated = location
            if translated.function >= 0 { translated.function = functions[Int(location.function)] }
            if translated.mapping >= 0 { translated.mapping = mappings[Int(location.mapping)] }
            return Self.intern(translated, in: &self.locations, index: &locationIndex)
        }
        let stacks = other.stacks.map { stack in
            Self.intern(stack.map { locations[Int($0)] }, in: &self.stacks, index: &stackIndex)
        }
        let strings = other.strings.map { intern($0) }
        let contexts = other.traceContexts.map { intern($0) }
        let processes = other.processes.map { intern($0) }
        records.reserveCapacity(records.count + other.records.count)
        for var record in other.records {
            record.stack = stacks[Int(record.stack)]
            record.threadName = strings[Int(record.threadName)]
            record.process = processes[Int(record.process)]
            if record.traceContext >= 0 { record.traceContext = contexts[Int(record.traceContext)] }
            records.append(record)
        }
    }

    /// The position of `value` in `values`, appended the first time it is seen.
    static func intern<Value: Hashable>(_ value: Value, in values: inout [Value], index: inout [Value: Int32])
        -> Int32
    {
        if let known = index[value] { return known }
        let position = Int32(values.count)
        values.append(value)
        index[value] = position
        return position
    }
}

/// One sampled process as a profile knows it: who it is, what it says of itself, and the
/// container its cgroup names.
public struct ProcessDescription: Sendable, Hashable {
    public var pid: Int32
    /// The executable's name (`process.executable.name`).
    public var name: String?
    /// OTLP resource attributes beyond pid and name, first value of a key winning: what the
    /// process publishes, `process.executable.path`, then container and pod attributes once
    /// attributed. Encoders that have no place for them (pprof) ignore them.
    public var attributes: [Attribute]
    /// The container its cgroup names (the runtime's id), and the pod uid the cgroup path
    /// carries, for attribution; exported only through ``attributes``.
    public var containerID: String?
    public var podUID: String?

    public init(
        pid: Int32, name: String?, attributes: [Attribute] = [], containerID: String? = nil, podUID: String? = nil
    ) {
        self.pid = pid
        self.name = name
        self.attributes = attributes
        self.containerID = containerID
        self.podUID = podUID
    }
}
