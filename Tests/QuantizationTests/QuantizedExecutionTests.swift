import GraphIR
import Quantization
import Runtime
import Tensors
import Testing
import _TestSupport

/// What the quantizer writes is what the runtime's integer fusion recognises: a small embedding + MLP
/// quantized by `Quantizer` in dynamic and weight-only mode runs as the fused operators, with the same
/// outputs as node-by-node execution.
@Suite struct QuantizedExecutionTests {
    typealias Support = WeightModeSupport

    /// `ids → Gather(table) → h`; `y = MatMul(Relu(MatMul(h, W1) + b1), W2) + b2` and `side = MatMul(h, W3)`
    /// (two MatMuls reading `h`, as Q, K and V read one activation).
    static func model() throws -> Model {
        let (vocabulary, width, hidden, out) = (50, 40, 48, 16)
        let nodes = [
            Node(name: "embed", opType: "Gather", inputs: ["table", "ids"], outputs: ["h"]),
            Node(name: "up", opType: "MatMul", inputs: ["h", "w1"], outputs: ["u"]),
            Node(name: "up_bias", opType: "Add", inputs: ["u", "b1"], outputs: ["ub"]),
            Node(name: "relu", opType: "Relu", inputs: ["ub"], outputs: ["r"]),
            Node(name: "down", opType: "MatMul", inputs: ["r", "w2"], outputs: ["d"]),
            Node(name: "down_bias", opType: "Add", inputs: ["d", "b2"], outputs: ["y"]),
            Node(name: "side", opType: "MatMul", inputs: ["h", "w3"], outputs: ["side"]),
        ]
        var graph = Graph(name: "mlp", nodes: nodes,
                          inputs: [ValueInfo(name: "ids", dtype: .int64, shape: [.value(2), .value(5)])],
                          outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.value(2), .value(5), .value(out)]),
                                    ValueInfo(name: "side", dtype: .float32, shape: [.value(2), .value(5), .value(out)])])
        graph.initializers["table"] = try Support.floats([vocabulary, width], Support.pseudoRandom(vocabulary * width, seed: 1))
        graph.initializers["w1"] = try Support.floats([width, hidden], Support.pseudoRandom(width * hidden, seed: 2, scale: 0.3))
        graph.initializers["b1"] = try Support.floats([hidden], Support.pseudoRandom(hidden, seed: 3, scale: 0.1))
        graph.initializers["w2"] = try Support.floats([hidden, out], Support.pseudoRandom(hidden * out, seed: 4, scale: 0.3))
        graph.initializers["b2"] = try Support.floats([out], Support.pseudoRandom(out, seed: 5, scale: 0.1))
        graph.initializers["w3"] = try Support.floats([width, out], Support.pseudoRandom(width * out, seed: 6, scale: 0.3))
        return Model(graph: graph, opsetImports: ["": 17])
    }

    static let feeds = ["ids": try! Tensor(shape: [2, 5], scalars: [3, 0, 49, 7, 7, 12, 1, 48, 25, 3] as [Int64])]

    static func fusedOperators(_ model: Model) throws -> [String] {
        try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
    }

    static func runBothWays(_ model: Model) throws -> (fused: [String: Tensor], unfused: [String: Tensor]) {
        (try Session(model: model).run(feeds), try Session(model: model, options: SessionOptions(integerExecution: false)).run(feeds))
    }

    @Test func dynamicPerTokenModelRunsFusedAndBitIdentical() throws {
        let result = try Quantizer(options: QuantizationOptions(mode: .dynamic)).quantize(try Self.model())
        let quantized = try Support.roundTrip(result.model, name: "execution-dynamic-mlp")
        let types = try Self.fusedOperators(quantized)
        #expect(types.filter { $0 == "QuantizeRows" }.count == 2, "\(types)")
        #expect(types.filter { $0 == "RowScaledQMatMul" }.count == 3, "\(types)")
        #expect(types.contains("DequantizeGather"))
        for gone in ["MatMulInteger", "QuantizeLinear", "DequantizeLinear", "Abs", "ReduceMax", "Cast"] {
            #expect(!types.contains(gone), "\(gone) in \(types)")
        }
        let (fused, unfused) = try Self.runBothWays(quantized)
        for name in ["y", "side"] {
            #expect(fused[name]!.scalars(as: Float.self).map(\.bitPattern) == unfused[name]!.scalars(as: Float.self).map(\.bitPattern),
                    "\(name)")
        }
    }

    @Test func weightOnlyInt4ModelRunsFused() throws {
        let options = QuantizationOptions(mode: .weightOnly, weightType: .int4, groupSize: 32)
        let result = try Quantizer(options: options).quantize(try Self.model())
        let quantized = try Support.roundTrip(result.model, name: "execution-int4-mlp")
        let types = try Self.fusedOperators(quantized)
        #expect(types.contains("DequantizeGather") && types.contains("WeightOnlyMatMul"), "\(types)")
        #expect(!types.contains("DequantizeLinear") && !types.contains("MatMul"), "\(types)")
        let (fused, unfused) = try Self.runBothWays(quantized)
        for name in ["y", "side"] {
            let a = fused[name]!.scalars(as: Float.self), b = unfused[name]!.scalars(as: Float.self)
            #expect(a.count == b.count && TestSupport.maxAbsDifference(a, b) <= 1e-5, "\(name)")
        }
    }
}
