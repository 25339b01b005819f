import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant inspect MODEL [--json]`: a model's inputs, outputs, operators, parameters and metadata.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize an ONNX model: interface, operators, parameters and metadata."
    )

    @Argument(help: "The ONNX model file.", completion: .file(extensions: ["onnx"]))
    var model: String

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        let url = URL(fileURLWithPath: model)
        let summary: ModelSummary
        do {
            summary = ModelSummary(try Model(contentsOf: url))
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(summary)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("Model: \(url.path)")
            print(summary.formatted())
        }
    }
}
