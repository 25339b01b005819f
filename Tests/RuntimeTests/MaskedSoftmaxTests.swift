import Foundation
import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// `MaskedSoftmax` (attention's `Add(scores, mask) → Softmax → Where(IsNaN(s), 0, s)`): the kernel at
/// every level against softmax computed in double from its definition, and the rewrite in a quantized
/// graph against the unfused graph.
@Suite struct MaskedSoftmaxTests {
    /// softmax(a + b) along the last axis in double, NaN rows (all −inf) replaced by `replacement`.
    static func expected(_ a: Tensor, _ b: Tensor, replacement: Float?) -> [Double] {
        let shape = Shape.broadcast(a.shape, b.shape)!
        let length = shape.last!, count = shape.reduce(1, *)
        func value(_ t: Tensor, _ index: Int) -> Double {
            // Broadcast by walking the output index back into t's shape.
            var remaining = index, offset = 0, step = 1
            for axis in stride(from: shape.count - 1, through: 0, by: -1) {
                let position = remaining % shape[axis]
                remaining /= shape[axis]
                let own = axis - (shape.count - t.rank)
                guard own >= 0 else { continue }
                if t.shape[own] != 1 { offset += position * step }
                step *= t.shape[own]
            }
            return Double(t.floats[offset])
        }
        var result: [Double] = []
        for row in 0..<(count / length) {
            let sums = (0..<length).map { Double(Float(value(a, row * length + $0)) + Float(value(b, row * length + $0))) }
            let maximum = sums.max()!
            let exps = sums.map { Foundation.exp($0 - maximum) }
            let total = exps.reduce(0, +)
            result += exps.map { total.isNaN || maximum == -.infinity ? Double(replacement ?? .nan) : $0 / total }
        }
        return result
    }

    static func scores(_ shape: [Int], seed: UInt64, maskedRow: Int? = nil) throws -> Tensor {
        var generator = SeededGenerator(seed: seed)
        var values = (0..<shape.reduce(1, *)).map { _ in Float.random(in: -12...12, using: &generator) }
        if let maskedRow, let length = shape.last {
            for i in 0..<length { values[maskedRow * length + i] = -.infinity }
        }
        return try Tensor(shape: shape, scalars: values)
    }

    @Test(arguments: [([2, 3, 4, 37], [2, 1, 4, 37]), ([2, 3, 4, 37], [37]), ([3, 5, 16], [3, 5, 1]), ([1, 64], [4, 1, 64])])
    func kernelMatchesDefinitionAtEveryLevel(_ aShape: [Int], _ bShape: [Int]) throws {
        let a = try Self.scores(aShape, seed: 3)
        // A mask of 0 and −inf, with one row fully masked when the mask has whole rows.
        var mask = try Self.scores(bShape, seed: 4).floats.map { $0 > 6 ? -Float.infinity : 0 }
        if bShape.count > 1, let length = bShape.last, length > 1 { for i in 0..<length { mask[i] = -.infinity } }
        let b = try Tensor(shape: bShape, scalars: mask)
        let zero = Tensor(scalar: Float(0))
        for replacement in [Optional(zero), nil] {
            let node = Node(opType: "MaskedSoftmax", domain: IntegerFusion.domain,
                            inputs: replacement == nil ? ["a", "b"] : ["a", "b", "c"], outputs: ["y"])
            var kernel = try FusedMaskedSoftmaxKernel(buildContext(node, constants: replacement.map { ["c": $0] } ?? [:]))
            let expected = Self.expected(a, b, replacement: replacement == nil ? nil : 0)
            for level in TransformerKernelLevel.available {
                kernel.level = level
                for (left, right) in [(a, b), (b, a)] {
                    for threads in [1, 3] {
                        let y = try kernel.run([left, right, replacement], context: ExecutionContext(threadCount: threads))[0]
                        #expect(y.shape == Shape.broadcast(aShape, bShape)!)
                        let got = y.floats
                        let bad = zip(got, expected).filter { g, e in
                            e.isNaN ? !g.isNaN : !(abs(Double(g) - e) <= 2e-7 + 4e-6 * abs(e))
                        }
                        #expect(bad.isEmpty, "level \(level), \(threads) threads: \(bad.prefix(3)) of \(got.count)")
                    }
                }
            }
        }
    }

    @Test func attentionTailInQuantizedGraphBecomesOneOperatorAndMatchesUnfused() throws {
        var b = IntegerFusionTests.Builder()
        // A quantized projection makes the graph a quantized one (the float rewrite fires only then).
        let (_, xq) = b.quantizeDequantize("x", scale: 0.05, zeroPoint: 128)
        var generator = SeededGenerator(seed: 8)
        let weights = try Tensor(shape: [6, 6], scalars: (0..<36).map { _ in Int8.random(in: -100...100, using: &generator) })
        let projected = b.add("MatMul", [xq, b.dequantizeWeights(weights, scales: [0.01], axis: 1)])
        let zero = b.constant(try Tensor(shape: [1], scalars: [Float(0)]), "zero")
        let negative = b.constant(try Tensor(shape: [1], scalars: [-Float.infinity]), "minus_inf")
        let additive = b.add("Where", ["mask", zero, negative])
        let sum = b.add("Add", ["scores", additive])
        let softmax = b.add("Softmax", [sum], attributes: ["axis": .int(-1)])
        let isNaN = b.add("IsNaN", [softmax])
        let guarded = b.add("Where", [isNaN, zero, softmax])
        let model = b.model(inputs: [ValueInfo(name: "x"), ValueInfo(name: "scores"), ValueInfo(name: "mask")],
                            outputs: [projected, guarded])
        let fusedTypes = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(fusedTypes.contains("MaskedSoftmax"))
        for gone in ["Softmax", "IsNaN", "Add"] { #expect(!fusedTypes.contains(gone), "\(gone) in \(fusedTypes)") }
        #expect(fusedTypes.filter { $0 == "Where" }.count == 1)

        let scores = try Self.scores([1, 3, 4, 9], seed: 11, maskedRow: 5)
        // true keeps a score (Where gives 0), false masks it (−inf); one row is fully masked.
        var maskValues = (0..<36).map { $0 % 7 != 3 }
        for i in 18..<27 { maskValues[i] = false }
        let feeds = ["x": try Tensor(shape: [2, 6], scalars: (0..<12).map { Float($0) * 0.1 }),
                     "scores": scores, "mask": try Tensor(shape: [1, 1, 4, 9], scalars: maskValues)]
        for threads in [1, 2] {
            let fused = try Session(model: model, options: SessionOptions(threadCount: threads)).run(feeds)[guarded]!
            let unfused = try Session(model: model, options: SessionOptions(threadCount: threads, integerExecution: false))
                .run(feeds)[guarded]!
            // The fused row sums its exponentials in another order than the Softmax kernel: a few ulps.
            let worst = zip(fused.floats, unfused.floats).map { abs($0 - $1) }.max() ?? .infinity
            #expect(fused.shape == unfused.shape && worst <= 1e-6, "fused and unfused differ by \(worst)")
            #expect(fused.floats.allSatisfy { !$0.isNaN })
        }
    }

    @Test func floatGraphsAndOtherAxesAreLeftAlone() throws {
        for (quantized, axis) in [(false, -1), (true, 1)] {
            var b = IntegerFusionTests.Builder()
            var outputs: [String] = []
            if quantized {
                let (_, xq) = b.quantizeDequantize("x", scale: 0.05, zeroPoint: 128)
                outputs.append(b.add("Relu", [xq]))
            }
            let sum = b.add("Add", ["scores", "mask"])
            outputs.append(b.add("Softmax", [sum], attributes: ["axis": .int(axis)]))
            let model = b.model(inputs: [ValueInfo(name: "x"), ValueInfo(name: "scores"), ValueInfo(name: "mask")],
                                outputs: outputs)
            let types = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
            #expect(!types.contains("MaskedSoftmax"), "quantized \(quantized), axis \(axis): \(types)")
        }
    }
}
