public import Foundation

/// One request to a test tool's plain-HTTP control API (the OTLP receiver's, the fake
/// node's), made by the venv's Python: a child process keeps the test's own networking out
/// of the picture. Throws with the tool's answer when the status is not 2xx.
public func controlRequest(_ method: String, _ url: String, body: String? = nil, what: String) throws -> Data {
    let script = """
        import sys, urllib.request, urllib.error
        body = sys.argv[3].encode() if len(sys.argv) > 3 else None
        request = urllib.request.Request(sys.argv[2], data=body, method=sys.argv[1],
                                         headers={"Content-Type": "application/json"})
        try:
            sys.stdout.buffer.write(urllib.request.urlopen(request, timeout=30).read())
        except urllib.error.HTTPError as error:
            sys.stderr.write(f"HTTP {error.code}: {error.read().decode(errors='replace')}")
            sys.exit(1)
        """
    let python = "\(repositoryRoot())/.venv/bin/python"
    let result = try runProgramCapturing(python, ["-c", script, method, url] + (body.map { [$0] } ?? []))
    guard result.status == 0 else {
        throw FixtureError("\(what) control \(method) \(url) failed: \(result.stderr)")
    }
    return Data(result.stdout.utf8)
}
