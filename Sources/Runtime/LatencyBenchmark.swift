import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock latency of a repeated operation: median, p90 and minimum of the timed runs.
public struct LatencyBenchmark: Sendable {
    /// Seconds per run, in the order measured.
    public let samples: [Double]

    public var median: Double { percentile(0.5) }
    public var p90: Double { percentile(0.9) }
    public var minimum: Double { samples.min() ?? 0 }

    /// The q-quantile of the samples (nearest rank).
    public func percentile(_ q: Double) -> Double {
        guard !samples.isEmpty else { return 0 }
        let sorted = samples.sorted()
        let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    /// Runs `body` `warmup` times untimed, then `iterations` times timed.
    public static func measure(warmup: Int, iterations: Int, _ body: () throws -> Void) rethrows -> LatencyBenchmark {
        for _ in 0..<max(0, warmup) { try body() }
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return LatencyBenchmark(samples: samples)
    }

    /// The process's peak resident set size so far, in MB (Linux reports ru_maxrss in KiB).
    public static func peakResidentMegabytes() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_maxrss) / 1024
    }
}
