import ArgumentParser

/// Measurement helpers for hack/bench. Not part of the product; prints JSON for the script.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodeprof-bench",
        abstract: "Measurements behind BENCHMARKS.md (run by hack/bench).",
        subcommands: [
            BPFCost.self, SymbolizeCost.self, OTLPEncodeCost.self, ExportOutage.self, KubeCacheCost.self,
            KubeLatency.self,
            KubeRequests.self, KubeAgent.self, WriterCost.self, ContextRead.self,
        ])
}
