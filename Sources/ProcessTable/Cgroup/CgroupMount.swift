// Where the cgroup v2 hierarchy is mounted, so a path from /proc/PID/cgroup can be turned
// into a directory whose inode is the cgroup id. Standard library only (hack/fuzz-cgroup
// compiles it with ContainerIdentity.swift).

/// A cgroup2 file system mounted in this process's mount namespace (a line of
/// `/proc/self/mountinfo` with file system type `cgroup2`).
public struct Cgroup2Mount: Sendable, Hashable {
    /// The cgroup shown at ``mountPoint``, as this process's cgroup namespace prints paths:
    /// `/` for the namespace's root, `/../..` for a cgroup above it (the host's hierarchy
    /// mounted into a container that has its own cgroup namespace).
    public var root: String
    /// Where it is mounted, such as `/sys/fs/cgroup` (v2 hosts) or `/sys/fs/cgroup/unified`
    /// (hybrid hosts).
    public var mountPoint: String

    public init(root: String, mountPoint: String) {
        self.root = root
        self.mountPoint = mountPoint
    }

    /// The directory of the cgroup at `path` (the path of a `0::` line of
    /// `/proc/PID/cgroup`, printed in the same cgroup namespace as ``root``), or nil when the
    /// cgroup is not below this mount's root.
    public func directory(ofCgroupPath path: String) -> String? {
        guard path.hasPrefix("/"), root.hasPrefix("/") else { return nil }
        let rootParts = root.split(separator: "/")
        let pathParts = path.split(separator: "/")
        guard pathParts.count >= rootParts.count, pathParts.starts(with: rootParts) else { return nil }
        let rest = pathParts.dropFirst(rootParts.count)
        // `..` below the root would leave the mount.
        guard !rest.contains(where: { $0 == ".." || $0 == "." }) else { return nil }
        let base = mountPoint.hasSuffix("/") ? String(mountPoint.dropLast()) : mountPoint
        return rest.isEmpty ? (base.isEmpty ? "/" : base) : base + "/" + rest.joined(separator: "/")
    }

    /// The cgroup2 mounts in the text of a `/proc/PID/mountinfo` file, in file order.
    /// Lines are `id parent major:minor root mount-point options [optional...] - type source
    /// super-options`, with spaces, tabs, newlines and backslashes in paths written as octal
    /// escapes (`\040`). Lines of another shape are skipped. Linear in the input.
    public static func parseMountInfo(_ text: String) -> [Cgroup2Mount] {
        var mounts: [Cgroup2Mount] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8,
                let separator = fields.dropFirst(6).firstIndex(of: "-"),
                separator + 1 < fields.count, fields[separator + 1] == "cgroup2"
            else { continue }
            mounts.append(Cgroup2Mount(root: unescape(fields[3]), mountPoint: unescape(fields[4])))
        }
        return mounts
    }

    /// Undoes the kernel's `\ooo` escapes (`mangle_path` in fs/seq_file.c).
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        let bytes = Array(field.utf8)
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\"), index + 3 < bytes.count,
                let value = octal(bytes[(index + 1)...(index + 3)])
            {
                result.append(value)
                index += 4
            } else {
                result.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: result, as: UTF8.self)
    }

    private static func octal(_ digits: ArraySlice<UInt8>) -> UInt8? {
        var value: UInt16 = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "7") else { return nil }
            value = value * 8 + UInt16(digit - UInt8(ascii: "0"))
        }
        return UInt8(exactly: value)
    }
}
