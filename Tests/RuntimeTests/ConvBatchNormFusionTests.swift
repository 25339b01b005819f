import GraphIR
import Runtime
import Tensors
import Testing
import _TestSupport

/// Conv → BatchNormalization [→ activation] runs as one convolution with the normalisation folded into
/// its weights, within float32 rounding of the separate operators; observers still see the Conv's own output.
@Suite struct ConvBatchNormFusionTests {
    /// A Conv (with or without bias) → BatchNormalization → optional activation, all constants as initializers.
    static func model(weight: [Int], input: [Int], attributes: [String: Attribute], bias: Bool, activation: String?,
                      using generator: inout SeededGenerator) throws -> Model {
        let channels = weight[0]
        func floats(_ count: Int, _ range: ClosedRange<Float>) -> [Float] {
            (0..<count).map { _ in Float.random(in: range, using: &generator) }
        }
        var graph = Graph(nodes: [], inputs: [ValueInfo(name: "x", dtype: .float32, shape: input.map { .value($0) })],
                          outputs: [ValueInfo(name: "y")])
        graph.initializers["w"] = try Tensor(shape: weight, scalars: floats(weight.reduce(1, *), -0.5...0.5))
        if bias { graph.initializers["b"] = try Tensor(shape: [channels], scalars: floats(channels, -0.2...0.2)) }
        graph.initializers["scale"] = try Tensor(shape: [channels], scalars: floats(channels, 0.5...2))
        graph.initializers["offset"] = try Tensor(shape: [channels], scalars: floats(channels, -1...1))
        graph.initializers["mean"] = try Tensor(shape: [channels], scalars: floats(channels, -0.3...0.3))
        graph.initializers["variance"] = try Tensor(shape: [channels], scalars: floats(channels, 0.01...3))
        var conv = Node(name: "conv", opType: "Conv", inputs: ["x", "w"] + (bias ? ["b"] : []), outputs: ["c"])
        for (key, value) in attributes { conv.attributes[key] = value }
        graph.nodes.append(conv)
        graph.nodes.append(Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "scale", "offset", "mean", "variance"],
                                outputs: [activation == nil ? "y" : "n"], attributes: ["epsilon": .float(1e-3)]))
        if let activation { graph.nodes.append(Node(name: "act", opType: activation, inputs: ["n"], outputs: ["y"])) }
        return Model(graph: graph, opsetImports: ["": 17])
    }

    @Test(arguments: [0, 1, 2, 3])
    func foldedConvolutionMatchesSeparateOperators(variant: Int) throws {
        var generator = SeededGenerator(seed: UInt64(40 + variant))
        let shapes: [([Int], [Int], [String: Attribute])] = [
            ([8, 3, 3, 3], [1, 3, 17, 15], ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]),
            ([6, 1, 3, 3], [2, 6, 9, 20], ["pads": .ints([1, 1, 1, 1]), "group": .int(6)]),
            ([5, 7, 1, 1], [1, 7, 6, 6], [:]),
            ([4, 3, 5], [1, 3, 40], ["pads": .ints([2, 2])]),
        ]
        let (weight, input, attributes) = shapes[variant]
        let activation = ["HardSwish", nil, "Relu", nil][variant]
        let model = try Self.model(weight: weight, input: input, attributes: attributes, bias: variant % 2 == 0,
                                   activation: activation, using: &generator)
        let x = try Tensor(shape: input, scalars: (0..<input.reduce(1, *)).map { _ in Float.random(in: -2...2, using: &generator) })
        let session = try Session(model: model, options: SessionOptions(threadCount: 2))
        let profile = ExecutionProfile()
        let fused = try session.run(["x": x], profile: profile)["y"]!.floats
        let expectedType = (["Conv", "BatchNormalization"] + (activation.map { [$0] } ?? [])).joined(separator: "+")
        #expect(Set(profile.entries.map(\.opType)) == [expectedType])
        // Observing the Conv's output runs the original nodes, which also give the reference result.
        var seen: [String: Tensor] = [:]
        let separate = try session.run(["x": x], observer: ValueObserver(names: ["c"]) { name, value in seen[name] = value })["y"]!.floats
        #expect(seen["c"] != nil)
        #expect(fused.count == separate.count && !fused.isEmpty)
        let worst = zip(fused, separate).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst <= 1e-5, "folded and separate differ by \(worst)")
    }

    /// Statistics that are not constants (a graph input) leave the operators as they are.
    @Test func runtimeStatisticsAreNotFolded() throws {
        var generator = SeededGenerator(seed: 49)
        var model = try Self.model(weight: [4, 2, 1, 1], input: [1, 2, 3, 3], attributes: [:], bias: true, activation: nil,
                                   using: &generator)
        model.graph.initializers["mean"] = nil
        model.graph.inputs.append(ValueInfo(name: "mean", dtype: .float32, shape: [.value(4)]))
        let profile = ExecutionProfile()
        _ = try Session(model: model).run(["x": try Tensor(zeros: .float32, shape: [1, 2, 3, 3]),
                                           "mean": try Tensor(zeros: .float32, shape: [4])], profile: profile)
        #expect(Set(profile.entries.map(\.opType)) == ["Conv", "BatchNormalization"])
    }
}
