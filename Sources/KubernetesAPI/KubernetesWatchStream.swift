import AsyncHTTPClient
import NIOCore

/// The body of a WATCH response split into its JSON objects (the raw events, one
/// `{"type": ..., "object": ...}` each), as ``JSONObjectFramer`` frames them.
///
/// Iteration ends (`nil`) when the server ends the watch normally (its `timeoutSeconds`,
/// or it closed the response); a broken connection or a silence longer than the client's
/// read idle timeout throws a ``KubernetesAPIError``. A stream that ends inside an object
/// yields that object as ``JSONObjectFramer/Frame/malformed(byteCount:)`` first. Dropping the
/// iterator, or cancelling the iterating task, cancels the request.
public struct KubernetesWatchStream: AsyncSequence {
    public typealias Element = JSONObjectFramer.Frame

    /// Largest watch event kept: a Pod with many containers and managed fields is tens of
    /// kilobytes; anything over this is skipped and reported as oversized.
    public static let defaultMaxEventBytes = JSONObjectFramer.defaultMaxObjectBytes

    let body: HTTPClientResponse.Body
    let path: String
    let server: String
    public let maxEventBytes: Int

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(
            body: body.makeAsyncIterator(), framer: JSONObjectFramer(maxObjectBytes: maxEventBytes), path: path,
            server: server)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var body: HTTPClientResponse.Body.AsyncIterator
        var framer: JSONObjectFramer
        let path: String
        let server: String
        var pending: [JSONObjectFramer.Frame] = []
        var pendingIndex = 0
        var ended = false

        /// Total bytes received so far.
        public private(set) var bytesReceived = 0

        public mutating func next() async throws -> JSONObjectFramer.Frame? {
            while true {
                if pendingIndex < pending.count {
                    defer { pendingIndex += 1 }
                    return pending[pendingIndex]
                }
                pending.removeAll(keepingCapacity: true)
                pendingIndex = 0
                if ended { return nil }
                let buffer: ByteBuffer?
                do {
                    buffer = try await body.next()
                } catch {
                    ended = true
                    throw KubernetesClient.transportError(error, path: path, server: server, phase: .body)
                }
                if let buffer {
                    bytesReceived += buffer.readableBytes
                    pending = framer.feed(buffer.readableBytesView)
                } else {
                    ended = true
                    pending = framer.finish()
                }
            }
        }
    }
}
