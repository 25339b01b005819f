import Foundation
import GraphIR
import QuantCore
import Quantization
import Tensors
import Testing
import _TestSupport

/// The QDQ graphs static quantization writes for small graphs built here, with parameters checked against
/// hand computation (ONNX's formulas: `s = (max − min) / 255`, `z = round(−min / s)` for uint8
/// activations; `s = max|w| / 127` per output channel, codes `round(w / s)` for int8 weights; bias codes
/// `round(b / (s_in · s_w))`).
@Suite struct StaticQDQStructureTests {
    typealias F = StaticFixtures

    static var plain: QuantizationOptions {
        var options = QuantizationOptions()
        options.smoothing = false
        return options
    }

    @Test func matMulWithAConstantWeightQuantizesItsInputAndItsWeightPerColumn() throws {
        let x = F.floats([4, 2], [-1, 2, 0.5, -0.25, 3, 1, -2, 0])
        let w = F.floats([2, 3], [0.5, -1.0, 0.26, -0.127, 0.3, 2.54])
        let model = F.model([Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
                            inputs: [("x", [4, 2])], outputs: ["y"], initializers: [("w", w)])
        let result = try F.quantize(model, ["x": x], Self.plain, name: "matmul-weight")
        let graph = result.model.graph
        let matmul = try #require(graph.nodes("MatMul").first)

        // Activation: Q → DQ in front of input 0, min −2 / max 3.
        let dq = try #require(graph.producer(of: matmul.inputs[0]))
        #expect(dq.opType == "DequantizeLinear")
        let q = try #require(graph.producer(of: dq.inputs[0]))
        #expect(q.opType == "QuantizeLinear" && q.inputs[0] == "x")
        let scale: Float = 5 / 255
        #expect(graph.floats(q.inputs[1]) == [scale])
        #expect(graph.constantValue(named: q.inputs[2])?.scalars(as: UInt8.self) == [102])

        // Weight: int8 codes per column (axis 1), narrow range.
        let wdq = try #require(graph.producer(of: matmul.inputs[1]))
        #expect(wdq.opType == "DequantizeLinear" && wdq.attributes["axis"]?.intValue == 1)
        let codes = try #require(graph.constantValue(named: wdq.inputs[0]))
        #expect(codes.dtype == .int8 && codes.shape == [2, 3])
        #expect(codes.scalars(as: Int8.self) == [127, -127, 13, -32, 38, 127])
        #expect(graph.floats(wdq.inputs[1]) == [Float(0.5) / 127, Float(1) / 127, Float(2.54) / 127])
        #expect(graph.constantValue(named: wdq.inputs[2])?.scalars(as: Int8.self) == [0, 0, 0])

        // The output stays float; every MAC is int8.
        #expect(graph.readers(of: "y").isEmpty)
        #expect(result.report.multiplyAccumulates?.integer8Share == 1)
        #expect(result.report.tensor("x")?.action == .quantized)
        #expect(result.report.tensor("w")?.role == .weight)
    }

    /// Conv(x) → Relu → Conv(+bias): the Relu folds into the first Conv's output range (zero point 0), the
    /// bias becomes int32 codes with scale s_in · s_w.
    static func convReluConv() -> Model {
        F.model([
            Node(name: "conv1", opType: "Conv", inputs: ["x", "w1"], outputs: ["c1"]),
            Node(name: "relu", opType: "Relu", inputs: ["c1"], outputs: ["r"]),
            Node(name: "conv2", opType: "Conv", inputs: ["r", "w2", "b2"], outputs: ["y"]),
        ], inputs: [("x", [1, 1, 3, 3])], outputs: ["y"], initializers: [
            ("w1", F.floats([2, 1, 1, 1], [1, -1])),
            ("w2", F.floats([1, 2, 1, 1], [0.5, 0.25])),
            ("b2", F.floats([1], [0.1])),
        ])
    }

    @Test func reluFoldsIntoTheConvOutputAndTheBiasIsInt32() throws {
        let x = F.floats([1, 1, 3, 3], [-2, -1, 0, 1, 2, 3, -3, 0.5, 1.5])
        let result = try F.quantize(Self.convReluConv(), ["x": x], Self.plain, name: "conv-relu-conv")
        let graph = result.model.graph
        #expect(graph.nodes("Relu").isEmpty)
        #expect(result.report.node("relu")?.reason?.contains("folded") == true)

        // conv1 → Q(scale 3/255, zero point 0) → DQ → conv2.
        let q = try #require(graph.readers(of: "c1").first)
        #expect(q.opType == "QuantizeLinear")
        let inputScale: Float = 3 / 255
        #expect(graph.floats(q.inputs[1]) == [inputScale])
        #expect(graph.constantValue(named: q.inputs[2])?.scalars(as: UInt8.self) == [0])
        let conv2 = try #require(graph.nodes("Conv").first { $0.outputs == ["y"] })
        #expect(graph.producer(of: conv2.inputs[0])?.inputs[0] == q.outputs[0])

        // Bias: int32 code round(0.1 / (s_in · s_w)), s_w = 0.5 / 127 (one output channel, one scale).
        let bdq = try #require(graph.producer(of: conv2.inputs[2]))
        #expect(bdq.opType == "DequantizeLinear")
        let biasScale = inputScale * (Float(0.5) / 127)
        #expect(graph.floats(bdq.inputs[1]) == [biasScale])
        #expect(graph.constantValue(named: bdq.inputs[0])?.scalars(as: Int32.self)
                == [Int32((Float(0.1) / biasScale).rounded(.toNearestOrEven))])

        // Close to the float model.
        let expected = try F.run(Self.convReluConv(), ["x": x])["y"]!.floatArray()
        let actual = try F.run(result.model, ["x": x])["y"]!.floatArray()
        #expect(TestSupport.maxAbsDifference(expected, actual) < 0.02)
    }

    /// Generated names are a stem and a short suffix (`a0_q`, `w0_dq`), scalar parameters are named by
    /// value and shared, per-channel parameters that are all alike are scalars, bias codes have no zero
    /// point (ONNX's default 0), and the report maps every generated name back to its float tensor.
    @Test func generatedNamesAreShortSharedAndMappedByTheReport() throws {
        let x = F.floats([1, 1, 3, 3], [-2, -1, 0, 1, 2, 3, -3, 0.5, 1.5])
        let result = try F.quantize(Self.convReluConv(), ["x": x], Self.plain, name: "conv-relu-conv-names")
        let graph = result.model.graph
        let conv1 = try #require(graph.nodes("Conv").first { $0.name == "conv1" })
        let conv2 = try #require(graph.nodes("Conv").first { $0.name == "conv2" })

        // x → Q (a0_q) → DQ (a0_dq) → conv1; the pair's scale 6/255 (range [−3, 3]) and zero point
        // round(3 / s) = round(127.5) = 128 are one scalar initializer each, named by value, read by both.
        let xq = try #require(graph.readers(of: "x").first)
        #expect(xq.opType == "QuantizeLinear" && xq.name == "a0_q" && xq.outputs == ["a0_q"])
        #expect(conv1.inputs[0] == "a0_dq")
        let xdq = try #require(graph.producer(of: "a0_dq"))
        #expect(xdq.inputs == ["a0_q"] + xq.inputs.dropFirst())
        let scale: Float = 6 / 255
        #expect(xq.inputs[1] == "scale_\(scale)" && graph.floats(xq.inputs[1]) == [scale])
        #expect(xq.inputs[2] == "zp_uint8_128")
        #expect(result.report.tensor("x")?.codes == "a0_q" && result.report.tensor("x")?.dequantized == "a0_dq")

        // w1 = [1, −1]: both channels get 1/127, written as one scalar without an axis.
        let w1dq = try #require(graph.producer(of: conv1.inputs[1]))
        #expect(w1dq.attributes["axis"] == nil && graph.floats(w1dq.inputs[1]) == [Float(1) / 127])
        #expect(graph.constantValue(named: w1dq.inputs[1])?.rank == 0)
        #expect(result.report.tensor("w1")?.codes == w1dq.inputs[0])
        #expect(result.report.tensor("w1")?.dequantized == conv1.inputs[1])

        // The bias: int32 codes and a scale, no zero point.
        let bdq = try #require(graph.producer(of: conv2.inputs[2]))
        #expect(bdq.inputs.count == 2 && bdq.inputs[0] == "b0_q" && bdq.outputs == ["b0_dq"])
        #expect(result.report.tensor("b2")?.codes == "b0_q")

        // Every generated name is short; every initializer is read.
        let original = Set(["x", "c1", "r", "y", "conv1", "conv2", "w1", "w2", "b2"])
        let generated = Set(graph.nodes.flatMap { $0.inputs + $0.outputs + [$0.name] }).subtracting(original)
        #expect(generated.allSatisfy { $0.count <= 20 }, "\(generated.filter { $0.count > 20 })")
        let read = Set(graph.nodes.flatMap(\.inputs))
        #expect(graph.initializers.keys.allSatisfy(read.contains))
    }

    /// ids → Gather(table) → MatMul(w): a Gather of a constant table has no integer form, so the table is
    /// stored as int8 codes with one scale per row (`s_r = max|row r| / 127`, codes `round(t / s_r)`)
    /// behind a DequantizeLinear along axis 0, as dynamic mode stores it.
    static func embedding(table: [Float]) -> Model {
        var graph = Graph(
            name: "embedding",
            nodes: [
                Node(name: "lookup", opType: "Gather", inputs: ["table", "ids"], outputs: ["e"]),
                Node(name: "project", opType: "MatMul", inputs: ["e", "w"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "ids", dtype: .int64, shape: [.symbol("batch"), .value(3)])],
            outputs: [ValueInfo(name: "y")])
        graph.initializers["table"] = F.floats([4, 6], table)
        graph.initializers["w"] = F.floats([6, 2], F.noise(12, seed: 21))
        return try! ShapeInference.infer(Model(graph: graph, opsetImports: ["": 17]))
    }

    @Test func gatherTablesAreStoredAsInt8CodesPerRow() throws {
        let table = F.noise(24, seed: 20).enumerated().map { $0.offset < 6 ? $0.element * 8 : $0.element }
        let ids = try Tensor(shape: [2, 3], scalars: [Int64(0), 1, 3, 2, 2, 0])
        let model = Self.embedding(table: table)
        let result = try F.quantize(model, ["ids": ids], Self.plain, name: "embedding-table")
        let graph = result.model.graph
        #expect(result.model.opsetVersion(domain: "")! >= 13)
        let gather = try #require(graph.nodes("Gather").first)
        let dq = try #require(graph.producer(of: gather.inputs[0]))
        #expect(dq.opType == "DequantizeLinear" && dq.attributes["axis"]?.intValue == 0 && dq.inputs.count == 2)
        let codes = try #require(graph.constantValue(named: dq.inputs[0]))
        #expect(codes.dtype == .int8 && codes.shape == [4, 6])
        let scales = graph.floats(dq.inputs[1])
        var expectedCodes: [Int8] = []
        for r in 0..<4 {
            let row = table[r * 6..<(r + 1) * 6]
            let s = row.map(abs).max()! / 127
            #expect(scales[r] == s)
            expectedCodes += row.map { Int8(($0 / s).rounded(.toNearestOrEven)) }
        }
        #expect(codes.scalars(as: Int8.self) == expectedCodes)
        let decision = try #require(result.report.tensor("table"))
        #expect(decision.role == .weight && decision.type == "int8" && decision.reason?.contains("per row") == true)
        #expect(decision.codes == dq.inputs[0] && decision.dequantized == gather.inputs[0])
        #expect(result.report.node("lookup")?.reason?.contains("8-bit codes") == true)
        #expect(graph.initializers["table"] == nil)

        let expected = try F.run(model, ["ids": ids])["y"]!
        let actual = try F.run(result.model, ["ids": ids])["y"]!
        #expect(try F.rowCosines(expected, actual).allSatisfy { $0 > 0.999 })

        // --ops without Gather, or excluding the node, keeps the table float.
        var options = Self.plain
        options.operatorTypes = ["MatMul"]
        let kept = try F.quantize(model, ["ids": ids], options, name: "embedding-table-ops")
        #expect(kept.model.graph.nodes("Gather").first?.inputs[0] == "table")
        options = Self.plain
        options.excludedNodes = ["lookup"]
        let excluded = try F.quantize(model, ["ids": ids], options, name: "embedding-table-excluded")
        #expect(excluded.model.graph.nodes("Gather").first?.inputs[0] == "table")
    }

    @Test func biasWhoseCodesOverflowInt32StaysFloat() throws {
        let model = F.model([Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"])],
                            inputs: [("x", [1, 1, 2, 2])], outputs: ["y"], initializers: [
                                ("w", F.floats([1, 1, 1, 1], [1])), ("b", F.floats([1], [100])),
                            ])
        // s_in is the minimum scale 2⁻²³ and s_w = 1/127: 100 / (s_in · s_w) ≈ 1e11 does not fit int32.
        let x = F.floats([1, 1, 2, 2], [0, 1e-6, 5e-7, 2e-7])
        let result = try F.quantize(model, ["x": x], Self.plain, name: "bias-overflow")
        let conv = try #require(result.model.graph.nodes("Conv").first)
        #expect(conv.inputs[2] == "b")
        let decision = try #require(result.report.tensor("b"))
        #expect(decision.role == .bias && decision.action == .keptFloat)
        #expect(decision.reason?.contains("int32") == true)
    }

    /// Products of two activations stay float by default; with `quantizeActivationProducts` both operands
    /// are quantized per tensor.
    @Test func twoActivationOperandsAreBothQuantizedPerTensorWhenAsked() throws {
        let model = F.model([Node(name: "scores", opType: "MatMul", inputs: ["a", "b"], outputs: ["y"])],
                            inputs: [("a", [2, 2, 3]), ("b", [2, 3, 2])], outputs: ["y"], initializers: [])
        let data = ["a": F.floats([2, 2, 3], F.noise(12, seed: 1)), "b": F.floats([2, 3, 2], F.noise(12, seed: 2))]
        let float = try F.quantize(model.addingWeightedBranch(), data, name: "two-activations-default")
        #expect(float.report.node("scores")?.quantized == false)
        #expect(float.report.node("scores")?.reason?.contains("activations") == true)
        var options = QuantizationOptions()
        options.quantizeActivationProducts = true
        let result = try F.quantize(model, data, options, name: "two-activations")
        let matmul = try #require(result.model.graph.nodes("MatMul").first)
        for input in matmul.inputs {
            let dq = try #require(result.model.graph.producer(of: input))
            #expect(dq.opType == "DequantizeLinear" && dq.attributes["axis"] == nil)
        }
        #expect(result.report.multiplyAccumulates?.integer8Share == 1)
    }

    /// MatMul → Add(constant bias) → MatMul: the Add stays float, so only the second MatMul's input (after
    /// the Add) is quantized; the first MatMul's output has no QuantizeLinear.
    @Test func aConstantBiasAddStaysFloatAndOnlyItsOutputIsQuantized() throws {
        let model = F.model([
            Node(name: "mm1", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
            Node(name: "bias", opType: "Add", inputs: ["b1", "h"], outputs: ["hb"]),
            Node(name: "mm2", opType: "MatMul", inputs: ["hb", "w2"], outputs: ["y"]),
        ], inputs: [("x", [3, 4])], outputs: ["y"], initializers: [
            ("w1", F.floats([4, 4], F.noise(16, seed: 3))), ("b1", F.floats([4], [0.1, -0.2, 0.3, 0])),
            ("w2", F.floats([4, 2], F.noise(8, seed: 4))),
        ])
        let result = try F.quantize(model, ["x": F.floats([3, 4], F.noise(12, seed: 5))], Self.plain, name: "bias-add")
        let graph = result.model.graph
        #expect(graph.readers(of: "h").map(\.opType) == ["Add"])
        #expect(graph.readers(of: "hb").map(\.opType) == ["QuantizeLinear"])
        #expect(result.report.node("bias")?.quantized == false)
        #expect(result.report.node("bias")?.reason?.contains("constant") == true)
    }

    /// Conv → Relu → Flatten → Gemm: Flatten's output shares the Conv output's parameters; in QOperator
    /// form that is QLinearConv → Flatten on codes → MatMulInteger.
    static func convFlattenGemm() -> Model {
        F.model([
            Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["c"], attributes: ["pads": .ints([1, 1, 1, 1])]),
            Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["r"]),
            Node(name: "flatten", opType: "Flatten", inputs: ["r"], outputs: ["f"]),
            Node(name: "fc", opType: "Gemm", inputs: ["f", "fw", "fb"], outputs: ["y"], attributes: ["transB": .int(1)]),
        ], inputs: [("x", [2, 1, 4, 4])], outputs: ["y"], initializers: [
            ("w", F.floats([2, 1, 3, 3], F.noise(18, seed: 6))), ("b", F.floats([2], [0.05, -0.05])),
            ("fw", F.floats([3, 32], F.noise(96, seed: 7))), ("fb", F.floats([3], [0.1, 0.2, -0.1])),
        ])
    }

    @Test func passThroughOutputsShareTheirInputsParameters() throws {
        let x = F.floats([2, 1, 4, 4], F.noise(32, seed: 8))
        let result = try F.quantize(Self.convFlattenGemm(), ["x": x], Self.plain, name: "conv-flatten-gemm-qdq")
        let graph = result.model.graph
        let convQ = try #require(graph.readers(of: "c").first { $0.opType == "QuantizeLinear" })
        let flattenQ = try #require(graph.readers(of: "f").first { $0.opType == "QuantizeLinear" })
        #expect(graph.floats(flattenQ.inputs[1]) == graph.floats(convQ.inputs[1]))
        #expect(graph.constantValue(named: flattenQ.inputs[2]) == graph.constantValue(named: convQ.inputs[2]))
        #expect(result.report.tensor("f")?.reason?.contains("pass-through") == true)
        let gemm = try #require(graph.nodes("Gemm").first)
        #expect(graph.producer(of: gemm.inputs[1])?.attributes["axis"]?.intValue == 0)

        let expected = try F.run(Self.convFlattenGemm(), ["x": x])["y"]!
        let actual = try F.run(result.model, ["x": x])["y"]!
        #expect(try F.rowCosines(expected, actual).allSatisfy { $0 > 0.999 })
    }

    @Test func qOperatorFormUsesIntegerOperatorsAndCodesThroughFlatten() throws {
        let x = F.floats([2, 1, 4, 4], F.noise(32, seed: 8))
        var options = Self.plain
        options.format = .qoperator
        let result = try F.quantize(Self.convFlattenGemm(), ["x": x], options, name: "conv-flatten-gemm-qoperator")
        let graph = result.model.graph
        #expect(graph.nodes("QLinearConv").count == 1)
        #expect(graph.nodes("MatMulInteger").count == 1)
        #expect(graph.nodes("Conv").isEmpty && graph.nodes("Gemm").isEmpty)
        let flatten = try #require(graph.nodes("Flatten").first)
        #expect(graph.producer(of: flatten.inputs[0])?.opType == "QLinearConv")

        let expected = try F.run(Self.convFlattenGemm(), ["x": x])["y"]!
        let actual = try F.run(result.model, ["x": x])["y"]!
        #expect(try F.rowCosines(expected, actual).allSatisfy { $0 > 0.999 })
    }

    @Test func qOperatorMatMulIsQLinearWithAQuantizedOutputAndIntegerOtherwise() throws {
        let model = F.model([
            Node(name: "mm1", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
            Node(name: "mm2", opType: "MatMul", inputs: ["h", "w2"], outputs: ["y"]),
        ], inputs: [("x", [3, 4])], outputs: ["y"], initializers: [
            ("w1", F.floats([4, 4], F.noise(16, seed: 9))), ("w2", F.floats([4, 2], F.noise(8, seed: 10))),
        ])
        var options = Self.plain
        options.format = .qoperator
        let x = F.floats([3, 4], F.noise(12, seed: 11))
        let result = try F.quantize(model, ["x": x], options, name: "matmul-qoperator")
        let graph = result.model.graph
        #expect(graph.nodes("QLinearMatMul").map(\.name) == ["mm1"])
        #expect(graph.nodes("MatMulInteger").map(\.name) == ["mm2"])
        let expected = try F.run(model, ["x": x])["y"]!
        let actual = try F.run(result.model, ["x": x])["y"]!
        #expect(try F.rowCosines(expected, actual).allSatisfy { $0 > 0.99 })
    }

    @Test func opsExcludeAndPlanKeepNodesFloatAndSayWhy() throws {
        let x = F.floats([1, 1, 3, 3], [-2, -1, 0, 1, 2, 3, -3, 0.5, 1.5])
        var options = Self.plain
        options.excludedNodes = ["conv2"]
        let excluded = try F.quantize(Self.convReluConv(), ["x": x], options, name: "exclude")
        #expect(excluded.report.node("conv2")?.quantized == false)
        #expect(excluded.report.node("conv2")?.reason?.contains("--exclude") == true)
        let conv2 = try #require(excluded.model.graph.nodes("Conv").first { $0.outputs == ["y"] })
        #expect(conv2.inputs[1] == "w2")

        options = Self.plain
        options.plan = QuantizationPlan(nodes: ["conv1": .init(skip: true)])
        let planned = try F.quantize(Self.convReluConv(), ["x": x], options, name: "plan-skip")
        #expect(planned.report.node("conv1")?.reason == "skipped by the plan")
        #expect(planned.report.multiplyAccumulates.map { $0.integer8Share < 1 } == true)

        options = Self.plain
        options.operatorTypes = ["Gemm"]
        #expect(throws: QuantizationError.self) {
            try Quantizer(options: options).quantize(Self.convReluConv(),
                                                     calibration: CalibrationData(arrays: ["x": x], source: "test"))
        }
    }
}

extension Model {
    /// The model plus `MatMul(a, constant)`, so something stays quantizable when the rest is float.
    func addingWeightedBranch() -> Model {
        var model = self
        model.graph.initializers["branch_weight"] = StaticFixtures.floats([3, 1], [1, 2, 3])
        model.graph.nodes.append(Node(name: "branch", opType: "MatMul", inputs: ["a", "branch_weight"], outputs: ["branch_out"]))
        model.graph.outputs.append(ValueInfo(name: "branch_out"))
        return try! ShapeInference.infer(model)
    }
}
