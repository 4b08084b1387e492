import Foundation
import Glibc
import TestSupport
import Testing

@testable import ProcessTable

private let id = "2b78f9fa3929001b038625607be8a97af3fb9066246513e5c15343fb52dd99d9"
private let uid = "515352eb-790e-4efd-a555-45d6692fa81e"
private let containerPath =
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod515352eb_790e_4efd_a555_45d6692fa81e.slice/"
    + "cri-containerd-\(id).scope"
private let mount = Cgroup2Mount(root: "/", mountPoint: "/sys/fs/cgroup")

/// /proc/PID/cgroup files and cgroup directory inodes, in memory.
private struct FakeCgroupFiles: CgroupFiles {
    var procCgroups: [Int32: String] = [:]
    var inodes: [String: UInt64] = [:]

    func procCgroup(pid: Int32) -> [UInt8]? { procCgroups[pid].map { Array($0.utf8) } }
    func inode(ofDirectory path: String) -> UInt64? { inodes[path] }
}

@Suite struct CgroupAttributionTests {
    @Test func aVerifiedContainerIsLearnedOnceAndThenHit() {
        var files = FakeCgroupFiles()
        files.procCgroups[10] = "0::\(containerPath)\n"
        files.inodes["/sys/fs/cgroup\(containerPath)"] = 4242
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])

        let expected = ContainerIdentity(containerID: id, podUID: uid)
        #expect(attribution.identity(cgroupID: 4242, pid: 10) == expected)
        #expect(attribution.identity(cgroupID: 4242, pid: 10) == expected)
        // Any process of the cgroup is answered from the cache, even one whose /proc is gone.
        #expect(attribution.identity(cgroupID: 4242, pid: 999) == expected)

        var statistics = CgroupAttribution.Statistics()
        statistics.misses = 1
        statistics.learned = 1
        statistics.hits = 2
        #expect(attribution.statistics == statistics)
        #expect(attribution.count == 1)
    }

    @Test func nodeServicesAreCachedAsNil() {
        var files = FakeCgroupFiles()
        files.procCgroups[20] = "0::/system.slice/kubelet.service\n"
        files.inodes["/sys/fs/cgroup/system.slice/kubelet.service"] = 77
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])

        #expect(attribution.identity(cgroupID: 77, pid: 20) == nil)
        #expect(attribution.identity(cgroupID: 77, pid: 20) == nil)
        #expect(attribution.statistics.misses == 1 && attribution.statistics.hits == 1)
        #expect(attribution.statistics.learned == 1 && attribution.count == 1)
    }

    @Test func aGoneProcessIsNotCachedSoALiveOneCanTeach() {
        var files = FakeCgroupFiles()
        files.inodes["/sys/fs/cgroup\(containerPath)"] = 4242
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])
        #expect(attribution.identity(cgroupID: 4242, pid: 30) == nil)
        #expect(attribution.statistics.unreadable == 1 && attribution.count == 0)

        files.procCgroups[31] = "0::\(containerPath)\n"
        attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])
        #expect(attribution.identity(cgroupID: 4242, pid: 30) == nil)
        #expect(attribution.identity(cgroupID: 4242, pid: 31) == ContainerIdentity(containerID: id, podUID: uid))
        #expect(attribution.identity(cgroupID: 4242, pid: 30) == ContainerIdentity(containerID: id, podUID: uid))
        #expect(attribution.statistics.unreadable == 1 && attribution.statistics.learned == 1)
    }

    @Test func aProcessInAnotherCgroupIsAMismatchAndNotCached() {
        var files = FakeCgroupFiles()
        // The process moved (or its pid was reused): its cgroup now is not the sampled one.
        files.procCgroups[40] = "0::\(containerPath)\n"
        files.inodes["/sys/fs/cgroup\(containerPath)"] = 4242
        // This one's cgroup has been removed.
        files.procCgroups[41] = "0::/kubepods/besteffort/pod\(uid)/\(id)\n"
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])

        #expect(attribution.identity(cgroupID: 1000, pid: 40) == nil)
        #expect(attribution.identity(cgroupID: 1000, pid: 41) == nil)
        #expect(attribution.statistics.mismatches == 2)
        #expect(attribution.count == 0)
        #expect(attribution.identity(cgroupID: 4242, pid: 40) == ContainerIdentity(containerID: id, podUID: uid))
    }

    @Test func withoutAMountShowingThePathTheParseIsReturnedUncached() {
        var files = FakeCgroupFiles()
        files.procCgroups[50] = "0::/../..\(containerPath)\n"
        files.procCgroups[51] = "1:name=systemd:/docker/\(id)\n"
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])

        #expect(attribution.identity(cgroupID: 5, pid: 50) == ContainerIdentity(containerID: id, podUID: uid))
        #expect(attribution.identity(cgroupID: 5, pid: 51) == ContainerIdentity(containerID: id), "cgroup v1 only")
        #expect(attribution.statistics.unverifiable == 2 && attribution.count == 0)
    }

    @Test func aRelativePathIsVerifiedThroughAMountOfTheHostHierarchy() {
        var files = FakeCgroupFiles()
        files.procCgroups[60] = "0::/../..\(containerPath)\n"
        files.inodes["/host/cgroup\(containerPath)"] = 6060
        let hostFromPod = Cgroup2Mount(root: "/../..", mountPoint: "/host/cgroup")
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount, hostFromPod])

        #expect(attribution.identity(cgroupID: 6060, pid: 60) == ContainerIdentity(containerID: id, podUID: uid))
        #expect(attribution.statistics.learned == 1)
    }

    @Test func onAHybridHostTheV1LinesAnswerUncached() {
        var files = FakeCgroupFiles()
        // cgroupfs driver on a hybrid host: containerd and its containers share a v2 cgroup.
        files.procCgroups[70] = "4:memory:/system.slice/containerd.service\n0::/system.slice/containerd.service\n"
        files.procCgroups[71] = "4:memory:/kubepods/besteffort/pod\(uid)/\(id)\n0::/system.slice/containerd.service\n"
        files.inodes["/sys/fs/cgroup/system.slice/containerd.service"] = 70
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])

        #expect(attribution.identity(cgroupID: 70, pid: 70) == nil)
        #expect(attribution.identity(cgroupID: 70, pid: 71) == ContainerIdentity(containerID: id, podUID: uid))
        #expect(attribution.statistics.decidedByV1 == 2 && attribution.count == 0)

        // A v2 line naming the container decides, whatever the v1 lines say.
        files.procCgroups[72] = "4:memory:/system.slice/containerd.service\n0::\(containerPath)\n"
        files.inodes["/sys/fs/cgroup\(containerPath)"] = 4242
        attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount])
        #expect(attribution.identity(cgroupID: 4242, pid: 72) == ContainerIdentity(containerID: id, podUID: uid))
        #expect(attribution.count == 1)
    }

    @Test func theCacheIsBoundedAndEmptiedWhenFull() {
        var files = FakeCgroupFiles()
        for index in 0..<5 {
            files.procCgroups[Int32(100 + index)] = "0::/system.slice/s\(index).service\n"
            files.inodes["/sys/fs/cgroup/system.slice/s\(index).service"] = UInt64(index + 1)
        }
        var attribution = CgroupAttribution(files: files, cgroup2Mounts: [mount], capacity: 4)
        for index in 0..<5 {
            _ = attribution.identity(cgroupID: UInt64(index + 1), pid: Int32(100 + index))
        }
        #expect(attribution.statistics.learned == 5)
        #expect(attribution.statistics.clears == 1)
        #expect(attribution.count == 1)
        _ = attribution.identity(cgroupID: 5, pid: 104)
        #expect(attribution.statistics.hits == 1)
        attribution.removeAll()
        #expect(attribution.count == 0)
    }
}

/// The kernel's side: a real cgroup v2 directory shaped like a kubepods container scope,
/// a real process moved into it, and the inode the BPF sampler would record.
@Suite(.machineExclusive) struct CgroupAttributionKernelTests {
    @Test func learnsARealContainerCgroup() throws {
        #expect(getuid() == 0, "creating cgroups needs root (CI runs as root)")
        let mounts = SystemCgroupFiles.cgroup2Mounts()
        let mount = try #require(
            mounts.first { $0.root == "/" }, "no cgroup2 mount shows this cgroup namespace's root: \(mounts)")

        let podUID = UUID().uuidString.lowercased()
        var random = SystemRandomNumberGenerator()
        let containerID = (0..<4).map { _ in
            let hex = String(random.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        // A unique parent keeps the test away from a real kubelet's kubepods.slice (whose
        // orphan-cgroup cleanup would kill the child) and from concurrent runs.
        let components = [
            "nodeprof-test-\(getpid())-\(containerID.prefix(8))", "kubepods.slice", "kubepods-besteffort.slice",
            "kubepods-besteffort-pod\(podUID.replacingOccurrences(of: "-", with: "_")).slice",
            "cri-containerd-\(containerID).scope",
        ]
        var created: [String] = []
        var child: Process?
        defer {
            if let child, child.isRunning {
                kill(child.processIdentifier, SIGKILL)  // Swift Testing's children inherit a blocked SIGTERM
                child.waitUntilExit()
            }
            for directory in created.reversed() { rmdir(directory) }
        }
        var directory = mount.mountPoint
        for component in components {
            directory += "/" + component
            try #require(mkdir(directory, 0o755) == 0, "mkdir \(directory): errno \(errno)")
            created.append(directory)
        }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["30"]
        try process.run()
        child = process
        let pid = process.processIdentifier
        try writeAll("\(pid)\n", to: directory + "/cgroup.procs")

        let inode = try #require(SystemCgroupFiles().inode(ofDirectory: directory))
        var attribution = CgroupAttribution()
        let expected = ContainerIdentity(containerID: containerID, podUID: podUID)
        #expect(attribution.identity(cgroupID: inode, pid: pid) == expected)
        #expect(attribution.identity(cgroupID: inode, pid: pid) == expected)
        #expect(attribution.statistics.learned == 1 && attribution.statistics.hits == 1)

        // Sampled in the parent cgroup: the process is not there now, so nothing is learned.
        let parentInode = try #require(SystemCgroupFiles().inode(ofDirectory: created[created.count - 2]))
        #expect(attribution.identity(cgroupID: parentInode, pid: pid) == nil)
        #expect(attribution.statistics.mismatches == 1)

        kill(pid, SIGKILL)
        process.waitUntilExit()
        // Exited: unreadable, and not cached.
        #expect(attribution.identity(cgroupID: parentInode, pid: pid) == nil)
        #expect(attribution.statistics.unreadable == 1)
    }

    private func writeAll(_ text: String, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CLOEXEC)
        try #require(descriptor >= 0, "open \(path): errno \(errno)")
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        try #require(written == bytes.count, "write \(path): errno \(errno)")
    }
}
