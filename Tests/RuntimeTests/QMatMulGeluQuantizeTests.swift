import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// `QMatMul` with `quantize_float_output` (and `activation = "Gelu"`): equal bit for bit to the unfused
/// kernels it replaces (float-output QMatMul → Gelu → Quantize) and to its reference twin, and the rewrite of
/// a BERT intermediate layer into it.
@Suite struct QMatMulGeluQuantizeTests {
    static let inputNames = ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "bias", "y_scale", "y_zero_point"]

    struct Problem {
        var constants: [String: Tensor]
        var a: Tensor
        var n: Int
    }

    static func problem(m: Int, k: Int, n: Int, perChannelOutput: Bool, outputType: DType, seed: UInt64) throws -> Problem {
        var generator = SeededGenerator(seed: seed)
        let a = try Tensor(shape: [m, k], scalars: (0..<(m * k)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let b = try Tensor(shape: [k, n], scalars: (0..<(k * n)).map { _ in Int8.random(in: -127...127, using: &generator) })
        let channels = perChannelOutput ? n : 1
        let yScales = (0..<channels).map { _ in Float.random(in: 0.002...0.03, using: &generator) }
        let zeros = (0..<channels).map { _ in Int32.random(in: 0...255, using: &generator) }
        let yZero = outputType == .uint8
            ? try Tensor(shape: perChannelOutput ? [n] : [], scalars: zeros.map { UInt8($0) })
            : try Tensor(shape: perChannelOutput ? [n] : [], scalars: zeros.map { Int8(truncatingIfNeeded: $0 - 128) })
        let constants: [String: Tensor] = [
            "a_scale": Tensor(scalar: Float(0.021)), "a_zero_point": Tensor(scalar: UInt8(119)), "b": b,
            "b_scale": try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: 0.0005...0.002, using: &generator) }),
            "b_zero_point": try Tensor(zeros: .int8, shape: [n]),
            "bias": try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: -1...1, using: &generator) }),
            "y_scale": try Tensor(shape: perChannelOutput ? [n] : [], scalars: yScales), "y_zero_point": yZero,
        ]
        return Problem(constants: constants, a: a, n: n)
    }

    static func node(gelu: Bool, quantized: Bool) -> Node {
        var node = Node(opType: "QMatMul", domain: IntegerFusion.domain,
                        inputs: quantized ? inputNames : Array(inputNames.prefix(7)), outputs: ["y"])
        if quantized { node.attributes["quantize_float_output"] = .int(1) }
        if gelu { node.attributes["activation"] = .string(Array("Gelu".utf8)) }
        return node
    }

    @Test(arguments: [(1, 37, 19, false, DType.uint8), (5, 64, 80, true, .uint8), (33, 130, 129, true, .int8),
                      (64, 384, 1536, true, .uint8), (3, 8, 16, false, .int8)])
    func equalsUnfusedKernelsAndReference(_ m: Int, _ k: Int, _ n: Int, _ perChannel: Bool, _ outputType: DType) throws {
        let p = try Self.problem(m: m, k: k, n: n, perChannelOutput: perChannel, outputType: outputType, seed: UInt64(m * 1000 + n))
        for gelu in [true, false] {
            let fusedNode = Self.node(gelu: gelu, quantized: true)
            let fused = try FusedQMatMulKernel(buildContext(fusedNode, constants: p.constants))
            let inputs = orderedInputs(fusedNode, constants: p.constants, feeds: ["a": p.a])

            // The unfused kernels: float QMatMul, then the vectorised Gelu, then Quantize.
            let floatNode = Self.node(gelu: false, quantized: false)
            let floatKernel = try FusedQMatMulKernel(buildContext(floatNode, constants: p.constants))
            var expected = try floatKernel.run(orderedInputs(floatNode, constants: p.constants, feeds: ["a": p.a]),
                                               context: ExecutionContext(threadCount: 1))[0]
            if gelu { expected = try FusedGeluKernel(minimumRank: 0).run([expected], context: ExecutionContext(threadCount: 1))[0] }
            let quantizeNode = Node(opType: "Quantize", domain: IntegerFusion.domain, inputs: ["x", "s", "z"], outputs: ["q"])
            let quantize = try FusedQuantizeKernel(buildContext(quantizeNode, constants: ["s": p.constants["y_scale"]!,
                                                                                          "z": p.constants["y_zero_point"]!]))
            expected = try quantize.run([expected, p.constants["y_scale"], p.constants["y_zero_point"]],
                                        context: ExecutionContext(threadCount: 1))[0]

            for threads in [1, 2, 3] {
                let got = try fused.run(inputs, context: ExecutionContext(threadCount: threads))[0]
                #expect(got == expected, "gelu \(gelu), \(m)x\(k)x\(n), \(threads) threads")
            }
            #expect(try fused.runReference(inputs)[0] == expected, "reference twin, gelu \(gelu), \(m)x\(k)x\(n)")
        }
    }

    @Test func badAttributesThrow() throws {
        let p = try Self.problem(m: 2, k: 8, n: 16, perChannelOutput: true, outputType: .uint8, seed: 1)
        var unknown = Self.node(gelu: false, quantized: true)
        unknown.attributes["activation"] = .string(Array("Swish".utf8))
        #expect(throws: KernelError.self) { try FusedQMatMulKernel(buildContext(unknown, constants: p.constants)) }
        var wrongChannels = p.constants
        wrongChannels["y_scale"] = try Tensor(shape: [3], scalars: [Float(0.1), 0.1, 0.1])
        wrongChannels["y_zero_point"] = try Tensor(shape: [3], scalars: [UInt8(1), 2, 3])
        #expect(throws: KernelError.self) {
            try FusedQMatMulKernel(buildContext(Self.node(gelu: true, quantized: true), constants: wrongChannels))
        }
    }

    /// dense (QDQ) → Add bias → exact Gelu (PyTorch's five nodes) → QuantizeLinear per channel → DequantizeLinear.
    @Test func intermediateLayerBecomesOneQMatMulAndMatchesUnfused() throws {
        var generator = SeededGenerator(seed: 12)
        let (m, k, n) = (6, 24, 40)
        var b = IntegerFusionTests.Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.03, zeroPoint: 128)
        let weights = try Tensor(shape: [k, n], scalars: (0..<(k * n)).map { _ in Int8.random(in: -120...120, using: &generator) })
        let w = b.dequantizeWeights(weights, scales: (0..<n).map { _ in Float.random(in: 0.001...0.004, using: &generator) }, axis: 1)
        let dense = b.add("MatMul", [x, w])
        let biased = b.add("Add", [b.constant(try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: -0.5...0.5, using: &generator) }), "bias"), dense])
        let scaled = b.add("Div", [biased, b.constant(Tensor(scalar: Float(1.4142135)), "root_two")])
        let erf = b.add("Erf", [scaled])
        let gate = b.add("Add", [erf, b.constant(Tensor(scalar: Float(1)), "one")])
        let product = b.add("Mul", [biased, gate])
        let gelu = b.add("Mul", [product, b.constant(Tensor(scalar: Float(0.5)), "half")])
        let yScale = b.constant(try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: 0.005...0.02, using: &generator) }), "y_scale")
        let yZero = b.constant(try Tensor(shape: [n], scalars: (0..<n).map { _ in UInt8.random(in: 20...60, using: &generator) }), "y_zero")
        let codes = b.add("QuantizeLinear", [gelu, yScale, yZero], attributes: ["axis": .int(-1)])
        let output = b.add("DequantizeLinear", [codes, yScale, yZero], attributes: ["axis": .int(-1)])
        let model = b.model(inputs: [ValueInfo(name: "x")], outputs: [output])

        let fusedGraph = try IntegerFusion.apply(to: model, registry: .standard).graph
        let types = fusedGraph.nodes.map(\.opType)
        let qMatMuls = fusedGraph.nodes.filter { $0.opType == "QMatMul" }
        #expect(qMatMuls.count == 1 && qMatMuls.first?.attributes["quantize_float_output"] != nil, "\(types)")
        for gone in ["Erf", "Div", "Mul", "QuantizeLinear"] {
            #expect(!types.contains(gone), "\(gone) left in \(types)")
        }
        // Only the input's quantization stays a Quantize.
        #expect(types.filter { $0 == "Quantize" }.count == 1, "\(types)")
        let feeds = ["x": try Tensor(shape: [m, k], scalars: IntegerFusionTests.randomFloats(m * k, -3...3, &generator))]
        let step = 0.02  // the largest output scale
        for threads in [1, 2] {
            let fused = try Session(model: model, options: SessionOptions(threadCount: threads)).run(feeds)[output]!
            let unfused = try Session(model: model, options: SessionOptions(threadCount: threads, integerExecution: false))
                .run(feeds)[output]!
            let worst = zip(fused.doubleValues, unfused.doubleValues).map { abs($0 - $1) }.max() ?? .infinity
            // Integer against float products: at most one output step apart.
            #expect(worst <= step + 1e-6, "fused and unfused differ by \(worst)")
        }
    }
}
