import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant eval`: how far a candidate model (usually quantized) strays from its reference, and what it gains.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare a candidate model with its reference: fidelity, accuracy, size, latency, integer share.")

    @Argument(help: "The reference (float) ONNX model.")
    var reference: String

    @Argument(help: "The candidate (e.g. quantized) ONNX model.")
    var candidate: String

    @Option(help: "Evaluation data (.npz, one array per model input, samples along the first axis).")
    var data: String

    @Option(help: "Array of integer class labels in the data; adds accuracy and accuracy drop.")
    var labels: String?

    @Option(help: "Write the full report as JSON.")
    var report: String?

    @Option(help: "Threads per operator (default: all cores).")
    var threads: Int?

    @Option(help: "Evaluate only the first N samples.")
    var rows: Int?

    @Option(help: "Samples per run.")
    var batchSize = 32

    @Option(help: "Timed runs per model for latency (0 skips timing).")
    var iterations = 20

    @Option(help: "Samples per timed run.")
    var latencyBatch = 1

    @Option(help: "Also compare every intermediate value both models compute under the same name, on the first N samples, and list the nodes that add the most error.")
    var layers: Int?

    @Option(help: "With --layers: a data array [samples, positions] (e.g. attention_mask) whose zeros mark padded positions to leave out of the per-layer figures.")
    var layerMask: String?

    func run() throws {
        try reportingErrors {
            if let report, !report.hasSuffix(".json") {
                throw CommandError("--report \(report): only .json reports are written so far")
            }
            if let rows, rows < 1 { throw CommandError("--rows must be positive, got \(rows)") }
            if let layers, layers < 1 { throw CommandError("--layers must be positive, got \(layers)") }
            var options = EvaluationOptions(batchSize: max(1, batchSize), rowLimit: rows, labelsKey: labels,
                                            measureLatency: iterations > 0, latencyIterations: iterations,
                                            latencyBatchSize: max(1, latencyBatch))
            if let threads { options.threadCount = max(1, threads) }
            let referenceModel = try EvaluatedModel(contentsOf: URL(fileURLWithPath: reference))
            let candidateModel = try EvaluatedModel(contentsOf: URL(fileURLWithPath: candidate))
            let evaluationData = try EvaluationData(contentsOf: URL(fileURLWithPath: data))
            let progress = TerminalProgress(label: "evaluating")
            var result = try ModelEvaluator(options: options).evaluate(
                reference: referenceModel, candidate: candidateModel, data: evaluationData
            ) { done, total in progress.update(done, of: total) }
            progress.finish()
            if let layers {
                let layerProgress = TerminalProgress(label: "per-layer error")
                result.layers = try ModelEvaluator(options: options).layerErrors(
                    reference: referenceModel, candidate: candidateModel, data: evaluationData, rows: layers,
                    validPositions: layerMask
                ) { done, total in layerProgress.update(done, of: total) }
                layerProgress.finish()
            }
            print(result.formatted())
            if let report {
                try result.json().write(to: URL(fileURLWithPath: report), options: .atomic)
            }
        }
    }
}
