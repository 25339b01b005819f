import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant calibrate`: ranges and quantization parameters of the tensors static quantization
/// observes, as JSON.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run calibration data through a model and report each observed tensor's range, scale and zero point.")

    @Argument(help: "The ONNX model.")
    var model: String

    @Option(help: "Calibration data (.npz, one array per model input, samples along the first axis).")
    var calib: String

    @Option(help: "minmax, moving-average, entropy, percentile or mse.")
    var method: String = CalibrationMethod.minMax.rawValue

    @Option(help: "uint8, int8 or int16.")
    var activationType = "uint8"

    @Flag(help: "Symmetric ranges (zero point 0, or mid-range for unsigned types).")
    var symmetric = false

    @Option(help: "Percentile for --method percentile.")
    var percentile = 99.99

    @Option(help: "Samples per run.")
    var batchSize = 16

    @Option(help: "Threads per operator (default: all cores).")
    var threads: Int?

    @Option(name: .shortAndLong, help: "Write the JSON here instead of standard output.")
    var output: String?

    func run() throws {
        try reportingErrors {
            guard let method = CalibrationMethod(rawValue: method) else {
                let allowed = CalibrationMethod.allCases.map(\.rawValue).joined(separator: ", ")
                throw CommandError("--method \(method) is not one of: \(allowed)")
            }
            let type = try QuantType(name: activationType)
            guard [QuantType.uint8, .int8, .int16].contains(type) else {
                throw CommandError("--activation-type must be uint8, int8 or int16, got \(activationType)")
            }
            let scheme = QuantScheme(type: type, mapping: symmetric ? .symmetric : .asymmetric)
            let loaded = try Model(contentsOf: URL(fileURLWithPath: model))
            var options = SessionOptions()
            if let threads { options.threadCount = max(1, threads) }
            let driver = CalibrationDriver(
                session: try Session(model: loaded, options: options),
                configuration: CalibrationConfiguration(method: method, scheme: scheme, percentile: percentile),
                batchSize: batchSize)
            let data = try NPZ.readDictionary(URL(fileURLWithPath: calib))
            let progress = TerminalProgress(label: "calibrating (\(method.rawValue))")
            let results = try driver.run(data: data, source: calib) { done, total in progress.update(done, of: total) }
            progress.finish()
            let json = try results.json()
            if let output {
                try json.write(to: URL(fileURLWithPath: output), options: .atomic)
            } else {
                print(String(decoding: json, as: UTF8.self))
            }
        }
    }
}
