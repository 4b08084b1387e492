import Glibc
import NodeprofCore
import Testing

@Suite struct SystemCallTests {
    @Test func retriesAnInterruptedCallAndReturnsItsResult() throws {
        var calls = 0
        let result = try SystemCall.retryingOnInterrupt("fake") { () -> Int in
            calls += 1
            if calls < 3 {
                errno = EINTR
                return -1
            }
            return 42
        }
        #expect(result == 42)
        #expect(calls == 3)
    }

    @Test func aFailureCarriesTheCallAndErrno() {
        var calls = 0
        #expect {
            try SystemCall.retryingOnInterrupt("open /nonexistent/nodeprof") { () -> Int32 in
                calls += 1
                return open("/nonexistent/nodeprof", O_RDONLY)
            }
        } throws: { error in
            guard let error = error as? SystemCallError else { return false }
            return error.errno == ENOENT
                && error.description == "open /nonexistent/nodeprof: ENOENT (No such file or directory)"
        }
        #expect(calls == 1, "only EINTR is retried")
    }

    @Test func errnoNames() {
        #expect(SystemCall.errnoName(EACCES) == "EACCES (Permission denied)")
        #expect(SystemCall.errnoName(ESRCH) == "ESRCH (No such process)")
        #expect(SystemCall.errnoName(4095).hasPrefix("errno 4095 ("))
    }

    @Test func fileReadErrorsNameTheCallAndErrno() {
        #expect(throws: FileReadError.self) { try FileContents.read("/proc/0/nodeprof-missing", limit: 16) }
        let error = FileReadError.systemCall(path: "/proc/1/maps", operation: "open", errno: ENOENT)
        #expect(
            error.description
                == "cannot read /proc/1/maps: open: ENOENT (No such file or directory); the process has probably exited"
        )
    }
}
