import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// The per-row (per-token) dynamic MatMul of `quantize --mode dynamic`, fused into `QuantizeRows` and
/// `RowScaledQMatMul`: the same float32 operations in the same order, so outputs equal the unfused graph
/// bit for bit.
@Suite struct RowQuantizedMatMulTests {
    /// One MatMul reading the shared row-quantized activation.
    struct Projection {
        var n: Int
        var weightType: DType
        var perChannel: Bool
        var weightZeroPoint: Int32 = 0
        var bias: Bool
        var rowScaleFirst = false
        /// Followed by the exported Gelu pattern `Mul(Mul(y, Add(Erf(Div(y, √2)), 1)), 0.5)`.
        var gelu = false
    }

    /// The graph the dynamic quantizer writes for `x · W_p [+ b_p]` for every projection `p`, all reading
    /// one row quantization of `x` (as Q, K and V do).
    static func model(k: Int, projections: [Projection], opset: Int, axes: [Int] = [-1], keepDims: Int = 1,
                      unitScale: Float = 1, guardValue: Float? = 1e-30,
                      _ generator: inout SeededGenerator) throws -> (Model, outputs: [String]) {
        var nodes: [Node] = []
        var initializers: [String: Tensor] = [:]
        func node(_ opType: String, _ inputs: [String], _ output: String, _ attributes: [String: Attribute] = [:]) {
            var made = Node(name: output + "_node", opType: opType, inputs: inputs, outputs: [output])
            for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { made.attributes[key] = value }
            nodes.append(made)
        }
        node("Abs", ["x"], "magnitude")
        if opset >= 18 {
            initializers["axes"] = try Tensor(shape: [axes.count], scalars: axes.map(Int64.init))
            node("ReduceMax", ["magnitude", "axes"], "row_max", ["keepdims": .int(keepDims)])
        } else {
            node("ReduceMax", ["magnitude"], "row_max", ["axes": .ints(axes), "keepdims": .int(keepDims)])
        }
        var maximum = "row_max"
        if let guardValue {
            initializers["epsilon"] = Tensor(scalar: guardValue)
            node("Max", ["row_max", "epsilon"], "guarded")
            maximum = "guarded"
        }
        initializers["int8_max"] = Tensor(scalar: Float(127))
        node("Div", [maximum, "int8_max"], "row_scale")
        node("Div", ["x", "row_scale"], "normalized")
        initializers["unit"] = Tensor(scalar: unitScale)
        initializers["zero"] = Tensor(scalar: Int8(0))
        node("QuantizeLinear", ["normalized", "unit", "zero"], "codes")
        var outputs: [String] = []
        for (p, projection) in projections.enumerated() {
            let n = projection.n
            let count = k * n
            initializers["w\(p)"] = projection.weightType == .int8
                ? try Tensor(shape: [k, n], scalars: (0..<count).map { _ in Int8.random(in: -127...127, using: &generator) })
                : try Tensor(shape: [k, n], scalars: (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let scales = projection.perChannel ? n : 1
            initializers["ws\(p)"] = try Tensor(shape: projection.perChannel ? [n] : [],
                                                scalars: (0..<scales).map { _ in Float.random(in: 0.0005...0.02, using: &generator) })
            initializers["wz\(p)"] = projection.weightType == .int8
                ? try Tensor(shape: projection.perChannel ? [n] : [],
                             scalars: [Int8](repeating: Int8(projection.weightZeroPoint), count: scales))
                : try Tensor(shape: projection.perChannel ? [n] : [],
                             scalars: [UInt8](repeating: UInt8(projection.weightZeroPoint), count: scales))
            node("MatMulInteger", ["codes", "w\(p)", "", "wz\(p)"], "acc\(p)")
            node("Cast", ["acc\(p)"], "widened\(p)", ["to": .int(1)])
            let (first, second) = projection.rowScaleFirst ? ("row_scale", "ws\(p)") : ("ws\(p)", "row_scale")
            node("Mul", ["widened\(p)", first], "scaled\(p)")
            let result = projection.gelu ? "pre\(p)" : "y\(p)"
            // The second Mul with its operands swapped: commutative, still the same pattern.
            node("Mul", [second, "scaled\(p)"], projection.bias ? "unbiased\(p)" : result)
            if projection.bias {
                initializers["b\(p)"] = try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: -1...1, using: &generator) })
                node("Add", ["b\(p)", "unbiased\(p)"], result)
            }
            if projection.gelu {
                initializers["root2"] = Tensor(scalar: Float(1.4142135))
                initializers["one"] = Tensor(scalar: Float(1))
                initializers["half"] = Tensor(scalar: Float(0.5))
                node("Div", [result, "root2"], "scaled_gelu\(p)")
                node("Erf", ["scaled_gelu\(p)"], "erf\(p)")
                node("Add", ["erf\(p)", "one"], "gate\(p)")
                node("Mul", [result, "gate\(p)"], "gated\(p)")
                node("Mul", ["gated\(p)", "half"], "y\(p)")
            }
            outputs.append("y\(p)")
        }
        var graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)],
                          outputs: outputs.map { ValueInfo(name: $0) })
        for (name, tensor) in initializers { graph.initializers[name] = tensor }
        return (Model(graph: graph, opsetImports: ["": opset]), outputs)
    }

    /// Activations `[2, rows / 2, k]` with an all-zero row, a row of tiny values and one of large values.
    static func activations(rows: Int, k: Int, _ generator: inout SeededGenerator) throws -> Tensor {
        var values = (0..<(rows * k)).map { _ in Float.random(in: -3...3, using: &generator) }
        for c in 0..<k {
            values[k + c] = 0
            values[2 * k + c] *= 1e-20
            values[3 * k + c] *= 1e6
        }
        values[4 * k] = 0.5 * 2 / 127 * 63  // lands near a rounding tie after scaling
        return try Tensor(shape: [2, rows / 2, k], scalars: values)
    }

    static func bits(_ tensor: Tensor) -> [UInt32] { tensor.scalars(as: Float.self).map(\.bitPattern) }

    @Test(arguments: [17, 18])
    func fusedEqualsUnfusedBitForBit(opset: Int) throws {
        var generator = SeededGenerator(seed: UInt64(opset))
        let k = 37
        let projections = [
            Projection(n: 70, weightType: .int8, perChannel: true, bias: true, gelu: true),
            Projection(n: 19, weightType: .int8, perChannel: false, bias: false, rowScaleFirst: true),
            Projection(n: 130, weightType: .uint8, perChannel: true, weightZeroPoint: 131, bias: true),
            Projection(n: 8, weightType: .int8, perChannel: true, weightZeroPoint: -3, bias: false),
        ]
        let (model, outputs) = try Self.model(k: k, projections: projections, opset: opset, &generator)
        let fusedTypes = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(fusedTypes.filter { $0 == "QuantizeRows" }.count == 1)
        #expect(fusedTypes.filter { $0 == "RowScaledQMatMul" }.count == projections.count)
        for gone in ["Abs", "ReduceMax", "Max", "Div", "QuantizeLinear", "MatMulInteger", "Cast", "Mul", "Add", "Erf"] {
            #expect(!fusedTypes.contains(gone), "\(gone) left in \(fusedTypes)")
        }
        let feeds = ["x": try Self.activations(rows: 74, k: k, &generator)]
        for threads in [1, 2] {
            let fused = try Session(model: model, options: SessionOptions(threadCount: threads)).run(feeds)
            let unfused = try Session(model: model, options: SessionOptions(threadCount: threads, integerExecution: false)).run(feeds)
            for name in outputs {
                #expect(fused[name]!.shape == unfused[name]!.shape)
                #expect(Self.bits(fused[name]!) == Self.bits(unfused[name]!), "\(name), \(threads) threads")
                #expect(!fused[name]!.scalars(as: Float.self).contains { $0.isNaN })
            }
        }
    }

    /// Without the Max guard, and with codes read by an unfused node as well.
    @Test func unguardedScaleAndCodesReadElsewhere() throws {
        var generator = SeededGenerator(seed: 3)
        var (model, outputs) = try Self.model(k: 16, projections: [Projection(n: 16, weightType: .int8, perChannel: true, bias: false)],
                                              opset: 17, guardValue: nil, &generator)
        model.graph.nodes.append(Node(name: "widen", opType: "Cast", inputs: ["codes"], outputs: ["codes_float"],
                                      attributes: ["to": .int(1)]))
        model.graph.outputs.append(ValueInfo(name: "codes_float"))
        outputs.append("codes_float")
        let types = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(types.contains("QuantizeRows") && types.contains("RowScaledQMatMul"))
        var values = (0..<(3 * 16)).map { _ in Float.random(in: -1...1, using: &generator) }
        for c in 0..<16 { values[16 + c] = 0 }  // an all-zero row: 0 / 0 without a guard, NaN in both graphs
        let feeds = ["x": try Tensor(shape: [3, 16], scalars: values)]
        let fused = try Session(model: model).run(feeds)
        let unfused = try Session(model: model, options: SessionOptions(integerExecution: false)).run(feeds)
        for name in outputs { #expect(Self.bits(fused[name]!) == Self.bits(unfused[name]!), "\(name)") }
    }

    /// Patterns whose operations differ from the fused kernels' are left as they are.
    @Test func leavesOtherReductionsAlone() throws {
        var generator = SeededGenerator(seed: 4)
        let projection = [Projection(n: 8, weightType: .int8, perChannel: true, bias: false)]
        for (axes, keepDims, unit, guardValue) in [([0], 1, Float(1), Float(1e-30)), ([-1], 0, 1, 1e-30), ([-1], 1, 0.5, 1e-30),
                                                   ([-1], 1, 1, 0)] {
            let (model, _) = try Self.model(k: 8, projections: projection, opset: 18, axes: axes, keepDims: keepDims,
                                            unitScale: unit, guardValue: guardValue, &generator)
            let types = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
            #expect(!types.contains("QuantizeRows"), "axes \(axes) keepdims \(keepDims) unit \(unit) guard \(guardValue)")
            #expect(types.contains("MatMulInteger"))
        }
    }

    /// Scales and codes computed with numpy: `s = max(max|x|, 1e-30) / 127`, `q = clip(rint(x / s), −128, 127)`.
    @Test func quantizeRowsMatchesNumpy() throws {
        let x = try Tensor(shape: [3, 4], scalars: [1, -2, 0.5, 0.3, 0, 0, 0, 0, 3e-3, -1e-3, 2.5, -7] as [Float])
        let node = Node(opType: "QuantizeRows", domain: IntegerFusion.domain, inputs: ["x", "zero"], outputs: ["q", "s"],
                        attributes: ["epsilon": .float(1e-30), "divisor": .float(127)])
        let kernel = try FusedQuantizeRowsKernel(buildContext(node, constants: ["zero": Tensor(scalar: Int8(0))]))
        let expectedScales: [Float] = [0x1.020408p-6, 0x1.4712e6p-107, 0x1.c3870ep-5]
        for level in SGEMM.Level.available {
            let outputs = try kernel.run([x, nil], context: ExecutionContext(threadCount: 1), level: level)
            #expect(outputs[0].scalars(as: Int8.self) == [64, -127, 32, 19, 0, 0, 0, 0, 0, 0, 45, -127], "\(level)")
            #expect(outputs[1].shape == [3, 1])
            #expect(outputs[1].scalars(as: Float.self) == expectedScales, "\(level)")
        }
    }

    /// Every vector level against the element-by-element twin, with NaN, infinities and ragged rows.
    @Test(arguments: [DType.int8, .uint8])
    func quantizeRowsLevelsEqualReference(codeType: DType) throws {
        var generator = SeededGenerator(seed: 8)
        let zero: Tensor = codeType == .int8 ? Tensor(scalar: Int8(-3)) : Tensor(scalar: UInt8(128))
        let node = Node(opType: "QuantizeRows", domain: IntegerFusion.domain, inputs: ["x", "zero"], outputs: ["q", "s"],
                        attributes: ["epsilon": .float(1e-6), "divisor": .float(100)])
        let kernel = try FusedQuantizeRowsKernel(buildContext(node, constants: ["zero": zero]))
        for k in [1, 7, 8, 15, 16, 17, 33, 100] {
            let rows = 6
            var values = (0..<(rows * k)).map { _ in Float.random(in: -5...5, using: &generator) }
            values[0] = .nan
            values[k] = .infinity
            if k > 1 { values[2 * k + 1] = -.infinity }
            for c in 0..<k { values[3 * k + c] = 0 }
            values[5 * k] = -0.0
            let x = try Tensor(shape: [rows, k], scalars: values)
            let reference = try kernel.runReference(x)
            for level in SGEMM.Level.available {
                for threads in [1, 2] {
                    let outputs = try kernel.run([x, nil], context: ExecutionContext(threadCount: threads), level: level)
                    let codes = codeType == .int8 ? outputs[0].scalars(as: Int8.self).map(Int32.init)
                                                  : outputs[0].scalars(as: UInt8.self).map(Int32.init)
                    #expect(codes == reference.codes, "k \(k) \(level)")
                    #expect(outputs[1].scalars(as: Float.self).map(\.bitPattern) == reference.scales.map(\.bitPattern),
                            "k \(k) \(level)")
                }
            }
        }
    }

    /// The tiled int8 GEMM at every level against the twin, at shapes crossing the 64 × 64 tiles.
    @Test func rowScaledMatMulLevelsEqualReference() throws {
        var generator = SeededGenerator(seed: 9)
        for (m, k, n, weightType, zeroPoint, rowFirst) in [(1, 5, 3, DType.int8, Int32(0), false), (65, 120, 130, .uint8, 131, true),
                                                          (130, 9, 64, .int8, -2, false), (7, 300, 17, .uint8, 0, false)] {
            let w = try FusedTestData.codes(weightType, shape: [k, n], using: &generator)
            let constants: [String: Tensor] = [
                "w": w,
                "ws": try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: 0.001...0.1, using: &generator) }),
                "wz": weightType == .int8 ? try Tensor(shape: [n], scalars: [Int8](repeating: Int8(zeroPoint), count: n))
                                          : try Tensor(shape: [n], scalars: [UInt8](repeating: UInt8(zeroPoint), count: n)),
                "b": try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: -1...1, using: &generator) }),
            ]
            var node = Node(opType: "RowScaledQMatMul", domain: IntegerFusion.domain,
                            inputs: ["q", "s", "w", "ws", "wz", "b"], outputs: ["y"])
            if rowFirst { node.attributes["row_scale_first"] = .int(1) }
            if m == 65 { node.attributes["activation"] = .text("Gelu") }
            let kernel = try FusedRowScaledQMatMulKernel(buildContext(node, constants: constants))
            let q = try FusedTestData.codes(.int8, shape: [m, k], using: &generator)
            let s = try Tensor(shape: [m, 1], scalars: (0..<m).map { _ in Float.random(in: 0.001...0.05, using: &generator) })
            let inputs: [Tensor?] = [q, s, w, constants["ws"], constants["wz"], constants["b"]]
            let reference = try kernel.runReference(inputs)[0]
            for level in Int8GEMMLevel.allCases where level.isAvailable {
                for threads in [1, 2] {
                    let y = try kernel.run(inputs, context: ExecutionContext(threadCount: threads), level: level)[0]
                    #expect(y.shape == [m, n])
                    #expect(Self.bits(y) == Self.bits(reference), "\(m)x\(k)x\(n) \(level) \(threads) threads")
                }
            }
        }
    }

    @Test func rowScaleCountMismatchIsAnError() throws {
        let constants: [String: Tensor] = ["w": try Tensor(shape: [4, 2], scalars: [Int8](repeating: 1, count: 8)),
                                           "ws": Tensor(scalar: Float(0.5))]
        let node = Node(opType: "RowScaledQMatMul", domain: IntegerFusion.domain, inputs: ["q", "s", "w", "ws"], outputs: ["y"])
        let kernel = try FusedRowScaledQMatMulKernel(buildContext(node, constants: constants))
        let q = try Tensor(shape: [3, 4], scalars: [Int8](repeating: 2, count: 12))
        #expect(throws: KernelError.self) {
            try kernel.run([q, try Tensor(shape: [2, 1], scalars: [1, 1] as [Float]), nil, nil], context: ExecutionContext(threadCount: 1))
        }
    }
}
