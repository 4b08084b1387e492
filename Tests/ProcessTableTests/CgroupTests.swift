import Foundation
import TestSupport
import Testing

@testable import ProcessTable

/// Container ids and pod UIDs used by the cases below.
private let id = "5dab0ec4aebed0b17e8b783c11b859f43da98335fd4973a396ed7bbdab6659f3"
private let nodeID = "90b200f66e7a7c6d3ee264d905001c37b7dd9d08e2d35aa669c2a8b092fe1a64"
private let uid = "d8559883-9d60-478a-8cb5-cc238a63d908"
private let uidUnderscores = "d8559883_9d60_478a_8cb5_cc238a63d908"
private let staticPodUID = "6d8a1f0c2b3e4d5f6a7b8c9d0e1f2a3b"

private func identity(_ text: String) -> ContainerIdentity? {
    ProcCgroup(parsing: text).container
}

@Suite struct CgroupFixtureTests {
    /// The recorded `/proc/PID/cgroup` files (copied unchanged from the shared fixtures).
    static let directory = repositoryRoot() + "/Tests/ProcessTableTests/Fixtures/cgroup"

    static func expectations() throws -> [(file: String, identity: ContainerIdentity)] {
        let table = try String(contentsOfFile: directory + "/expected.tsv", encoding: .utf8)
        return table.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let fields = line.split(separator: "\t").map(String.init)
            return (fields[0], ContainerIdentity(containerID: fields[1], podUID: fields[2] == "-" ? nil : fields[2]))
        }
    }

    @Test func everyRecordedFileGivesTheExpectedIdentity() throws {
        let expectations = try Self.expectations()
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory).filter { $0.hasSuffix(".txt") }
        #expect(Set(expectations.map(\.file)) == Set(files), "expected.tsv lists every fixture")
        for (file, expected) in expectations {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.directory + "/" + file)))
            #expect(ProcCgroup(parsing: bytes).container == expected, "\(file)")
        }
    }
}

@Suite struct CgroupPathTests {
    /// `/proc/PID/cgroup` text and the identity it must give.
    static let cases: [(name: String, text: String, expected: ContainerIdentity?)] = [
        // CRI-O
        ("cri-o cgroupfs", "0::/kubepods/burstable/pod\(uid)/crio-\(id)", .init(containerID: id, podUID: uid)),
        (
            "cri-o systemd",
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidUnderscores).slice/crio-\(id).scope",
            .init(containerID: id, podUID: uid)
        ),
        (
            "cri-o v1 slice:prefix:name", "7:cpu:/kubepods-burstable-pod\(uidUnderscores).slice:crio:\(id)",
            .init(containerID: id, podUID: uid)
        ),
        (
            "crio-conmon is not the container",
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidUnderscores).slice/crio-conmon-\(id).scope",
            nil
        ),
        ("crio-conmon cgroupfs", "0::/kubepods/burstable/pod\(uid)/crio-conmon-\(id)", nil),

        // Relative to the agent's cgroup namespace.
        (
            "relative systemd", "0::/../../kubepods-besteffort-pod\(uidUnderscores).slice/cri-containerd-\(id).scope",
            .init(containerID: id, podUID: uid)
        ),
        ("relative cgroupfs", "0::/../../pod\(uid)/\(id)", .init(containerID: id, podUID: uid)),
        ("relative without the pod", "0::/../\(id)", nil),

        // Node services and other non-containers.
        ("kubelet", "0::/system.slice/kubelet.service", nil),
        ("containerd", "0::/system.slice/containerd.service", nil),
        ("init", "0::/init.scope", nil),
        ("user session", "0::/user.slice/user-1000.slice/session-3.scope", nil),
        ("user manager", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service", nil),
        ("some service", "0::/system.slice/foo.service", nil),
        ("root", "0::/", nil),
        ("pod without a container", "0::/kubepods.slice/kubepods-pod\(uidUnderscores).slice", nil),

        // `.mount` units carry container ids but are not containers.
        (
            "rootfs mount", "0::/system.slice/run-containerd-io.containerd.runtime.v2.task-k8s.io-\(id)-rootfs.mount",
            nil
        ),
        ("docker mount", "0::/system.slice/docker-\(id).mount", nil),

        // Podman (and plain Docker) name no pod.
        (
            "podman rootless",
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-\(id).scope/container",
            .init(containerID: id)
        ),
        ("podman systemd", "0::/machine.slice/libpod-\(id).scope", .init(containerID: id)),
        ("podman cgroupfs", "11:memory:/libpod_parent/libpod-\(id)", .init(containerID: id)),
        ("docker systemd", "0::/system.slice/docker-\(id).scope", .init(containerID: id)),
        ("docker cgroupfs", "0::/docker/\(id)", .init(containerID: id)),
        ("docker in docker", "0::/docker/\(nodeID)/docker/\(id)", .init(containerID: id)),

        // Guaranteed pods have no QoS level.
        ("guaranteed cgroupfs", "0::/kubepods/pod\(uid)/\(id)", .init(containerID: id, podUID: uid)),
        (
            "guaranteed systemd", "0::/kubepods.slice/kubepods-pod\(uidUnderscores).slice/cri-containerd-\(id).scope",
            .init(containerID: id, podUID: uid)
        ),
        (
            "guaranteed v1 slice:prefix:name", "3:cpuset:/kubepods-pod\(uidUnderscores).slice:cri-containerd:\(id)",
            .init(containerID: id, podUID: uid)
        ),

        // dockershim / cri-dockerd under kubepods.
        (
            "docker systemd in kubepods",
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidUnderscores).slice/docker-\(id).scope",
            .init(containerID: id, podUID: uid)
        ),
        (
            "v1 slice form under a service",
            "4:cpuset:/system.slice/containerd.service/kubepods-besteffort-pod\(uid).slice:cri-containerd:\(id)",
            .init(containerID: id, podUID: uid)
        ),

        // Static pods: the kubelet's 32-hex-digit hash is the UID in the cgroup.
        (
            "static pod cgroupfs", "0::/kubepods/burstable/pod\(staticPodUID)/\(id)",
            .init(containerID: id, podUID: staticPodUID)
        ),
        (
            "static pod systemd",
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(staticPodUID).slice/cri-containerd-\(id).scope",
            .init(containerID: id, podUID: staticPodUID)
        ),

        // Nested clusters: a node container first, then a whole kubepods tree.
        (
            "kind systemd",
            "0::/system.slice/docker-\(nodeID).scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
                + "kubelet-kubepods-besteffort-pod\(uidUnderscores).slice/cri-containerd-\(id).scope",
            .init(containerID: id, podUID: uid)
        ),
        (
            "kind cgroupfs v1", "4:memory:/docker/\(nodeID)/kubepods/besteffort/pod\(uid)/\(id)",
            .init(containerID: id, podUID: uid)
        ),
        (
            "kind node's own kubelet", "0::/system.slice/docker-\(nodeID).scope/system.slice/kubelet.service",
            .init(containerID: nodeID)
        ),
        (
            "a pod after the innermost container is not its pod",
            "0::/system.slice/docker-\(nodeID).scope/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidUnderscores).slice",
            .init(containerID: nodeID)
        ),
        (
            "the outer pod does not own the inner container",
            "0::/kubepods/pod\(uid)/\(nodeID)/docker/\(id)", .init(containerID: id)
        ),

        // Hybrid hosts: the v2 line when it names a container, else the v1 lines.
        (
            "hybrid, only v2 names it",
            """
            5:memory:/
            1:name=systemd:/system.slice/containerd.service
            0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidUnderscores).slice/cri-containerd-\(id).scope
            """,
            .init(containerID: id, podUID: uid)
        ),
        (
            "hybrid, only a later v1 line names it",
            """
            12:rdma:/
            11:pids:/system.slice/containerd.service
            4:memory:/kubepods/besteffort/pod\(uid)/\(id)
            1:name=systemd:/kubepods/besteffort/pod\(uid)/\(id)
            0::/system.slice/containerd.service
            """,
            .init(containerID: id, podUID: uid)
        ),
        (
            "hybrid, both name one: v2 wins",
            """
            4:memory:/docker/\(nodeID)
            0::/system.slice/docker-\(id).scope
            """,
            .init(containerID: id)
        ),

        // 64 hex digits outside a container-shaped position.
        ("hex under system.slice", "0::/system.slice/\(id)", nil),
        ("hex under a QoS level", "0::/kubepods/besteffort/\(id)", nil),
        ("hex anywhere", "0::/foo/\(id)/bar", nil),
        ("unknown runtime prefix", "0::/system.slice/foo-\(id).scope", nil),
        ("unknown runtime in slice form", "1:cpu:/kubepods-pod\(uid).slice:foo:\(id)", nil),
        ("slice form without .slice", "1:cpu:/kubepods-pod\(uid):cri-containerd:\(id)", nil),
        (
            "container directly under kubepods.slice", "0::/kubepods.slice/cri-containerd-\(id).scope",
            .init(containerID: id)
        ),
    ]

    @Test(arguments: cases.indices)
    func pathShapes(_ index: Int) {
        let (name, text, expected) = Self.cases[index]
        #expect(identity(text) == expected, "\(name): \(text)")
    }

    @Test func onePathWithoutTheLinePrefix() {
        #expect(
            ContainerIdentity(cgroupPath: "/kubepods/besteffort/pod\(uid)/\(id)")
                == ContainerIdentity(containerID: id, podUID: uid))
        #expect(ContainerIdentity(cgroupPath: "/system.slice/kubelet.service") == nil)
        #expect(ContainerIdentity(cgroupPath: "") == nil)
        #expect(ContainerIdentity(containerID: id, podUID: uid).description == "container \(id) in pod \(uid)")
    }

    @Test func theParseKeepsTheV2PathAndV1Placement() {
        let hybrid = ProcCgroup(parsing: "4:memory:/docker/\(id)\n2:rdma:/\n0::/system.slice/docker.service\n")
        #expect(hybrid.v2Path == "/system.slice/docker.service")
        #expect(hybrid.v2Container == nil)
        #expect(hybrid.v1Container == ContainerIdentity(containerID: id))
        #expect(hybrid.hasV1Placement)

        let v2 = ProcCgroup(parsing: "0::/docker/\(id)")
        #expect(v2.v2Path == "/docker/\(id)" && v2.v2Container == ContainerIdentity(containerID: id))
        #expect(!v2.hasV1Placement)

        let v1Roots = ProcCgroup(parsing: "3:cpu:/\n2:rdma:/\n0::/init.scope\n")
        #expect(!v1Roots.hasV1Placement && v1Roots.v2Path == "/init.scope")

        let v1Only = ProcCgroup(parsing: "1:name=systemd:/docker/\(id)")
        #expect(v1Only.v2Path == nil && v1Only.container == ContainerIdentity(containerID: id))

        // The first v2 line counts; the kernel prints one.
        #expect(ProcCgroup(parsing: "0::/init.scope\n0::/docker/\(id)").container == nil)
    }
}

@Suite struct CgroupHostileInputTests {
    @Test func hostileTextGivesNothing() {
        let hostile: [(String, String)] = [
            ("empty", ""),
            ("newlines", "\n\n\n"),
            ("uppercase id", "0::/docker/\(id.uppercased())"),
            ("63 digits", "0::/docker/\(id.dropLast())"),
            ("65 digits", "0::/docker/\(id)0"),
            ("63 digits with prefix", "0::/system.slice/docker-\(id.dropLast()).scope"),
            ("65 digits with prefix", "0::/system.slice/docker-0\(id).scope"),
            ("uppercase with prefix", "0::/system.slice/docker-\(id.uppercased()).scope"),
            ("malformed pod uid", "0::/kubepods/burstable/podd8559883-9d60-478a-8cb5/\(id)"),
            ("uppercase pod uid", "0::/kubepods/burstable/pod\(uid.uppercased())/\(id)"),
            (
                "pod uid with a wrong separator",
                "0::/kubepods/burstable/pod\(uid.replacingOccurrences(of: "-", with: "."))/\(id)"
            ),
            ("NUL in the pod", "0::/kubepods/pod\(uid)\u{0}/\(id)"),
            ("NUL in the id", "0::/docker/\(id.dropLast())\u{0}"),
            ("no colons", "/docker/\(id)"),
            ("one colon", "0:/docker/\(id)"),
            ("colons only", ":::::::"),
            ("slashes only", "0::" + String(repeating: "/", count: 10_000)),
            ("slice form with one colon", "1:cpu:/kubepods-pod\(uid).slice:\(id)"),
            ("slice form with four colons", "1:cpu:/kubepods-pod\(uid).slice:cri-containerd:\(id):x"),
        ]
        for (name, text) in hostile {
            #expect(identity(text) == nil, "\(name)")
        }
    }

    @Test func aMalformedPodUIDStillGivesASelfEvidentContainer() {
        let text =
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-\(id).scope"
        #expect(identity(text) == ContainerIdentity(containerID: id))
    }

    @Test func aNULBeforeALineDoesNotHideTheNextLine() {
        #expect(identity("\u{0}garbage\n0::/docker/\(id)") == ContainerIdentity(containerID: id))
    }

    @Test(.timeLimit(.minutes(1)))
    func hugeInputIsLinear() {
        // A 1 MiB line without a newline, then the same ending in a container.
        let junk = String(repeating: "ab/", count: (1 << 20) / 3)
        #expect(identity("0::/" + junk) == nil)
        #expect(identity("0::/" + junk + "kubepods/pod\(uid)/\(id)") == ContainerIdentity(containerID: id, podUID: uid))

        // 10,000 components, every other one almost a container; the last pod owns the container.
        let nearMisses = Array(
            repeating: "kubepods-burstable-pod\(uid).slice/cri-containerd-\(id.dropLast()).scope", count: 5_000)
        let deep = "0::/" + nearMisses.joined(separator: "/") + "/docker-\(id).scope"
        #expect(identity(deep) == ContainerIdentity(containerID: id, podUID: uid))

        // 10,000 lines, only the last names a container.
        let lines = Array(repeating: "7:cpu:/system.slice/containerd.service", count: 10_000).joined(separator: "\n")
        #expect(identity(lines + "\n1:name=systemd:/docker/\(id)") == ContainerIdentity(containerID: id))

        // A long colon-free component and a long component full of colons.
        #expect(identity("0::/" + String(repeating: "a", count: 1 << 20)) == nil)
        #expect(identity("1:cpu:/" + String(repeating: ":", count: 1 << 20)) == nil)
    }

    @Test func randomBytesNeverGiveAMalformedIdentity() {
        var random = SplitMix64(seed: 0x6367_726f_7570)
        let alphabet = Array("0123456789abcdef-_:/\n.podslicescopecri-containerdkubepodsdocker".utf8) + [0, 0xff, 0x80]
        for round in 0..<2_000 {
            let count = Int(random.next() % 512)
            var bytes = (0..<count).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
            if round % 2 == 0 {
                // Splice a valid line into the noise.
                bytes.insert(
                    contentsOf: Array("\n0::/kubepods/pod\(uid)/\(id)\n".utf8),
                    at: Int(random.next() % UInt64(count + 1)))
            }
            let parsed = ProcCgroup(parsing: bytes)
            for found in [parsed.v2Container, parsed.v1Container].compactMap({ $0 }) {
                #expect(found.containerID.utf8.count == 64)
                #expect(found.containerID.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
                if let pod = found.podUID {
                    #expect(pod.utf8.count == 36 || pod.utf8.count == 32)
                    #expect(!pod.contains("_"))
                }
            }
        }
    }
}

@Suite struct Cgroup2MountTests {
    @Test func mountInfoListsOnlyCgroup2Mounts() {
        let text = """
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
            50 23 0:38 /../.. /host/sys/fs\\040cgroup rw,relatime master:3 master:4 - cgroup2 cgroup2 rw
            51 23 0:38 / /tmp/hyphen - ro - cgroup2 cgroup2 rw
            garbage
            52 23 0:38 / /too/short - cgroup2
            """
        #expect(
            Cgroup2Mount.parseMountInfo(text) == [
                Cgroup2Mount(root: "/", mountPoint: "/sys/fs/cgroup/unified"),
                Cgroup2Mount(root: "/../..", mountPoint: "/host/sys/fs cgroup"),
                Cgroup2Mount(root: "/", mountPoint: "/tmp/hyphen"),
            ])
        #expect(Cgroup2Mount.parseMountInfo("") == [])
        #expect(Cgroup2Mount.unescape("a\\011b\\134c\\9\\") == "a\tb\\c\\9\\")
    }

    @Test func directoriesOfCgroupPaths() {
        let host = Cgroup2Mount(root: "/", mountPoint: "/sys/fs/cgroup/unified")
        #expect(host.directory(ofCgroupPath: "/") == "/sys/fs/cgroup/unified")
        #expect(
            host.directory(ofCgroupPath: "/kubepods.slice/a.scope") == "/sys/fs/cgroup/unified/kubepods.slice/a.scope")
        #expect(host.directory(ofCgroupPath: "/../../kubepods.slice") == nil, "above this namespace's root")
        #expect(host.directory(ofCgroupPath: "kubepods.slice") == nil, "not absolute")
        #expect(host.directory(ofCgroupPath: "/a/../../b") == nil)

        // The host's hierarchy mounted into a container with its own cgroup namespace.
        let hostFromPod = Cgroup2Mount(root: "/../..", mountPoint: "/host/cgroup/")
        #expect(
            hostFromPod.directory(ofCgroupPath: "/../../kubepods.slice/x.scope")
                == "/host/cgroup/kubepods.slice/x.scope")
        #expect(hostFromPod.directory(ofCgroupPath: "/../x") == nil)
        #expect(hostFromPod.directory(ofCgroupPath: "/x") == nil)

        let subtree = Cgroup2Mount(root: "/kubepods.slice", mountPoint: "/mnt")
        #expect(subtree.directory(ofCgroupPath: "/kubepods.slice/p.slice") == "/mnt/p.slice")
        #expect(subtree.directory(ofCgroupPath: "/kubepods.slicex/p.slice") == nil)
        #expect(Cgroup2Mount(root: "/", mountPoint: "/").directory(ofCgroupPath: "/a") == "/a")
        #expect(Cgroup2Mount(root: "/", mountPoint: "/").directory(ofCgroupPath: "/") == "/")
    }
}
