import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant run`: runs a model on the arrays of an .npz file and writes its outputs to another.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model in the FP32/integer runtime on inputs from an .npz file.")

    @Argument(help: "The ONNX model.")
    var model: String

    @Option(help: "Inputs: one array per model input, named as the input.")
    var input: String

    @Option(help: "Where to write the outputs (.npz, one array per model output).")
    var output: String

    @Option(help: "Threads per operator (default: all cores).")
    var threads: Int?

    @Flag(help: "Run every node as written instead of fusing quantized patterns into integer kernels.")
    var noIntegerFusion = false

    func run() throws {
        try reportingErrors {
            let loaded = try Model(contentsOf: URL(fileURLWithPath: model))
            var options = SessionOptions()
            options.integerExecution = !noIntegerFusion
            if let threads { options.threadCount = max(1, threads) }
            let session = try Session(model: loaded, options: options)
            let arrays = try NPZ.read(URL(fileURLWithPath: input))
            var feeds: [String: Tensor] = [:]
            for (name, tensor) in arrays where session.inputs.contains(where: { $0.name == name }) {
                feeds[name] = tensor
            }
            for info in session.inputs where feeds[info.name] == nil {
                throw CommandError("\(input): no array named '\(info.name)' for model input '\(info.name)'")
            }
            let outputs = try session.run(feeds)
            try NPZ.write(session.outputNames.map { ($0, outputs[$0]!) }, to: URL(fileURLWithPath: output))
        }
    }
}
