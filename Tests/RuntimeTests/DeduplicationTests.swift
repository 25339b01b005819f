import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// `deduplicateComputations`: repeated operators on the same inputs (or equal small constants) run once in
/// quantized graphs, with unchanged results; graph outputs, differing attributes and float graphs are kept.
@Suite struct DeduplicationTests {
    static func model(quantized: Bool) -> (Model, [String]) {
        var b = IntegerFusionTests.Builder()
        var outputs: [String] = []
        if quantized {
            let (_, xq) = b.quantizeDequantize("x", scale: 0.05, zeroPoint: 128)
            outputs.append(b.add("Relu", [xq]))
        }
        let shape = b.add("Shape", ["s"])
        let index = b.constant(Tensor(scalar: Int64(1)), "index")
        let dim = b.add("Gather", [shape, index])
        // Two Unsqueezes of the same value with equal axes held by two different constants, and a third
        // with other axes.
        let first = b.add("Unsqueeze", [dim, b.constant(try! Tensor(shape: [1], scalars: [Int64(0)]), "axes")])
        let second = b.add("Unsqueeze", [dim, b.constant(try! Tensor(shape: [1], scalars: [Int64(0)]), "axes")])
        let concatenated = b.add("Concat", [first, second], attributes: ["axis": .int(0)])
        let again = b.add("Concat", [second, first], attributes: ["axis": .int(0)])
        let other = b.add("Concat", [first, second], attributes: ["axis": .int(-1)])
        outputs += [b.add("Add", [concatenated, again]), other]
        return (b.model(inputs: [ValueInfo(name: "x"), ValueInfo(name: "s")], outputs: outputs), outputs)
    }

    @Test func repeatedShapeArithmeticRunsOnceInQuantizedGraphs() throws {
        let (model, outputs) = Self.model(quantized: true)
        let nodes = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(nodes.filter { $0 == "Unsqueeze" }.count == 1, "\(nodes)")
        // Concat(a, a) twice with axis 0 merges; the axis −1 one and the graph output stay.
        #expect(nodes.filter { $0 == "Concat" }.count == 2, "\(nodes)")
        let feeds = ["x": try Tensor(shape: [2], scalars: [Float(0.3), -0.2]), "s": try Tensor(zeros: .float32, shape: [2, 5])]
        let fused = try Session(model: model).run(feeds)
        let unfused = try Session(model: model, options: SessionOptions(integerExecution: false)).run(feeds)
        for name in outputs { #expect(fused[name] == unfused[name], "\(name)") }
        #expect(fused[outputs[1]]?.scalars(as: Int64.self) == [10, 10])
    }

    @Test func floatGraphsAreLeftAlone() throws {
        let (model, _) = Self.model(quantized: false)
        let nodes = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
        #expect(nodes.filter { $0 == "Unsqueeze" }.count == 2)
    }
}
