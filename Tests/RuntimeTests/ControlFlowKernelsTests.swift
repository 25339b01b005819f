import Foundation
import GraphIR
import Runtime
import Tensors
import Testing
import _TestSupport

@Suite struct ControlFlowKernelsTests {
    typealias H = ShapeKernelHarness

    /// If whose then-branch transposes the outer `x` and whose else-branch concatenates it with a
    /// branch-local constant; expected outputs from ONNX Runtime (scripts/make_recurrent_fixtures.py).
    @Test func ifRunsTheChosenBranchWithCapturedValues() throws {
        let url = TestSupport.fixtures.appendingPathComponent("recurrent/if_transpose_or_concat.json")
        let fixture = try JSONDecoder().decode([String: FixtureTensor].self, from: Data(contentsOf: url))
        let x = try fixture["x"]!.tensor(), c = try fixture["c"]!.tensor()
        let thenBranch = Graph(name: "then", nodes: [Node(opType: "Transpose", inputs: ["x"], outputs: ["t"])],
                               outputs: [ValueInfo(name: "t")])
        let elseBranch = Graph(
            name: "else",
            nodes: [Node(opType: "Constant", inputs: [], outputs: ["c"], attributes: ["value": .tensor(c)]),
                    Node(opType: "Concat", inputs: ["x", "c"], outputs: ["e"], attributes: ["axis": .int(0)])],
            outputs: [ValueInfo(name: "e")])
        let graph = Graph(
            nodes: [Node(opType: "If", inputs: ["cond"], outputs: ["y"],
                         attributes: ["then_branch": .graph(thenBranch), "else_branch": .graph(elseBranch)])],
            inputs: [ValueInfo(name: "cond"), ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
        let session = try Session(model: Model(graph: graph, opsetImports: ["": 13]))
        let whenTrue = try session.run(["cond": Tensor(scalar: true), "x": x])["y"]
        #expect(whenTrue == (try fixture["then"]!.tensor()))
        let whenFalse = try session.run(["cond": Tensor(scalar: false), "x": x])["y"]
        #expect(whenFalse == (try fixture["else"]!.tensor()))
        #expect(throws: RuntimeError.self) { try session.run(["cond": Tensor(scalar: Int32(1)), "x": x]) }
    }

    @Test func ifRejectsBranchesWithTheWrongNumberOfOutputs() throws {
        let branch = Graph(nodes: [Node(opType: "Identity", inputs: ["x"], outputs: ["a"])],
                           outputs: [ValueInfo(name: "a"), ValueInfo(name: "x")])
        let graph = Graph(
            nodes: [Node(opType: "If", inputs: ["cond"], outputs: ["y"],
                         attributes: ["then_branch": .graph(branch), "else_branch": .graph(branch)])],
            inputs: [ValueInfo(name: "cond"), ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
        #expect(throws: RuntimeError.self) { try Session(model: Model(graph: graph, opsetImports: ["": 13])) }
    }

    /// body(i, cond, v) = (cond, Concat(v, x), Shape(Concat(v, x))) with `x` captured from outside.
    func loopSession() throws -> Session {
        let body = Graph(
            name: "body",
            nodes: [
                Node(opType: "Identity", inputs: ["cond_in"], outputs: ["cond_out"]),
                Node(opType: "Concat", inputs: ["v_in", "x"], outputs: ["v_out"], attributes: ["axis": .int(0)]),
                Node(opType: "Shape", inputs: ["v_out"], outputs: ["s"]),
            ],
            inputs: [ValueInfo(name: "i"), ValueInfo(name: "cond_in"), ValueInfo(name: "v_in")],
            outputs: [ValueInfo(name: "cond_out"), ValueInfo(name: "v_out"), ValueInfo(name: "s", dtype: .int64, shape: nil)])
        let graph = Graph(
            nodes: [Node(opType: "Loop", inputs: ["M", "cond", "v0"], outputs: ["v", "shapes"], attributes: ["body": .graph(body)])],
            inputs: ["M", "cond", "v0", "x"].map { ValueInfo(name: $0) },
            outputs: [ValueInfo(name: "v"), ValueInfo(name: "shapes")])
        return try Session(model: Model(graph: graph, opsetImports: ["": 13]))
    }

    @Test func loopCarriesValuesAndStacksScanOutputs() throws {
        let session = try loopSession()
        let feeds: [String: Tensor] = ["M": Tensor(scalar: Int64(3)), "cond": Tensor(scalar: true),
                                       "v0": H.floats([1], [1]), "x": H.floats([1], [5])]
        let outputs = try session.run(feeds)
        #expect(outputs["v"] == H.floats([4], [1, 5, 5, 5]))
        #expect(outputs["shapes"] == (try Tensor(shape: [3, 1], scalars: [Int64(2), 3, 4])))
    }

    @Test func loopThatNeverRunsReturnsTheInitialValues() throws {
        let session = try loopSession()
        var feeds: [String: Tensor] = ["M": Tensor(scalar: Int64(3)), "cond": Tensor(scalar: false),
                                       "v0": H.floats([1], [1]), "x": H.floats([1], [5])]
        let stopped = try session.run(feeds)
        #expect(stopped["v"] == H.floats([1], [1]))
        #expect(stopped["shapes"]?.shape == [0] && stopped["shapes"]?.dtype == .int64)
        feeds["cond"] = Tensor(scalar: true)
        feeds["M"] = Tensor(scalar: Int64(0))
        #expect(try session.run(feeds)["v"] == H.floats([1], [1]))
        feeds["M"] = Tensor(scalar: Float(2))
        #expect(throws: RuntimeError.self) { try session.run(feeds) }
    }
}
