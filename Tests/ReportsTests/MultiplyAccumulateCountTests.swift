import Foundation
import GraphIR
import ONNX
import Tensors
import Testing
import _TestSupport
@testable import Reports

// Expected MAC counts are hand-computed from the operator definitions (each test shows the product).

/// Builds graphs of independent nodes over declared inputs and initializers.
private struct GraphBuilder {
    var graph = Graph()

    mutating func input(_ name: String, _ dtype: DType, _ shape: [Int]) {
        graph.inputs.append(ValueInfo(name: name, dtype: dtype, shape: shape.map { .value($0) }))
    }

    mutating func constant(_ name: String, _ tensor: Tensor) { graph.initializers[name] = tensor }

    mutating func node(_ name: String, _ opType: String, _ inputs: [String],
                       attributes: [(String, Attribute)] = []) {
        var node = Node(name: name, opType: opType, inputs: inputs, outputs: [name + "_out"])
        for (key, value) in attributes { node.attributes[key] = value }
        graph.nodes.append(node)
        graph.outputs.append(ValueInfo(name: name + "_out"))
    }

    mutating func dequantize(_ name: String, _ source: String) {
        constant(name + "_scale", Tensor(scalar: Float(0.1)))
        graph.nodes.append(Node(name: name, opType: "DequantizeLinear", inputs: [source, name + "_scale"],
                                outputs: [name]))
    }

    func model(opset: Int = 17) -> Model { Model(graph: graph, opsetImports: ["": opset]) }
}

private func zeros(_ dtype: DType, _ shape: [Int]) throws -> Tensor { try Tensor(zeros: dtype, shape: shape) }

@Suite("Multiply-accumulate counting")
struct MultiplyAccumulateCountTests {
    @Test func floatOperatorsCountTheirReductions() throws {
        var builder = GraphBuilder()
        builder.input("a", .float32, [2, 4, 8])
        builder.constant("b", try zeros(.float32, [8, 16]))
        builder.node("matmul", "MatMul", ["a", "b"])                                // 2·4·16 · 8 = 1024
        builder.input("g", .float32, [5, 2])
        builder.constant("h", try zeros(.float32, [5, 7]))
        builder.node("gemm", "Gemm", ["g", "h"], attributes: [("transA", .int(1))])  // M 2, N 7, K 5 = 70
        builder.input("x", .float32, [1, 4, 8, 8])
        builder.constant("w", try zeros(.float32, [6, 2, 3, 3]))
        builder.node("conv", "Conv", ["x", "w"],
                     attributes: [("group", .int(2)), ("pads", .ints([1, 1, 1, 1]))])  // 6·8·8 · 2·3·3 = 6912
        builder.input("t", .float32, [1, 4, 5, 5])
        builder.constant("tw", try zeros(.float32, [4, 3, 3, 3]))
        builder.node("deconv", "ConvTranspose", ["t", "tw"], attributes: [("strides", .ints([2, 2]))])
        // 4·5·5 input elements · 3 output channels · 3·3 taps = 2700

        let count = try MultiplyAccumulateCount.count(in: builder.model(), inputShapes: [:])
        #expect(count.nodes.map(\.macs) == [1024, 70, 6912, 2700])
        #expect(count.total == 1024 + 70 + 6912 + 2700)
        #expect(count.integer == 0)
        #expect(count.integerShare == 0)
        #expect(count.unresolved.isEmpty)
        #expect(count.byOperator.map(\.opType) == ["Conv", "ConvTranspose", "MatMul", "Gemm"])
    }

    @Test func integerOperatorsAndQDQPatternsCountAsInteger() throws {
        var builder = GraphBuilder()
        // MatMulInteger [3, 5] x [5, 2]: 3·2·5 = 30, integer.
        builder.input("qa", .uint8, [3, 5])
        builder.constant("qb", try zeros(.int8, [5, 2]))
        builder.node("matmul_integer", "MatMulInteger", ["qa", "qb"])
        // QLinearConv x [1, 4, 8, 8] uint8, w [6, 4, 1, 1] int8: 6·8·8 · 4 = 1536, integer.
        builder.input("cx", .uint8, [1, 4, 8, 8])
        builder.constant("cw", try zeros(.int8, [6, 4, 1, 1]))
        for (name, tensor) in [("cs", Tensor(scalar: Float(0.1))), ("cz", Tensor(scalar: UInt8(0))),
                               ("ws", Tensor(scalar: Float(0.1))), ("wz", Tensor(scalar: Int8(0)))] {
            builder.constant(name, tensor)
        }
        builder.node("qlinear_conv", "QLinearConv", ["cx", "cs", "cz", "cw", "ws", "wz", "cs", "cz"])
        // QDQ: DequantizeLinear(uint8 activation) x DequantizeLinear(int8 weight) -> MatMul: 4·3 · 6 = 72, integer.
        builder.input("x8", .uint8, [4, 6])
        builder.dequantize("x8_dq", "x8")
        builder.constant("w8", try zeros(.int8, [6, 3]))
        builder.dequantize("w8_dq", "w8")
        builder.node("qdq_matmul", "MatMul", ["x8_dq", "w8_dq"])
        // Weight-only: float activation x DequantizeLinear(int8 weight): 4·3 · 6 = 72, float.
        builder.input("xf", .float32, [4, 6])
        builder.node("weight_only_matmul", "MatMul", ["xf", "w8_dq"])
        // 16-bit activations are not "8 bits or fewer": 72, float.
        builder.input("x16", .int16, [4, 6])
        builder.dequantize("x16_dq", "x16")
        builder.node("int16_matmul", "MatMul", ["x16_dq", "w8_dq"])

        let count = try MultiplyAccumulateCount.count(in: builder.model(opset: 21), inputShapes: [:])
        let byName = Dictionary(uniqueKeysWithValues: count.nodes.map { ($0.name, $0) })
        #expect(byName["matmul_integer"]?.macs == 30)
        #expect(byName["matmul_integer"]?.integer == true)
        #expect(byName["qlinear_conv"]?.macs == 1536)
        #expect(byName["qlinear_conv"]?.integer == true)
        #expect(byName["qdq_matmul"]?.macs == 72)
        #expect(byName["qdq_matmul"]?.integer == true)
        #expect(byName["weight_only_matmul"]?.integer == false)
        #expect(byName["int16_matmul"]?.integer == false)
        #expect(count.total == 30 + 1536 + 72 * 3)
        #expect(count.integer == 30 + 1536 + 72)
        let matMul = count.byOperator.first { $0.opType == "MatMul" }
        #expect(matMul?.nodes == 3)
        #expect(matMul?.macs == 216)
        #expect(matMul?.integerMacs == 72)
    }

    @Test func int4WeightsFromBlockedDequantizationCountAsIntegerOnlyWithQuantizedActivations() throws {
        var builder = GraphBuilder()
        builder.input("x", .uint8, [2, 64])
        builder.dequantize("x_dq", "x")
        builder.constant("w4", try Tensor.packInt4([Int8](repeating: 1, count: 64 * 8), signed: true, shape: [64, 8]))
        builder.constant("w4_scale", try Tensor(shape: [2, 8], scalars: [Float](repeating: 0.1, count: 16)))
        builder.graph.nodes.append(Node(name: "w4_dq", opType: "DequantizeLinear", inputs: ["w4", "w4_scale"],
                                        outputs: ["w4_dq"], attributes: ["axis": .int(0), "block_size": .int(32)]))
        builder.node("int4_matmul", "MatMul", ["x_dq", "w4_dq"])      // 2·8 · 64 = 1024
        let count = try MultiplyAccumulateCount.count(in: builder.model(opset: 21), inputShapes: [:])
        #expect(count.nodes.first?.macs == 1024)
        #expect(count.nodes.first?.integer == true)
    }

    @Test func symbolicDimensionsTakeTheGivenShapesAndUnknownOnesAreListed() throws {
        var graph = Graph()
        graph.inputs = [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("batch"), .value(8)]),
                        ValueInfo(name: "free", type: nil)]
        graph.initializers["w"] = try zeros(.float32, [8, 4])
        graph.nodes = [Node(name: "known", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"]),
                       Node(name: "unknown", opType: "MatMul", inputs: ["free", "w"], outputs: ["z"])]
        graph.outputs = [ValueInfo(name: "y"), ValueInfo(name: "z")]
        let count = try MultiplyAccumulateCount.count(in: Model(graph: graph), inputShapes: ["x": [3, 8]])
        #expect(count.nodes.map(\.macs) == [3 * 4 * 8])
        #expect(count.unresolved == ["node 'unknown' (MatMul)"])
    }

    /// MiniLM-L6 (hidden 384, 12 heads of 32, FFN 1536, 6 layers) at batch 1 × S tokens. Per layer:
    /// Q, K, V and output projections 4 · S·384·384, FFN 2 · S·384·1536, and attention scores QKᵀ plus
    /// weighted values 2 · 12 · S·S·32 — so per token 6·(4·384² + 2·384·1536) = 10,616,832 weight MACs
    /// plus 6·2·384·S attention MACs.
    @Test(arguments: [16, 64])
    func miniLMMatMulsPerToken(tokens: Int) throws {
        guard let models = TestSupport.sharedModels else { return }
        let model = try Model(contentsOf: models.appendingPathComponent("minilm-l6/minilm-l6.onnx"))
        let shapes = Dictionary(uniqueKeysWithValues: ["input_ids", "attention_mask", "token_type_ids"].map {
            ($0, [1, tokens])
        })
        let count = try MultiplyAccumulateCount.count(in: model, inputShapes: shapes)
        let weightMACsPerToken = 6 * (4 * 384 * 384 + 2 * 384 * 1536)
        #expect(weightMACsPerToken == 10_616_832)
        let expected = tokens * weightMACsPerToken + 6 * 2 * 12 * tokens * tokens * 32
        #expect(count.unresolved.isEmpty)
        #expect(count.byOperator.map(\.opType) == ["MatMul"])
        #expect(count.byOperator.first?.nodes == 48)
        #expect(count.total == expected)
        #expect(count.integer == 0)
    }
}
