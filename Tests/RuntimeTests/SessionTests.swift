import GraphIR
import Runtime
import Tensors
import Testing

@Suite struct SessionTests {
    @Test func runsConstantAndIdentity() throws {
        let weights = try Tensor(shape: [2], scalars: [Float(1), 2])
        let graph = Graph(
            nodes: [
                Node(opType: "Constant", inputs: [], outputs: ["c"], attributes: ["value": .tensor(weights)]),
                Node(opType: "Identity", inputs: ["c"], outputs: ["y"]),
            ],
            outputs: [ValueInfo(name: "y")])
        let session = try Session(model: Model(graph: graph))
        #expect(try session.run([:])["y"] == weights)
    }

    @Test func unknownOperatorsAndBadFeedsAreNamed() throws {
        let graph = Graph(
            nodes: [Node(name: "mystery", opType: "NoSuchOp", inputs: ["x"], outputs: ["y"])],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(2)])], outputs: [ValueInfo(name: "y")])
        #expect(throws: RuntimeError.unsupportedOperator(node: "node 'mystery' (NoSuchOp)", opType: "NoSuchOp",
                                                         domain: "", opset: 17)) {
            try Session(model: Model(graph: graph))
        }
        let identity = Graph(
            nodes: [Node(opType: "Identity", inputs: ["x"], outputs: ["y"])],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(2)])], outputs: [ValueInfo(name: "y")])
        let session = try Session(model: Model(graph: identity))
        #expect(throws: RuntimeError.self) { try session.run(["x": try Tensor(shape: [3], scalars: [Float(0), 0, 0])]) }
        #expect(throws: RuntimeError.missingInput(name: "x")) { try session.run([:]) }
        #expect(throws: RuntimeError.self) { try session.run(["x": try Tensor(shape: [2], scalars: [Int32(0), 0])]) }
    }

    @Test func rejectsOpsetsOutsideTheSupportedRange() {
        let model = Model(graph: Graph(), opsetImports: ["": 99])
        #expect(throws: RuntimeError.unsupportedOpset(domain: "", version: 99, supported: Session.supportedOpsets)) {
            try Session(model: model)
        }
    }
}
