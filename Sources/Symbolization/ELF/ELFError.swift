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

/// Why an ELF file, or a part of it, could not be read.
///
/// Every case names what is wrong and where, so a log line is enough to understand a
/// rejected file. Parsing never traps on bad input: anything a hostile or damaged file can
/// contain ends up here or as a partial result.
public enum ELFError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A system call failed while opening or mapping the file.
    case cannotOpen(path: String, operation: String, errno: Int32)
    /// The path names a directory, device, socket or FIFO.
    case notRegularFile(path: String)
    /// The file (or buffer) has no bytes.
    case emptyFile
    /// The first bytes are not `\x7fELF`, or the file is shorter than an ELF header.
    case notELF(firstBytes: [UInt8])
    /// `EI_CLASS` is not ELFCLASS64 (1 means a 32-bit file).
    case unsupportedClass(UInt8)
    /// `EI_DATA` is not little-endian (2 means big-endian).
    case unsupportedByteOrder(UInt8)
    /// A structure the header points at does not fit inside the file.
    case truncated(what: String, offset: UInt64, size: UInt64, fileSize: UInt64)
    /// A field has a value no valid file can have.
    case malformed(String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let operation, let errno):
            return
                "cannot read ELF file \(path): \(operation): \(SystemCall.errnoName(errno)); "
                + "check that the file exists and is readable by this user (files of other "
                + "mount namespaces need root to be reached through /proc/PID/root)"
        case .notRegularFile(let path):
            return "cannot read ELF file \(path): not a regular file"
        case .emptyFile:
            return "not an ELF file: the file is empty"
        case .notELF(let firstBytes):
            let hex = firstBytes.map { byte in
                let digits = String(byte, radix: 16)
                return digits.count == 1 ? "0" + digits : digits
            }.joined(separator: " ")
            return "not an ELF file: expected magic 7f 45 4c 46, found [\(hex)]"
        case .unsupportedClass(let elfClass):
            let what = elfClass == 1 ? "32-bit ELF (ELFCLASS32)" : "ELF class \(elfClass)"
            return "unsupported \(what): only 64-bit ELF files are read"
        case .unsupportedByteOrder(let data):
            let what = data == 2 ? "big-endian ELF (ELFDATA2MSB)" : "ELF data encoding \(data)"
            return "unsupported \(what): only little-endian ELF files are read"
        case .truncated(let what, let offset, let size, let fileSize):
            return
                "truncated: \(what) at offset \(offset) size \(size) past end of file (\(fileSize) bytes)"
        case .malformed(let message):
            return "malformed ELF file: \(message)"
        }
    }
}
