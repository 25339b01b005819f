import GraphIR
import Tensors
import Testing

@Suite struct DeadCodeEliminationTests {
    @Test func removesUnreadNodesAndInitializersButKeepsCaptures() throws {
        // "captured" is only read inside the If branch; "dead" and "unused_w" are read by nothing live.
        let branch = Graph(nodes: [Node(opType: "Identity", inputs: ["captured"], outputs: ["r"])],
                           outputs: [ValueInfo(name: "r")])
        var graph = Graph(
            nodes: [
                Node(name: "cap", opType: "Neg", inputs: ["x"], outputs: ["captured"]),
                Node(name: "dead", opType: "Mul", inputs: ["x", "unused_w"], outputs: ["dead"]),
                Node(name: "deader", opType: "Relu", inputs: ["dead"], outputs: ["deader"]),
                Node(name: "if", opType: "If", inputs: ["c"], outputs: ["y"],
                     attributes: ["then_branch": .graph(branch), "else_branch": .graph(branch)]),
            ],
            inputs: [ValueInfo(name: "x"), ValueInfo(name: "c"), ValueInfo(name: "unused_input")],
            outputs: [ValueInfo(name: "y")],
            initializers: ["unused_w": floats([1], [2]), "unused_input": floats([1], [0])],
            valueInfo: ["dead": ValueInfo(name: "dead", dtype: .float32, shape: [1])])
        #expect(try DeadCodeElimination().run(on: &graph))
        #expect(graph.nodes.map(\.name) == ["cap", "if"])
        #expect(graph.initializers.keys.elementsEqual(["unused_input"]))  // a declared input stays
        #expect(graph.valueInfo["dead"] == nil)
        #expect(try DeadCodeElimination().run(on: &graph) == false)
    }

    @Test func keepsNodesWithoutOutputsAndWhatTheyRead() throws {
        var graph = Graph(
            nodes: [
                Node(name: "feed", opType: "Neg", inputs: ["x"], outputs: ["t"]),
                Node(name: "effect", opType: "Print", domain: "custom", inputs: ["t"], outputs: []),
            ],
            inputs: [ValueInfo(name: "x")], outputs: [])
        #expect(try DeadCodeElimination().run(on: &graph) == false)
        #expect(graph.nodes.count == 2)
    }

    @Test func pipelineCleansSubgraphsAndReachesAFixpoint() throws {
        // Inside the branch a dead node reads "outer"; once it goes, the outer producer is dead as well.
        let branch = Graph(
            nodes: [
                Node(name: "inner_dead", opType: "Neg", inputs: ["outer"], outputs: ["unused"]),
                Node(name: "inner_live", opType: "Identity", inputs: ["x"], outputs: ["r"]),
            ],
            outputs: [ValueInfo(name: "r")])
        var model = Model(graph: Graph(
            nodes: [
                Node(name: "outer_producer", opType: "Relu", inputs: ["x"], outputs: ["outer"]),
                Node(name: "if", opType: "If", inputs: ["c"], outputs: ["y"],
                     attributes: ["then_branch": .graph(branch), "else_branch": .graph(branch)]),
            ],
            inputs: [ValueInfo(name: "x"), ValueInfo(name: "c")], outputs: [ValueInfo(name: "y")]))
        let report = try PassPipeline([DeadCodeElimination()]).run(on: &model)
        #expect(model.graph.nodes.map(\.name) == ["if"])
        #expect(model.graph.nodes[0].attributes["then_branch"]?.graphValue?.nodes.map(\.name) == ["inner_live"])
        #expect(report.reachedFixpoint)
        #expect(report.iterations == 3)  // branch cleaned, then outer node, then a quiet round
        #expect(report.changesByPass["dead-code-elimination"] == 2)
    }

    @Test func pipelineStopsAtItsBound() throws {
        struct AlwaysChanges: GraphPass {
            var name: String { "always" }
            func run(on graph: inout Graph, context: PassContext) throws -> Bool { true }
        }
        var graph = Graph()
        let report = try PassPipeline([AlwaysChanges()], maxIterations: 4).run(on: &graph, context: PassContext())
        #expect(report.iterations == 4)
        #expect(!report.reachedFixpoint)
    }
}

@Suite struct IdentityEliminationTests {
    @Test func readersUseTheInputDirectly() throws {
        let branch = Graph(nodes: [Node(opType: "Neg", inputs: ["i"], outputs: ["r"])], outputs: [ValueInfo(name: "r")])
        var graph = Graph(
            nodes: [
                Node(name: "id", opType: "Identity", inputs: ["x"], outputs: ["i"]),
                Node(name: "use", opType: "Relu", inputs: ["i"], outputs: ["y"]),
                Node(name: "if", opType: "If", inputs: ["c"], outputs: ["z"],
                     attributes: ["then_branch": .graph(branch), "else_branch": .graph(branch)]),
            ],
            inputs: [ValueInfo(name: "x"), ValueInfo(name: "c")], outputs: [ValueInfo(name: "y"), ValueInfo(name: "z")])
        #expect(try IdentityElimination().run(on: &graph))
        #expect(graph.nodes.map(\.name) == ["use", "if"])
        #expect(graph.nodes[0].inputs == ["x"])
        #expect(graph.nodes[1].attributes["then_branch"]?.graphValue?.nodes[0].inputs == ["x"])
    }

    @Test func graphOutputNamesSurvive() throws {
        var graph = Graph(
            nodes: [
                Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["t"]),
                Node(name: "id", opType: "Identity", inputs: ["t"], outputs: ["y"]),
                Node(name: "passthrough", opType: "Identity", inputs: ["x"], outputs: ["x_copy"]),
            ],
            inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y"), ValueInfo(name: "x_copy")])
        #expect(try IdentityElimination().run(on: &graph))
        // relu now writes "y" directly; the input-to-output copy must stay to keep both names.
        #expect(graph.nodes.map(\.name) == ["relu", "passthrough"])
        #expect(graph.nodes[0].outputs == ["y"])
        #expect(graph.outputs.map(\.name) == ["y", "x_copy"])
    }
}

@Suite struct ConstantFoldingTests {
    /// A stand-in for the runtime: adds int64 tensors element-wise, declines everything else.
    static let addingEvaluator: ConstantFolding.Evaluator = { node, inputs, _ in
        guard node.opType == "Add", let a = inputs[0], let b = inputs[1], a.shape == b.shape else { return nil }
        let sum = zip(a.scalars(as: Int64.self), b.scalars(as: Int64.self)).map { $0 + $1 }
        return [try Tensor(shape: a.shape, scalars: sum)]
    }

    @Test func foldsChainsOfConstantNodes() throws {
        var graph = Graph(
            nodes: [
                constantNode("k", int64s([2], [1, 2])),
                Node(name: "add1", opType: "Add", inputs: ["k", "w"], outputs: ["s1"]),
                Node(name: "add2", opType: "Add", inputs: ["s1", "s1"], outputs: ["s2"]),
                Node(name: "live", opType: "Add", inputs: ["x", "s2"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")],
            initializers: ["w": int64s([2], [10, 20])])
        let folding = ConstantFolding(evaluator: Self.addingEvaluator)
        #expect(try folding.run(on: &graph))
        #expect(graph.nodes.map(\.name) == ["", "live"])  // the Constant node stays for DCE
        #expect(graph.initializers["s1"] == int64s([2], [11, 22]))
        #expect(graph.initializers["s2"] == int64s([2], [22, 44]))
        _ = try DeadCodeElimination().run(on: &graph)
        #expect(graph.nodes.map(\.name) == ["live"])
        #expect(Set(graph.initializers.keys) == ["s2"])
    }

    @Test func leavesGraphOutputsRandomOpsSubgraphsAndLargeResultsAlone() throws {
        let branch = Graph(nodes: [constantNode("r", int64s([1], [1]))], outputs: [ValueInfo(name: "r")])
        var graph = Graph(
            nodes: [
                Node(name: "out", opType: "Add", inputs: ["w", "w"], outputs: ["y"]),
                Node(name: "random", opType: "RandomNormalLike", inputs: ["w"], outputs: ["noise"]),
                Node(name: "if", opType: "If", inputs: ["cond"], outputs: ["z"],
                     attributes: ["then_branch": .graph(branch), "else_branch": .graph(branch)]),
                Node(name: "big", opType: "Add", inputs: ["w", "w"], outputs: ["big"]),
                Node(name: "use", opType: "Concat", inputs: ["noise", "z", "big"], outputs: ["u"]),
            ],
            outputs: [ValueInfo(name: "y"), ValueInfo(name: "u")],
            initializers: ["w": int64s([2], [1, 2]), "cond": Tensor(scalar: true)])
        let folding = ConstantFolding(evaluator: Self.addingEvaluator, maxOutputElements: 1)
        #expect(try folding.run(on: &graph) == false)
        #expect(graph.nodes.count == 5)
        // With room for two elements, "big" folds (and only it).
        #expect(try ConstantFolding(evaluator: Self.addingEvaluator, maxOutputElements: 2).run(on: &graph))
        #expect(graph.nodes.map(\.name) == ["out", "random", "if", "use"])
    }

    @Test func evaluatorFailuresLeaveTheNodeButBadResultsThrow() throws {
        let failing: ConstantFolding.Evaluator = { _, _, _ in throw GraphError.cycle(values: []) }
        var graph = Graph(
            nodes: [Node(name: "n", opType: "Neg", inputs: ["w"], outputs: ["t"]), Node(opType: "Relu", inputs: ["t"], outputs: ["y"])],
            outputs: [ValueInfo(name: "y")], initializers: ["w": floats([1], [1])])
        #expect(try ConstantFolding(evaluator: failing).run(on: &graph) == false)

        let twoResults: ConstantFolding.Evaluator = { _, inputs, _ in [inputs[0]!, inputs[0]!] }
        #expect(throws: PassError.self) { try ConstantFolding(evaluator: twoResults).run(on: &graph) }

        let opsetSeen: ConstantFolding.Evaluator = { _, inputs, opset in opset == 13 ? [inputs[0]!] : nil }
        var model = Model(graph: graph, opsetImports: ["": 13])
        #expect(try PassPipeline([ConstantFolding(evaluator: opsetSeen)]).run(on: &model).changesByPass["constant-folding"] == 1)
        #expect(model.graph.initializers["t"] == floats([1], [1]))
    }

    @Test func foldsStaticShapesWithoutAnEvaluator() throws {
        var model = makeModel(
            [
                Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
                Node(name: "tail", opType: "Shape", inputs: ["x"], outputs: ["tail"], attributes: ["start": .int(-2)]),
                Node(name: "size", opType: "Size", inputs: ["x"], outputs: ["n"]),
                Node(name: "dynamic", opType: "Shape", inputs: ["d"], outputs: ["ds"]),
                Node(name: "use", opType: "Concat", inputs: ["s", "tail", "ds"], outputs: ["y"], attributes: ["axis": .int(0)]),
                Node(name: "use2", opType: "Unsqueeze", inputs: ["n", "axes"], outputs: ["z"]),
            ],
            inputs: [("x", .float32, [2, 3, 4]), ("d", .float32, ["batch", 4])], outputs: ["y", "z"],
            initializers: ["axes": int64s([1], [0])])
        try PassPipeline([ConstantFolding(foldsStaticShapes: true)]).run(on: &model)
        #expect(model.graph.nodes.map(\.name) == ["dynamic", "use", "use2"])
        #expect(model.graph.initializers["s"] == int64s([3], [2, 3, 4]))
        #expect(model.graph.initializers["tail"] == int64s([2], [3, 4]))
        #expect(model.graph.initializers["n"] == Tensor(scalar: Int64(24)))
    }
}
