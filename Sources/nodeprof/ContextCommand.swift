import ArgumentParser
import Foundation
import NodeprofCore
import ProcessContext

struct ContextCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "context",
        abstract: "Print the OpenTelemetry context a process publishes (OTEP 4719 / 4947).",
        discussion: """
            Reads the process context an instrumented process publishes in a mapping named \
            OTEL_CTX: its resource (service.name, ...), extra attributes and the thread-context \
            reference data (threadlocal.schema_version, the attribute key map). Then locates \
            otel_thread_ctx_v1, the thread-local pointer to the current span record: the module \
            that holds it, the TLS access model the linker chose (TLSDESC, general dynamic, \
            initial exec, local exec) and how a thread reaches it. Last, the span record each \
            thread has attached right now: trace id, span id, flags and attributes.

            A thread's thread pointer sits in a register only the kernel saves, so each thread \
            is stopped for a few microseconds with ptrace to read it (a blocking system call it \
            was in is restarted); --no-threads skips this. At most 1024 threads are listed.

            Needs permission to read the process's memory (root, or CAP_SYS_PTRACE).

            Examples:
              nodeprof context 1234
              nodeprof context 1234 --json | jq .resource
            """)

    @Argument(help: "The process id.")
    var pid: Int32

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(
        inversion: .prefixedNo,
        help: "Read each thread's current span record (stops each thread for microseconds with ptrace).")
    var threads = true

    func validate() throws {
        guard pid > 0 else { throw ValidationError("\(pid): a process id is a positive number") }
        if kill(pid, 0) != 0 && errno == ESRCH {
            throw ValidationError("\(pid): no such process; check the id with `ps -p \(pid)`")
        }
    }

    func run() throws {
        let reader = ProcessContextReader()
        var report = Report(pid: pid)
        do {
            if let context = try reader.context(for: pid) {
                report.published = true
                report.resource = context.resource.map(Report.Pair.init)
                report.attributes = context.attributes.map(Report.Pair.init)
                report.threadSchemaVersion = context.threadSchemaVersion
                report.attributeKeyMap = context.attributeKeyMap
            }
        } catch {
            report.contextError = "\(error)"
        }
        do {
            let location = try ThreadContextLocation.locate(pid: pid)
            report.threadContext = Report.Location(location)
            if threads {
                let (records, truncated) = location.threadRecords(pid: pid, keyMap: report.attributeKeyMap ?? [])
                report.threads = records.map(Report.Thread.init)
                report.threadsTruncated = truncated
            }
        } catch ThreadContextLocationError.notFound {
            report.threadContextError = ThreadContextLocationError.notFound.description
        } catch {
            report.threadContextError = "\(error)"
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
    }

    /// What `nodeprof context` found, as text or JSON.
    struct Report: Encodable {
        struct Pair: Encodable {
            var key: String
            var value: String
            init(_ attribute: Attribute) {
                key = attribute.key
                value = Self.render(attribute.value)
            }
            static func render(_ value: AttributeValue) -> String {
                switch value {
                case .string(let string): return string
                case .bool(let bool): return String(bool)
                case .int(let int): return String(int)
                case .double(let double): return String(double)
                case .bytes(let bytes): return "0x" + hexString(bytes)
                case .array(let values): return "[" + values.map(render).joined(separator: ", ") + "]"
                }
            }
        }

        struct Location: Encodable {
            var module: String
            var model: String
            var threadPointerOffset: Int64?
            var dtvModuleID: UInt64?
            var dtvOffset: UInt64?

            init(_ location: ThreadContextLocation) {
                module = location.modulePath
                model = location.model.rawValue
                switch location.access {
                case .threadPointerOffset(let offset): threadPointerOffset = offset
                case .dynamicThreadVector(let moduleID, let offset):
                    dtvModuleID = moduleID
                    dtvOffset = offset
                }
            }
        }

        /// One thread's current span record.
        struct Thread: Encodable {
            var tid: Int32
            var name: String
            /// "span", "none", "invalid", "undecodable" or "unreadable".
            var state: String
            var traceID: String?
            var spanID: String?
            var flags: UInt8?
            var attributes: [Pair]?
            var validByte: UInt8?
            var error: String?

            init(_ snapshot: ThreadRecordSnapshot) {
                tid = snapshot.tid
                name = snapshot.name
                switch snapshot.state {
                case .none: state = "none"
                case .invalid(let byte):
                    state = "invalid"
                    validByte = byte
                case .undecodable: state = "undecodable"
                case .unreadable(let reason):
                    state = "unreadable"
                    error = reason
                case .span(let context):
                    state = "span"
                    traceID = hexString(context.traceID)
                    spanID = hexString(context.spanID)
                    flags = context.flags
                    attributes = context.attributes.map(Pair.init)
                }
            }

            var text: String {
                let prefix = "  \(tid) \(name.isEmpty ? "?" : name): "
                switch state {
                case "span":
                    let attributes = (attributes ?? []).map { " \($0.key)=\($0.value)" }.joined()
                    return prefix
                        + "trace \(traceID ?? "") span \(spanID ?? "") flags \(String(format: "%02x", flags ?? 0))\(attributes)"
                case "none": return prefix + "no span"
                case "invalid": return prefix + "record attached but not valid (valid = \(validByte ?? 0))"
                case "undecodable": return prefix + "record without a trace id"
                default: return prefix + "unreadable: \(error ?? "")"
                }
            }
        }

        var pid: Int32
        var published = false
        var contextError: String?
        var resource: [Pair] = []
        var attributes: [Pair] = []
        var threadSchemaVersion: String?
        var attributeKeyMap: [String]?
        var threadContext: Location?
        var threadContextError: String?
        var threads: [Thread]?
        var threadsTruncated: Bool?

        var text: String {
            var lines = ["process \(pid)"]
            if let contextError {
                lines.append("process context: unreadable: \(contextError)")
            } else if !published {
                lines.append("process context: none published (no OTEL_CTX mapping)")
            } else {
                lines.append("resource:")
                lines += resource.map { "  \($0.key) = \($0.value)" }
                if !attributes.isEmpty {
                    lines.append("attributes:")
                    lines += attributes.map { "  \($0.key) = \($0.value)" }
                }
                lines.append("thread context schema: \(threadSchemaVersion ?? "none announced")")
                if let map = attributeKeyMap {
                    lines.append(
                        "thread attribute keys: "
                            + map.enumerated().map { "\($0.offset)=\($0.element)" }.joined(separator: " "))
                }
            }
            if let location = threadContext {
                var access = ""
                if let offset = location.threadPointerOffset {
                    access = "thread pointer \(offset < 0 ? "-" : "+") \(abs(offset))"
                }
                if let module = location.dtvModuleID, let offset = location.dtvOffset {
                    access = "DTV module \(module) + \(offset)"
                }
                lines.append("otel_thread_ctx_v1: \(location.module), \(location.model), at \(access)")
                if let threads {
                    lines.append("threads:")
                    lines += threads.map(\.text)
                    if threadsTruncated == true { lines.append("  (more threads not listed)") }
                }
            } else {
                lines.append("otel_thread_ctx_v1: \(threadContextError ?? "not found")")
            }
            return lines.joined(separator: "\n")
        }
    }
}
