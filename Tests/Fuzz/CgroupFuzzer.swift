// libFuzzer entry point for the cgroup parsers (Sources/ProcessTable/Cgroup).
//
// Built by hack/fuzz-cgroup together with exactly ContainerIdentity.swift and
// CgroupMount.swift, so it needs nothing but the standard library. Each input is parsed as
// a /proc/PID/cgroup file, as one cgroup path and as a mountinfo file, and every answer is
// checked: a container id is 64 lowercase hex digits, a pod UID is 8-4-4-4-12 lowercase hex
// with dashes (or a static pod's 32 hex digits), a directory stays below its mount point.
// A crash, a failed check (a trap), a sanitizer report or a timeout is a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))

    let parsed = ProcCgroup(parsing: bytes)
    check(parsed.v2Container)
    check(parsed.v1Container)
    precondition(parsed.container == (parsed.v2Container ?? parsed.v1Container))
    if let path = parsed.v2Path {
        // The v2 line's path alone gives the same answer (repairing invalid UTF-8 cannot
        // change it: the replacement bytes are never `/`, `:`, `-`, `_` or hex digits).
        precondition(ContainerIdentity(cgroupPath: path) == parsed.v2Container, "path and line disagree")
        exercise(path: path)
    }

    let text = String(decoding: bytes, as: UTF8.self)
    check(ContainerIdentity(cgroupPath: text))
    for mount in Cgroup2Mount.parseMountInfo(text).prefix(16) {
        exercise(path: mount.root)
        precondition(!mount.mountPoint.isEmpty)
    }
    return 0
}

private func exercise(path: String) {
    for mount in [
        Cgroup2Mount(root: "/", mountPoint: "/sys/fs/cgroup"), Cgroup2Mount(root: "/../..", mountPoint: "/host"),
    ] {
        guard let directory = mount.directory(ofCgroupPath: path) else { continue }
        precondition(directory.hasPrefix(mount.mountPoint))
        precondition(!directory.split(separator: "/").contains(".."))
    }
}

private func check(_ identity: ContainerIdentity?) {
    guard let identity else { return }
    let id = Array(identity.containerID.utf8)
    precondition(id.count == 64 && id.allSatisfy(isLowercaseHexDigit), "bad container id")
    guard let pod = identity.podUID else { return }
    let uid = Array(pod.utf8)
    if uid.count == 32 {
        precondition(uid.allSatisfy(isLowercaseHexDigit), "bad static pod uid")
        return
    }
    precondition(uid.count == 36, "bad pod uid length")
    for (offset, byte) in uid.enumerated() {
        if [8, 13, 18, 23].contains(offset) {
            precondition(byte == UInt8(ascii: "-"), "bad pod uid separator")
        } else {
            precondition(isLowercaseHexDigit(byte), "bad pod uid digit")
        }
    }
}

private func isLowercaseHexDigit(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
}
