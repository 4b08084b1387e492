#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
// hack/fuzz-elf compiles these files with SystemCall.swift into one module, without NodeprofCore.
#if canImport(NodeprofCore)
    import NodeprofCore
#endif

/// The bytes of one ELF image: a read-only private mapping of a file, or a private copy of
/// a memory buffer. Both paths hand the same pointer and length to the parser, so in-memory
/// parsing (fuzzing, the vDSO) exercises exactly the code that reads files.
///
/// The bytes never change after initialization. A mapped file that another process
/// truncates while it is mapped can still raise SIGBUS on access; package managers replace
/// files by rename, which keeps the mapped inode intact.
final class ELFImage {
    let base: UnsafeRawPointer
    let count: Int
    private let isMapped: Bool
    /// `fstat` of the file when the image was mapped from a path.
    let fileStatus: ELFFileStatus?

    /// Maps `path` read-only. The descriptor is closed before returning.
    init(path: String) throws(ELFError) {
        let descriptor: Int32
        do {
            descriptor = try SystemCall.retryingOnInterrupt("open") { open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw .cannotOpen(path: path, operation: error.call, errno: error.errno)
        }
        defer { close(descriptor) }

        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw .cannotOpen(path: path, operation: "fstat", errno: errno)
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw .notRegularFile(path: path) }
        guard status.st_size > 0 else { throw .emptyFile }
        guard let length = Int(exactly: status.st_size) else {
            throw .malformed("file size \(status.st_size) does not fit in memory")
        }
        guard let mapping = mmap(nil, length, PROT_READ, MAP_PRIVATE, descriptor, 0),
            mapping != MAP_FAILED
        else {
            throw .cannotOpen(path: path, operation: "mmap", errno: errno)
        }
        self.base = UnsafeRawPointer(mapping)
        self.count = length
        self.isMapped = true
        self.fileStatus = ELFFileStatus(status)
    }

    /// Copies `bytes` into memory owned by the image.
    init(copying bytes: UnsafeRawBufferPointer) throws(ELFError) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { throw .emptyFile }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
        copy.copyMemory(from: source, byteCount: bytes.count)
        self.base = UnsafeRawPointer(copy)
        self.count = bytes.count
        self.isMapped = false
        self.fileStatus = nil
    }

    deinit {
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        } else {
            base.deallocate()
        }
    }

    var size: UInt64 { UInt64(count) }

    /// The bytes `[offset, offset + length)` as a bounded record, or a `truncated` error naming
    /// `what` when they do not lie entirely inside the image. Overflow-safe for any inputs.
    func record(offset: UInt64, length: UInt64, what: @autoclosure () -> String) throws(ELFError)
        -> ELFRecord
    {
        guard offset <= size, length <= size - offset else {
            throw .truncated(what: what(), offset: offset, size: length, fileSize: size)
        }
        // Both fit in `count`, which is an Int.
        return ELFRecord(pointer: base + Int(offset), length: Int(length))
    }

    /// Like ``record(offset:length:what:)`` but for `count` entries of `entrySize` bytes.
    func table(offset: UInt64, count entries: UInt64, entrySize: UInt64, what: @autoclosure () -> String)
        throws(ELFError) -> ELFRecord
    {
        let (length, overflow) = entries.multipliedReportingOverflow(by: entrySize)
        guard !overflow else {
            throw .truncated(what: what(), offset: offset, size: UInt64.max, fileSize: size)
        }
        return try record(offset: offset, length: length, what: what())
    }
}

/// A bounded window into an ``ELFImage``. Reads outside the window return zero instead of
/// trapping; callers validate sizes first, so the fallback only guards against mistakes.
/// Only valid while the image that produced it is alive.
struct ELFRecord {
    let pointer: UnsafeRawPointer
    let length: Int

    func u8(_ offset: Int) -> UInt8 {
        guard offset >= 0, offset < length else { return 0 }
        return pointer.load(fromByteOffset: offset, as: UInt8.self)
    }

    func u16(_ offset: Int) -> UInt16 {
        guard offset >= 0, length >= 2, offset <= length - 2 else { return 0 }
        return UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    func u32(_ offset: Int) -> UInt32 {
        guard offset >= 0, length >= 4, offset <= length - 4 else { return 0 }
        return UInt32(littleEndian: pointer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    func u64(_ offset: Int) -> UInt64 {
        guard offset >= 0, length >= 8, offset <= length - 8 else { return 0 }
        return UInt64(littleEndian: pointer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The sub-window of `entrySize` bytes for entry `index`; empty when out of range.
    func entry(_ index: Int, size entrySize: Int) -> ELFRecord {
        let (start, overflow) = index.multipliedReportingOverflow(by: entrySize)
        guard !overflow, index >= 0, entrySize >= 0, start <= length, entrySize <= length - start
        else { return ELFRecord(pointer: pointer, length: 0) }
        return ELFRecord(pointer: pointer + start, length: entrySize)
    }

    /// Copies the bytes `[offset, offset + count)`, or nil when out of range.
    func bytes(_ offset: Int, count: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, offset <= length, count <= length - offset else { return nil }
        return Array(UnsafeRawBufferPointer(start: pointer + offset, count: count))
    }

    /// The NUL-terminated string starting at `offset`, or nil when `offset` is out of range
    /// or no NUL follows within `maximumLength` bytes inside the window (a string table must
    /// end with one). The bound keeps lookups in NUL-free hostile tables cheap.
    func cString(_ offset: Int, maximumLength: Int = 4096) -> String? {
        guard let bytes = cStringBytes(offset, maximumLength: maximumLength) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Like ``cString(_:maximumLength:)`` without materializing a String.
    func cStringBytes(_ offset: Int, maximumLength: Int = 4096) -> UnsafeRawBufferPointer? {
        guard offset >= 0, offset < length, maximumLength > 0 else { return nil }
        let reach = min(length - offset, maximumLength)
        guard let nul = memchr(pointer + offset, 0, reach) else { return nil }
        let stringLength = UnsafeRawPointer(nul) - (pointer + offset)
        return UnsafeRawBufferPointer(start: pointer + offset, count: stringLength)
    }
}
