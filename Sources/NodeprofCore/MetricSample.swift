/// One value for the agent's `/metrics`. Each module turns its own statistics into these
/// (`metricSamples`), so the agent only composes them.
public struct MetricSample: Sendable {
    public enum Kind: Sendable { case counter, gauge }
    public var name: String
    public var help: String
    public var labels: [(String, String)]
    public var value: Double
    public var kind: Kind

    public static func counter(
        _ name: String, _ help: String, _ value: some BinaryInteger, labels: [(String, String)] = []
    )
        -> MetricSample
    {
        MetricSample(name: name, help: help, labels: labels, value: Double(value), kind: .counter)
    }

    public static func gauge(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = [])
        -> MetricSample
    {
        MetricSample(name: name, help: help, labels: labels, value: value, kind: .gauge)
    }
}
