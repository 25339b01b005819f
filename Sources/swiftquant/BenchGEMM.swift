import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant bench-gemm`: the int8 GEMM (uint8 × int8 → int32, B prepacked) over an M×N×K sweep, in GOPS
/// and as a share of one core's AVX-512 VNNI peak (measured clock × 256 int8 operations per cycle).
/// Meaningful in release builds only.
struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-gemm",
        abstract: "Measure the int8 GEMM kernels: GOPS per shape and level, and % of the VNNI peak.")

    @Option(help: "Levels, comma-separated, from: \(Int8GEMMLevel.allCases.map { "\($0)" }.joined(separator: ", ")). Default: every available level but reference.")
    var levels: String?

    @Option(help: "Shapes MxNxK, comma-separated.")
    var shapes = "1024x1024x1024,64x1536x384,64x384x384,64x384x1536"

    @Option(help: "Threads per GEMM (the peak is per core).")
    var threads = 1

    @Option(help: "Seconds of timed runs per shape and level.")
    var seconds = 0.5

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        try reportingErrors {
            let chosen = try parseLevels()
            let sweep = try parseShapes()
            let clock = Int8GEMMBenchmark.measureClock()
            var results: [Int8GEMMBenchmark.Result] = []
            for shape in sweep {
                for level in chosen {
                    results.append(Int8GEMMBenchmark.measure(m: shape.m, n: shape.n, k: shape.k, level: level,
                                                             threads: max(1, threads), seconds: seconds))
                }
            }
            // Clock again after the sweep: a busy machine may have changed it; the peak uses the faster.
            let after = Int8GEMMBenchmark.measureClock()
            let peak = max(clock.peakGOPS, after.peakGOPS)
            if json {
                try printJSON(results, clocks: [clock, after], peak: peak)
            } else {
                printTable(results, clocks: [clock, after], peak: peak)
            }
        }
    }

    private func parseLevels() throws -> [Int8GEMMLevel] {
        guard let levels else { return Int8GEMMLevel.allCases.filter { $0 != .reference && $0.isAvailable } }
        return try levels.split(separator: ",").map { name in
            guard let level = Int8GEMMLevel.allCases.first(where: { "\($0)" == name.trimmingCharacters(in: .whitespaces) }) else {
                throw CommandError("--levels: unknown level '\(name)'")
            }
            guard level.isAvailable else { throw CommandError("--levels: this CPU does not support \(level)") }
            return level
        }
    }

    private func parseShapes() throws -> [(m: Int, n: Int, k: Int)] {
        try shapes.split(separator: ",").map { text in
            let parts = text.split(separator: "x").compactMap { Int($0) }
            guard parts.count == 3, parts.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
                throw CommandError("--shapes: '\(text)' is not MxNxK with sizes in 1...65536")
            }
            return (parts[0], parts[1], parts[2])
        }
    }

    private func printTable(_ results: [Int8GEMMBenchmark.Result], clocks: [Int8GEMMBenchmark.Clock], peak: Double) {
        let vnni = clocks[0].vnniPerCycle.map { String(format: ", vpdpbusd %.2f per cycle", $0) } ?? ""
        print(String(format: "clock %.2f / %.2f GHz (before / after)%@; peak %.0f GOPS per core (GHz x 256)",
                     clocks[0].gigahertz, clocks[1].gigahertz, vnni, peak))
        print("GOPS = 2MNK / time; 'cpu' uses the thread's CPU time, which leaves out waiting for a busy core.")
        print("M x N x K            level       threads  best GOPS  median GOPS  median cpu  best %peak  median %peak  cpu %peak  runs")
        for r in results {
            let shape = "\(r.m) x \(r.n) x \(r.k)".padding(toLength: 20, withPad: " ", startingAt: 0)
            let level = "\(r.level)".padding(toLength: 11, withPad: " ", startingAt: 0)
            print(shape + " " + level + String(format: " %7d  %9.1f  %11.1f  %10.1f  %9.1f%%  %11.1f%%  %8.1f%%  %4d", r.threads,
                                               r.bestGOPS, r.medianGOPS, r.medianCPUGOPS, 100 * r.bestGOPS / peak,
                                               100 * r.medianGOPS / peak, 100 * r.medianCPUGOPS / peak, r.runs))
        }
    }

    private func printJSON(_ results: [Int8GEMMBenchmark.Result], clocks: [Int8GEMMBenchmark.Clock], peak: Double) throws {
        let rows: [[String: Any]] = results.map { r in
            ["m": r.m, "n": r.n, "k": r.k, "level": "\(r.level)", "threads": r.threads, "runs": r.runs,
             "best_gops": r.bestGOPS, "median_gops": r.medianGOPS, "median_cpu_gops": r.medianCPUGOPS,
             "best_percent_of_peak": 100 * r.bestGOPS / peak, "median_percent_of_peak": 100 * r.medianGOPS / peak,
             "median_cpu_percent_of_peak": 100 * r.medianCPUGOPS / peak]
        }
        var object: [String: Any] = [
            "clock_ghz": clocks.map(\.gigahertz), "peak_gops_per_core": peak,
            "peak_formula": "measured GHz x 256 int8 ops per cycle", "results": rows,
        ]
        if let vnni = clocks[0].vnniPerCycle { object["vpdpbusd_per_cycle"] = vnni }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
