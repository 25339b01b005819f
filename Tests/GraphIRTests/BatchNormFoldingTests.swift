import GraphIR
import OrderedCollections
import Tensors
import Testing

@Suite struct BatchNormFoldingTests {
    // Conv W [2, 1, 1, 2] and B, then BN(γ, β, mean, var, ε = 0.01).
    static let weight: [Float] = [1, -2, 0.25, 4]
    static let bias: [Float] = [0.5, -1]
    static let gamma: [Float] = [2, 0.5], beta: [Float] = [0.1, 0.2]
    static let mean: [Float] = [1, -2], variance: [Float] = [3, 0.25]

    func convBatchNormGraph(convOpType: String = "Conv", withBias: Bool = true) -> Graph {
        var initializers: OrderedDictionary<String, Tensor> = [
            "W": floats([2, 1, 1, 2], Self.weight),
            "gamma": floats([2], Self.gamma), "beta": floats([2], Self.beta),
            "mean": floats([2], Self.mean), "var": floats([2], Self.variance),
        ]
        if withBias { initializers["B"] = floats([2], Self.bias) }
        return Graph(
            nodes: [
                Node(name: "conv", opType: convOpType, inputs: withBias ? ["x", "W", "B"] : ["x", "W"], outputs: ["c"]),
                Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "gamma", "beta", "mean", "var"],
                     outputs: ["y"], attributes: ["epsilon": .float(0.01)]),
            ],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [1, 1, 2, 3])],
            outputs: [ValueInfo(name: "y")],
            initializers: initializers)
    }

    /// Direct 2-D convolution (stride 1, no padding) of x [C, H, W] with w [M, C, kh, kw], in Double.
    func convolve(_ x: [Double], channels: Int, height: Int, width: Int,
                  _ w: [Double], outputs: Int, kh: Int, kw: Int, bias: [Double]) -> [Double] {
        let oh = height - kh + 1, ow = width - kw + 1
        var result: [Double] = []
        for m in 0..<outputs {
            for i in 0..<oh {
                for j in 0..<ow {
                    var sum = bias[m]
                    for c in 0..<channels {
                        for u in 0..<kh {
                            for v in 0..<kw {
                                sum += x[(c * height + i + u) * width + j + v] * w[((m * channels + c) * kh + u) * kw + v]
                            }
                        }
                    }
                    result.append(sum)
                }
            }
        }
        return result
    }

    @Test func foldedWeightsMatchNumpy() throws {
        var graph = convBatchNormGraph()
        #expect(try BatchNormFolding().run(on: &graph))
        #expect(graph.nodes.count == 1)
        let conv = graph.nodes[0]
        #expect(conv.outputs == ["y"])
        // numpy: s = γ/√(var+ε) in float64, W' = W·s, B' = (B − mean)·s + β, rounded to float32.
        #expect(graph.initializers[conv.inputs[1]]?.scalars(as: Float.self)
                == [1.1527808904647827, -2.3055617809295654, 0.24514517188072205, 3.9223227500915527])
        #expect(graph.initializers[conv.inputs[2]]?.scalars(as: Float.self) == [-0.47639042139053345, 1.180580735206604])
        // The old parameters are gone; nothing else read them.
        #expect(Set(graph.initializers.keys) == Set(conv.inputs.dropFirst()))
    }

    @Test func foldedConvComputesConvThenBatchNorm() throws {
        var graph = convBatchNormGraph()
        _ = try BatchNormFolding().run(on: &graph)
        let conv = graph.nodes[0]
        let x: [Double] = [0.5, -1, 2, 3, 0.25, -4]
        let reference = convolve(x, channels: 1, height: 2, width: 3, Self.weight.map(Double.init), outputs: 2,
                                 kh: 1, kw: 2, bias: Self.bias.map(Double.init))
        let expected = reference.enumerated().map { index, value -> Double in
            let m = index / 4
            let normalized = (value - Double(Self.mean[m])) / (Double(Self.variance[m]) + Double(Float(0.01))).squareRoot()
            return normalized * Double(Self.gamma[m]) + Double(Self.beta[m])
        }
        let foldedWeight = graph.initializers[conv.inputs[1]]!.scalars(as: Float.self).map(Double.init)
        let foldedBias = graph.initializers[conv.inputs[2]]!.scalars(as: Float.self).map(Double.init)
        let folded = convolve(x, channels: 1, height: 2, width: 3, foldedWeight, outputs: 2, kh: 1, kw: 2, bias: foldedBias)
        for (a, b) in zip(folded, expected) { #expect(abs(a - b) < 1e-5) }
    }

    @Test func convWithoutBiasGetsOne() throws {
        var graph = convBatchNormGraph(withBias: false)
        #expect(try BatchNormFolding().run(on: &graph))
        let conv = graph.nodes[0]
        #expect(conv.inputs.count == 3)
        // B' = −mean·s + β with s = γ/√(var+ε): numpy gives these float32 values.
        let s0 = 2.0 / (3.0 + Double(Float(0.01))).squareRoot(), s1 = 0.5 / (0.25 + Double(Float(0.01))).squareRoot()
        let expected = [Float(-1.0 * s0 + Double(Float(0.1))), Float(2.0 * s1 + Double(Float(0.2)))]
        #expect(graph.initializers[conv.inputs[2]]?.scalars(as: Float.self) == expected)
    }

    @Test func convTransposeScalesPerOutputChannelAcrossGroups() throws {
        // W [C_in = 4, M/group = 1, 1, 1] with group 2: input channels 0,1 feed output 0, channels 2,3 output 1.
        var graph = Graph(
            nodes: [
                Node(name: "deconv", opType: "ConvTranspose", inputs: ["x", "W"], outputs: ["c"], attributes: ["group": .int(2)]),
                Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "gamma", "beta", "mean", "var"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")],
            initializers: [
                "W": floats([4, 1, 1, 1], [1, 2, 3, 4]), "gamma": floats([2], [1.5, -1]), "beta": floats([2], [0, 1]),
                "mean": floats([2], [0.5, 0]), "var": floats([2], [1, 4]),
            ])
        #expect(try BatchNormFolding().run(on: &graph))
        let conv = graph.nodes[0]
        // numpy (ε = 1e-5), checked against onnxruntime running both graphs.
        #expect(graph.initializers[conv.inputs[1]]?.scalars(as: Float.self)
                == [1.4999924898147583, 2.9999849796295166, -1.4999980926513672, -1.9999974966049194])
        #expect(graph.initializers[conv.inputs[2]]?.scalars(as: Float.self) == [-0.7499962449073792, 1.0])
    }

    @Test func skipsWhenTheConvOutputHasAnotherReaderOrParametersAreNotConstant() throws {
        var shared = convBatchNormGraph()
        shared.nodes.append(Node(opType: "Relu", inputs: ["c"], outputs: ["z"]))
        shared.outputs.append(ValueInfo(name: "z"))
        #expect(try BatchNormFolding().run(on: &shared) == false)

        var dynamic = convBatchNormGraph()
        dynamic.initializers.removeValue(forKey: "mean")
        dynamic.inputs.append(ValueInfo(name: "mean"))
        #expect(try BatchNormFolding().run(on: &dynamic) == false)

        var training = convBatchNormGraph()
        training.nodes[1].attributes["training_mode"] = .int(1)
        #expect(try BatchNormFolding().run(on: &training) == false)

        var sharedWeight = convBatchNormGraph()
        sharedWeight.nodes.append(Node(opType: "Conv", inputs: ["x", "W"], outputs: ["z"]))
        sharedWeight.outputs.append(ValueInfo(name: "z"))
        #expect(try BatchNormFolding().run(on: &sharedWeight))
        #expect(sharedWeight.initializers["W"] == floats([2, 1, 1, 2], Self.weight))  // still used by the other conv
        #expect(sharedWeight.nodes[0].inputs[1] == "W_bn_folded")
    }
}
