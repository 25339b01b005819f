import Foundation
import GraphIR
import ONNX
import QuantCore
import Quantization
import Runtime
import Tensors
import Testing
import _TestSupport

@Suite("Dynamic quantization")
struct DynamicQuantizerTests {
    typealias Support = WeightModeSupport

    /// `W [4, 3]` whose column maxima give the scales 0.01, 0.02 and 0.001 and codes by hand:
    /// column 0 `[1.27, −0.5, 0, 0.26] / 0.01 = [127, −50, 0, 26]`, column 1 `[−2.54, 1, 0.5, 0.02] / 0.02 =
    /// [−127, 50, 25, 1]`, column 2 `[0.127, 0.05, −0.03, 0.001] / 0.001 = [127, 50, −30, 1]`.
    static let weight: [Float] = [1.27, -2.54, 0.127, -0.5, 1.0, 0.05, 0, 0.5, -0.03, 0.26, 0.02, 0.001]
    static let expectedCodes: [Int8] = [127, -127, 127, -50, 50, 50, 0, 25, -30, 26, 1, 1]
    static let expectedScales: [Float] = [1.27 / 127, 2.54 / 127, 0.127 / 127]
    static let input: [Float] = [0.5, -1.1, 2, 0.25, 1, 1, -1, 0]

    static func matMulModel() throws -> Model {
        Support.singleNodeModel("MatMul", input: [2, 4], output: [2, 3], weights: [("w", try Support.floats([4, 3], weight))])
    }

    static func quantize(_ model: Model, _ options: QuantizationOptions) throws -> QuantizationResult {
        try Quantizer(options: options).quantize(model)
    }

    /// `Σ_k a[m, k] · w[k, n]` over int32 codes.
    static func integerProduct(_ a: [Int32], _ w: [Int8], rows: Int, depth: Int, columns: Int) -> [Int32] {
        var result = [Int32](repeating: 0, count: rows * columns)
        for m in 0..<rows {
            for n in 0..<columns {
                for k in 0..<depth { result[m * columns + n] += a[m * depth + k] * Int32(w[k * columns + n]) }
            }
        }
        return result
    }

    @Test("per-tensor MatMul: DynamicQuantizeLinear → MatMulInteger → Cast → Mul, codes and output by hand")
    func perTensorMatMul() throws {
        var options = QuantizationOptions(mode: .dynamic)
        options.dynamicActivations = .perTensor
        let result = try Self.quantize(try Self.matMulModel(), options)
        let model = try Support.roundTrip(result.model, name: "dynamic-matmul-per-tensor")
        #expect(Support.opTypes(model) == ["DynamicQuantizeLinear", "Mul", "MatMulInteger", "Cast", "Mul"])
        let matMul = try #require(model.graph.nodes.first { $0.opType == "MatMulInteger" })
        #expect(model.graph.initializers[matMul.inputs[1]]?.scalars(as: Int8.self) == Self.expectedCodes)
        #expect(model.graph.initializers[matMul.inputs[1]]?.shape == [4, 3])
        #expect(model.graph.initializers[matMul.inputs[3]]?.scalars(as: Int8.self) == [0, 0, 0])
        let scaleMul = model.graph.nodes[1]
        let scales = try #require(model.graph.initializers[scaleMul.inputs[1]]).scalars(as: Float.self)
        for (got, want) in zip(scales, Self.expectedScales) { #expect(abs(got - want) <= want * 1e-6) }

        // ONNX DynamicQuantizeLinear by hand: range [−1.1, 2] → s = 3.1/255, z = round(1.1/s) = 90.
        let x = Self.input
        let scale: Float = (2 - (-1.1)) / 255
        let zero = (1.1 / scale).rounded(.toNearestOrEven)
        #expect(zero == 90)
        let codes = x.map { Int32(min(max(($0 / scale).rounded(.toNearestOrEven) + zero, 0), 255) - zero) }
        let product = Self.integerProduct(codes, Self.expectedCodes, rows: 2, depth: 4, columns: 3)
        let expected = product.enumerated().map { Float($0.element) * (scale * Self.expectedScales[$0.offset % 3]) }
        let y = try Support.run(model, ["x": try Support.floats([2, 4], x)])["y"]!.scalars(as: Float.self)
        for (got, want) in zip(y, expected) { #expect(abs(got - want) <= 1e-6 * max(1, abs(want))) }
        // And close to the float product.
        let float = try Support.run(try Self.matMulModel(), ["x": try Support.floats([2, 4], x)])["y"]!.scalars(as: Float.self)
        #expect(TestSupport.maxAbsDifference(y, float) < 0.03)
        #expect(result.report.tensors.contains { $0.name == "x" && $0.role == .activation && $0.type == "uint8" })
        #expect(result.report.tensors.contains { $0.name == "w" && $0.role == .weight && $0.type == "int8" })
    }

    @Test("per-token MatMul: one symmetric int8 scale per row, output by hand")
    func perTokenMatMul() throws {
        let result = try Self.quantize(try Self.matMulModel(), QuantizationOptions(mode: .dynamic, dynamicActivations: .perToken))
        let model = try Support.roundTrip(result.model, name: "dynamic-matmul-per-token")
        #expect(Support.opTypes(model) == ["Abs", "ReduceMax", "Max", "Div", "Div", "QuantizeLinear", "MatMulInteger",
                                           "Cast", "Mul", "Mul"])
        // Rows [0.5, −1.1, 2, 0.25] and [1, 1, −1, 0]: s = 2/127 and 1/127.
        let rowScales: [Float] = [2 / 127, 1 / 127]
        var codes: [Int32] = []
        for (index, value) in Self.input.enumerated() {
            let s = rowScales[index / 4]
            codes.append(Int32(min(max((value / s).rounded(.toNearestOrEven), -127), 127)))
        }
        #expect(codes == [32, -70, 127, 16, 127, 127, -127, 0])
        let product = Self.integerProduct(codes, Self.expectedCodes, rows: 2, depth: 4, columns: 3)
        let expected = product.enumerated().map {
            Float($0.element) * Self.expectedScales[$0.offset % 3] * rowScales[$0.offset / 3]
        }
        let y = try Support.run(model, ["x": try Support.floats([2, 4], Self.input)])["y"]!.scalars(as: Float.self)
        for (got, want) in zip(y, expected) { #expect(abs(got - want) <= 1e-6 * max(1, abs(want))) }
    }

    @Test("Gemm: transB, alpha and beta folded; bias added after the scales")
    func gemm() throws {
        let b = Support.pseudoRandom(5 * 8, seed: 3)   // [N = 5, K = 8], transB
        let c = Support.pseudoRandom(5, seed: 4)
        let model = Support.singleNodeModel(
            "Gemm", input: [3, 8], output: [3, 5], weights: [("b", try Support.floats([5, 8], b)), ("c", try Support.floats([5], c))],
            attributes: ["transB": .int(1), "alpha": .float(0.5), "beta": .float(2)])
        let result = try Self.quantize(model, QuantizationOptions(mode: .dynamic))
        let quantized = try Support.roundTrip(result.model, name: "dynamic-gemm")
        #expect(Support.opTypes(quantized).suffix(5) == ["MatMulInteger", "Cast", "Mul", "Mul", "Add"])
        let matMul = try #require(quantized.graph.nodes.first { $0.opType == "MatMulInteger" })
        #expect(quantized.graph.initializers[matMul.inputs[1]]?.shape == [8, 5])
        let x = try Support.floats([3, 8], Support.pseudoRandom(24, seed: 5))
        let want = try Support.run(model, ["x": x])["y"]!.scalars(as: Float.self)
        let got = try Support.run(quantized, ["x": x])["y"]!.scalars(as: Float.self)
        // 8-bit codes on both sides: errors of a few parts in a thousand of the output range.
        #expect(TestSupport.maxAbsDifference(got, want) < 0.02)
        #expect(Support.cosine(got, want) > 0.9999)
    }

    @Test("convolutions run as ConvInteger, the Gemm as MatMulInteger, with Constant-node weights too")
    func cnn() throws {
        for file in ["mixed-cnn", "mixed-cnn-constants"] {
            let (model, _, quantized) = try Support.quantizedFixture(file, QuantizationOptions(mode: .dynamic), prefix: "dynamic")
            let input = try Support.fixtureInput(file)
            let types = Support.opTypes(quantized)
            #expect(types.filter { $0 == "ConvInteger" }.count == 7)
            #expect(types.filter { $0 == "MatMulInteger" }.count == 1)
            #expect(!types.contains("Conv") && !types.contains("Gemm"))
            // Every rewritten operator reads int8 weight codes.
            #expect(quantized.graph.initializers.values.filter { $0.dtype == .int8 && $0.rank >= 2 }.count == 8)
            let want = try Support.run(model, input)
            let got = try Support.run(quantized, input)
            for name in ["features", "log_probs"] {
                let cosines = Support.rowCosines(want[name]!, got[name]!)
                #expect(cosines.min()! > 0.99, "\(file) \(name): \(cosines)")
            }
        }
    }

    @Test("LSTM and GRU weights are stored int8 behind DequantizeLinear; the recurrence stays float")
    func recurrent() throws {
        let (model, result, quantized) = try Support.quantizedFixture("recurrent", QuantizationOptions(mode: .dynamic),
                                                                      prefix: "dynamic")
        let producers = quantized.graph.producers
        for op in ["LSTM", "GRU"] {
            let node = try #require(quantized.graph.nodes.first { $0.opType == op })
            for index in [1, 2] {
                let reshape = try #require(producers[node.inputs[index]].map { quantized.graph.nodes[$0] })
                #expect(reshape.opType == "Reshape")
                let dequantize = try #require(producers[reshape.inputs[0]].map { quantized.graph.nodes[$0] })
                #expect(dequantize.opType == "DequantizeLinear")
                #expect(quantized.graph.initializers[dequantize.inputs[0]]?.dtype == .int8)
            }
        }
        #expect(result.report.notes.contains { $0.contains("recurrence runs in float32") })
        let input = try Support.fixtureInput("recurrent")
        let want = try Support.run(model, input), got = try Support.run(quantized, input)
        for (name, tensor) in want {
            #expect(Support.rowCosines(tensor, got[name]!).min()! > 0.999, "\(name)")
        }
    }

    @Test("bad options and models are typed errors naming the cause")
    func badInput() throws {
        let model = try Self.matMulModel()
        #expect(throws: QuantizationError.self) { try Self.quantize(model, QuantizationOptions(mode: .dynamic, weightType: .int4)) }
        do {
            _ = try Self.quantize(model, QuantizationOptions(mode: .dynamic, weightType: .int4))
        } catch let error as QuantizationError {
            #expect(error.description.contains("int4") && error.description.contains("weight-only"))
        }
        #expect(throws: QuantizationError.self) { try Self.quantize(model, QuantizationOptions(mode: .dynamic, groupSize: 32)) }
        #expect(throws: QuantizationError.self) {
            try Self.quantize(model, QuantizationOptions(mode: .dynamic, operatorTypes: ["Softmax"]))
        }

        try Support.expectNothingToQuantize(.dynamic)

        var poisoned = Self.weight
        poisoned[4] = .nan
        let nan = Support.singleNodeModel("MatMul", input: [2, 4], output: [2, 3], weights: [("w", try Support.floats([4, 3], poisoned))])
        #expect(throws: QuantizationError.unsupportedNode(node: "matmul", reason: "weight 'w' holds NaN or infinite values")) {
            try Self.quantize(nan, QuantizationOptions(mode: .dynamic))
        }
        let old = Support.singleNodeModel("MatMul", input: [2, 4], output: [2, 3],
                                          weights: [("w", try Support.floats([4, 3], Self.weight))], opset: 12)
        #expect(throws: QuantizationError.self) { try Self.quantize(old, QuantizationOptions(mode: .dynamic)) }
    }

    @Test("MiniLM: mean cosine ≥ 0.993 to FP32 with default options")
    func miniLM() throws {
        guard let miniLM = try Support.miniLM() else { return }
        let result = try Self.quantize(miniLM.model, QuantizationOptions(mode: .dynamic))
        try TestSupport.keepForOracle(result.model, name: "dynamic-minilm")
        // Four rows keep the debug-build reference integer kernels at about a minute.
        let fidelity = try Support.miniLMFidelity(reference: miniLM.model, candidate: result.model, eval: miniLM.eval,
                                                  rows: 4)
        #expect(fidelity.mean >= 0.993, "mean \(fidelity.mean), worst \(fidelity.worst)")
        #expect(Support.opTypes(result.model).filter { $0 == "MatMulInteger" }.count == 36)
    }
}
