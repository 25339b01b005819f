import GraphIR
import Tensors
import Testing

@Suite struct GraphRewriteTests {
    /// x → Neg → a → If(captures a) → y; a also feeds Relu → b (second output).
    func graphWithCapture() -> Graph {
        let branch = Graph(name: "branch", nodes: [Node(opType: "Identity", inputs: ["a"], outputs: ["r"])],
                           outputs: [ValueInfo(name: "r")])
        return Graph(
            nodes: [
                Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["a"]),
                Node(name: "if", opType: "If", inputs: ["c"], outputs: ["y"],
                     attributes: ["then_branch": .graph(branch), "else_branch": .graph(branch)]),
                Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["b"]),
            ],
            inputs: [ValueInfo(name: "x"), ValueInfo(name: "c")],
            outputs: [ValueInfo(name: "y"), ValueInfo(name: "b")],
            valueInfo: ["a": ValueInfo(name: "a", dtype: .float32, shape: [2])])
    }

    @Test func renameFollowsReadersCapturesOutputsAndAnnotations() throws {
        var graph = graphWithCapture()
        try graph.renameValue("a", to: "renamed")
        #expect(graph.nodes[0].outputs == ["renamed"])
        #expect(graph.nodes[2].inputs == ["renamed"])
        #expect(graph.nodes[1].attributes["then_branch"]?.graphValue?.nodes[0].inputs == ["renamed"])
        #expect(graph.valueInfo["renamed"]?.name == "renamed")
        #expect(graph.valueInfo["a"] == nil)

        try graph.renameValue("b", to: "out")
        #expect(graph.outputs.map(\.name) == ["y", "out"])
        #expect(throws: GraphError.duplicateDefinition(name: "x")) { try graph.renameValue("out", to: "x") }
    }

    @Test func renameStopsWhereASubgraphShadowsTheName() throws {
        let shadowing = Graph(
            nodes: [Node(opType: "Neg", inputs: ["z"], outputs: ["a"]), Node(opType: "Relu", inputs: ["a"], outputs: ["r"])],
            inputs: [ValueInfo(name: "z")], outputs: [ValueInfo(name: "r")])
        var graph = Graph(
            nodes: [
                Node(opType: "Neg", inputs: ["x"], outputs: ["a"]),
                Node(opType: "Loop", inputs: ["", "", "a"], outputs: ["y"], attributes: ["body": .graph(shadowing)]),
            ],
            inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
        try graph.renameValue("a", to: "b")
        #expect(graph.nodes[1].inputs == ["", "", "b"])
        #expect(graph.nodes[1].attributes["body"]?.graphValue?.nodes[1].inputs == ["a"])
    }

    @Test func replaceUsesLeavesDefinitionsAndOptionallyOutputs() {
        var graph = graphWithCapture()
        graph.replaceUses(of: "a", with: "x")
        #expect(graph.nodes[0].outputs == ["a"])
        #expect(graph.nodes[2].inputs == ["x"])
        #expect(graph.nodes[1].attributes["else_branch"]?.graphValue?.nodes[0].inputs == ["x"])

        graph.replaceUses(of: "b", with: "x")
        #expect(graph.outputs.map(\.name) == ["y", "b"])
        graph.replaceUses(ofNodeAt: 2, with: ["x"], includingGraphOutputs: true)
        #expect(graph.outputs.map(\.name) == ["y", "x"])
    }

    @Test func removeNodesDropsTheirAnnotations() {
        var graph = graphWithCapture()
        graph.removeNodes(at: [0, 7])
        #expect(graph.nodes.map(\.name) == ["if", "relu"])
        #expect(graph.valueInfo["a"] == nil)
    }

    @Test func insertNodeGoesAfterItsProducers() throws {
        var graph = graphWithCapture()
        let index = try graph.insertNode(Node(name: "sq", opType: "Mul", inputs: ["a", "a"], outputs: ["sq"]))
        #expect(index == 1)
        #expect(graph.nodes.map(\.name) == ["neg", "sq", "if", "relu"])
        #expect(throws: GraphError.duplicateDefinition(name: "b")) {
            try graph.insertNode(Node(opType: "Neg", inputs: ["x"], outputs: ["b"]))
        }
    }

    @Test func insertNodeReordersWhenAReaderComesFirst() throws {
        // "use" reads "t", which the inserted node defines from "late", produced after "use".
        var graph = Graph(
            nodes: [
                Node(name: "use", opType: "Relu", inputs: ["t"], outputs: ["y"]),
                Node(name: "late", opType: "Neg", inputs: ["x"], outputs: ["l"]),
            ],
            inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
        try graph.insertNode(Node(name: "make", opType: "Abs", inputs: ["l"], outputs: ["t"]))
        #expect(graph.nodes.map(\.name) == ["late", "make", "use"])
        #expect(try graph.topologicalOrder() == [0, 1, 2])
    }

    @Test func uniqueNamesAvoidEveryScope() {
        let graph = graphWithCapture()
        #expect(graph.uniqueName(base: "fresh") == "fresh")
        #expect(graph.uniqueName(base: "a") == "a_1")
        #expect(graph.uniqueName(base: "r") == "r_1")  // used inside the If branches
        #expect(graph.uniqueName(base: "neg") == "neg_1")  // node names count too
        #expect(graph.uniqueName(base: "outer", reserved: ["outer", "outer_1"]) == "outer_2")
        var namer = UniqueNamer(graph: graph)
        #expect(namer.make(base: "w") == "w")
        #expect(namer.make(base: "w") == "w_1")
    }

    @Test func constantsComeFromInitializersAndConstantNodes() throws {
        let graph = Graph(
            nodes: [
                constantNode("k", int64s([2], [3, 4])),
                Node(opType: "Constant", inputs: [], outputs: ["f"], attributes: ["value_floats": .floats([1, 2])]),
                Node(opType: "Constant", inputs: [], outputs: ["i"], attributes: ["value_int": .int(7)]),
                Node(opType: "Add", inputs: ["w", "k"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x"), ValueInfo(name: "overridable")],
            outputs: [ValueInfo(name: "y")],
            initializers: ["w": int64s([1], [5]), "overridable": int64s([1], [6])])
        #expect(graph.constantValue(named: "w") == int64s([1], [5]))
        #expect(graph.constantValue(named: "k") == int64s([2], [3, 4]))
        #expect(graph.constantValue(named: "f") == floats([2], [1, 2]))
        #expect(graph.constantValue(named: "i") == Tensor(scalar: Int64(7)))
        #expect(graph.constantValue(named: "overridable") == nil)  // an input may replace it
        #expect(graph.constantValue(named: "y") == nil)
        #expect(Set(graph.constantValues.keys) == ["w", "k", "f", "i"])
    }
}
