public import Testing

/// Runs each test it marks alone among the tests so marked, while every other test runs in
/// parallel beside it: for tests that load the machine (CPU burners, whole-machine BPF
/// recordings) or count what the kernel sampled, which two at a time on a small machine would
/// starve each other. Waiting is asynchronous: no thread of the cooperative pool is held.
///
/// Put it on a suite (`@Suite(.machineExclusive)`): it applies to each test case inside.
public struct MachineExclusive: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> MachineExclusive? {
        // Per test case only: a scope around a whole suite would hold the turn while its
        // tests wait for it.
        testCase == nil ? nil : self
    }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        await MachineTurn.shared.acquire()
        do {
            try await function()
        } catch {
            await MachineTurn.shared.release()
            throw error
        }
        await MachineTurn.shared.release()
    }
}

extension Trait where Self == MachineExclusive {
    /// See ``MachineExclusive``.
    public static var machineExclusive: Self { MachineExclusive() }
}

/// A first-come first-served turn, taken and given back asynchronously.
actor MachineTurn {
    static let shared = MachineTurn()
    private var taken = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        guard taken else {
            taken = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            taken = false
        } else {
            waiting.removeFirst().resume()  // the turn passes on without being freed
        }
    }
}
