import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant bench`: latency of one model in our runtime (release builds only give meaningful figures).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a model's latency: median and p90 over repeated runs, and peak memory.")

    @Argument(help: "The ONNX model.")
    var model: String

    @Option(help: "Inputs (.npz, one array per model input). Without it, inputs are zeros of the declared shapes.")
    var input: String?

    @Option(help: "Rows of each input to use (the first axis is the sample axis). Default: all, or the model's fixed batch size.")
    var rows: Int?

    @Option(help: "Threads per operator (default: all cores).")
    var threads: Int?

    @Flag(help: "Run every node as written instead of fusing quantized patterns into integer kernels.")
    var noIntegerFusion = false

    @Option(help: "Untimed runs before measuring.")
    var warmup = 3

    @Option(help: "Timed runs.")
    var iterations = 20

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(help: "Also print the time per operator type over the timed runs.")
    var profile = false

    @Option(help: "Also print the slowest N nodes with their output shapes (implies --profile).")
    var profileNodes: Int?

    func run() throws {
        try reportingErrors {
            let loaded = try Model(contentsOf: URL(fileURLWithPath: model))
            var options = SessionOptions()
            options.integerExecution = !noIntegerFusion
            if let threads { options.threadCount = max(1, threads) }
            let session = try Session(model: loaded, options: options)
            let feeds = try benchmarkFeeds(session)
            let timing = ExecutionProfile()
            let result = try LatencyBenchmark.measure(warmup: warmup, iterations: max(1, iterations)) {
                _ = try session.run(feeds)
            }
            let profiling = profile || profileNodes != nil
            if profiling {
                for _ in 0..<max(1, iterations) { _ = try session.run(feeds, profile: timing) }
            }
            if json {
                let object: [String: Any] = [
                    "model": model, "threads": options.threadCount, "iterations": result.samples.count,
                    "median_ms": result.median * 1e3, "p90_ms": result.p90 * 1e3, "min_ms": result.minimum * 1e3,
                    "throughput_per_s": 1 / result.median, "peak_rss_mb": LatencyBenchmark.peakResidentMegabytes(),
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(String(format: "%@: median %.3f ms, p90 %.3f ms, min %.3f ms over %d runs, %d threads, peak RSS %.1f MB",
                             model, result.median * 1e3, result.p90 * 1e3, result.minimum * 1e3,
                             result.samples.count, options.threadCount, LatencyBenchmark.peakResidentMegabytes()))
            }
            if profiling {
                let runs = Double(max(1, iterations))
                for entry in timing.entries {
                    let name = entry.opType.padding(toLength: max(24, entry.opType.count), withPad: " ", startingAt: 0)
                    print("  " + name + String(format: " %6d calls/run  %9.3f ms/run",
                                               Int(Double(entry.calls) / runs), entry.seconds * 1e3 / runs))
                }
                if let profileNodes {
                    print("slowest nodes:")
                    for node in timing.nodes.prefix(max(0, profileNodes)) {
                        print(String(format: "  %9.3f ms/run  ", node.seconds * 1e3 / runs)
                              + "\(node.opType) → \(node.outputShape)  \(node.label)")
                    }
                }
            }
        }
    }

    private func benchmarkFeeds(_ session: Session) throws -> [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        if let input {
            for (name, tensor) in try NPZ.read(URL(fileURLWithPath: input))
            where session.inputs.contains(where: { $0.name == name }) {
                feeds[name] = try (rows ?? session.fixedBatchSize).map { try tensor.leadingRows($0) } ?? tensor
            }
        }
        for info in session.inputs where feeds[info.name] == nil {
            guard case .tensor(let dtype?, let shape?)? = info.type else {
                throw CommandError("input '\(info.name)' has no declared type and shape; pass --input")
            }
            // Symbolic dimensions become 1 (or --rows for the first axis).
            let dims = shape.enumerated().map { axis, dim in dim.intValue ?? (axis == 0 ? (rows ?? 1) : 1) }
            feeds[info.name] = try Tensor(zeros: dtype, shape: dims)
        }
        return feeds
    }
}
