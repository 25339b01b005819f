import Foundation
import GraphIR
import QuantCore
import Quantization
import Tensors
import Testing
import _TestSupport

/// The output opset: kept when it suffices, raised (with the operators whose signature changed rewritten)
/// for per-axis scales (13) and 16-bit codes (21), and per-tensor weights when it cannot be raised.
@Suite struct StaticOpsetTests {
    typealias F = StaticFixtures

    /// x → Squeeze(axes attribute) → ReduceMean(axes attribute) → MatMul, at opset 12.
    static func opset12Model() -> Model {
        F.model([
            Node(name: "squeeze", opType: "Squeeze", inputs: ["x"], outputs: ["s"], attributes: ["axes": .ints([1])]),
            Node(name: "mean", opType: "ReduceMean", inputs: ["s"], outputs: ["r"],
                 attributes: ["axes": .ints([2]), "keepdims": .int(0)]),
            Node(name: "mm", opType: "MatMul", inputs: ["r", "w"], outputs: ["y"]),
        ], inputs: [("x", [4, 1, 3, 2])], outputs: ["y"],
        initializers: [("w", F.floats([3, 2], F.noise(6, seed: 1)))], opset: 12)
    }

    @Test func sixteenBitCodesRaiseTheOpsetTo21AndRewriteMovedAttributes() throws {
        let x = F.floats([4, 1, 3, 2], F.noise(24, seed: 2))
        var options = QuantizationOptions()
        options.activationType = .uint16
        let result = try F.quantize(Self.opset12Model(), ["x": x], options, name: "opset12-to-21")
        #expect(result.model.opsetVersion(domain: "") == 21)
        #expect(result.model.irVersion >= 10)
        let squeeze = try #require(result.model.graph.nodes("Squeeze").first)
        #expect(squeeze.attributes["axes"] == nil && squeeze.inputs.count == 2)
        #expect(result.model.graph.constantValue(named: squeeze.inputs[1])?.scalars(as: Int64.self) == [1])
        let mean = try #require(result.model.graph.nodes("ReduceMean").first)
        #expect(mean.attributes["axes"] == nil)
        #expect(result.model.graph.constantValue(named: mean.inputs[1])?.scalars(as: Int64.self) == [2])
        let expected = try F.run(Self.opset12Model(), ["x": x])["y"]!.floatArray()
        let actual = try F.run(result.model, ["x": x])["y"]!.floatArray()
        #expect(TestSupport.maxAbsDifference(expected, actual) < 1e-3)
    }

    @Test func perChannelScalesRaiseTheOpsetTo13() throws {
        let x = F.floats([4, 1, 3, 2], F.noise(24, seed: 3))
        let result = try F.quantize(Self.opset12Model(), ["x": x], name: "opset12-to-13")
        #expect(result.model.opsetVersion(domain: "") == 13)
        #expect(result.report.notes.contains { $0.contains("raised from 12 to 13") })
        let mean = try #require(result.model.graph.nodes("ReduceMean").first)
        #expect(mean.attributes["axes"]?.intsValue == [2])
    }

    /// Softmax changed meaning at 13; a model that cannot be raised keeps its opset and per-tensor weights.
    @Test func aModelThatCannotBeRaisedGetsPerTensorWeights() throws {
        let model = F.model([
            Node(name: "softmax", opType: "Softmax", inputs: ["x"], outputs: ["p"]),
            Node(name: "mm", opType: "MatMul", inputs: ["p", "w"], outputs: ["y"]),
        ], inputs: [("x", [4, 3])], outputs: ["y"], initializers: [("w", F.floats([3, 2], F.noise(6, seed: 4)))], opset: 12)
        let result = try F.quantize(model, ["x": F.floats([4, 3], F.noise(12, seed: 5))], name: "opset12-per-tensor")
        #expect(result.model.opsetVersion(domain: "") == 12)
        #expect(result.report.notes.contains { $0.contains("per tensor") })
        let matmul = try #require(result.model.graph.nodes("MatMul").first)
        let weight = try #require(result.model.graph.producer(of: matmul.inputs[1]))
        #expect(weight.attributes["axis"] == nil)
        #expect(result.model.graph.floats(weight.inputs[1]).count == 1)

        var options = QuantizationOptions()
        options.activationType = .int16
        #expect(throws: QuantizationError.self) {
            try Quantizer(options: options).quantize(model, calibration: CalibrationData(
                arrays: ["x": F.floats([4, 3], F.noise(12, seed: 5))], source: "test"))
        }
    }

    /// A plan asking for int4 weights on one node stores them as packed int4 codes (opset 21).
    @Test func aPlanCanAskForInt4WeightsOnOneNode() throws {
        let model = F.model([
            Node(name: "first", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
            Node(name: "second", opType: "MatMul", inputs: ["h", "w2"], outputs: ["y"]),
        ], inputs: [("x", [4, 8])], outputs: ["y"], initializers: [
            ("w1", F.floats([8, 8], F.noise(64, seed: 6))), ("w2", F.floats([8, 2], F.noise(16, seed: 7))),
        ])
        var options = QuantizationOptions()
        options.plan = QuantizationPlan(nodes: ["second": .init(weightType: .int4)])
        let x = F.floats([4, 8], F.noise(32, seed: 8))
        let result = try F.quantize(model, ["x": x], options, name: "plan-int4-weight")
        #expect(result.model.opsetVersion(domain: "") == 21)
        let second = try #require(result.model.graph.nodes("MatMul").first { $0.name == "second" })
        let codes = try #require(result.model.graph.constantValue(named: result.model.graph.producer(of: second.inputs[1])!.inputs[0]))
        #expect(codes.dtype == .int4)
        #expect(result.report.tensor("w2")?.type == "int4")
        #expect(result.report.multiplyAccumulates?.notInteger8.map(\.name) == ["second"])
        let expected = try F.run(model, ["x": x])["y"]!
        let actual = try F.run(result.model, ["x": x])["y"]!
        #expect(try F.rowCosines(expected, actual).allSatisfy { $0 > 0.95 })
    }
}
