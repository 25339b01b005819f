import Foundation
import GraphIR
import ONNX
import QuantCore
import Quantization
import Runtime
import Tensors
import Testing
import _TestSupport

@Suite("FP16 conversion")
struct FP16ConverterTests {
    typealias Support = WeightModeSupport

    static func convert(_ model: Model, _ options: QuantizationOptions = QuantizationOptions(mode: .fp16)) throws
        -> QuantizationResult {
        try Quantizer(options: options).quantize(model)
    }

    /// `x → MatMul(W1) → LayerNormalization → MatMul(W2) → Add(mask) → y`, with a mask holding −3.4e38.
    static func encoderModel() throws -> Model {
        let hidden = 8
        let graph = Graph(
            name: "g",
            nodes: [
                Node(name: "up", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
                Node(name: "norm", opType: "LayerNormalization", inputs: ["h", "gamma", "beta"], outputs: ["n"],
                     attributes: ["axis": .int(-1)]),
                Node(name: "down", opType: "MatMul", inputs: ["n", "w2"], outputs: ["d"]),
                Node(name: "mask", opType: "Add", inputs: ["d", "fill"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(2), .value(4)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.value(2), .value(3)])],
            initializers: [
                "w1": try Support.floats([4, hidden], Support.pseudoRandom(4 * hidden, seed: 71)),
                "gamma": try Support.floats([hidden], Support.pseudoRandom(hidden, seed: 72).map { 1 + $0 / 4 }),
                "beta": try Support.floats([hidden], Support.pseudoRandom(hidden, seed: 73, scale: 0.1)),
                "w2": try Support.floats([hidden, 3], Support.pseudoRandom(hidden * 3, seed: 74)),
                "fill": try Support.floats([3], [0, 0, -3.4e38]),
            ])
        return Model(graph: graph, opsetImports: ["": 17])
    }

    @Test("MatMuls in float16, LayerNormalization float32 behind Casts, float32 boundary, clamped fill")
    func structureAndValues() throws {
        let model = try Self.encoderModel()
        let result = try Self.convert(model)
        let converted = try Support.roundTrip(result.model, name: "fp16-encoder")
        #expect(Support.opTypes(converted) == ["Cast", "MatMul", "Cast", "LayerNormalization", "Cast", "MatMul", "Add", "Cast"])
        let nodes = converted.graph.nodes
        #expect(nodes[0].inputs == ["x"] && nodes[0].attributes["to"] == .int(10))
        #expect(converted.graph.initializers[nodes[1].inputs[1]]?.dtype == .float16)
        #expect(nodes[2].attributes["to"] == .int(1))
        // LayerNormalization keeps its float32 parameters.
        #expect(converted.graph.initializers[nodes[3].inputs[1]]?.dtype == .float32)
        #expect(nodes[7].outputs == ["y"] && nodes[7].attributes["to"] == .int(1))
        #expect(converted.graph.inputs[0].type?.tensorElementType == .float32)
        #expect(converted.graph.outputs[0].type?.tensorElementType == .float32)
        let fill = try #require(converted.graph.initializers[nodes[6].inputs[1]])
        #expect(fill.dtype == .float16)
        #expect(fill.scalars(as: Float16.self) == [0, 0, -Float16.greatestFiniteMagnitude])
        #expect(result.report.notes.contains { $0.contains("1 constant values beyond float16's range") })

        let x = try Support.floats([2, 4], Support.pseudoRandom(8, seed: 75))
        let want = try Support.run(model, ["x": x])["y"]!.scalars(as: Float.self)
        let got = try Support.run(converted, ["x": x])["y"]!.scalars(as: Float.self)
        #expect(got.count == want.count)
        // The masked column is −65504 rather than −3.4e38; the others agree to float16 precision.
        for index in got.indices where index % 3 != 2 {
            #expect(abs(got[index] - want[index]) <= 0.01 * max(1, abs(want[index])))
        }
        for index in got.indices where index % 3 == 2 { #expect(got[index] < -65000) }
    }

    @Test("float32 regions fed only by float32 values stay float32 without casts")
    func float32RegionsStay() throws {
        let graph = Graph(
            name: "g",
            nodes: [Node(name: "scale", opType: "Mul", inputs: ["x", "k"], outputs: ["s"]),
                    Node(name: "mm", opType: "MatMul", inputs: ["s", "w"], outputs: ["y"])],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(2), .value(4)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.value(2), .value(3)])],
            initializers: ["k": Tensor(scalar: Float(2)),
                           "w": try Support.floats([4, 3], Support.pseudoRandom(12, seed: 81))])
        let result = try Self.convert(Model(graph: graph, opsetImports: ["": 17]))
        let converted = try Support.roundTrip(result.model, name: "fp16-float-region")
        // The Mul reads a float32 input and a scalar: it stays float32; the MatMul converts what it reads.
        #expect(Support.opTypes(converted) == ["Mul", "Cast", "MatMul", "Cast"])
        #expect(converted.graph.initializers["k"]?.dtype == .float32)
    }

    @Test("CNN and recurrent fixtures agree with float32 to float16 precision")
    func fixtures() throws {
        for file in ["mixed-cnn", "mixed-cnn-constants", "recurrent"] {
            let (model, _, converted) = try Support.quantizedFixture(file, QuantizationOptions(mode: .fp16), prefix: "fp16")
            let input = try Support.fixtureInput(file)
            #expect(!converted.graph.initializers.values.contains { $0.dtype == .float32 && $0.count > 64 },
                    "\(file): a large float32 weight is left")
            let want = try Support.run(model, input), got = try Support.run(converted, input)
            for (name, tensor) in want {
                #expect(got[name]?.dtype == .float32)
                #expect(Support.rowCosines(tensor, got[name]!).min()! > 0.9999, "\(file) \(name)")
            }
        }
    }

    @Test("bad options and models are typed errors naming the cause")
    func badInput() throws {
        let model = try Self.encoderModel()
        #expect(throws: QuantizationError.self) { try Self.convert(model, QuantizationOptions(mode: .fp16, weightType: .int8)) }
        #expect(throws: QuantizationError.self) { try Self.convert(model, QuantizationOptions(mode: .fp16, groupSize: 32)) }
        #expect(throws: QuantizationError.self) {
            try Self.convert(model, QuantizationOptions(mode: .fp16, operatorTypes: ["LayerNormalization"]))
        }
        try Support.expectNothingToQuantize(.fp16)
    }

    @Test("MiniLM in float16: cosine to FP32 ≥ 0.999, half the file")
    func miniLM() throws {
        guard let miniLM = try Support.miniLM() else { return }
        let result = try Self.convert(miniLM.model)
        try TestSupport.keepForOracle(result.model, name: "fp16-minilm")
        let original = try FileManager.default.attributesOfItem(atPath: miniLM.url.path)[.size] as! Int
        #expect(Double(try Support.fileSize(result.model)) <= 0.51 * Double(original))
        let fidelity = try Support.miniLMFidelity(reference: miniLM.model, candidate: result.model, eval: miniLM.eval,
                                                  rows: 8)
        #expect(fidelity.mean >= 0.999, "mean \(fidelity.mean), worst \(fidelity.worst)")
    }
}
