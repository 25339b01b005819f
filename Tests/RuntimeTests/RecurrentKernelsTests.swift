import Foundation
import GraphIR
import Runtime
import Tensors
import Testing
import _TestSupport

/// A tensor in the JSON fixtures written by scripts/make_recurrent_fixtures.py.
struct FixtureTensor: Decodable {
    var name: String?
    var dtype: String
    var shape: [Int]
    var data: [Double]

    func tensor() throws -> Tensor {
        switch dtype {
        case "float32": return try Tensor(shape: shape, scalars: data.map { Float($0) })
        case "int32": return try Tensor(shape: shape, scalars: data.map { Int32($0) })
        default: throw KernelError.unsupported("fixture dtype \(dtype)")
        }
    }
}

/// One LSTM/GRU node with its inputs and the outputs ONNX Runtime computed for them.
struct RecurrentFixture: Decodable {
    struct AttributeValue: Decodable {
        var int: Int?
        var float: Float?
        var string: String?
        var strings: [String]?
        var floats: [Float]?

        var attribute: Attribute {
            if let int { return .int(int) }
            if let float { return .float(float) }
            if let string { return .text(string) }
            if let strings { return .strings(strings.map { Array($0.utf8) }) }
            return .floats(floats ?? [])
        }
    }

    var op: String
    var opset: Int
    var attributes: [String: AttributeValue]
    var inputs: [FixtureTensor?]
    var outputs: [FixtureTensor]

    static func load(_ name: String) throws -> RecurrentFixture {
        let url = TestSupport.fixtures.appendingPathComponent("recurrent/\(name).json")
        return try JSONDecoder().decode(RecurrentFixture.self, from: Data(contentsOf: url))
    }

    /// Runs the node in a session; with `weightsAsInitializers`, W, R and B are initializers so the
    /// kernel prepares them when compiled.
    func run(weightsAsInitializers: Bool) throws -> [String: Tensor] {
        let names = inputs.map { $0?.name ?? "" }
        var node = Node(opType: op, inputs: names, outputs: outputs.map { $0.name ?? "" })
        for (name, value) in attributes.sorted(by: { $0.key < $1.key }) { node.attributes[name] = value.attribute }
        var graph = Graph(nodes: [node], outputs: outputs.map { ValueInfo(name: $0.name ?? "") })
        var feeds: [String: Tensor] = [:]
        for case let input? in inputs {
            let name = input.name ?? ""
            if weightsAsInitializers && ["W", "R", "B"].contains(name) {
                graph.initializers[name] = try input.tensor()
            } else {
                graph.inputs.append(ValueInfo(name: name))
                feeds[name] = try input.tensor()
            }
        }
        let session = try Session(model: Model(graph: graph, opsetImports: ["": opset]),
                                  options: SessionOptions(threadCount: 2))
        return try session.run(feeds)
    }
}

@Suite struct RecurrentKernelsTests {
    typealias H = ShapeKernelHarness

    /// ONNX Runtime approximates sigmoid and tanh; a few ulps of float32 per step add up.
    static let tolerance: Float = 2e-5

    @Test(arguments: [
        "lstm_forward_default", "lstm_bidirectional_full", "lstm_reverse_layout1_activations",
        "lstm_opset7_elu_scaledtanh", "gru_forward_default", "gru_bidirectional_linear_before_reset",
        "gru_reverse_layout1_activations", "gru_opset7_affine_relu",
    ])
    func matchesOnnxRuntime(fixture name: String) throws {
        let fixture = try RecurrentFixture.load(name)
        for constantWeights in [false, true] {
            let results = try fixture.run(weightsAsInitializers: constantWeights)
            for expected in fixture.outputs {
                let actual = try #require(results[expected.name ?? ""])
                #expect(actual.shape == expected.shape, "\(name) \(expected.name ?? "")")
                let difference = TestSupport.maxAbsDifference(actual.scalars(as: Float.self), expected.data.map { Float($0) })
                #expect(difference <= Self.tolerance, "\(name) \(expected.name ?? ""): max difference \(difference)")
            }
        }
    }

    @Test func float16InputsComputeInFloat32() throws {
        let fixture = try RecurrentFixture.load("gru_forward_default")
        let byName = Dictionary(uniqueKeysWithValues: fixture.inputs.compactMap { $0 }.map { ($0.name ?? "", $0) })
        let half = { (name: String) throws -> Tensor in
            let input = byName[name]!
            return try Tensor(shape: input.shape, scalars: input.data.map { Float16(Float($0)) })
        }
        var node = Node(opType: "GRU", inputs: ["X", "W", "R", "B"], outputs: ["Y", "Y_h"])
        node.attributes["hidden_size"] = .int(2)
        let graph = Graph(nodes: [node], inputs: ["X", "W", "R", "B"].map { ValueInfo(name: $0) },
                          outputs: [ValueInfo(name: "Y"), ValueInfo(name: "Y_h")])
        let session = try Session(model: Model(graph: graph, opsetImports: ["": 14]))
        let y = try #require(try session.run(["X": half("X"), "W": half("W"), "R": half("R"), "B": half("B")])["Y_h"])
        #expect(y.dtype == .float16)
        let expected = fixture.outputs[1].data.map { Float($0) }
        // Inputs rounded to float16 and the output rounded again: allow a few float16 ulps.
        #expect(TestSupport.maxAbsDifference(y.scalars(as: Float16.self).map { Float($0) }, expected) < 1e-2)
    }

    static func node(_ op: String, _ attributes: [(String, Attribute)]) -> KernelBuildContext {
        var node = Node(opType: op, inputs: ["X", "W", "R"], outputs: ["Y"])
        for (name, value) in attributes { node.attributes[name] = value }
        return KernelBuildContext(node: node, opsetVersion: 14, constantInputs: [nil, nil, nil],
                                  compileSubgraph: { _, _ in throw KernelError.unsupported("none") })
    }

    @Test func rejectsBadAttributesWhenCompiled() throws {
        let lstm = try #require(KernelRegistry.standard.factory(opType: "LSTM", domain: "", opset: 14))
        #expect(throws: KernelError.self) { try lstm(Self.node("LSTM", [("direction", .text("sideways"))])) }
        #expect(throws: KernelError.self) { try lstm(Self.node("LSTM", [("activations", .strings([Array("Tanh".utf8)]))])) }
        #expect(throws: KernelError.self) {
            try lstm(Self.node("LSTM", [("activations", .strings(["Sigmoid", "Swish", "Tanh"].map { Array($0.utf8) }))]))
        }
        #expect(throws: KernelError.self) { try lstm(Self.node("LSTM", [("clip", .float(-1))])) }
        #expect(throws: KernelError.self) { try lstm(Self.node("LSTM", [("layout", .int(2))])) }
    }

    @Test func rejectsInconsistentShapesWhenRun() throws {
        let gru = try #require(KernelRegistry.standard.factory(opType: "GRU", domain: "", opset: 14))
        let kernel = try gru(Self.node("GRU", [("hidden_size", .int(2))]))
        let context = ExecutionContext(threadCount: 1)
        let x = try Tensor(zeros: .float32, shape: [3, 1, 2])
        let w = try Tensor(zeros: .float32, shape: [1, 6, 2]), r = try Tensor(zeros: .float32, shape: [1, 6, 2])
        #expect(try kernel.run([x, w, r], context: context)[0].shape == [3, 1, 1, 2])
        #expect(throws: KernelError.self) { try kernel.run([x, try Tensor(zeros: .float32, shape: [1, 6, 3]), r], context: context) }
        #expect(throws: KernelError.self) { try kernel.run([x, w, try Tensor(zeros: .float32, shape: [1, 6, 3])], context: context) }
        #expect(throws: KernelError.self) { try kernel.run([x, w, try Tensor(zeros: .float32, shape: [1, 9, 3])], context: context) }
        #expect(throws: KernelError.self) {
            try kernel.run([x, w, r, nil, try Tensor(shape: [1], scalars: [Int32(4)])], context: context)
        }
        #expect(throws: KernelError.self) { try kernel.run([try Tensor(zeros: .int32, shape: [3, 1, 2]), w, r], context: context) }
    }
}
