import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// `AddLayerNormalization` (a residual Add and the LayerNormalization after it): equal to the two kernels
/// bit for bit, and the rewrite of a quantized graph's residual connection.
@Suite struct AddLayerNormTests {
    @Test(arguments: [([3, 7, 384], true), ([5, 37], false), ([2, 1], true)])
    func equalsAddThenLayerNormalization(_ shape: [Int], _ withBias: Bool) throws {
        var generator = SeededGenerator(seed: UInt64(shape.reduce(1, *)))
        let count = shape.reduce(1, *), width = shape.last!
        let a = try Tensor(shape: shape, scalars: IntegerFusionTests.randomFloats(count, -3...3, &generator))
        let b = try Tensor(shape: shape, scalars: IntegerFusionTests.randomFloats(count, -1...1, &generator).map { $0 + 100 })
        let scale = try Tensor(shape: [width], scalars: IntegerFusionTests.randomFloats(width, -2...2, &generator))
        let bias = withBias ? try Tensor(shape: [width], scalars: IntegerFusionTests.randomFloats(width, -1...1, &generator)) : nil
        let node = Node(opType: "AddLayerNormalization", domain: IntegerFusion.domain,
                        inputs: withBias ? ["a", "b", "s", "c"] : ["a", "b", "s"], outputs: ["y"],
                        attributes: ["epsilon": .float(1e-12)])
        let kernel = try FusedAddLayerNormKernel(buildContext(node, constants: [:]))
        let context = ExecutionContext(threadCount: 1)
        let sum = try BinaryArithmeticKernel<AddOperation>(opType: "Add").run([a, b], context: context)[0]
        let expected = try LayerNormalizationKernel(axis: -1, epsilon: 1e-12).run([sum, scale, bias], context: context)[0]
        for threads in [1, 3] {
            #expect(try kernel.run([a, b, scale, bias], context: ExecutionContext(threadCount: threads))[0] == expected)
        }
        // Broadcast operands run the two kernels.
        let row = try Tensor(shape: [width], scalars: IntegerFusionTests.randomFloats(width, -1...1, &generator))
        let broadcastSum = try BinaryArithmeticKernel<AddOperation>(opType: "Add").run([a, row], context: context)[0]
        #expect(try kernel.run([a, row, scale, bias], context: context)[0]
                == (try LayerNormalizationKernel(axis: -1, epsilon: 1e-12).run([broadcastSum, scale, bias], context: context)[0]))
    }

    @Test func residualConnectionInQuantizedGraphIsFused() throws {
        var b = IntegerFusionTests.Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.05, zeroPoint: 128)
        let residual = b.add("Add", [b.add("Relu", [x]), "skip"])
        let width = 6
        let gamma = b.constant(try Tensor(shape: [width], scalars: (0..<width).map { Float($0) * 0.3 + 0.5 }), "gamma")
        let beta = b.constant(try Tensor(shape: [width], scalars: (0..<width).map { Float($0) * -0.1 }), "beta")
        let normalized = b.add("LayerNormalization", [residual, gamma, beta], attributes: ["epsilon": .float(1e-5)])
        let model = b.model(inputs: [ValueInfo(name: "x"), ValueInfo(name: "skip")], outputs: [normalized])
        let types = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(types.contains("AddLayerNormalization") && !types.contains("LayerNormalization"), "\(types)")
        var generator = SeededGenerator(seed: 4)
        let feeds = ["x": try Tensor(shape: [3, width], scalars: IntegerFusionTests.randomFloats(3 * width, -2...2, &generator)),
                     "skip": try Tensor(shape: [3, width], scalars: IntegerFusionTests.randomFloats(3 * width, -2...2, &generator))]
        let fused = try Session(model: model).run(feeds)[normalized]
        let unfused = try Session(model: model, options: SessionOptions(integerExecution: false)).run(feeds)[normalized]
        #expect(fused == unfused)
    }
}
