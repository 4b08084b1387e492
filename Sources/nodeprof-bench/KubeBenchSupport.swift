import Foundation
import Glibc
import NodeprofCore
import Synchronization
import TestSupport

/// What the Kubernetes benchmarks share: child processes that are always cleaned up, a plain
/// HTTP/1.1 client for the tools' control APIs, heap and /proc readings.

// MARK: Heap

/// Heap bytes in use: glibc's `mallinfo2` over every arena, small chunks (`uordblks`) plus
/// chunks served by mmap (`hblkhd`).
///
/// Swift's Glibc module does not import `<malloc.h>`, so the function is found with dlsym.
/// It returns a struct of ten `size_t`; on x86-64 (System V) a struct that large is returned
/// through a pointer the caller passes as the first argument, which is how it is called here.
func heapInUseBytes() -> Int {
    #if arch(x86_64)
        typealias MallInfo2 = @convention(c) (UnsafeMutablePointer<Int>) -> UnsafeMutableRawPointer?
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallinfo2") else {
            fatalError("glibc has no mallinfo2 (glibc 2.33 or newer is needed)")
        }
        let mallinfo2 = unsafeBitCast(symbol, to: MallInfo2.self)
        // arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost
        var fields = [Int](repeating: 0, count: 10)
        _ = fields.withUnsafeMutableBufferPointer { mallinfo2($0.baseAddress!) }
        return fields[7] + fields[4]
    #else
        fatalError("heapInUseBytes calls mallinfo2 with the x86-64 calling convention only")
    #endif
}

// MARK: /proc

/// CPU time and memory of a running process, from `/proc/PID/stat` and `/proc/PID/status`.
struct ProcessUsage {
    /// utime and stime, seconds.
    var userSeconds: Double
    var systemSeconds: Double
    var cpuSeconds: Double { userSeconds + systemSeconds }
    var residentKiB: Int
    /// Peak resident set size so far (VmHWM).
    var peakResidentKiB: Int

    init?(pid: pid_t) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        userSeconds = user / Double(sysconf(Int32(_SC_CLK_TCK)))
        systemSeconds = system / Double(sysconf(Int32(_SC_CLK_TCK)))
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func kib(_ key: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        residentKiB = kib("VmRSS")
        peakResidentKiB = kib("VmHWM")
    }
}

/// A hack/ tool that prints one JSON ready line with its ports (apiserver.py, fake-node,
/// receiver.py), with its control API.
final class ToolProcess: @unchecked Sendable {
    let child: ChildProcess
    let ready: [String: Any]

    init(_ arguments: [String], name: String, logPath: String?, readySeconds: Double = 60) throws {
        child = try ChildProcess(arguments, name: name, captureStdout: true, stderrPath: logPath)
        do {
            ready = try child.readJSONLine(timeoutSeconds: readySeconds)
        } catch {
            child.stop()
            let log = logPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            throw ChildProcess.Failure(description: "\(name) did not start: \(error)\n\(log.suffix(2000))")
        }
    }

    func port(_ key: String) -> Int { ready[key] as? Int ?? 0 }

    /// A control request that must answer 2xx.
    @discardableResult
    func control(_ method: String, _ path: String, body: [UInt8]? = nil, portKey: String = "control_port") throws
        -> PlainHTTP.Response
    {
        let response = try PlainHTTP.request(method, port: port(portKey), path: path, body: body)
        guard (200..<300).contains(response.status) else {
            throw ChildProcess.Failure(
                description: "\(child.name) \(method) \(path): \(response.status) \(response.text.prefix(500))")
        }
        return response
    }

    func controlJSON(_ method: String, _ path: String, body: [UInt8]? = nil) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(try control(method, path, body: body).body))
    }

    func stop() { child.stop() }
}

// MARK: HTTP

/// A blocking HTTP/1.1 client for loopback control APIs: one connection per request
/// (`Connection: close`), Content-Length, chunked or read-to-close bodies.
enum PlainHTTP {
    struct Response {
        var status: Int
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func request(
        _ method: String, port: Int, path: String, body: [UInt8]? = nil, timeoutSeconds: Int = 60
    ) throws -> Response {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ChildProcess.Failure(description: "socket: \(errno)") }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            throw SystemCallError("connect 127.0.0.1:\(port)", errno: errno)
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nAccept: */*\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        let outgoing = Array(head.utf8) + (body ?? [])
        var sent = 0
        while sent < outgoing.count {
            let count = try SystemCall.retryingOnInterrupt("send to :\(port)") {
                outgoing[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
            }
            guard count > 0 else { throw ChildProcess.Failure(description: "send to :\(port): sent nothing") }
            sent += count
        }

        var incoming: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        var contentLength: Int?
        var chunked = false
        var status = 0
        while true {
            if headerEnd == nil, let end = find([13, 10, 13, 10], in: incoming) {
                headerEnd = end + 4
                let lines = String(decoding: incoming[..<end], as: UTF8.self).split(separator: "\r\n")
                status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
                for line in lines.dropFirst() {
                    let parts = line.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    let name = parts[0].lowercased()
                    let value = parts[1].trimmingCharacters(in: .whitespaces)
                    if name == "content-length" { contentLength = Int(value) }
                    if name == "transfer-encoding" && value.lowercased().contains("chunked") { chunked = true }
                }
            }
            if let headerEnd {
                let bodyBytes = Array(incoming[headerEnd...])
                if let contentLength, bodyBytes.count >= contentLength {
                    return Response(status: status, body: Array(bodyBytes.prefix(contentLength)))
                }
                if chunked, let decoded = decodeChunked(bodyBytes) { return Response(status: status, body: decoded) }
            }
            let count = try SystemCall.retryingOnInterrupt("recv from :\(port)") {
                recv(descriptor, &chunk, chunk.count, 0)
            }
            if count == 0 {
                guard let headerEnd else { throw ChildProcess.Failure(description: ":\(port) closed without a reply") }
                return Response(status: status, body: Array(incoming[headerEnd...]))
            }
            incoming.append(contentsOf: chunk[..<count])
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }

    /// The body of a complete chunked encoding; nil while incomplete.
    private static func decodeChunked(_ bytes: [UInt8]) -> [UInt8]? {
        var body: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = find([13, 10], in: Array(bytes[index...])).map({ $0 + index }) else { return nil }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
            let start = lineEnd + 2
            if size == 0 { return body }
            guard bytes.count >= start + size + 2 else { return nil }
            body.append(contentsOf: bytes[start..<(start + size)])
            index = start + size + 2
        }
    }
}

// MARK: Statistics

/// Median, p90 and maximum of `values` (nearest rank), and their count.
func distribution(_ values: [Double]) -> [String: Any] {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return ["count": 0] }
    func rank(_ fraction: Double) -> Double {
        sorted[min(sorted.count - 1, max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1))]
    }
    return [
        "count": sorted.count, "median": Measurement.median(sorted), "p90": rank(0.9), "max": sorted.last!,
        "min": sorted.first!, "mean": sorted.reduce(0, +) / Double(sorted.count),
    ]
}

/// The repository's root, from this executable's path (`<root>/<scratch>/<config>/nodeprof-bench`),
/// else the working directory.
func repositoryRoot() -> String {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var directory = executable.deletingLastPathComponent()
    for _ in 0..<4 {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            return directory.path
        }
        directory = directory.deletingLastPathComponent()
    }
    return FileManager.default.currentDirectoryPath
}
