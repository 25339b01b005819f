import GraphIR
import ONNX
import Tensors
import Testing

@Suite struct ModelCheckerTests {
    /// x → Relu → r → Neg → y, with an initializer w feeding an Add.
    static func chain() throws -> Model {
        Model(graph: Graph(
            name: "chain",
            nodes: [
                Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["r"]),
                Node(name: "add", opType: "Add", inputs: ["r", "w"], outputs: ["s"]),
                Node(name: "neg", opType: "Neg", inputs: ["s"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(2)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.value(2)])],
            initializers: ["w": try Tensor(shape: [2], scalars: [Float(1), 2])]))
    }

    @Test func aWellFormedModelPasses() throws {
        try ModelChecker.check(try Self.chain())
        try ModelChecker.check(try ONNXFixtures.everyKindModel())
    }

    @Test func undefinedInputIsNamed() throws {
        var model = try Self.chain()
        model.graph.nodes[1].inputs[1] = "missing_bias"
        #expect(throws: ONNXError.undefinedInput(graph: "chain", node: "node 'add' (Add)", value: "missing_bias")) {
            try ModelChecker.check(model)
        }
        // Reading a value before the node that defines it is also undefined (the file must be sorted).
        var unsorted = try Self.chain()
        unsorted.graph.nodes.swapAt(0, 1)
        #expect(throws: ONNXError.undefinedInput(graph: "chain", node: "node 'add' (Add)", value: "r")) {
            try ModelChecker.check(unsorted)
        }
    }

    @Test func duplicateDefinitionIsNamed() throws {
        var model = try Self.chain()
        model.graph.nodes[2].outputs = ["r"]
        model.graph.outputs[0].name = "r"
        #expect(throws: ONNXError.duplicateDefinition(graph: "chain", value: "r", node: "node 'neg' (Neg)")) {
            try ModelChecker.check(model)
        }
        var overwritesInput = try Self.chain()
        overwritesInput.graph.nodes[0].outputs = ["x"]
        #expect(throws: ONNXError.duplicateDefinition(graph: "chain", value: "x", node: "node 'relu' (Relu)")) {
            try ModelChecker.check(overwritesInput)
        }
    }

    @Test func undefinedGraphOutputIsNamed() throws {
        var model = try Self.chain()
        model.graph.outputs.append(ValueInfo(name: "ghost"))
        #expect(throws: ONNXError.undefinedGraphOutput(graph: "chain", value: "ghost")) {
            try ModelChecker.check(model)
        }
    }

    @Test func subgraphsSeeOuterValuesDefinedBeforeTheirNode() throws {
        func ifModel(branchReads name: String) throws -> Model {
            let branch = Graph(
                name: "branch", nodes: [Node(name: "inner", opType: "Identity", inputs: [name], outputs: ["o"])],
                outputs: [ValueInfo(name: "o")])
            var model = try Self.chain()
            model.graph.inputs.append(ValueInfo(name: "c", dtype: .bool, shape: []))
            model.graph.nodes.insert(
                Node(name: "if", opType: "If", inputs: ["c"], outputs: ["z"],
                     attributes: ["then_branch": .graph(branch), "else_branch": .graph(branch)]),
                at: 1)
            return model
        }
        try ModelChecker.check(try ifModel(branchReads: "r"))  // defined by relu, before the If
        try ModelChecker.check(try ifModel(branchReads: "w"))  // an outer initializer
        #expect(throws: ONNXError.undefinedInput(graph: "branch", node: "node 'inner' (Identity)", value: "y")) {
            try ModelChecker.check(try ifModel(branchReads: "y"))  // defined after the If
        }
    }

    @Test func domainsAndVersionsAreChecked() throws {
        var custom = try Self.chain()
        custom.graph.nodes[0].domain = "com.example"
        #expect(throws: ONNXError.missingOpsetImport(node: "node 'relu' (Relu)", domain: "com.example")) {
            try ModelChecker.check(custom)
        }
        custom.opsetImports["com.example"] = 1
        try ModelChecker.check(custom)

        var aliased = try Self.chain()
        aliased.graph.nodes[0].domain = "ai.onnx"
        try ModelChecker.check(aliased)

        var badIR = try Self.chain()
        badIR.irVersion = 0
        #expect(throws: ONNXError.self) { try ModelChecker.check(badIR) }
        var future = try Self.chain()
        future.opsetImports[""] = 99
        #expect(throws: ONNXError.self) { try ModelChecker.check(future) }
        var noOpsets = try Self.chain()
        noOpsets.opsetImports = [:]
        #expect(throws: ONNXError.self) { try ModelChecker.check(noOpsets) }
    }
}
