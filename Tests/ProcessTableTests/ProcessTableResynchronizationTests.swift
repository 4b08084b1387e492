import Foundation
import NodeprofCore
import ProcessTable
import Symbolization
import TestSupport
import Testing

/// After the kernel lost process events, the table checks each entry once (a readlink) and
/// reads afresh only the ones that became another program.
@Suite struct ProcessTableResynchronizationTests {
    /// A procfs with one process: a maps file and an `exe` link to `executable`.
    func fakeProcess(_ directory: TemporaryDirectory, pid: Int32, executable: String) throws {
        let process = directory.file("\(pid)")
        try FileManager.default.createDirectory(atPath: process, withIntermediateDirectories: true)
        try "00400000-00452000 r-xp 00000000 08:02 173521 \(executable)\n".write(
            toFile: "\(process)/maps", atomically: true, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: "\(process)/exe")
        try FileManager.default.createSymbolicLink(atPath: "\(process)/exe", withDestinationPath: executable)
    }

    @Test func anUnchangedProcessKeepsItsEntryAndAChangedOneIsReadAgain() throws {
        let directory = try TemporaryDirectory()
        try fakeProcess(directory, pid: 41, executable: "/usr/bin/first")
        try fakeProcess(directory, pid: 42, executable: "/usr/bin/stays")
        let table = ProcessTable(configuration: .init(procRoot: directory.path))
        let before41 = try #require(table.entry(pid: 41))
        let before42 = try #require(table.entry(pid: 42))
        #expect(before41.executablePath == "/usr/bin/first")
        #expect(table.statistics.mapsReads == 2)

        // Pid 41 was reused by another program while the events about it were lost.
        try fakeProcess(directory, pid: 41, executable: "/usr/bin/second")
        #expect(table.entry(pid: 41)?.executablePath == "/usr/bin/first", "no event, no reason to look")
        table.resynchronize()
        let after41 = try #require(table.entry(pid: 41))
        let after42 = try #require(table.entry(pid: 42))
        #expect(after41.executablePath == "/usr/bin/second")
        #expect(after41.version != before41.version)
        #expect(after42.version == before42.version)
        let statistics = table.statistics
        #expect(statistics.revalidations == 2 && statistics.evictedOnRevalidation == 1)
        #expect(statistics.mapsReads == 3, "only the changed process is read again")
        // Checked once: later samples cost nothing more.
        _ = table.entry(pid: 42)
        #expect(table.statistics.revalidations == 2)
    }

    @Test func aProcessGoneBeforeItsFirstSampleGetsNoEntryAndIsTriedAgainLater() throws {
        let directory = try TemporaryDirectory()
        let table = ProcessTable(configuration: .init(procRoot: directory.path, unreadableRetryNanos: 0))
        #expect(table.entry(pid: 77) == nil)
        #expect(table.statistics.processesUnreadable == 1)
        try fakeProcess(directory, pid: 77, executable: "/usr/bin/late")
        #expect(table.entry(pid: 77)?.image.executableName == "late")
    }
}
