import GraphIR
import OrderedCollections
import Tensors
import Testing

@Suite struct ShapeInferenceControlFlowTests {
    /// A branch returning Relu(captured) or a constant of the given shape.
    func branch(_ name: String, reading captured: String?, constantShape: [Int]? = nil) -> Graph {
        if let constantShape {
            let count = constantShape.reduce(1, *)
            return Graph(name: name, nodes: [constantNode("\(name)_out", floats(constantShape, Array(repeating: 0, count: count)))],
                         outputs: [ValueInfo(name: "\(name)_out")])
        }
        return Graph(name: name, nodes: [Node(opType: "Relu", inputs: [captured!], outputs: ["\(name)_out"])],
                     outputs: [ValueInfo(name: "\(name)_out")])
    }

    @Test func ifOutputsKeepWhatBranchesAgreeOnAndBranchesGetAnnotated() throws {
        let node = Node(opType: "If", inputs: ["c"], outputs: ["y"], attributes: [
            "then_branch": .graph(branch("then", reading: "x")),
            "else_branch": .graph(branch("else", reading: nil, constantShape: [2, 5])),
        ])
        let model = makeModel([node], inputs: [("c", .bool, []), ("x", .float32, [2, "n"])], outputs: ["y"])
        let inferred = try ShapeInference.infer(model)
        #expect(inferredType(inferred, "y") == tensorType(.float32, [2, "?"]))
        // The branch's own output got its type from the captured x.
        let thenBranch = inferred.graph.nodes[0].attributes["then_branch"]?.graphValue
        #expect(thenBranch?.outputs.first?.type == tensorType(.float32, [2, "n"]))
    }

    @Test func ifWithAConstantConditionTakesThatBranch() throws {
        let node = Node(opType: "If", inputs: ["c"], outputs: ["y"], attributes: [
            "then_branch": .graph(branch("then", reading: "x")),
            "else_branch": .graph(branch("else", reading: nil, constantShape: [2, 5])),
        ])
        let model = makeModel([node], inputs: [("x", .float32, [2, "n"])], outputs: ["y"],
                              initializers: ["c": Tensor(scalar: false)])
        #expect(inferredType(try ShapeInference.infer(model), "y") == tensorType(.float32, [2, 5]))
    }

    @Test func ifBranchesOfDifferentTypesAreAContradiction() {
        let intBranch = Graph(name: "ints", nodes: [constantNode("i", int64s([1], [1]))], outputs: [ValueInfo(name: "i")])
        let node = Node(name: "choose", opType: "If", inputs: ["c"], outputs: ["y"], attributes: [
            "then_branch": .graph(branch("then", reading: "x")), "else_branch": .graph(intBranch),
        ])
        let model = makeModel([node], inputs: [("c", .bool, []), ("x", .float32, [1])], outputs: ["y"])
        #expect(throws: GraphError.self) { try ShapeInference.infer(model) }
    }

    @Test func loopCarriesTypesAndStacksScanOutputs() throws {
        // body(i, cond, acc) -> (cond, acc + x, acc): x is captured from the outer graph.
        let body = Graph(
            name: "body",
            nodes: [
                Node(opType: "Identity", inputs: ["cond_in"], outputs: ["cond_out"]),
                Node(opType: "Add", inputs: ["acc", "x"], outputs: ["acc_out"]),
                Node(opType: "Identity", inputs: ["acc"], outputs: ["scan_out"]),
            ],
            inputs: [ValueInfo(name: "i"), ValueInfo(name: "cond_in"), ValueInfo(name: "acc", dtype: .float32, shape: [3])],
            outputs: [ValueInfo(name: "cond_out"), ValueInfo(name: "acc_out"), ValueInfo(name: "scan_out")])
        let node = Node(opType: "Loop", inputs: ["m", "", "start"], outputs: ["final", "history"],
                        attributes: ["body": .graph(body)])
        let model = makeModel([node], inputs: [("m", .int64, []), ("start", .float32, [3]), ("x", .float32, [3])],
                              outputs: ["final", "history"])
        let inferred = try ShapeInference.infer(model)
        #expect(inferredType(inferred, "final") == tensorType(.float32, [3]))
        #expect(inferredType(inferred, "history") == tensorType(.float32, ["?", 3]))
        let annotatedBody = inferred.graph.nodes[0].attributes["body"]?.graphValue
        #expect(annotatedBody?.outputs.first?.type == tensorType(.bool, []))
        #expect(annotatedBody?.outputs[1].type == tensorType(.float32, [3]))
    }
}

@Suite struct ShapeInferenceAnnotationTests {
    @Test func declaredAnnotationsAreRefinedOrContradicted() throws {
        // A declared symbol gives way to a computed number (MiniLM declares its 384 as a symbol).
        var model = makeModel([Node(opType: "MatMul", inputs: ["a", "w"], outputs: ["y"])],
                              inputs: [("a", .float32, ["batch", 3])], outputs: [],
                              initializers: ["w": floats([3, 4], Array(repeating: 0, count: 12))])
        model.graph.outputs = [ValueInfo(name: "y", dtype: .float32, shape: ["batch", "features"])]
        #expect(inferredType(try ShapeInference.infer(model), "y") == tensorType(.float32, ["batch", 4]))

        model.graph.outputs = [ValueInfo(name: "y", dtype: .float32, shape: ["batch", 5])]
        #expect(throws: GraphError.self) { try ShapeInference.infer(model) }
        model.graph.outputs = [ValueInfo(name: "y", dtype: .float16, shape: nil)]
        #expect(throws: GraphError.self) { try ShapeInference.infer(model) }

        // An intermediate annotation fills in what inference cannot know.
        var custom = makeModel([Node(opType: "Mystery", domain: "vendor", inputs: ["a"], outputs: ["m"]),
                                Node(opType: "Relu", inputs: ["m"], outputs: ["y"])],
                               inputs: [("a", .float32, [2])], outputs: ["y"])
        #expect(inferredType(try ShapeInference.infer(custom), "m") == nil)
        #expect(inferredType(try ShapeInference.infer(custom), "y") == nil)
        custom.graph.valueInfo["m"] = ValueInfo(name: "m", dtype: .float32, shape: [7])
        #expect(inferredType(try ShapeInference.infer(custom), "y") == tensorType(.float32, [7]))
    }

    @Test func opsetDecidesBetweenAttributeAndInputForms() throws {
        // Opset 11 Unsqueeze reads the attribute; at 13 the same attribute is meaningless and the
        // missing axes input leaves the shape unknown.
        let node = Node(opType: "Unsqueeze", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([0])])
        #expect(try inferNode(node, inputs: [("x", .float32, [3])], opset: 11) == [tensorType(.float32, [1, 3])])
        #expect(try inferNode(node, inputs: [("x", .float32, [3])], opset: 13) == [tensorType(.float32, nil)])
        // ReduceSum moved axes to an input at 13, ReduceMean only at 18.
        let mean = Node(opType: "ReduceMean", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([0])])
        #expect(try inferNode(mean, inputs: [("x", .float32, [3, 4])], opset: 17) == [tensorType(.float32, [1, 4])])
        #expect(try inferNode(mean, inputs: [("x", .float32, [3, 4])], opset: 18) == [tensorType(.float32, [1, 1])])
    }

    @Test func malformedAttributesThrowTypedErrors() {
        #expect(throws: GraphError.invalidAttribute(node: "Concat node producing 'y'", attribute: "axis", reason: "must be an integer")) {
            try inferNode(Node(opType: "Concat", inputs: ["x"], outputs: ["y"], attributes: ["axis": .text("0")]),
                          inputs: [("x", .float32, [3])])
        }
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Conv", inputs: ["x", "w"], outputs: ["y"], attributes: ["strides": .ints([0, 1])]),
                          inputs: [("x", .float32, [1, 1, 4, 4]), ("w", .float32, [1, 1, 1, 1])])
        }
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "LSTM", inputs: ["x", "w", "r"], outputs: ["y"], attributes: ["direction": .text("sideways")]),
                          inputs: [("x", .float32, [1, 1, 1]), ("w", .float32, [1, 4, 1]), ("r", .float32, [1, 4, 1])])
        }
    }

    @Test func hostileSizesThrowInsteadOfTrapping() throws {
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Conv", inputs: ["x", "w"], outputs: ["y"], attributes: ["dilations": .ints([Int.max, 1])]),
                          inputs: [("x", .float32, [1, 1, 4, 4]), ("w", .float32, [1, 1, 3, 3])])
        }
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "MaxPool", inputs: ["x"], outputs: ["y"],
                               attributes: ["kernel_shape": .ints([1]), "pads": .ints([Int.max, Int.max])]),
                          inputs: [("x", .float32, [1, 1, 4])])
        }
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "DepthToSpace", inputs: ["x"], outputs: ["y"], attributes: ["blocksize": .int(Int.max)]),
                          inputs: [("x", .float32, [1, 4, 2, 2])])
        }
        // The most negative step is legal and takes one element.
        let slice = try inferNode(Node(opType: "Slice", inputs: ["x", "s", "e", "a", "st"], outputs: ["y"]),
                                  inputs: [("x", .float32, [10])],
                                  initializers: ["s": int64s([1], [-1]), "e": int64s([1], [Int.min]),
                                                 "a": int64s([1], [0]), "st": int64s([1], [Int.min])])
        #expect(slice == [tensorType(.float32, [1])])
    }
}
