import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant demo`: the embedded default — quantizes the bundled digits CNN in every mode and prints one table.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize the bundled model (a CNN for handwritten digits) in every mode and compare each with FP32.")

    @Option(help: "Keep the quantized models in this folder.")
    var outputDir: String?

    @Option(help: "Threads per operator (default: all cores).")
    var threads: Int?

    @Option(help: "Timed runs per model for latency.")
    var iterations = 50

    @Option(help: "Evaluate on the first N test images only.")
    var rows: Int?

    @Option(help: "Also write the table as JSON.")
    var json: String?

    func run() throws {
        try reportingErrors {
            guard let model = Bundle.module.url(forResource: "digits-cnn", withExtension: "onnx", subdirectory: "demo"),
                  let calibration = Bundle.module.url(forResource: "digits-calib", withExtension: "npz",
                                                      subdirectory: "demo"),
                  let test = Bundle.module.url(forResource: "digits-test", withExtension: "npz", subdirectory: "demo")
            else {
                throw CommandError("the bundled demo files are missing from \(Bundle.module.bundlePath)")
            }
            var demo = DemoRun(model: model, calibration: calibration, test: test, latencyIterations: max(1, iterations),
                               outputDirectory: outputDir.map { URL(fileURLWithPath: $0, isDirectory: true) },
                               rowLimit: rows.map { max(1, $0) })
            if let threads { demo.threadCount = max(1, threads) }
            let progress = TerminalProgress(label: "demo")
            let result = try demo.run { step in progress.status(step) }
            progress.finish()
            print(result.formattedTable())
            if let json {
                try result.json().write(to: URL(fileURLWithPath: json), options: .atomic)
            }
            if result.hasFailures {
                throw CommandError("some modes failed (see their rows)")
            }
        }
    }
}
