import ArgumentParser

/// Runs the ONNX backend node tests for the operators we claim.
@main
struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx-conformance",
        abstract: "Run the ONNX backend node tests against the SwiftQuant runtime."
    )
}
