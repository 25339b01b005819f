import Foundation
import GraphIR
import ONNX
import QuantCore
import Quantization
import Runtime
import Tensors
import _TestSupport

/// Small graphs and helpers shared by the static quantization tests.
enum StaticFixtures {
    /// A float32 tensor whose shape is right by construction.
    static func floats(_ shape: [Int], _ values: [Float]) -> Tensor { try! Tensor(shape: shape, scalars: values) }

    /// Deterministic pseudo-random values in [−1, 1) (a 64-bit LCG, so tests never depend on a global seed).
    static func noise(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % (1 << 24)) / Float(1 << 23) - 1
        }
    }

    /// A model with float inputs `(name, shape)` (first dim symbolic), `nodes`, `initializers` and outputs.
    static func model(_ nodes: [Node], inputs: [(String, [Int])], outputs: [String],
                      initializers: [(String, Tensor)], opset: Int = 17) -> Model {
        var graph = Graph(
            name: "test",
            nodes: nodes,
            inputs: inputs.map { name, shape in
                ValueInfo(name: name, dtype: .float32, shape: [.symbol("batch")] + shape.dropFirst().map { .value($0) })
            },
            outputs: outputs.map { ValueInfo(name: $0) })
        for (name, tensor) in initializers { graph.initializers[name] = tensor }
        // Shape inference gives the outputs their types and shapes, which onnx.checker requires.
        return try! ShapeInference.infer(Model(graph: graph, opsetImports: ["": opset]))
    }

    static func quantize(_ model: Model, _ data: [String: Tensor], _ options: QuantizationOptions = QuantizationOptions(),
                         name: String) throws -> QuantizationResult {
        let result = try Quantizer(options: options).quantize(model, calibration: CalibrationData(arrays: data, source: "test data"))
        try ModelChecker.check(result.model)
        try TestSupport.keepForOracle(result.model, name: "static-" + name)
        return result
    }

    static func run(_ model: Model, _ feeds: [String: Tensor]) throws -> [String: Tensor] {
        try Session(model: model, options: SessionOptions(threadCount: 1)).run(feeds)
    }

    /// Cosine similarity of two equally long vectors.
    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for (x, y) in zip(a, b) {
            dot += Double(x) * Double(y)
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        return na > 0 && nb > 0 ? dot / (na * nb).squareRoot() : (na == nb ? 1 : 0)
    }

    /// Row-wise cosine similarities of two `[rows, …]` tensors.
    static func rowCosines(_ a: Tensor, _ b: Tensor) throws -> [Double] {
        let rows = a.shape[0], width = a.count / max(rows, 1)
        let x = try a.floatArray(), y = try b.floatArray()
        return (0..<rows).map { r in
            cosine(Array(x[r * width..<(r + 1) * width]), Array(y[r * width..<(r + 1) * width]))
        }
    }
}

extension Graph {
    /// Nodes of one operator type.
    func nodes(_ opType: String) -> [Node] { nodes.filter { $0.opType == opType } }

    /// The node producing `value`.
    func producer(of value: String) -> Node? { nodes.first { $0.outputs.contains(value) } }

    /// The nodes reading `value`.
    func readers(of value: String) -> [Node] { nodes.filter { $0.inputs.contains(value) } }

    /// The float scalars of a constant.
    func floats(_ name: String) -> [Float] { (try? constantValue(named: name)?.floatArray()) ?? [] }
}

extension QuantizationReport {
    func tensor(_ name: String) -> TensorDecision? { tensors.first { $0.name == name } }
    func node(_ name: String) -> NodeDecision? { nodes.first { $0.name == name } }
}
