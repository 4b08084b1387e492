/// Reading of ELF note lists (PT_NOTE segments and SHT_NOTE sections).
enum ELFNotes {
    static let typeGNUBuildID: UInt32 = 3
    /// Longest build id accepted; real ones are 8 (xxhash), 16 (md5/uuid) or 20 (sha1) bytes.
    static let maximumBuildIDLength: UInt32 = 64

    /// The NT_GNU_BUILD_ID descriptor in the note list at `[offset, offset + size)`, or nil.
    ///
    /// The walk is bounded: every step advances by at least the 12-byte note header and
    /// stops at the first note that does not fit, so it ends after at most `size / 12` steps
    /// whatever `namesz` and `descsz` claim.
    static func buildID(image: ELFImage, offset: UInt64, size: UInt64, alignment: UInt64)
        -> ELFBuildID?
    {
        guard let notes = try? image.record(offset: offset, length: size, what: "notes") else {
            return nil
        }
        // Notes in 8-aligned segments (e.g. .note.gnu.property) pad to 8, all others to 4.
        let align: UInt64 = alignment == 8 ? 8 : 4
        let length = UInt64(notes.length)
        var cursor: UInt64 = 0
        while length >= 12, cursor <= length - 12 {
            let at = Int(cursor)
            let nameSize = UInt64(notes.u32(at))
            let descriptorSize = UInt64(notes.u32(at + 4))
            let type = notes.u32(at + 8)
            // All quantities are below 2^34, so none of these sums overflow a UInt64.
            let descriptorOffset = alignUp(cursor + 12 + nameSize, align)
            let end = descriptorOffset + descriptorSize
            guard end <= length else { return nil }
            if type == typeGNUBuildID, nameSize == 4, notes.bytes(at + 12, count: 4) == [0x47, 0x4e, 0x55, 0],
                descriptorSize > 0, descriptorSize <= UInt64(maximumBuildIDLength),
                let bytes = notes.bytes(Int(descriptorOffset), count: Int(descriptorSize))
            {
                return ELFBuildID(bytes: bytes)
            }
            let next = alignUp(end, align)
            guard next > cursor else { return nil }
            cursor = next
        }
        return nil
    }

    private static func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        (value + alignment - 1) & ~(alignment - 1)
    }
}
