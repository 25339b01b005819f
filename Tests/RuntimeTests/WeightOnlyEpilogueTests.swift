import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// `WeightOnlyMatMul` absorbs the bias Add and the activation after it (the transformer FFN's
/// `MatMul → Add → Gelu`), computing them in the SGEMM epilogue as the float MatMul's fusion does.
@Suite struct WeightOnlyEpilogueTests {
    enum Tail: CaseIterable { case exportedGelu, relu, clip, biasOnly }

    /// `y = tail(MatMul(x, DequantizeLinear(W int4, blocked along K)) + b)`.
    static func model(k: Int, n: Int, tail: Tail, _ generator: inout SeededGenerator) throws -> Model {
        let block = 16, blocks = (k + block - 1) / block
        var graph = Graph(nodes: [], inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)], outputs: [ValueInfo(name: "y")])
        graph.initializers["w"] = try Tensor.packInt4((0..<(k * n)).map { _ in Int8.random(in: -8...7, using: &generator) },
                                                      signed: true, shape: [k, n])
        graph.initializers["ws"] = try Tensor(shape: [blocks, n], scalars: (0..<(blocks * n)).map { _ in Float.random(in: 0.01...0.1, using: &generator) })
        graph.initializers["b"] = try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: -1...1, using: &generator) })
        var nodes = [
            Node(name: "dq", opType: "DequantizeLinear", inputs: ["w", "ws"], outputs: ["wf"],
                 attributes: ["axis": .int(0), "block_size": .int(block)]),
            Node(name: "mm", opType: "MatMul", inputs: ["x", "wf"], outputs: ["p"]),
            Node(name: "bias", opType: "Add", inputs: ["b", "p"], outputs: [tail == .biasOnly ? "y" : "pb"]),
        ]
        switch tail {
        case .exportedGelu:
            graph.initializers["root2"] = Tensor(scalar: Float(1.4142135))
            graph.initializers["one"] = Tensor(scalar: Float(1))
            graph.initializers["half"] = Tensor(scalar: Float(0.5))
            nodes += [Node(name: "div", opType: "Div", inputs: ["pb", "root2"], outputs: ["scaled"]),
                      Node(name: "erf", opType: "Erf", inputs: ["scaled"], outputs: ["e"]),
                      Node(name: "plus", opType: "Add", inputs: ["e", "one"], outputs: ["gate"]),
                      Node(name: "gated", opType: "Mul", inputs: ["pb", "gate"], outputs: ["g"]),
                      Node(name: "halve", opType: "Mul", inputs: ["g", "half"], outputs: ["y"])]
        case .relu:
            nodes.append(Node(name: "relu", opType: "Relu", inputs: ["pb"], outputs: ["y"]))
        case .clip:
            graph.initializers["low"] = Tensor(scalar: Float(-0.25))
            graph.initializers["high"] = Tensor(scalar: Float(0.5))
            nodes.append(Node(name: "clip", opType: "Clip", inputs: ["pb", "low", "high"], outputs: ["y"]))
        case .biasOnly:
            break
        }
        graph.nodes = nodes
        return Model(graph: graph, opsetImports: ["": 21])
    }

    @Test(arguments: Tail.allCases)
    func tailIsAbsorbedAndMatchesUnfused(tail: Tail) throws {
        var generator = SeededGenerator(seed: 11)
        let (k, n) = (40, 37)
        let model = try Self.model(k: k, n: n, tail: tail, &generator)
        let fused = try IntegerFusion.apply(to: model, registry: .standard)
        #expect(fused.graph.nodes.map(\.opType) == ["WeightOnlyMatMul"], "\(tail): \(fused.graph.nodes.map(\.opType))")
        let x = try Tensor(shape: [2, 6, k], scalars: (0..<(12 * k)).map { _ in Float.random(in: -2...2, using: &generator) })
        for threads in [1, 2] {
            let a = try Session(model: model, options: SessionOptions(threadCount: threads)).run(["x": x])["y"]!
            let b = try Session(model: model, options: SessionOptions(threadCount: threads, integerExecution: false)).run(["x": x])["y"]!
            #expect(a.shape == [2, 6, n] && b.shape == [2, 6, n])
            // Only the GEMM's summation order may differ; the epilogue rounds as the separate nodes do.
            #expect(TestSupport.maxAbsDifference(a.scalars(as: Float.self), b.scalars(as: Float.self)) <= 1e-5, "\(tail)")
        }
    }

    /// The output of the MatMul read twice: the Add stays outside and the MatMul is fused alone.
    @Test func sharedProductKeepsTheAdd() throws {
        var generator = SeededGenerator(seed: 12)
        var model = try Self.model(k: 16, n: 8, tail: .biasOnly, &generator)
        model.graph.outputs.append(ValueInfo(name: "p"))
        let types = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(types == ["WeightOnlyMatMul", "Add"])
    }

    @Test func activationAttributesRoundTrip() throws {
        for activation in [SGEMM.Activation.relu, .gelu, .hardSwish, .clip(low: -1, high: 2), .leakyRelu(alpha: 0.1),
                           .hardSigmoid(alpha: 0.2, beta: 0.5)] {
            var node = Node(opType: "WeightOnlyMatMul", inputs: [], outputs: ["y"])
            for (key, value) in WeightOnlyActivation.attributes(activation) { node.attributes[key] = value }
            #expect(try WeightOnlyActivation.read(buildContext(node, constants: [:])) == activation)
        }
        let bad = Node(opType: "WeightOnlyMatMul", inputs: [], outputs: ["y"],
                       attributes: ["activation": .text("Clip"), "activation_parameters": .floats([1])])
        #expect(throws: KernelError.self) { try WeightOnlyActivation.read(buildContext(bad, constants: [:])) }
    }
}
