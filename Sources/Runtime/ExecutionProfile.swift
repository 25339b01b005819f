import Foundation

/// Time spent per operator type across the runs it is passed to (`Session.run(_:profile:)`).
/// Thread-safe, so one profile can collect from concurrent runs.
public final class ExecutionProfile: @unchecked Sendable {
    public struct Entry: Sendable {
        public var opType: String
        public var calls: Int
        public var seconds: Double
    }

    private let lock = NSLock()
    private var totals: [String: (calls: Int, nanoseconds: UInt64)] = [:]

    public init() {}

    func record(opType: String, nanoseconds: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        let current = totals[opType, default: (0, 0)]
        totals[opType] = (current.calls + 1, current.nanoseconds + nanoseconds)
    }

    /// Operator types by total time, longest first.
    public var entries: [Entry] {
        lock.lock()
        defer { lock.unlock() }
        return totals.map { Entry(opType: $0.key, calls: $0.value.calls, seconds: Double($0.value.nanoseconds) / 1e9) }
            .sorted { $0.seconds > $1.seconds }
    }
}
