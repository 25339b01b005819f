import GraphIR
import Testing

@Suite struct TopologicalOrderTests {
    @Test func ordersNodesAfterTheirProducers() throws {
        let graph = Graph(
            nodes: [
                Node(name: "b", opType: "Relu", inputs: ["t"], outputs: ["y"]),
                Node(name: "a", opType: "Neg", inputs: ["x"], outputs: ["t"]),
            ],
            inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")])
        #expect(try graph.topologicalOrder() == [1, 0])
    }

    @Test func reportsCyclesAndUndefinedValues() {
        let cyclic = Graph(nodes: [
            Node(opType: "Neg", inputs: ["b"], outputs: ["a"]),
            Node(opType: "Neg", inputs: ["a"], outputs: ["b"]),
        ])
        #expect(throws: GraphError.self) { try cyclic.topologicalOrder() }
        let dangling = Graph(nodes: [Node(name: "n", opType: "Neg", inputs: ["missing"], outputs: ["a"])])
        #expect(throws: GraphError.undefinedValue(name: "missing", node: "node 'n' (Neg)")) {
            try dangling.topologicalOrder()
        }
    }

    @Test func subgraphCapturesCountAsReads() throws {
        let body = Graph(nodes: [Node(opType: "Identity", inputs: ["outer"], outputs: ["r"])],
                         outputs: [ValueInfo(name: "r")])
        let graph = Graph(
            nodes: [
                Node(opType: "If", inputs: ["c"], outputs: ["y"],
                     attributes: ["then_branch": .graph(body), "else_branch": .graph(body)]),
                Node(opType: "Neg", inputs: ["x"], outputs: ["outer"]),
            ],
            inputs: [ValueInfo(name: "x"), ValueInfo(name: "c")])
        #expect(try graph.topologicalOrder() == [1, 0])
    }
}
