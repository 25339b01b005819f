import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// Small QDQ graphs run fused (integer kernels) and unfused (every node as written): the fused graph
/// holds the expected operators, and outputs agree within one quantization step of the output.
@Suite struct IntegerFusionTests {
    /// A QDQ graph builder: constants as initializers, nodes in order.
    struct Builder {
        var nodes: [Node] = []
        var initializers: [String: Tensor] = [:]
        var counter = 0

        mutating func constant(_ tensor: Tensor, _ base: String) -> String {
            counter += 1
            let name = "\(base)_\(counter)"
            initializers[name] = tensor
            return name
        }

        mutating func add(_ opType: String, _ inputs: [String], attributes: [String: Attribute] = [:]) -> String {
            counter += 1
            let output = "\(opType.lowercased())_\(counter)"
            var node = Node(name: "n\(counter)", opType: opType, inputs: inputs, outputs: [output])
            for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { node.attributes[key] = value }
            nodes.append(node)
            return output
        }

        /// Quantize then dequantize `value` with per-tensor parameters; returns (codes, dequantized).
        mutating func quantizeDequantize(_ value: String, scale: Float, zeroPoint: UInt8) -> (String, String) {
            let s = constant(Tensor(scalar: scale), "scale"), z = constant(Tensor(scalar: zeroPoint), "zero")
            let codes = add("QuantizeLinear", [value, s, z])
            return (codes, add("DequantizeLinear", [codes, s, z]))
        }

        mutating func dequantizeWeights(_ codes: Tensor, scales: [Float], axis: Int) -> String {
            let c = constant(codes, "w")
            let s = constant(try! Tensor(shape: scales.count == 1 ? [] : [scales.count], scalars: scales), "w_scale")
            let z = constant(try! Tensor(zeros: codes.dtype, shape: scales.count == 1 ? [] : [scales.count]), "w_zero")
            return add("DequantizeLinear", [c, s, z], attributes: ["axis": .int(axis)])
        }

        func model(inputs: [ValueInfo], outputs: [String], opset: Int = 17) -> Model {
            var graph = Graph(nodes: nodes, inputs: inputs, outputs: outputs.map { ValueInfo(name: $0) })
            for (name, tensor) in initializers.sorted(by: { $0.key < $1.key }) { graph.initializers[name] = tensor }
            return Model(graph: graph, opsetImports: ["": opset])
        }
    }

    static func randomFloats(_ count: Int, _ range: ClosedRange<Float>, _ generator: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &generator) }
    }

    /// Runs `model` fused and unfused; checks the fused graph's operator types and the outputs' agreement.
    static func compare(_ model: Model, feeds: [String: Tensor], tolerance: [String: Double],
                        expectFused: [String], expectGone: [String]) throws {
        let fusedModel = try IntegerFusion.apply(to: model, registry: .standard)
        let types = fusedModel.graph.nodes.map(\.opType)
        for op in expectFused { #expect(types.contains(op), "expected \(op) in \(types)") }
        for op in expectGone { #expect(!types.contains(op), "expected no \(op) in \(types)") }
        for threads in [1, 2] {
            let fused = try Session(model: model, options: SessionOptions(threadCount: threads)).run(feeds)
            let unfused = try Session(model: model, options: SessionOptions(threadCount: threads, integerExecution: false)).run(feeds)
            for (name, limit) in tolerance {
                let a = fused[name]!.doubleValues, b = unfused[name]!.doubleValues
                #expect(a.count == b.count && !a.isEmpty)
                let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= limit, "output \(name): fused and unfused differ by \(worst) > \(limit)")
            }
        }
    }

    @Test func matMulWithBiasReluAndPerChannelWeightsBecomesOneQMatMul() throws {
        var generator = SeededGenerator(seed: 1)
        let (m, k, n) = (5, 37, 19)
        var b = Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.02, zeroPoint: 131)
        let codes = try Tensor(shape: [k, n], scalars: (0..<(k * n)).map { _ in Int8.random(in: -127...127, using: &generator) })
        let w = b.dequantizeWeights(codes, scales: (0..<n).map { Float(0.001) * Float(1 + $0 % 4) }, axis: 1)
        let product = b.add("MatMul", [x, w])
        let bias = b.constant(try Tensor(shape: [n], scalars: Self.randomFloats(n, -0.5...0.5, &generator)), "bias")
        let shifted = b.add("Add", [product, bias])
        let relu = b.add("Relu", [shifted])
        let (_, y) = b.quantizeDequantize(relu, scale: 0.01, zeroPoint: 7)
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(m), .value(k)])], outputs: [y])
        let feeds = ["x": try Tensor(shape: [m, k], scalars: Self.randomFloats(m * k, -2.6...2.4, &generator))]
        try Self.compare(model, feeds: feeds, tolerance: [y: 0.01 * 1.0001], expectFused: ["QMatMul"],
                         expectGone: ["MatMul", "Relu", "Add"])
    }

    @Test func gemmWithTransposedWeightsAndInt32BiasBecomesQMatMul() throws {
        var generator = SeededGenerator(seed: 2)
        let (m, k, n) = (3, 64, 10)
        var b = Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.05, zeroPoint: 128)
        let codes = try Tensor(shape: [n, k], scalars: (0..<(k * n)).map { _ in Int8.random(in: -127...127, using: &generator) })
        let w = b.dequantizeWeights(codes, scales: [0.004], axis: 0)
        // The bias as quantizers write it: int32 codes at scale s_x · s_w, zero point 0.
        let biasCodes = b.constant(try Tensor(shape: [n], scalars: (0..<n).map { _ in Int32.random(in: -900...900, using: &generator) }), "bias")
        let biasScale = b.constant(Tensor(scalar: Float(0.05) * Float(0.004)), "bias_scale")
        let bias = b.add("DequantizeLinear", [biasCodes, biasScale])
        let gemm = b.add("Gemm", [x, w, bias], attributes: ["transB": .int(1)])
        let (_, y) = b.quantizeDequantize(gemm, scale: 0.08, zeroPoint: 120)
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(m), .value(k)])], outputs: [y])
        let feeds = ["x": try Tensor(shape: [m, k], scalars: Self.randomFloats(m * k, -6...6, &generator))]
        try Self.compare(model, feeds: feeds, tolerance: [y: 0.08 * 1.0001], expectFused: ["QMatMul"], expectGone: ["Gemm"])
    }

    @Test func matMulWithoutQuantizeLinearKeepsFloatOutput() throws {
        var generator = SeededGenerator(seed: 3)
        let (k, n) = (48, 33)
        var b = Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.01, zeroPoint: 100)
        let codes = try Tensor(shape: [k, n], scalars: (0..<(k * n)).map { _ in Int8.random(in: -127...127, using: &generator) })
        let w = b.dequantizeWeights(codes, scales: [0.002], axis: 1)
        let product = b.add("MatMul", [x, w])
        let softmax = b.add("Softmax", [product])
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(2), .value(4), .value(k)])],
                            outputs: [product, softmax])
        let feeds = ["x": try Tensor(shape: [2, 4, k], scalars: Self.randomFloats(8 * k, -1...1.5, &generator))]
        // Integer accumulation is exact; only float rounding separates the two.
        try Self.compare(model, feeds: feeds, tolerance: [product: 1e-5, softmax: 1e-6], expectFused: ["QMatMul"],
                         expectGone: ["MatMul"])
    }

    @Test func attentionMatMulOfTwoActivationsRunsOnCodes() throws {
        var generator = SeededGenerator(seed: 4)
        var b = Builder()
        let (_, q) = b.quantizeDequantize("q", scale: 0.03, zeroPoint: 128)
        let (_, kT) = b.quantizeDequantize("k", scale: 0.04, zeroPoint: 110)
        let scores = b.add("MatMul", [q, kT])
        let (_, y) = b.quantizeDequantize(scores, scale: 0.05, zeroPoint: 140)
        let model = b.model(inputs: [ValueInfo(name: "q", dtype: .float32, shape: [.value(1), .value(3), .value(6), .value(8)]),
                                     ValueInfo(name: "k", dtype: .float32, shape: [.value(1), .value(3), .value(8), .value(6)])],
                            outputs: [y])
        let feeds = ["q": try Tensor(shape: [1, 3, 6, 8], scalars: Self.randomFloats(144, -3...3, &generator)),
                     "k": try Tensor(shape: [1, 3, 8, 6], scalars: Self.randomFloats(144, -4...4, &generator))]
        try Self.compare(model, feeds: feeds, tolerance: [y: 0.05 * 1.0001], expectFused: ["QMatMul"], expectGone: ["MatMul"])
    }

    /// ONNX Runtime's dynamic MatMul: the fused kernel performs the same float operations, so the outputs
    /// are identical.
    @Test func dynamicQuantizedMatMulEqualsUnfusedExactly() throws {
        var generator = SeededGenerator(seed: 6)
        for (k, n, perChannel) in [(5, 3, false), (120, 17, true), (64, 65, false)] {
            var b = Builder()
            let dynamic = Node(name: "dql", opType: "DynamicQuantizeLinear", inputs: ["x"], outputs: ["xq", "xs", "xz"])
            b.nodes.append(dynamic)
            let codes = b.constant(try Tensor(shape: [k, n], scalars: (0..<(k * n)).map { _ in Int8.random(in: -127...127, using: &generator) }), "w")
            let wScale = b.constant(try Tensor(shape: perChannel ? [n] : [], scalars: (0..<(perChannel ? n : 1)).map { Float(0.001) * Float(1 + $0 % 7) }), "ws")
            let wZero = b.constant(try Tensor(shape: perChannel ? [n] : [], scalars: (0..<(perChannel ? n : 1)).map { _ in Int8(0) }), "wz")
            let scales = b.add("Mul", ["xs", wScale])
            let acc = b.add("MatMulInteger", ["xq", codes, "xz", wZero])
            let real = b.add("Cast", [acc], attributes: ["to": .int(1)])
            let scaled = b.add("Mul", [real, scales])
            let bias = b.constant(try Tensor(shape: [n], scalars: Self.randomFloats(n, -1...1, &generator)), "bias")
            let y = b.add("Add", [bias, scaled])
            let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)], outputs: [y], opset: 13)
            let feeds = ["x": try Tensor(shape: [1, 7, k], scalars: Self.randomFloats(7 * k, -3...2, &generator))]
            try Self.compare(model, feeds: feeds, tolerance: [y: 0], expectFused: ["DynamicQMatMul"],
                             expectGone: ["MatMulInteger", "Cast", "DynamicQuantizeLinear"])
        }
    }

    @Test func convolutionChainWithReluAndResidualAdd() throws {
        var generator = SeededGenerator(seed: 7)
        var b = Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.03, zeroPoint: 128)
        let w1 = b.dequantizeWeights(try Tensor(shape: [8, 3, 3, 3], scalars: (0..<216).map { _ in Int8.random(in: -127...127, using: &generator) }),
                                     scales: (0..<8).map { Float(0.004) * Float(1 + $0 % 3) }, axis: 0)
        let biasCodes = b.constant(try Tensor(shape: [8], scalars: (0..<8).map { _ in Int32.random(in: -2000...2000, using: &generator) }), "bias")
        let conv1 = b.add("Conv", [x, w1, b.constant(try Tensor(shape: [8], scalars: Self.randomFloats(8, -0.3...0.3, &generator)), "fbias")],
                          attributes: ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])])
        let relu = b.add("Relu", [conv1])
        let (_, h) = b.quantizeDequantize(relu, scale: 0.02, zeroPoint: 0)
        let dw = b.dequantizeWeights(try Tensor(shape: [8, 1, 3, 3], scalars: (0..<72).map { _ in Int8.random(in: -127...127, using: &generator) }),
                                     scales: [0.01], axis: 0)
        let biasScale = b.constant(Tensor(scalar: Float(0.02) * Float(0.01)), "bias_scale")
        let dwBias = b.add("DequantizeLinear", [biasCodes, biasScale])
        let conv2 = b.add("Conv", [h, dw, dwBias], attributes: ["pads": .ints([1, 1, 1, 1]), "group": .int(8)])
        let (_, h2) = b.quantizeDequantize(conv2, scale: 0.04, zeroPoint: 120)
        let pooled = b.add("MaxPool", [h2], attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])])
        let (_, p) = b.quantizeDequantize(pooled, scale: 0.04, zeroPoint: 120)
        let flat = b.add("Flatten", [p])
        let (_, f) = b.quantizeDequantize(flat, scale: 0.04, zeroPoint: 120)
        let fc = b.dequantizeWeights(try Tensor(shape: [10, 72], scalars: (0..<720).map { _ in Int8.random(in: -127...127, using: &generator) }),
                                     scales: [0.005], axis: 0)
        let logits = b.add("Gemm", [f, fc], attributes: ["transB": .int(1)])
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)], outputs: [h, h2, logits])
        let feeds = ["x": try Tensor(shape: [2, 3, 12, 12], scalars: Self.randomFloats(864, -3...3, &generator))]
        // Codes may differ by one step where fixed-point and float rounding part; the float logits then
        // move by at most the effect of one step on each input: bounded loosely here.
        try Self.compare(model, feeds: feeds, tolerance: [h: 0.02 * 1.0001, h2: 0.04 * 1.0001, logits: 0.15],
                         expectFused: ["QConv", "QMatMul"], expectGone: ["Conv", "Gemm", "Relu"])
    }

    /// Add, Mul (broadcast), Concat and GlobalAveragePool between DequantizeLinear and QuantizeLinear run on
    /// codes; Add/Mul/Concat repeat the unfused float operations exactly, the pool is within one step.
    @Test func elementwiseConcatAndPoolingStayOnCodes() throws {
        var generator = SeededGenerator(seed: 8)
        var b = Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.031, zeroPoint: 128)
        let (_, g) = b.quantizeDequantize("g", scale: 0.0042, zeroPoint: 0)
        let (_, r) = b.quantizeDequantize("r", scale: 0.027, zeroPoint: 140)
        let product = b.add("Mul", [x, g])
        let (_, p) = b.quantizeDequantize(product, scale: 0.009, zeroPoint: 128)
        let sum = b.add("Add", [p, r])
        let relu = b.add("Relu", [sum])
        let (_, s) = b.quantizeDequantize(relu, scale: 0.02, zeroPoint: 3)
        let joined = b.add("Concat", [s, x], attributes: ["axis": .int(1)])
        let (_, c) = b.quantizeDequantize(joined, scale: 0.05, zeroPoint: 100)
        let pooled = b.add("GlobalAveragePool", [c])
        let (_, m) = b.quantizeDequantize(pooled, scale: 0.01, zeroPoint: 90)
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil), ValueInfo(name: "g", dtype: .float32, shape: nil),
                                     ValueInfo(name: "r", dtype: .float32, shape: nil)], outputs: [s, c, m])
        let feeds = ["x": try Tensor(shape: [2, 3, 5, 4], scalars: Self.randomFloats(120, -4...4, &generator)),
                     "g": try Tensor(shape: [2, 3, 1, 1], scalars: Self.randomFloats(6, 0...1, &generator)),
                     "r": try Tensor(shape: [5, 4], scalars: Self.randomFloats(20, -3...3, &generator))]
        try Self.compare(model, feeds: feeds, tolerance: [s: 0, c: 0, m: 0.01 * 1.0001],
                         expectFused: ["QAdd", "QMul", "QConcat", "QGlobalAveragePool"],
                         expectGone: ["Add", "Mul", "Concat", "GlobalAveragePool", "Relu"])
    }

    /// Weight-only blocked int4 and per-channel int8 MatMuls: the weights are the reference
    /// DequantizeLinear's, so only the GEMM's summation order can separate fused from unfused.
    @Test func weightOnlyBlockedMatMulMatchesUnfused() throws {
        var generator = SeededGenerator(seed: 10)
        let (k, n, block) = (70, 9, 32)
        var b = Builder()
        let codes = try Tensor.packInt4((0..<(k * n)).map { _ in Int8.random(in: -8...7, using: &generator) }, signed: true, shape: [k, n])
        let blocks = (k + block - 1) / block
        let scale = b.constant(try Tensor(shape: [blocks, n], scalars: Self.randomFloats(blocks * n, 0.01...0.05, &generator)), "ws")
        let zero = b.constant(try Tensor.packInt4((0..<(blocks * n)).map { _ in Int8.random(in: -2...2, using: &generator) }, signed: true,
                                                  shape: [blocks, n]), "wz")
        let w = b.add("DequantizeLinear", [b.constant(codes, "w"), scale, zero], attributes: ["axis": .int(0), "block_size": .int(block)])
        let y = b.add("MatMul", ["x", w])
        let int8Codes = try Tensor(shape: [k, n], scalars: (0..<(k * n)).map { _ in Int8.random(in: -127...127, using: &generator) })
        let w8 = b.dequantizeWeights(int8Codes, scales: Self.randomFloats(n, 0.001...0.01, &generator), axis: 1)
        let y8 = b.add("MatMul", ["x", w8])
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)], outputs: [y, y8], opset: 21)
        let feeds = ["x": try Tensor(shape: [3, 5, k], scalars: Self.randomFloats(15 * k, -2...2, &generator))]
        try Self.compare(model, feeds: feeds, tolerance: [y: 1e-4, y8: 1e-4], expectFused: ["WeightOnlyMatMul"], expectGone: ["MatMul"])

        // Per-run dequantization (prepack = 0) gives the same values as packed weights.
        let fused = try IntegerFusion.apply(to: model, registry: .standard)
        let node = try #require(fused.graph.nodes.first { $0.opType == "WeightOnlyMatMul" })
        var lazy = node
        lazy.attributes["prepack"] = .int(0)
        let constants = Dictionary(uniqueKeysWithValues: fused.graph.initializers.map { ($0.key, $0.value) })
        let inputs = orderedInputs(node, constants: constants, feeds: feeds)
        let packed = try FusedWeightOnlyMatMulKernel(buildContext(node, constants: constants)).run(inputs, context: ExecutionContext(threadCount: 2))
        let perRun = try FusedWeightOnlyMatMulKernel(buildContext(lazy, constants: constants)).run(inputs, context: ExecutionContext(threadCount: 2))
        let worst = zip(packed[0].doubleValues, perRun[0].doubleValues).map { abs($0 - $1) }.max() ?? 1
        #expect(worst <= 1e-4)
    }

    /// The transformer projection as ONNX Runtime's QDQ quantizer writes it: the MatMul's codes go straight
    /// to a DequantizeLinear and a bias Add; the fused operator writes those floats itself.
    @Test func projectionThenDequantizeAndBiasAddBecomesOneOperator() throws {
        var generator = SeededGenerator(seed: 12)
        let (k, n) = (40, 24)
        var b = Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.02, zeroPoint: 125)
        let w = b.dequantizeWeights(try Tensor(shape: [k, n], scalars: (0..<(k * n)).map { _ in Int8.random(in: -127...127, using: &generator) }),
                                    scales: [0.003], axis: 1)
        let product = b.add("MatMul", [x, w])
        let (_, y) = b.quantizeDequantize(product, scale: 0.05, zeroPoint: 130)
        let bias = b.constant(try Tensor(shape: [n], scalars: Self.randomFloats(n, -1...1, &generator)), "bias")
        let shifted = b.add("Add", [bias, y])
        let probabilities = b.add("Softmax", [shifted])
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)], outputs: [probabilities])
        let feeds = ["x": try Tensor(shape: [2, 6, k], scalars: Self.randomFloats(12 * k, -2...2.5, &generator))]
        try Self.compare(model, feeds: feeds, tolerance: [probabilities: 0.05], expectFused: ["QMatMul"],
                         expectGone: ["MatMul", "Add", "DequantizeLinear", "Dequantize"])
        let fused = try IntegerFusion.apply(to: model, registry: .standard)
        #expect(fused.graph.nodes.first { $0.opType == "QMatMul" }?.attributes["dequantize_output"] == .int(1))
    }

    @Test func leavesPatternsWithRuntimeParametersAlone() throws {
        var b = Builder()
        let codes = b.constant(try Tensor(shape: [2, 2], scalars: [Int8(1), 2, 3, 4]), "w")
        let w = b.add("DequantizeLinear", [codes, "w_scale"])  // the scale is a graph input
        let (_, x) = b.quantizeDequantize("x", scale: 0.1, zeroPoint: 0)
        let y = b.add("MatMul", [x, w])
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(1), .value(2)]),
                                     ValueInfo(name: "w_scale", dtype: .float32, shape: [])], outputs: [y])
        let fused = try IntegerFusion.apply(to: model, registry: .standard)
        #expect(fused.graph.nodes.contains { $0.opType == "MatMul" })
        #expect(!fused.graph.nodes.contains { $0.opType == "QMatMul" })
    }
}
