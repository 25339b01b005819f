import Foundation
import GraphIR
import Runtime
import Tensors
import Testing

/// Float fusions: the exported Gelu pattern runs as one kernel, gives what the formula gives, and
/// observers still see every value the fusion hides.
@Suite struct FloatFusionTests {
    static let input: [Float] = [-8, -3.1, -1, -0.25, 0, 0.3, 1, 2.5, 7.75, -0.0, 1e-30, 40]

    /// x/2 · (1 + erf(x/√2)) in Double through libm: independent of the runtime's kernels.
    static func gelu(_ x: Float) -> Float { Float(0.5 * Double(x) * (1 + erf(Double(x) / 2.0.squareRoot()))) }

    static func scalar(_ name: String, _ value: Float) -> Node {
        Node(opType: "Constant", inputs: [], outputs: [name], attributes: ["value": .tensor(Tensor(scalar: value))])
    }

    /// PyTorch's export of `x * 0.5 * (1 + erf(x / sqrt 2))` as BERT writes it, in node order
    /// Div → Erf → Add → Mul → Mul, with the constants as Constant nodes.
    static func exportedGelu(extraOutput: String? = nil, halfFirst: Bool = false, multiplyBySqrtHalf: Bool = false)
        -> Model {
        var nodes = [scalar("root2", multiplyBySqrtHalf ? 0.70710677 : 1.4142135), scalar("one", 1), scalar("half", 0.5)]
        nodes.append(Node(name: "scale", opType: multiplyBySqrtHalf ? "Mul" : "Div", inputs: ["x", "root2"],
                          outputs: ["scaled"]))
        nodes.append(Node(name: "erf", opType: "Erf", inputs: ["scaled"], outputs: ["e"]))
        nodes.append(Node(name: "plus", opType: "Add", inputs: ["e", "one"], outputs: ["gate"]))
        if halfFirst {
            nodes.append(Node(name: "halve", opType: "Mul", inputs: ["half", "x"], outputs: ["halfx"]))
            nodes.append(Node(name: "product", opType: "Mul", inputs: ["gate", "halfx"], outputs: ["y"]))
        } else {
            nodes.append(Node(name: "product", opType: "Mul", inputs: ["x", "gate"], outputs: ["xg"]))
            nodes.append(Node(name: "halve", opType: "Mul", inputs: ["xg", "half"], outputs: ["y"]))
        }
        var outputs = [ValueInfo(name: "y")]
        if let extraOutput { outputs.append(ValueInfo(name: extraOutput)) }
        let graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(3), .value(4)])],
                          outputs: outputs)
        return Model(graph: graph)
    }

    func run(_ model: Model, observing names: Set<String> = [], threads: Int = 1)
        throws -> (outputs: [String: Tensor], seen: [String: Tensor], opTypes: Set<String>) {
        let session = try Session(model: model, options: SessionOptions(threadCount: threads))
        let profile = ExecutionProfile()
        var seen: [String: Tensor] = [:]
        let observer = names.isEmpty ? nil : ValueObserver(names: names) { name, value in seen[name] = value }
        let outputs = try session.run(["x": try Tensor(shape: [3, 4], scalars: Self.input)], profile: profile,
                                      observer: observer)
        return (outputs, seen, Set(profile.entries.map(\.opType)))
    }

    func expectGelu(_ tensor: Tensor?, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let tensor else { Issue.record("missing output", sourceLocation: sourceLocation); return }
        #expect(tensor.shape == [3, 4], sourceLocation: sourceLocation)
        for (x, y) in zip(Self.input, tensor.floats) {
            let expected = Self.gelu(x)
            #expect(abs(y - expected) <= 2e-7 * max(1, abs(x)), "gelu(\(x)) = \(y), expected \(expected)",
                    sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func exportedPatternsRunAsOneGeluKernel(halfFirst: Bool, multiplyBySqrtHalf: Bool) throws {
        for threads in [1, 2] {
            let result = try run(Self.exportedGelu(halfFirst: halfFirst, multiplyBySqrtHalf: multiplyBySqrtHalf),
                                 threads: threads)
            #expect(result.opTypes == ["Gelu"], "ran \(result.opTypes)")
            expectGelu(result.outputs["y"])
        }
    }

    @Test func observersAskingForAHiddenValueGetTheOriginalNodes() throws {
        let result = try run(Self.exportedGelu(), observing: ["e", "y"])
        #expect(result.opTypes == ["Div", "Erf", "Add", "Mul"], "ran \(result.opTypes)")
        expectGelu(result.outputs["y"])
        expectGelu(result.seen["y"])
        let erfValues = try #require(result.seen["e"]).floats
        for (x, e) in zip(Self.input, erfValues) {
            #expect(abs(e - Float(erf(Double(x) / 2.0.squareRoot()))) <= 2e-7, "erf(\(x)/√2) = \(e)")
        }
        // Observing only the group's output keeps the fused kernel.
        #expect(try run(Self.exportedGelu(), observing: ["y", "x"]).opTypes == ["Gelu"])
    }

    @Test func aHiddenValueThatIsAlsoAGraphOutputPreventsTheFusion() throws {
        let result = try run(Self.exportedGelu(extraOutput: "gate"))
        #expect(result.opTypes.contains("Erf") && !result.opTypes.contains("Gelu"), "ran \(result.opTypes)")
        expectGelu(result.outputs["y"])
    }

    @Test func otherConstantsAreNotMistakenForGelu() throws {
        var model = Self.exportedGelu()
        model.graph.nodes[0] = Self.scalar("root2", 2)
        let result = try run(model)
        #expect(!result.opTypes.contains("Gelu"), "ran \(result.opTypes)")
        for (x, y) in zip(Self.input, try #require(result.outputs["y"]).floats) {
            let expected = Float(0.5 * Double(x) * (1 + erf(Double(x) / 2)))
            #expect(abs(y - expected) <= 2e-7 * max(1, abs(x)))
        }
    }
}
