import Foundation

/// Time spent per operator type, and per node, across the runs it is passed to (`Session.run(_:profile:)`).
/// Thread-safe, so one profile can collect from concurrent runs.
public final class ExecutionProfile: @unchecked Sendable {
    public struct Entry: Sendable {
        public var opType: String
        public var calls: Int
        public var seconds: Double
    }

    /// One node (or fused group) of the graph: its label, operator type and first output's shape.
    public struct NodeEntry: Sendable {
        public var label: String
        public var opType: String
        public var outputShape: [Int]
        public var calls: Int
        public var seconds: Double
    }

    private let lock = NSLock()
    private var totals: [String: (calls: Int, nanoseconds: UInt64)] = [:]
    private var nodeTotals: [String: (opType: String, shape: [Int], calls: Int, nanoseconds: UInt64)] = [:]

    public init() {}

    func record(opType: String, label: String, outputShape: [Int], nanoseconds: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        let current = totals[opType, default: (0, 0)]
        totals[opType] = (current.calls + 1, current.nanoseconds + nanoseconds)
        let node = nodeTotals[label, default: (opType, outputShape, 0, 0)]
        nodeTotals[label] = (opType, outputShape, node.calls + 1, node.nanoseconds + nanoseconds)
    }

    /// Nodes by total time, longest first.
    public var nodes: [NodeEntry] {
        lock.lock()
        defer { lock.unlock() }
        return nodeTotals.map {
            NodeEntry(label: $0.key, opType: $0.value.opType, outputShape: $0.value.shape, calls: $0.value.calls,
                      seconds: Double($0.value.nanoseconds) / 1e9)
        }.sorted { $0.seconds > $1.seconds }
    }

    /// Operator types by total time, longest first.
    public var entries: [Entry] {
        lock.lock()
        defer { lock.unlock() }
        return totals.map { Entry(opType: $0.key, calls: $0.value.calls, seconds: Double($0.value.nanoseconds) / 1e9) }
            .sorted { $0.seconds > $1.seconds }
    }
}
