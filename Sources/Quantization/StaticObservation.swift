import Calibration
import GraphIR
import QuantCore
import Runtime
import Tensors

/// What static quantization watches during a calibration run beside the method's own observers: a
/// histogram per quantized activation, per-channel statistics of the activations that may be smoothed,
/// and the multiply-accumulates of every matrix operator (from the shapes that flow).
final class Observation {
    private let histogramNames: Set<String>
    private let channelNames: Set<String>
    private(set) var histograms: [String: TensorHistogram] = [:]
    private(set) var channels: [String: ChannelStatistics] = [:]
    /// Multiply-accumulates per matrix node (by index) over all calibration samples.
    private(set) var multiplyAccumulates: [Int: Double] = [:]

    private struct MatrixNode {
        var index: Int
        var opType: String
        var output: String
        var input: String
        var transA: Bool
        var weightShape: [Int]?
        var constantInputShape: [Int]?
    }
    private let matrixNodes: [MatrixNode]
    private var shapes: [String: [Int]] = [:]

    init(graph: Graph, histograms: Set<String>, channels: Set<String>) {
        histogramNames = histograms
        channelNames = channels
        let constants = graph.constantValues
        matrixNodes = graph.nodes.enumerated().compactMap { index, node in
            guard node.normalizedDomain.isEmpty, ActivationSelection.integerComputeOperators.contains(node.opType),
                  node.inputs.count >= 2, let output = node.outputs.first else { return nil }
            return MatrixNode(index: index, opType: node.opType, output: output, input: node.inputs[0],
                              transA: (node.attributes["transA"]?.intValue ?? 0) != 0,
                              weightShape: constants[node.inputs[1]]?.shape,
                              constantInputShape: constants[node.inputs[0]]?.shape)
        }
    }

    /// Runs calibration with `CalibrationDriver`, feeding these statistics as batches go by.
    func calibrate(
        session: Session, tensors: [String], overrides: [String: QuantScheme], configuration: CalibrationConfiguration,
        batchSize: Int, data: [String: Tensor], source: String, progress: @escaping (Int, Int) -> Void
    ) throws -> CalibrationResults {
        var driver = CalibrationDriver(session: session, configuration: configuration, batchSize: batchSize,
                                       tensorNames: tensors)
        driver.schemeOverrides = overrides
        var inspected = histogramNames.union(channelNames)
        for node in matrixNodes { inspected.formUnion([node.output, node.input]) }
        let inspection = CalibrationDriver.Inspection(names: inspected) { [self] name, value in
            inspect(name, value)
        }
        return try driver.run(data: data, source: source, progress: { [self] done, total in
            batchFinished()
            progress(done, total)
        }, inspection: inspection)
    }

    private func inspect(_ name: String, _ value: Tensor) {
        shapes[name] = value.shape
        guard value.dtype == .float32 else { return }
        let histogram = histogramNames.contains(name), channel = channelNames.contains(name)
        guard histogram || channel else { return }
        value.withUnsafeBufferPointer(as: Float.self) { values in
            if histogram { histograms[name, default: TensorHistogram()].observe(values) }
            if channel { channels[name, default: ChannelStatistics()].observe(values, shape: value.shape) }
        }
    }

    /// Adds the batch's multiply-accumulates: Conv `|Y| · C/g · k…`, ConvTranspose `|X| · M/g · k…`,
    /// MatMul and Gemm `|Y| · K`.
    private func batchFinished() {
        for node in matrixNodes {
            guard let output = shapes[node.output] else { continue }
            let outputCount = Double(output.reduce(1, *))
            var macs: Double?
            switch node.opType {
            case "Conv":
                macs = node.weightShape.map { outputCount * Double($0.dropFirst().reduce(1, *)) }
            case "ConvTranspose":
                if let weight = node.weightShape, let input = shapes[node.input] {
                    macs = Double(input.reduce(1, *)) * Double(weight.dropFirst().reduce(1, *))
                }
            default:
                if let a = shapes[node.input] ?? node.constantInputShape, let last = a.last {
                    let k = node.opType == "Gemm" && node.transA ? a.first ?? last : last
                    macs = outputCount * Double(k)
                }
            }
            if let macs { multiplyAccumulates[node.index, default: 0] += macs }
        }
        shapes.removeAll(keepingCapacity: true)
    }
}
