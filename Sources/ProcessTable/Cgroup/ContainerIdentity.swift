// PID -> container -> pod, first step: which container (and pod) a cgroup path names.
//
// Pure parsing with the standard library only: hack/fuzz-cgroup compiles this file alone
// (with CgroupMount.swift) into a libFuzzer binary. Every function is linear in its input.

/// The container a process runs in and, under Kubernetes, the pod that owns it, as read
/// from the process's cgroup path.
public struct ContainerIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The runtime's container id: 64 lowercase hex digits, as in a pod's
    /// `status.containerStatuses[].containerID` after its `<runtime>://` scheme.
    public var containerID: String
    /// The UID of the pod the container belongs to, or nil when the path names no pod
    /// (plain Docker, Podman). Either the API's `metadata.uid` with dashes (systemd slices
    /// spell it with underscores; they are turned into dashes), or, for a static pod, the
    /// kubelet's 32-hex-digit hash of the manifest, which the API shows as the mirror pod's
    /// `kubernetes.io/config.hash` annotation, not as its `metadata.uid`.
    public var podUID: String?

    public init(containerID: String, podUID: String? = nil) {
        self.containerID = containerID
        self.podUID = podUID
    }

    public var description: String {
        "container \(containerID)" + (podUID.map { " in pod \($0)" } ?? "")
    }

    /// The identity one cgroup path names (the third field of a `/proc/PID/cgroup` line,
    /// absolute or relative to a cgroup namespace, like `/../../kubepods.slice/...`), or nil
    /// when it names no container (node services, user sessions, the root cgroup).
    ///
    /// Which components count (others, including any other 64-hex-digit name, are ignored):
    /// - `<runtime>-<id>` or `<runtime>-<id>.scope` with runtime `cri-containerd`, `crio`,
    ///   `docker` or `libpod`, anywhere in the path (so `crio-conmon-<id>` and `*.mount`
    ///   units do not count);
    /// - `<name>.slice:<runtime>:<id>`, the cgroup v1 systemd form, with the same runtimes;
    /// - a bare `<id>` only directly below a pod (`pod<uid>`, `kubepods-...-pod<uid>.slice`)
    ///   or below a `docker` directory (Docker's cgroupfs driver).
    ///
    /// The last container component wins (kind, minikube and Docker-in-Docker put a node
    /// container's cgroup above a full kubepods tree); its pod is the last pod component
    /// between it and the container component before it, or the pod in its own
    /// `<pod slice>:<runtime>:<id>` component.
    public init?(cgroupPath: String) {
        var path = cgroupPath
        guard let identity = path.withUTF8({ Self.scan(path: $0) }) else { return nil }
        self = identity
    }

    // MARK: Path scanning

    /// What the component before the current one was, for the bare-id rule.
    private enum Parent {
        case pod
        case docker
        case other
    }

    static let runtimePrefixes: [[UInt8]] = ["cri-containerd", "crio", "docker", "libpod"].map { Array($0.utf8) }

    /// Scans one path. Components are the bytes between slashes; each is looked at a
    /// constant number of times, so the scan is linear in the path's length.
    static func scan(path: UnsafeBufferPointer<UInt8>) -> ContainerIdentity? {
        var container: Range<Int>?
        var containerPod: Range<Int>?
        var podSinceContainer: Range<Int>?
        var parent = Parent.other

        var start = 0
        while start <= path.count {
            var end = start
            while end < path.count, path[end] != slash { end += 1 }
            let component = start..<end
            start = end + 1
            if component.isEmpty { continue }

            if let uid = podUID(inComponent: component, of: path) {
                podSinceContainer = uid
                parent = .pod
                continue
            }
            if let found = containerID(inComponent: component, of: path, parent: parent) {
                container = found.id
                containerPod = found.pod ?? podSinceContainer
                podSinceContainer = nil
            }
            parent = matches(path, component, dockerDirectory) ? .docker : .other
        }
        guard let container else { return nil }
        return ContainerIdentity(
            containerID: String(decoding: UnsafeBufferPointer(rebasing: path[container]), as: UTF8.self),
            podUID: containerPod.map { podUIDString(UnsafeBufferPointer(rebasing: path[$0])) })
    }

    /// The id (and, for the `slice:runtime:id` form, the pod) a container-shaped component
    /// names.
    private static func containerID(
        inComponent component: Range<Int>, of path: UnsafeBufferPointer<UInt8>, parent: Parent
    ) -> (id: Range<Int>, pod: Range<Int>?)? {
        // A bare id below a pod or Docker's cgroupfs parent.
        if component.count == 64 {
            guard parent != .other, isLowercaseHex(path, component) else { return nil }
            return (component, nil)
        }

        // `<name>.slice:<runtime>:<id>` (cgroup v1, systemd driver, containerd or CRI-O).
        if let firstColon = path[component].firstIndex(of: colon) {
            let afterFirst = (firstColon + 1)..<component.upperBound
            guard let secondColon = path[afterFirst].firstIndex(of: colon) else { return nil }
            let slice = component.lowerBound..<firstColon
            let runtime = (firstColon + 1)..<secondColon
            let id = (secondColon + 1)..<component.upperBound
            guard id.count == 64, isLowercaseHex(path, id), hasSuffix(path, slice, sliceSuffix),
                runtimePrefixes.contains(where: { matches(path, runtime, $0) })
            else { return nil }
            return (id, podUID(inComponent: slice, of: path))
        }

        // `<runtime>-<id>` with an optional `.scope`.
        var name = component
        if hasSuffix(path, name, scopeSuffix) { name = name.lowerBound..<(name.upperBound - scopeSuffix.count) }
        guard name.count > 65 else { return nil }
        let id = (name.upperBound - 64)..<name.upperBound
        let prefix = name.lowerBound..<(id.lowerBound - 1)
        guard path[id.lowerBound - 1] == dash, isLowercaseHex(path, id),
            runtimePrefixes.contains(where: { matches(path, prefix, $0) })
        else { return nil }
        return (id, nil)
    }

    /// The UID bytes of a pod component: cgroupfs `pod<uid>`, or a systemd slice
    /// `...kubepods-<qos>-pod<uid>.slice` (any dash-separated name with a `kubepods` part,
    /// such as kind's `kubelet-kubepods-besteffort-pod<uid>.slice`).
    private static func podUID(inComponent component: Range<Int>, of path: UnsafeBufferPointer<UInt8>)
        -> Range<Int>?
    {
        if hasPrefix(path, component, podPrefix) {
            let uid = (component.lowerBound + podPrefix.count)..<component.upperBound
            return isPodUID(path, uid) ? uid : nil
        }
        guard hasSuffix(path, component, sliceSuffix) else { return nil }
        let name = component.lowerBound..<(component.upperBound - sliceSuffix.count)
        for uidLength in [36, 32] {
            // `<units>-pod<uid>`: at least `k-pod` before the uid.
            guard name.count >= uidLength + podPrefix.count + 2 else { continue }
            let uid = (name.upperBound - uidLength)..<name.upperBound
            let pod = (uid.lowerBound - podPrefix.count)..<uid.lowerBound
            let units = name.lowerBound..<(pod.lowerBound - 1)
            if path[pod.lowerBound - 1] == dash, matches(path, pod, podPrefix), isPodUID(path, uid),
                hasDashSeparatedPart(path, units, kubepods)
            {
                return uid
            }
        }
        return nil
    }

    /// `8-4-4-4-12` lowercase hex with `-` or `_` separators, or 32 lowercase hex digits
    /// (a static pod's UID).
    private static func isPodUID(_ path: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        if range.count == 32 { return isLowercaseHex(path, range) }
        guard range.count == 36 else { return false }
        for (offset, index) in range.enumerated() {
            let byte = path[index]
            if offset == 8 || offset == 13 || offset == 18 || offset == 23 {
                guard byte == dash || byte == underscore else { return false }
            } else if !isLowercaseHexDigit(byte) {
                return false
            }
        }
        return true
    }

    private static func podUIDString(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        String(decoding: bytes.lazy.map { $0 == underscore ? dash : $0 }, as: UTF8.self)
    }

    // MARK: Byte helpers

    private static let slash = UInt8(ascii: "/")
    private static let colon = UInt8(ascii: ":")
    private static let dash = UInt8(ascii: "-")
    private static let underscore = UInt8(ascii: "_")
    private static let podPrefix = Array("pod".utf8)
    private static let sliceSuffix = Array(".slice".utf8)
    private static let scopeSuffix = Array(".scope".utf8)
    private static let kubepods = Array("kubepods".utf8)
    private static let dockerDirectory = Array("docker".utf8)

    private static func isLowercaseHexDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    private static func isLowercaseHex(_ path: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        path[range].allSatisfy(isLowercaseHexDigit)
    }

    private static func matches(_ path: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ word: [UInt8]) -> Bool {
        range.count == word.count && path[range].elementsEqual(word)
    }

    private static func hasPrefix(_ path: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ word: [UInt8]) -> Bool {
        range.count >= word.count && path[range].prefix(word.count).elementsEqual(word)
    }

    private static func hasSuffix(_ path: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ word: [UInt8]) -> Bool {
        range.count >= word.count && path[range].suffix(word.count).elementsEqual(word)
    }

    /// True when `word` is one of the `-`-separated parts of `range`.
    private static func hasDashSeparatedPart(
        _ path: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ word: [UInt8]
    ) -> Bool {
        var start = range.lowerBound
        while start <= range.upperBound {
            var end = start
            while end < range.upperBound, path[end] != dash { end += 1 }
            if matches(path, start..<end, word) { return true }
            start = end + 1
        }
        return false
    }
}

/// The parts of a `/proc/PID/cgroup` file attribution needs.
///
/// Lines are `hierarchy-id:controllers:path`; the path may itself contain colons. A cgroup
/// v2 host has one line `0::/path`, a cgroup v1 host one line per hierarchy, a hybrid host
/// both. Parsing never fails: lines without two colons are skipped. Linear in the input.
public struct ProcCgroup: Sendable, Hashable {
    /// The path of the first cgroup v2 line (`0::`), or nil on a cgroup v1 only host.
    public var v2Path: String?
    /// The container ``v2Path`` names.
    public var v2Container: ContainerIdentity?
    /// The container the first cgroup v1 line naming one names.
    public var v1Container: ContainerIdentity?
    /// True when some cgroup v1 hierarchy places the process below its root. On such a
    /// (hybrid) host a runtime using the cgroupfs driver places containers in v1 hierarchies
    /// only, so a v2 cgroup does not tell its processes' containers apart.
    public var hasV1Placement: Bool

    /// The process's container: the v2 line's when it names one, else the v1 lines'.
    public var container: ContainerIdentity? { v2Container ?? v1Container }

    public init(v2Path: String?, v2Container: ContainerIdentity?, v1Container: ContainerIdentity?, hasV1Placement: Bool)
    {
        self.v2Path = v2Path
        self.v2Container = v2Container
        self.v1Container = v1Container
        self.hasV1Placement = hasV1Placement
    }

    /// Parses the text of a `/proc/PID/cgroup` file.
    public init(parsing text: String) {
        self.init(parsing: Array(text.utf8))
    }

    /// Parses the bytes of a `/proc/PID/cgroup` file.
    public init(parsing bytes: [UInt8]) {
        var v2Path: String?
        var v2Container: ContainerIdentity?
        var v1Container: ContainerIdentity?
        var hasV1Placement = false
        bytes.withUnsafeBufferPointer { buffer in
            var lineStart = 0
            while lineStart < buffer.count {
                var lineEnd = lineStart
                while lineEnd < buffer.count, buffer[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                defer { lineStart = lineEnd + 1 }
                let line = lineStart..<lineEnd
                guard let firstColon = buffer[line].firstIndex(of: UInt8(ascii: ":")),
                    let secondColon = buffer[(firstColon + 1)..<lineEnd].firstIndex(of: UInt8(ascii: ":"))
                else { continue }
                let path = UnsafeBufferPointer(rebasing: buffer[(secondColon + 1)..<lineEnd])
                let isV2 =
                    firstColon - lineStart == 1 && buffer[lineStart] == UInt8(ascii: "0")
                    && secondColon == firstColon + 1
                if isV2 {
                    guard v2Path == nil else { continue }
                    v2Path = String(decoding: path, as: UTF8.self)
                    v2Container = ContainerIdentity.scan(path: path)
                } else {
                    if !path.isEmpty, !(path.count == 1 && path[0] == UInt8(ascii: "/")) { hasV1Placement = true }
                    if v1Container == nil { v1Container = ContainerIdentity.scan(path: path) }
                }
            }
        }
        self.init(v2Path: v2Path, v2Container: v2Container, v1Container: v1Container, hasV1Placement: hasV1Placement)
    }
}
