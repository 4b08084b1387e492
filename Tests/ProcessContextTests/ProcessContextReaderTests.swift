import Foundation
import Glibc
import NodeprofCore
import ProcessContext
import TestSupport
import Testing

/// The reader against real processes publishing by hand (memfd named `OTEL_CTX`; on kernels
/// without CONFIG_ANON_VMA_NAME it shows as `/memfd:OTEL_CTX (deleted)`).
@Suite(.serialized, .machineExclusive) struct ProcessContextReaderTests {
    let payloadHex = Proto.hex(Proto.checkout())

    func expectError(
        _ reader: ProcessContextReader, _ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation,
        _ check: (ProcessContextError) -> Bool
    ) {
        do {
            let context = try reader.context(for: pid)
            Issue.record("expected an error, read \(String(describing: context))", sourceLocation: sourceLocation)
        } catch {
            #expect(check(error), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func readsAValidContextThenHitsTheCache() throws {
        let publisher = try Publisher(["valid", payloadHex])
        let reader = ProcessContextReader()
        let context = try #require(try reader.context(for: publisher.pid))
        #expect(context.resource == [Attribute("service.name", "checkout"), Attribute("service.version", "1.4.2")])
        #expect(context.attributes == [Attribute("deployment.environment.name", "prod")])
        #expect(context.threadSchemaVersion == "tlsdesc_v1_dev")
        #expect(context.attributeKeyMap == ["http.route", "user.tier"])
        #expect(!(context.resource + context.attributes).contains { $0.key.hasPrefix("threadlocal.") })
        #expect(reader.statistics.reads == 1 && reader.statistics.payloadReads == 1)

        let again = try reader.context(for: publisher.pid)
        #expect(again == context)
        #expect(reader.statistics.cacheHits == 1)
        #expect(reader.statistics.payloadReads == 1)  // only the header was read
        #expect(reader.statistics.headerReads == 2)
    }

    @Test func readsARepublishedContext() throws {
        let updated = Proto.hex(Proto.checkout(name: "checkout-v2", version: "2.0.0"))
        let publisher = try Publisher(["valid", payloadHex, updated])
        let reader = ProcessContextReader()
        #expect(try reader.context(for: publisher.pid)?.resource.first == Attribute("service.name", "checkout"))
        publisher.signal(SIGUSR1)
        try publisher.waitUntilReady()
        let context = try #require(try reader.context(for: publisher.pid))
        #expect(context.resource == [Attribute("service.name", "checkout-v2"), Attribute("service.version", "2.0.0")])
        #expect(reader.statistics.reads == 2 && reader.statistics.cacheHits == 0)
    }

    @Test func processWithoutContextIsNil() throws {
        let publisher = try Publisher(["none"])
        let reader = ProcessContextReader()
        #expect(try reader.context(for: publisher.pid) == nil)
        #expect(reader.statistics.withoutContext == 1)
    }

    @Test func hostileHeadersGiveCountedErrors() throws {
        let reader = ProcessContextReader()
        let cases: [(String, (ProcessContextError) -> Bool)] = [
            ("badsig", { $0 == .badSignature }),
            ("version99", { $0 == .badVersion(99) }),
            ("size0", { $0 == .badPayloadSize(0) }),
            ("size4g", { $0 == .badPayloadSize(0xFFFF_FFFF) }),
            ("badptr", { if case .unreadableMemory(_, EFAULT) = $0 { true } else { false } }),
            ("stuck0", { $0 == .notPublished }),
            ("small", { if case .unreadableMemory = $0 { true } else { false } }),
        ]
        for (mode, check) in cases {
            let publisher = try Publisher([mode, payloadHex])
            expectError(reader, publisher.pid, check)
        }
        let statistics = reader.statistics
        #expect(statistics.badSignature == 1)
        #expect(statistics.badVersion == 1)
        #expect(statistics.badSize == 2)
        #expect(statistics.unreadableMemory == 2)
        #expect(statistics.notPublished == 1)
        #expect(statistics.retries == 2)  // stuck0: 3 attempts
        #expect(statistics.reads == 0)
    }

    @Test func invalidProtobufIsADecodeError() throws {
        let reader = ProcessContextReader()
        let truncated = try Publisher(["valid", Proto.hex(Array(Proto.checkout().dropLast(3)))])
        expectError(reader, truncated.pid) { if case .truncated = $0 { true } else { false } }
        let garbage = try Publisher(["valid", "ffffffffffffffffffffff01"])
        expectError(reader, garbage.pid) { _ in true }
        #expect(reader.statistics.decodeErrors == 2)
    }

    @Test func goneProcessesAreCounted() throws {
        let reader = ProcessContextReader()
        // Exited before the maps read.
        let early = try Publisher(["valid", payloadHex])
        let earlyPid = early.pid
        early.kill()
        expectError(reader, earlyPid) { $0 == .processGone }
        // Exited between a cached mapping address and the header read.
        let late = try Publisher(["valid", payloadHex])
        let latePid = late.pid
        _ = try reader.context(for: latePid)
        late.kill()
        expectError(reader, latePid) { $0 == .processGone }
        #expect(reader.statistics.processesGone == 2)
        #expect(reader.cachedProcessCount == 0)
    }

    @Test func continuousWriterNeverGivesAMix() throws {
        let a = Proto.checkout(name: String(repeating: "a", count: 4000))
        let b = Proto.checkout(name: String(repeating: "b", count: 4000))
        let publisher = try Publisher(["writer", Proto.hex(a), Proto.hex(b)])
        let reader = ProcessContextReader(retryDelayMicroseconds: 0)
        var successes = 0
        var failures = 0
        for _ in 0..<2000 {
            reader.forget(pid: publisher.pid)
            do {
                let context = try #require(try reader.context(for: publisher.pid))
                guard case .string(let name) = context.resource.first?.value else {
                    Issue.record("no service.name")
                    continue
                }
                #expect(Set(name) == ["a"] || Set(name) == ["b"], "mixed payload")
                successes += 1
            } catch let error as ProcessContextError {
                #expect(error == .torn || error == .notPublished, "\(error)")
                failures += 1
            }
        }
        #expect(successes + failures == 2000)
        #expect(successes > 0)
        #expect(reader.statistics.decodeErrors == 0)
        print("continuous writer: \(successes) consistent reads, \(failures) torn or mid-update")
    }

    @Test func manyPublishingProcesses() throws {
        let count = 500
        let publisher = try Publisher(["fork", String(count), payloadHex])
        #expect(publisher.childPids.count == count)
        let reader = ProcessContextReader(cacheCapacity: 128)
        var decoded = 0
        for pid in publisher.childPids {
            if let context = try reader.context(for: pid), context.threadSchemaVersion == "tlsdesc_v1_dev" {
                decoded += 1
            }
        }
        #expect(decoded == count)
        #expect(reader.cachedProcessCount <= 128)
        #expect(reader.statistics.evictions == count - 128)
    }
}
