import ArgumentParser

/// `swiftquant`: thin command-line front end. Each subcommand lives in its own file and calls into
/// the libraries; failures print what went wrong and exit non-zero.
@main
struct SwiftQuantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftquant",
        abstract: "Quantize ONNX models to low-bit formats, run them, and measure what they lost.",
        subcommands: [Demo.self, Inspect.self, Run.self, Calibrate.self, Quantize.self, Eval.self, Bench.self, BenchGEMM.self],
        defaultSubcommand: Demo.self
    )
}
