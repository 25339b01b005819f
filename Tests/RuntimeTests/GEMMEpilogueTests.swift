import Foundation
import GraphIR
@testable import Runtime
import Tensors
import Testing

/// GEMM epilogues (bias and activation applied while results are in cache): the C epilogue against the
/// Swift activation functions it replaces, and fused Conv/Gemm/MatMul groups against the original nodes.
@Suite struct GEMMEpilogueTests {
    static let activations: [SGEMM.Activation] = [
        .relu, .clip(low: -0.5, high: 0.75), .leakyRelu(alpha: 0.1), .hardSigmoid(alpha: 0.3, beta: 0.4), .hardSwish,
        .gelu,
    ]

    /// The reference twin: each operation rounded on its own, through the activation kernels' functions.
    static func reference(_ x: Float, _ activation: SGEMM.Activation) -> Float {
        switch activation {
        case .relu: return ReluFunction().apply(x)
        case .clip(let low, let high): return ClipMapping(low: low, high: high).apply(x)
        case .leakyRelu(let alpha): return LeakyReluFunction(alpha: alpha).apply(x)
        case .hardSigmoid(let alpha, let beta): return HardSigmoidFunction(alpha: alpha, beta: beta).apply(x)
        case .hardSwish: return HardSwishFunction().apply(x)
        case .gelu: return GeluFunction().apply(x)
        }
    }

    @Test(arguments: SGEMM.Level.available)
    func epilogueMatchesTheSeparateOperators(level: SGEMM.Level) {
        let rows = 3, columns = 37, ldc = 40
        let c = (0..<(rows * ldc)).map { Float(4 * sin(Double($0) * 1.7)) }
        let rowBias: [Float] = [0.25, -1, 0.5]
        let columnBias = (0..<columns).map { Float(cos(Double($0))) }
        for activation in Self.activations {
            for (useRows, useColumns) in [(false, false), (true, false), (false, true), (true, true)] {
                var out = c
                rowBias.withUnsafeBufferPointer { rb in
                    columnBias.withUnsafeBufferPointer { cb in
                        let epilogue = SGEMM.Epilogue(rowBias: useRows ? rb.baseAddress : nil,
                                                      columnBias: useColumns ? cb.baseAddress : nil, activation: activation)
                        out.withUnsafeMutableBufferPointer {
                            epilogue.apply(to: $0.baseAddress!, rows: rows, columns: columns, ldc: ldc, level: level)
                        }
                    }
                }
                for i in 0..<rows {
                    for j in 0..<ldc {
                        var x = c[i * ldc + j]
                        guard j < columns else {
                            #expect(out[i * ldc + j] == x, "padding column \(j) untouched")
                            continue
                        }
                        if useRows { x = x + rowBias[i] }
                        if useColumns { x = x + columnBias[j] }
                        let expected = Self.reference(x, activation)
                        let got = out[i * ldc + j]
                        if activation == .gelu {
                            #expect(abs(got - expected) <= 1.5e-7 * abs(x) + 2 * expected.ulp, "\(activation) \(x)")
                        } else {
                            #expect(got.bitPattern == expected.bitPattern, "\(activation) at \(level): \(got) vs \(expected)")
                        }
                    }
                }
            }
        }
    }

    // MARK: - Fused groups

    static func scalarNode(_ name: String, _ value: Float) -> Node {
        Node(opType: "Constant", inputs: [], outputs: [name], attributes: ["value": .tensor(Tensor(scalar: value))])
    }

    /// Runs `model` on `x` twice: plain (fused), and with an observer on `hidden` (the original nodes).
    static func fusedAndOriginal(_ model: Model, x: Tensor, hidden: String, threads: Int = 1)
        throws -> (fused: Tensor, original: Tensor, fusedOps: Set<String>) {
        let session = try Session(model: model, options: SessionOptions(threadCount: threads))
        let profile = ExecutionProfile()
        let fused = try #require(try session.run(["x": x], profile: profile)["y"])
        let observer = ValueObserver(names: [hidden]) { _, _ in }
        let original = try #require(try session.run(["x": x], observer: observer)["y"])
        return (fused, original, Set(profile.entries.map(\.opType)))
    }

    static func image(_ shape: [Int]) throws -> Tensor {
        let count = shape.reduce(1, *)
        return try Tensor(shape: shape, scalars: (0..<count).map { Float(2 * sin(Double($0) * 0.37)) })
    }

    /// Conv (1×1, 3×3 with im2col, depthwise) followed by an activation node.
    @Test(arguments: ["Relu", "HardSwish", "Clip", "HardSigmoid", "LeakyRelu"])
    func convWithActivationRunsAsOneKernel(activation: String) throws {
        for (group, kernel, channels) in [(1, 1, 8), (1, 3, 8), (8, 3, 8), (8, 5, 8)] {
            let w = try Self.image([channels, channels / group, kernel, kernel])
            let b = try Self.image([channels])
            var nodes = [Self.scalarNode("low", 0), Self.scalarNode("high", 1.5)]
            nodes.append(Node(opType: "Conv", inputs: ["x", "w", "b"], outputs: ["conv"],
                              attributes: ["group": .int(group), "pads": .ints(Array(repeating: kernel / 2, count: 4)),
                                           "strides": .ints(kernel == 5 ? [2, 2] : [1, 1])]))
            nodes.append(Node(opType: activation, inputs: activation == "Clip" ? ["conv", "low", "high"] : ["conv"],
                              outputs: ["y"]))
            let graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)],
                              outputs: [ValueInfo(name: "y")], initializers: ["w": w, "b": b])
            var byThreads: [Tensor] = []
            for threads in [1, 2] {
                let result = try Self.fusedAndOriginal(Model(graph: graph), x: try Self.image([1, channels, 9, 11]),
                                                       hidden: "conv", threads: threads)
                #expect(result.fusedOps == ["Conv+\(activation)"], "ran \(result.fusedOps)")
                #expect(result.fused.shape == result.original.shape)
                // K ≤ 256 here, so the bias is added to the finished product in both: equal bit for bit.
                #expect(result.fused == result.original, "group \(group) kernel \(kernel) \(activation)")
                byThreads.append(result.fused)
            }
            #expect(byThreads[0] == byThreads[1], "results do not depend on the thread count")
        }
    }

    /// MatMul → Add(bias) → the exported Gelu pattern, as BERT's feed-forward layer, and MatMul → Add → Relu.
    @Test func matMulBiasAndActivationRunAsOneKernel() throws {
        let (k, n) = (24, 40)
        let w = try Self.image([k, n])
        let bias = try Self.image([n])
        for gelu in [true, false] {
            var nodes = [Self.scalarNode("root2", 1.4142135), Self.scalarNode("one", 1), Self.scalarNode("half", 0.5)]
            nodes.append(Node(opType: "MatMul", inputs: ["x", "w"], outputs: ["product"]))
            nodes.append(Node(opType: "Add", inputs: ["bias", "product"], outputs: ["h"]))
            if gelu {
                nodes.append(Node(opType: "Div", inputs: ["h", "root2"], outputs: ["scaled"]))
                nodes.append(Node(opType: "Erf", inputs: ["scaled"], outputs: ["e"]))
                nodes.append(Node(opType: "Add", inputs: ["e", "one"], outputs: ["gate"]))
                nodes.append(Node(opType: "Mul", inputs: ["h", "gate"], outputs: ["hg"]))
                nodes.append(Node(opType: "Mul", inputs: ["hg", "half"], outputs: ["y"]))
            } else {
                nodes.append(Node(opType: "Relu", inputs: ["h"], outputs: ["y"]))
            }
            let graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)],
                              outputs: [ValueInfo(name: "y")], initializers: ["w": w, "bias": bias])
            var byThreads: [Tensor] = []
            for threads in [1, 2] {
                let result = try Self.fusedAndOriginal(Model(graph: graph), x: try Self.image([2, 64, k]),
                                                       hidden: "h", threads: threads)
                byThreads.append(result.fused)
                #expect(result.fusedOps == [gelu ? "MatMul+Add+Gelu" : "MatMul+Add+Relu"], "ran \(result.fusedOps)")
                let (fused, original) = (result.fused.floats, result.original.floats)
                #expect(result.fused.shape == [2, 64, n])
                for (a, b) in zip(fused, original) {
                    // Relu: bit for bit. Gelu: the fused and unfused Gelu kernels are the same function.
                    #expect(a == b || abs(a - b) <= 2e-7 * max(1, abs(b)), "\(a) vs \(b)")
                }
            }
            #expect(byThreads[0] == byThreads[1], "results do not depend on the thread count")
        }
    }

    /// A hand-computed case: 1×1 Conv of two channels with bias, then Relu.
    @Test func pointwiseConvWithReluByHand() throws {
        let w = try Tensor(shape: [2, 2, 1, 1], scalars: [Float(1), -1, 2, 0.5])
        let b = try Tensor(shape: [2], scalars: [Float(0.5), -4])
        let graph = Graph(
            nodes: [Node(opType: "Conv", inputs: ["x", "w", "b"], outputs: ["conv"]),
                    Node(opType: "Relu", inputs: ["conv"], outputs: ["y"])],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)], outputs: [ValueInfo(name: "y")],
            initializers: ["w": w, "b": b])
        // Channel 0: x0 − x1 + 0.5; channel 1: 2 x0 + 0.5 x1 − 4; then max(0, ·).
        let x = try Tensor(shape: [1, 2, 1, 3], scalars: [Float(1), 2, 3, 4, 1, -2])
        let result = try Self.fusedAndOriginal(Model(graph: graph), x: x, hidden: "conv")
        #expect(result.fused.floats == [0, 1.5, 5.5, 0, 0.5, 1])
        #expect(result.fusedOps == ["Conv+Relu"])
    }

    /// Other dtypes decline the fused kernel; the original nodes run instead.
    @Test func float64ConvFallsBackToTheOriginalNodes() throws {
        let w = try Tensor(shape: [1, 1, 1, 1], scalars: [Double(2)])
        let graph = Graph(
            nodes: [Node(opType: "Conv", inputs: ["x", "w"], outputs: ["conv"]),
                    Node(opType: "Relu", inputs: ["conv"], outputs: ["y"])],
            inputs: [ValueInfo(name: "x", dtype: .float64, shape: nil)], outputs: [ValueInfo(name: "y")],
            initializers: ["w": w])
        let session = try Session(model: Model(graph: graph))
        let x = try Tensor(shape: [1, 1, 1, 3], scalars: [Double(-1), 0.5, 2])
        #expect(try session.run(["x": x])["y"]?.scalars(as: Double.self) == [0, 1, 4])
    }
}
