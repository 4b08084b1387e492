import ArgumentParser

@main
struct Nodeprof: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodeprof",
        abstract: "Continuous eBPF profiler: whole-machine CPU profiles with kernel and user stacks.",
        discussion: """
            nodeprof samples every CPU with an eBPF program attached to perf events, \
            symbolizes kernel and user stacks, writes profiles that `go tool pprof` reads and \
            exports OpenTelemetry (OTLP) profiles to a collector.

            Needs root (or CAP_BPF and CAP_PERFMON) and a kernel with BTF (5.10 or later).
            """,
        version: NodeprofVersion.string,
        subcommands: [Record.self, AgentCommand.self, ContextCommand.self, ConvertCommand.self, Version.self],
        defaultSubcommand: nil
    )
}

enum NodeprofVersion {
    static let string = "0.1.0"
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version of nodeprof.")
    func run() { print("nodeprof \(NodeprofVersion.string)") }
}
