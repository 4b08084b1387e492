/// What makes two mapped files the same file, for caches shared by every process: the GNU
/// build id when the file has one (the same binary in many containers then shares one cache
/// entry), else the device, inode, size and modification time of the file.
public enum FileIdentity: Hashable, Sendable {
    case buildID(ELFBuildID)
    case fileStatus(ELFFileStatus)

    init(_ file: ELFFile) {
        if let buildID = file.buildID {
            self = .buildID(buildID)
        } else if let status = file.fileStatus {
            self = .fileStatus(status)
        } else {
            // In-memory images (the vDSO) have no status; the bytes' size is what is left.
            self = .fileStatus(
                ELFFileStatus(device: 0, inode: 0, size: Int64(file.byteCount), modificationTimeNanos: 0))
        }
    }
}

/// How a `/proc/PID/maps` line names its file: the key of the cache from maps lines to
/// loaded files. Device and inode as the kernel printed them, plus the path, so the same
/// inode reached through two paths stays correct even if one of them is replaced.
struct MappedFileKey: Hashable {
    var deviceMajor: UInt32
    var deviceMinor: UInt32
    var inode: UInt64
    var path: String

    init(_ mapping: MemoryMapping) {
        deviceMajor = mapping.deviceMajor
        deviceMinor = mapping.deviceMinor
        inode = mapping.inode
        path = mapping.path
    }
}
