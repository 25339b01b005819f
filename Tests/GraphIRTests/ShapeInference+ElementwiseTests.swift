import GraphIR
import Tensors
import Testing

@Suite struct ShapeInferenceElementwiseTests {
    @Test(arguments: [
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softmax", "LogSoftmax", "Sqrt",
        "Exp", "Log", "Erf", "Neg", "Abs", "Reciprocal", "Identity", "Clip",
    ])
    func unaryOperatorsKeepTypeAndShape(opType: String) throws {
        let types = try inferNode(Node(opType: opType, inputs: ["x"], outputs: ["y"]),
                                  inputs: [("x", .float32, ["batch", 3, 8])])
        #expect(types == [tensorType(.float32, ["batch", 3, 8])])
    }

    @Test func clipWithBoundsAndPReluWithSlope() throws {
        let clip = try inferNode(Node(opType: "Clip", inputs: ["x", "lo", ""], outputs: ["y"]),
                                 inputs: [("x", .float16, [2, "n"])], initializers: ["lo": Tensor(scalar: Float16(0))])
        #expect(clip == [tensorType(.float16, [2, "n"])])
        let prelu = try inferNode(Node(opType: "PRelu", inputs: ["x", "slope"], outputs: ["y"]),
                                  inputs: [("x", .float32, ["N", 3, 4, 4])], initializers: ["slope": floats([3, 1, 1], [1, 2, 3])])
        #expect(prelu == [tensorType(.float32, ["N", 3, 4, 4])])
    }

    @Test(arguments: ["Add", "Sub", "Mul", "Div", "Pow"])
    func binaryOperatorsBroadcastSymbols(opType: String) throws {
        // A symbol broadcast with 1 stays the symbol; with a number n ≠ 1 it must be n.
        let types = try inferNode(Node(opType: opType, inputs: ["a", "b"], outputs: ["y"]),
                                  inputs: [("a", .float32, ["batch", 1, 384]), ("b", .float32, ["seq", "k"])])
        #expect(types == [tensorType(.float32, ["batch", "seq", 384])])
    }

    @Test func broadcastLeavesDifferentSymbolsUnknown() throws {
        let types = try inferNode(Node(opType: "Add", inputs: ["a", "b"], outputs: ["y"]),
                                  inputs: [("a", .float32, ["n", "?"]), ("b", .float32, ["m", 1])])
        #expect(types == [tensorType(.float32, ["?", "?"])])
    }

    @Test func contradictionsNameTheNode() {
        let add = Node(name: "bad_add", opType: "Add", inputs: ["a", "b"], outputs: ["y"])
        #expect(throws: GraphError.shapeMismatch(node: "node 'bad_add' (Add)", reason: "shapes [2, 3] and [4, 3] do not broadcast")) {
            try inferNode(add, inputs: [("a", .float32, [2, 3]), ("b", .float32, [4, 3])])
        }
        #expect(throws: GraphError.self) {
            try inferNode(add, inputs: [("a", .float32, [2, 3]), ("b", .int64, [2, 3])])
        }
    }

    @Test func comparisonsAndLogicGiveBools() throws {
        for opType in ["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"] {
            let types = try inferNode(Node(opType: opType, inputs: ["a", "b"], outputs: ["y"]),
                                      inputs: [("a", .int64, ["batch", 1]), ("b", .int64, [5])])
            #expect(types == [tensorType(.bool, ["batch", 5])])
        }
        for opType in ["And", "Or", "Xor"] {
            let types = try inferNode(Node(opType: opType, inputs: ["a", "b"], outputs: ["y"]),
                                      inputs: [("a", .bool, [2, 1]), ("b", .bool, [3])])
            #expect(types == [tensorType(.bool, [2, 3])])
        }
        let not = try inferNode(Node(opType: "Not", inputs: ["a"], outputs: ["y"]), inputs: [("a", .bool, ["n"])])
        #expect(not == [tensorType(.bool, ["n"])])
        let isNaN = try inferNode(Node(opType: "IsNaN", inputs: ["a"], outputs: ["y"]), inputs: [("a", .float32, ["n", 2])])
        #expect(isNaN == [tensorType(.bool, ["n", 2])])
    }

    @Test func whereBroadcastsAllThreeAndTakesTheValueType() throws {
        let types = try inferNode(Node(opType: "Where", inputs: ["c", "x", "y"], outputs: ["z"]),
                                  inputs: [("c", .bool, ["batch", 1]), ("x", .float32, [1, 5]), ("y", .float32, [])])
        #expect(types == [tensorType(.float32, ["batch", 5])])
    }

    @Test func castChangesOnlyTheElementType() throws {
        let types = try inferNode(Node(opType: "Cast", inputs: ["x"], outputs: ["y"], attributes: ["to": .int(6)]),
                                  inputs: [("x", .float32, ["n", 3])])
        #expect(types == [tensorType(.int32, ["n", 3])])
        let like = try inferNode(Node(opType: "CastLike", inputs: ["x", "t"], outputs: ["y"]),
                                 inputs: [("x", .float32, [2]), ("t", .float16, [])])
        #expect(like == [tensorType(.float16, [2])])
        #expect(throws: GraphError.invalidAttribute(node: "Cast node producing 'y'", attribute: "to", reason: "is required")) {
            try inferNode(Node(opType: "Cast", inputs: ["x"], outputs: ["y"]), inputs: [("x", .float32, [2])])
        }
    }
}
