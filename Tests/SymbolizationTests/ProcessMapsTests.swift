import Foundation
import NodeprofCore
import TestSupport
import Testing

@testable import Symbolization

@Suite struct ProcessMapsTests {
    @Test func kernelShapedLinesParse() throws {
        let text = """
            55d5c0a5e000-55d5c0a60000 r--p 00000000 fd:01 1835043                    /usr/bin/cat
            55d5c0a60000-55d5c0a65000 r-xp 00002000 fd:01 1835043                    /usr/bin/cat
            55d5c1a00000-55d5c1a21000 rw-p 00000000 00:00 0                          [heap]
            7f1c2a000000-7f1c2a028000 r-xp 00028000 103:02 99                        /opt/my app/lib with spaces.so
            7f1c2b000000-7f1c2b001000 r-xp 00000000 fd:01 77                         /usr/lib/libold.so (deleted)
            7f1c2c000000-7f1c2c001000 r-xs 00000000 00:01 2049                       /memfd:jit-code (deleted)
            7f1c2d000000-7f1c2d001000 rwxp 00000000 00:00 0 
            7f1c2e000000-7f1c2e001000 r-xp 00000000 00:00 0                          [anon:v8 code]
            7ffd12345000-7ffd12347000 r-xp 00000000 00:00 0                          [vdso]
            ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
            7f1c2f000000-7f1c2f001000 r-xp 00000000 fd:01 12                         /tmp/new\\012line.so
            """
        let maps = ProcessMaps(parsing: text)
        #expect(maps.skippedLines == 0)
        #expect(maps.mappings.count == 11)
        #expect(maps.mappings == maps.mappings.sorted { $0.start < $1.start })

        let cat = try #require(maps.mapping(containing: 0x55d5_c0a6_0010))
        #expect(cat.path == "/usr/bin/cat")
        #expect(cat.offset == 0x2000)
        #expect(cat.permissions == [.read, .execute])
        #expect(cat.deviceMajor == 0xfd && cat.deviceMinor == 1)
        #expect(cat.inode == 1_835_043)
        #expect(cat.isFileBacked && !cat.isDeleted)

        let spaced = try #require(maps.mapping(containing: 0x7f1c_2a00_0000))
        #expect(spaced.path == "/opt/my app/lib with spaces.so")
        #expect(spaced.deviceMajor == 0x103)

        let deleted = try #require(maps.mapping(containing: 0x7f1c_2b00_0fff))
        #expect(deleted.path == "/usr/lib/libold.so" && deleted.isDeleted)

        let memfd = try #require(maps.mapping(containing: 0x7f1c_2c00_0000))
        #expect(memfd.path == "/memfd:jit-code" && memfd.permissions.contains(.shared))

        #expect(maps.mapping(containing: 0x7f1c_2d00_0000)?.isAnonymous == true)
        #expect(maps.mapping(containing: 0x7f1c_2e00_0000)?.path == "[anon:v8 code]")
        #expect(maps.mapping(containing: 0x7ffd_1234_5000)?.isVDSO == true)
        #expect(maps.mapping(containing: 0xffff_ffff_ff60_0000)?.path == "[vsyscall]")
        #expect(maps.mapping(containing: 0x7f1c_2f00_0000)?.path == "/tmp/new\nline.so")
        #expect(maps.mapping(containing: 0x55d5_c0a5_dfff) == nil)
        #expect(maps.mapping(containing: 0x7f1c_2b00_1000) == nil)
    }

    @Test func hostileLinesAreSkippedAndCounted() {
        let hostile = [
            "",
            "garbage",
            "55d5c0a5e000 r--p 00000000 fd:01 1 /x",  // no dash
            "55d5c0a60000-55d5c0a5e000 r--p 00000000 fd:01 1 /x",  // end before start
            "55d5c0a5e000-55d5c0a5e000 r--p 00000000 fd:01 1 /x",  // empty
            "1-2 r--q 0 fd:01 1 /x",  // bad sharing flag
            "1-2 rwxpp 0 fd:01 1 /x",  // five permission letters
            "1-2 abcd 0 fd:01 1 /x",
            "1-2 r--p zz fd:01 1 /x",
            "1-2 r--p 0 fd01 1 /x",  // no colon
            "1-2 r--p 0 fd:01 -1 /x",
            "1-2 r--p 0 fd:01 99999999999999999999999 /x",  // inode overflow
            "11111111111111111-2 r--p 0 fd:01 1 /x",  // 17 hex digits
            "1-2 r--p 0 fffffffff:01 1 /x",  // major beyond 32 bits
            "1-2 r--p 0 fd:01",  // no inode
            "\u{0}\u{1}\u{2}\u{ff}",
            String(repeating: "f", count: 100_000),
        ]
        let good = "7f0000000000-7f0000001000 r-xp 00000000 fd:01 5 /lib/good.so"
        let maps = ProcessMaps(parsing: (hostile + [good]).joined(separator: "\n"))
        #expect(maps.mappings.count == 1)
        #expect(maps.mappings.first?.path == "/lib/good.so")
        #expect(maps.skippedLines == hostile.count - 1)  // the empty line is not counted

        // Random bytes never crash the parser.
        var generator = SplitMix64(seed: 7)
        for _ in 0..<200 {
            let bytes = (0..<Int(generator.next() % 300)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            _ = ProcessMaps(parsing: bytes + Array("\n".utf8) + Array(good.utf8))
        }
    }

    @Test func ownMapsParseCleanly() throws {
        let maps = try ProcessMaps.read(pid: getpid())
        #expect(maps.skippedLines == 0)
        #expect(maps.mappings.contains { $0.isVDSO })
        #expect(maps.mappings.contains { $0.path.hasSuffix("libc.so.6") && $0.permissions.contains(.execute) })
    }

    @Test func missingProcessIsANotFoundError() {
        do {
            _ = try ProcessMaps.read(pid: 4242, procRoot: "/nonexistent")
            Issue.record("expected an error")
        } catch {
            #expect(error.isNotFound)
            #expect(error.description.contains("No such file"))
        }
    }
}
