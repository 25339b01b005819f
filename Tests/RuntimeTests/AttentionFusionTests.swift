import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// `Attention` (BERT's attention core): the kernel against the operators it replaces run one by one, at
/// every softmax level and awkward shapes, and the rewrite of an exported attention block.
@Suite struct AttentionFusionTests {
    static func random(_ shape: [Int], _ generator: inout SeededGenerator, _ range: ClosedRange<Float> = -2...2) throws -> Tensor {
        try Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: range, using: &generator) })
    }

    static func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        guard a.shape == b.shape else { return .infinity }
        return zip(a.floats, b.floats).map { $0.isNaN && $1.isNaN ? 0 : abs($0 - $1) }.max() ?? 0
    }

    @Test(arguments: [([2, 5, 3, 4], [2, 7, 3, 4], [2, 7, 3, 6], [2, 1, 5, 7]), ([1, 64, 12, 32], [1, 64, 12, 32], [1, 64, 12, 32], [1, 1, 64, 64]),
                      ([1, 3, 2, 16], [1, 9, 2, 16], [1, 9, 2, 5], [9]), ([2, 4, 2, 8], [2, 4, 2, 8], [2, 4, 2, 8], [2, 2, 4, 4])])
    func kernelMatchesTheOperatorsItReplaces(_ qShape: [Int], _ kShape: [Int], _ vShape: [Int], _ maskShape: [Int]) throws {
        var generator = SeededGenerator(seed: UInt64(qShape.reduce(0, +) * 31 + maskShape.count))
        let q = try Self.random(qShape, &generator), k = try Self.random(kShape, &generator), v = try Self.random(vShape, &generator)
        // Additive mask: 0 or −inf, the first row fully masked.
        var maskValues = try Self.random(maskShape, &generator).floats.map { $0 > 1.2 ? -Float.infinity : 0 }
        if maskShape.count > 1 { for i in 0..<maskShape.last! { maskValues[i] = -.infinity } }
        let mask = try Tensor(shape: maskShape, scalars: maskValues)
        let constants = ["qs": Tensor(scalar: Float(0.42044820762685725)), "ks": try Tensor(shape: [1], scalars: [Float(0.42044820762685725)]),
                         "c": try Tensor(shape: [1], scalars: [Float(0)])]
        let node = Node(opType: "Attention", domain: IntegerFusion.domain, inputs: ["q", "k", "v", "qs", "ks", "mask", "c"], outputs: ["y"])
        let kernel = try FusedAttentionKernel(buildContext(node, constants: constants))
        let inputs = orderedInputs(node, constants: constants, feeds: ["q": q, "k": k, "v": v, "mask": mask])
        let expected = try kernel.unfused(q, k, v, mask, context: ExecutionContext(threadCount: 1))
        #expect(expected.shape == [qShape[0], qShape[2], qShape[1], vShape[3]])
        #expect(!expected.floats.contains { $0.isNaN })
        for threads in [1, 2, 3] {
            let got = try kernel.run(inputs, context: ExecutionContext(threadCount: threads))[0]
            #expect(Self.maxDifference(got, expected) <= 1e-5, "\(qShape) \(maskShape), \(threads) threads")
        }
    }

    @Test func mismatchedShapesRunTheOperatorsOrThrowAsTheyDo() throws {
        let constants = ["qs": Tensor(scalar: Float(0.5)), "ks": Tensor(scalar: Float(0.5))]
        let node = Node(opType: "Attention", domain: IntegerFusion.domain, inputs: ["q", "k", "v", "qs", "ks", "mask"], outputs: ["y"])
        let kernel = try FusedAttentionKernel(buildContext(node, constants: constants))
        var generator = SeededGenerator(seed: 3)
        // Batch 1 broadcast against batch 2 (numpy matmul broadcasting): the fallback handles it.
        let q = try Self.random([1, 3, 2, 4], &generator), k = try Self.random([2, 5, 2, 4], &generator)
        let v = try Self.random([2, 5, 2, 4], &generator), mask = try Tensor(zeros: .float32, shape: [5])
        let got = try kernel.run(orderedInputs(node, constants: constants, feeds: ["q": q, "k": k, "v": v, "mask": mask]),
                                 context: ExecutionContext(threadCount: 1))[0]
        #expect(got == (try kernel.unfused(q, k, v, mask, context: ExecutionContext(threadCount: 1))))
        // Rank 3 inputs: the Transposes' error.
        let flat = try Self.random([3, 2, 4], &generator)
        #expect(throws: (any Error).self) {
            try kernel.run(orderedInputs(node, constants: constants, feeds: ["q": flat, "k": flat, "v": flat, "mask": mask]),
                           context: ExecutionContext(threadCount: 1))
        }
    }

    /// A quantized attention block as exported: projections, Reshape to heads, the core, Reshape back; the
    /// export's Shape of the transposed q reads q itself afterwards.
    @Test func exportedAttentionBlockBecomesOneOperatorAndMatchesUnfused() throws {
        var generator = SeededGenerator(seed: 17)
        let (s, heads, size) = (6, 2, 4), width = heads * size
        var b = IntegerFusionTests.Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.04, zeroPoint: 128)
        func projection() -> String {
            let w = try! Tensor(shape: [width, width], scalars: (0..<(width * width)).map { _ in Int8.random(in: -100...100, using: &generator) })
            return b.add("MatMul", [x, b.dequantizeWeights(w, scales: [0.01], axis: 1)])
        }
        let headShape = b.constant(try Tensor(shape: [4], scalars: [Int64(1), Int64(s), Int64(heads), Int64(size)]), "head_shape")
        let scale = b.constant(Tensor(scalar: Float(0.7071)), "scale")
        let qHeads = b.add("Transpose", [b.add("Reshape", [projection(), headShape])], attributes: ["perm": .ints([0, 2, 1, 3])])
        let q = b.add("Mul", [qHeads, scale])
        // The export reads sizes off the transposed q: [B, H, S, D][2] = S.
        let sequence = b.add("Gather", [b.add("Shape", [qHeads]), b.constant(Tensor(scalar: Int64(2)), "two")])
        let k = b.add("Mul", [scale, b.add("Transpose", [b.add("Reshape", [projection(), headShape])], attributes: ["perm": .ints([0, 2, 3, 1])])])
        let v = b.add("Transpose", [b.add("Reshape", [projection(), headShape])], attributes: ["perm": .ints([0, 2, 1, 3])])
        let zero = b.constant(try Tensor(shape: [1], scalars: [Float(0)]), "zero")
        let additive = b.add("Where", ["mask", zero, b.constant(try Tensor(shape: [1], scalars: [-Float.infinity]), "minus_inf")])
        let probabilities = b.add("Softmax", [b.add("Add", [b.add("MatMul", [q, k]), additive])], attributes: ["axis": .int(-1)])
        let guarded = b.add("Where", [b.add("IsNaN", [probabilities]), zero, probabilities])
        let context = b.add("Transpose", [b.add("MatMul", [guarded, v])], attributes: ["perm": .ints([0, 2, 1, 3])])
        let output = b.add("Reshape", [context, b.constant(try Tensor(shape: [3], scalars: [Int64(1), Int64(s), Int64(width)]), "flat")])
        let model = b.model(inputs: [ValueInfo(name: "x"), ValueInfo(name: "mask")], outputs: [output, sequence])

        let types = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(types.filter { $0 == "Attention" }.count == 1, "\(types)")
        for gone in ["MatMul", "Softmax", "MaskedSoftmax", "IsNaN", "Mul"] { #expect(!types.contains(gone), "\(gone) in \(types)") }
        // Only the transpose of the context back to [B, S, H, D] stays.
        #expect(types.filter { $0 == "Transpose" }.count == 1, "\(types)")

        var maskValues = (0..<(s * s)).map { $0 % 5 != 2 }
        for i in 0..<s { maskValues[2 * s + i] = false }  // a fully masked row
        let feeds = ["x": try Self.random([1, s, width], &generator), "mask": try Tensor(shape: [1, 1, s, s], scalars: maskValues)]
        for threads in [1, 2] {
            let fused = try Session(model: model, options: SessionOptions(threadCount: threads)).run(feeds)[output]!
            let unfused = try Session(model: model, options: SessionOptions(threadCount: threads, integerExecution: false)).run(feeds)[output]!
            // Integer projections against float ones: the products differ by a few float32 ulps.
            #expect(Self.maxDifference(fused, unfused) <= 1e-4, "\(threads) threads")
            #expect(!fused.floats.contains { $0.isNaN })
            let fusedSequence = try Session(model: model, options: SessionOptions(threadCount: threads)).run(feeds)[sequence]!
            #expect(fusedSequence.scalars(as: Int64.self) == [Int64(s)])
        }
    }
}
