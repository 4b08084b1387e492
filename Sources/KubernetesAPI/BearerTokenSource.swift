import NodeprofCore
import Synchronization

/// The bearer token sent with each request. A token file is re-read when the last read is
/// older than the refresh interval and after every 401 (``invalidate()``): the kubelet
/// rewrites projected service account tokens in place about every hour, and an old token
/// stops working when it expires.
final class BearerTokenSource: Sendable {
    /// Token files are a few kilobytes (a JWT).
    static let sizeLimit = 64 << 10

    private enum Source: Sendable {
        case none
        case fixed(String)
        case file(path: String, refreshNanoseconds: UInt64)
    }

    private struct FileState: Sendable {
        var token: String?
        /// Monotonic time of the last read; `nil` forces a read.
        var readAt: UInt64?
        var reads = 0
    }

    private let source: Source
    private let state = Mutex(FileState())

    init(_ credentials: KubernetesClientConfiguration.Credentials, refreshInterval: Duration) {
        switch credentials {
        case .none: source = .none
        case .token(let token): source = .fixed(token)
        case .tokenFile(let path):
            let (seconds, attoseconds) = refreshInterval.components
            let nanoseconds = max(0, seconds) * 1_000_000_000 + attoseconds / 1_000_000_000
            source = .file(path: path, refreshNanoseconds: UInt64(nanoseconds))
        }
    }

    /// How many times the file was read (for tests and statistics).
    var fileReads: Int { state.withLock { $0.reads } }

    /// The token to send. A file that cannot be read keeps the last token (a rotation
    /// replaces the file atomically, so a failure is rare and transient); with none yet the
    /// error says which file.
    func token() throws(KubernetesAPIError) -> String? {
        switch source {
        case .none: return nil
        case .fixed(let token): return token
        case .file(let path, let refresh):
            let now = monotonicNanoseconds()
            let cached: String?? = state.withLock { state in
                guard let readAt = state.readAt, now &- readAt < refresh else { return .none }
                return .some(state.token)
            }
            if let cached { return cached }
            do {
                let bytes = try FileContents.read(path, limit: Self.sizeLimit)
                let token = String(decoding: bytes, as: UTF8.self).trimmingASCIIWhitespace()
                state.withLock { state in
                    state.token = token.isEmpty ? state.token : token
                    state.readAt = now
                    state.reads += 1
                }
                return token.isEmpty ? state.withLock { $0.token } : token
            } catch {
                let previous = state.withLock { state in
                    state.readAt = now
                    return state.token
                }
                guard let previous else {
                    throw .unauthorized(
                        path: path,
                        message:
                            "cannot read the token file (\(error)); mount the service account token or fix tokenFile")
                }
                return previous
            }
        }
    }

    /// Forces the next ``token()`` to re-read the file (after a 401).
    func invalidate() {
        state.withLock { $0.readAt = nil }
    }
}
