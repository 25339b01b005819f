import GraphIR
import OrderedCollections
import Tensors
import Testing

@Suite struct ShapeInferenceLayoutTests {
    let x: (String, DType, [Dim]) = ("x", .float32, ["b", "s", 384])

    @Test func reshapeResolvesZerosAndMinusOneSymbolically() throws {
        func reshape(_ input: [Dim], _ target: [Int], allowZero: Int? = nil) throws -> [ValueType?] {
            var node = Node(name: "r", opType: "Reshape", inputs: ["x", "shape"], outputs: ["y"])
            if let allowZero { node.attributes["allowzero"] = .int(allowZero) }
            return try inferNode(node, inputs: [("x", .float32, input)], initializers: ["shape": int64s([target.count], target)])
        }
        #expect(try reshape(["b", "s", 384], [0, 0, 12, 32]) == [tensorType(.float32, ["b", "s", 12, 32])])
        #expect(try reshape(["b", "s", 12, 32], [0, -1, 384]) == [tensorType(.float32, ["b", "s", 384])])
        #expect(try reshape(["b", "s", 12, 32], [0, 0, -1]) == [tensorType(.float32, ["b", "s", 384])])
        #expect(try reshape(["b", "s", 384], [-1, 384]) == [tensorType(.float32, ["?", 384])])  // b·s is no single symbol
        #expect(try reshape([2, 3, 4], [-1]) == [tensorType(.float32, [24])])
        #expect(try reshape([3, 0], [0, 3], allowZero: 1) == [tensorType(.float32, [0, 3])])
        #expect(throws: GraphError.self) { try reshape([3, 0], [0, 3]) }  // 0 copies 3: 9 elements from 0
        #expect(throws: GraphError.self) { try reshape([2, 3, 4], [5, -1]) }
        #expect(throws: GraphError.self) { try reshape([2, 3, 4], [6, 5]) }
        #expect(throws: GraphError.self) { try reshape([2, 3, 4], [-1, -1]) }
    }

    @Test func transposeFlattenSqueezeUnsqueeze() throws {
        let transpose = try inferNode(Node(opType: "Transpose", inputs: ["x"], outputs: ["y"], attributes: ["perm": .ints([0, 2, 1])]),
                                      inputs: [x])
        #expect(transpose == [tensorType(.float32, ["b", 384, "s"])])
        let reversed = try inferNode(Node(opType: "Transpose", inputs: ["x"], outputs: ["y"]), inputs: [x])
        #expect(reversed == [tensorType(.float32, [384, "s", "b"])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Transpose", inputs: ["x"], outputs: ["y"], attributes: ["perm": .ints([0, 0, 1])]), inputs: [x])
        }

        let flatten = try inferNode(Node(opType: "Flatten", inputs: ["x"], outputs: ["y"], attributes: ["axis": .int(2)]),
                                    inputs: [("x", .float32, ["b", "s", 4, 5])])
        #expect(flatten == [tensorType(.float32, ["?", 20])])
        let flattenOne = try inferNode(Node(opType: "Flatten", inputs: ["x"], outputs: ["y"]), inputs: [("x", .float32, ["b", 3, 4])])
        #expect(flattenOne == [tensorType(.float32, ["b", 12])])

        let squeeze = try inferNode(Node(opType: "Squeeze", inputs: ["x", "axes"], outputs: ["y"]),
                                    inputs: [("x", .float32, ["b", 1, 4])], initializers: ["axes": int64s([1], [1])])
        #expect(squeeze == [tensorType(.float32, ["b", 4])])
        let squeezeAttribute = try inferNode(Node(opType: "Squeeze", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([-1])]),
                                             inputs: [("x", .float32, ["b", 4, 1])], opset: 11)
        #expect(squeezeAttribute == [tensorType(.float32, ["b", 4])])
        let squeezeAll = try inferNode(Node(opType: "Squeeze", inputs: ["x"], outputs: ["y"]), inputs: [("x", .float32, [1, 4, 1])])
        #expect(squeezeAll == [tensorType(.float32, [4])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Squeeze", inputs: ["x", "axes"], outputs: ["y"]),
                          inputs: [("x", .float32, ["b", 2])], initializers: ["axes": int64s([1], [1])])
        }

        let unsqueeze = try inferNode(Node(opType: "Unsqueeze", inputs: ["x", "axes"], outputs: ["y"]),
                                      inputs: [("x", .float32, ["n"])], initializers: ["axes": int64s([2], [0, -1])])
        #expect(unsqueeze == [tensorType(.float32, [1, "n", 1])])
        let unsqueezeAttribute = try inferNode(Node(opType: "Unsqueeze", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([1])]),
                                               inputs: [("x", .float32, ["b", "s"])], opset: 11)
        #expect(unsqueezeAttribute == [tensorType(.float32, ["b", 1, "s"])])
    }

    @Test func concatAndSplit() throws {
        let concat = try inferNode(Node(opType: "Concat", inputs: ["a", "c"], outputs: ["y"], attributes: ["axis": .int(-1)]),
                                   inputs: [("a", .float32, ["b", 3]), ("c", .float32, ["b", 5])])
        #expect(concat == [tensorType(.float32, ["b", 8])])
        let symbolic = try inferNode(Node(opType: "Concat", inputs: ["a", "c"], outputs: ["y"], attributes: ["axis": .int(1)]),
                                     inputs: [("a", .float32, ["?", "s"]), ("c", .float32, [2, 0])])
        #expect(symbolic == [tensorType(.float32, [2, "s"])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Concat", inputs: ["a", "c"], outputs: ["y"], attributes: ["axis": .int(1)]),
                          inputs: [("a", .float32, [2, 3]), ("c", .float32, [4, 3])])
        }

        let explicit = try inferNode(Node(opType: "Split", inputs: ["x", "split"], outputs: ["p", "q"], attributes: ["axis": .int(1)]),
                                     inputs: [("x", .float32, ["b", 6])], initializers: ["split": int64s([2], [2, 4])], opset: 13)
        #expect(explicit == [tensorType(.float32, ["b", 2]), tensorType(.float32, ["b", 4])])
        let even = try inferNode(Node(opType: "Split", inputs: ["x"], outputs: ["p", "q", "r"]), inputs: [("x", .float32, [9, "n"])], opset: 11)
        #expect(even == Array(repeating: tensorType(.float32, [3, "n"]), count: 3))
        let uneven = try inferNode(Node(opType: "Split", inputs: ["x"], outputs: ["p", "q", "r"],
                                        attributes: ["axis": .int(1), "num_outputs": .int(3)]),
                                   inputs: [("x", .float32, ["b", 10])], opset: 18)
        #expect(uneven == [tensorType(.float32, ["b", 4]), tensorType(.float32, ["b", 4]), tensorType(.float32, ["b", 2])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Split", inputs: ["x"], outputs: ["p", "q", "r"]), inputs: [("x", .float32, [10])], opset: 13)
        }
    }

    @Test func sliceWithConstantBounds() throws {
        func slice(_ shape: [Dim], starts: [Int], ends: [Int], axes: [Int]? = nil, steps: [Int]? = nil) throws -> [ValueType?] {
            var initializers: OrderedDictionary<String, Tensor> = [
                "starts": int64s([starts.count], starts), "ends": int64s([ends.count], ends),
            ]
            var inputs = ["x", "starts", "ends"]
            if let axes { initializers["axes"] = int64s([axes.count], axes); inputs.append("axes") }
            if let steps {
                if axes == nil { inputs.append("") }
                initializers["steps"] = int64s([steps.count], steps)
                inputs.append("steps")
            }
            return try inferNode(Node(opType: "Slice", inputs: inputs, outputs: ["y"]), inputs: [("x", .float32, shape)],
                                 initializers: initializers)
        }
        #expect(try slice(["b", "s", 384], starts: [0], ends: [Int.max], axes: [1]) == [tensorType(.float32, ["b", "s", 384])])
        #expect(try slice(["b", "s", 384], starts: [1], ends: [-1], axes: [2], steps: [2]) == [tensorType(.float32, ["b", "s", 191])])
        #expect(try slice(["b", "s", 384], starts: [-1], ends: [Int.min], axes: [2], steps: [-1]) == [tensorType(.float32, ["b", "s", 384])])
        #expect(try slice([10, 20], starts: [2, 30], ends: [-3, 5], axes: [0, 1], steps: [3, -2]) == [tensorType(.float32, [2, 7])])
        #expect(try slice(["b", "s"], starts: [0], ends: [2], axes: [1]) == [tensorType(.float32, ["b", "?"])])
        #expect(throws: GraphError.self) { try slice([4], starts: [0], ends: [2], steps: [0]) }

        let attributes = try inferNode(
            Node(opType: "Slice", inputs: ["x"], outputs: ["y"],
                 attributes: ["starts": .ints([1]), "ends": .ints([3]), "axes": .ints([0])]),
            inputs: [("x", .float32, [5, "n"])], opset: 9)
        #expect(attributes == [tensorType(.float32, [2, "n"])])
    }

    @Test func padGatherExpandTileAndDepthToSpace() throws {
        let pad = try inferNode(Node(opType: "Pad", inputs: ["x", "pads"], outputs: ["y"]),
                                inputs: [("x", .float32, ["s", 4])], initializers: ["pads": int64s([4], [0, 1, 0, 2])], opset: 13)
        #expect(pad == [tensorType(.float32, ["s", 7])])
        let padAttribute = try inferNode(Node(opType: "Pad", inputs: ["x"], outputs: ["y"], attributes: ["pads": .ints([1, 0, 1, 0])]),
                                         inputs: [("x", .float32, [3, 4])], opset: 2)
        #expect(padAttribute == [tensorType(.float32, [5, 4])])

        let embedding = try inferNode(Node(opType: "Gather", inputs: ["table", "ids"], outputs: ["y"]),
                                      inputs: [("table", .float32, [30522, 384]), ("ids", .int64, ["batch", "seq"])])
        #expect(embedding == [tensorType(.float32, ["batch", "seq", 384])])
        let columns = try inferNode(Node(opType: "Gather", inputs: ["x", "i"], outputs: ["y"], attributes: ["axis": .int(1)]),
                                    inputs: [("x", .float32, [2, 5, 3])], initializers: ["i": Tensor(scalar: Int64(-1))])
        #expect(columns == [tensorType(.float32, [2, 3])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Gather", inputs: ["x", "i"], outputs: ["y"]),
                          inputs: [("x", .float32, [2, 5])], initializers: ["i": int64s([1], [2])])
        }

        let expand = try inferNode(Node(opType: "Expand", inputs: ["x", "shape"], outputs: ["y"]),
                                   inputs: [("x", .float32, [3, 1])], initializers: ["shape": int64s([3], [2, 1, 4])])
        #expect(expand == [tensorType(.float32, [2, 3, 4])])
        let tile = try inferNode(Node(opType: "Tile", inputs: ["x", "r"], outputs: ["y"]),
                                 inputs: [("x", .float32, [2, "n"])], initializers: ["r": int64s([2], [3, 1])])
        #expect(tile == [tensorType(.float32, [6, "n"])])
        let depth = try inferNode(Node(opType: "DepthToSpace", inputs: ["x"], outputs: ["y"], attributes: ["blocksize": .int(2)]),
                                  inputs: [("x", .float32, [1, 8, 3, 4])])
        #expect(depth == [tensorType(.float32, [1, 2, 6, 8])])
    }

    @Test func shapeSizeConstantsAndRange() throws {
        let shape = try inferNode(Node(opType: "Shape", inputs: ["x"], outputs: ["y"]), inputs: [x])
        #expect(shape == [tensorType(.int64, [3])])
        let tail = try inferNode(Node(opType: "Shape", inputs: ["x"], outputs: ["y"], attributes: ["start": .int(1)]), inputs: [x])
        #expect(tail == [tensorType(.int64, [2])])
        let size = try inferNode(Node(opType: "Size", inputs: ["x"], outputs: ["y"]), inputs: [x])
        #expect(size == [tensorType(.int64, [])])
        let constant = try inferNode(constantNode("y", floats([2, 2], [1, 2, 3, 4])), inputs: [])
        #expect(constant == [tensorType(.float32, [2, 2])])
        let filled = try inferNode(
            Node(opType: "ConstantOfShape", inputs: ["shape"], outputs: ["y"], attributes: ["value": .tensor(int64s([1], [1]))]),
            inputs: [], initializers: ["shape": int64s([2], [2, 3])])
        #expect(filled == [tensorType(.int64, [2, 3])])
        let defaultFill = try inferNode(Node(opType: "ConstantOfShape", inputs: ["shape"], outputs: ["y"]),
                                        inputs: [("shape", .int64, [3])])
        #expect(defaultFill == [tensorType(.float32, ["?", "?", "?"])])

        let range = try inferNode(Node(opType: "Range", inputs: ["a", "l", "d"], outputs: ["y"]), inputs: [],
                                  initializers: ["a": Tensor(scalar: Int64(0)), "l": Tensor(scalar: Int64(10)), "d": Tensor(scalar: Int64(3))])
        #expect(range == [tensorType(.int64, [4])])
        let floatRange = try inferNode(Node(opType: "Range", inputs: ["a", "l", "d"], outputs: ["y"]), inputs: [],
                                       initializers: ["a": Tensor(scalar: Float(1)), "l": Tensor(scalar: Float(2)), "d": Tensor(scalar: Float(0.3))])
        #expect(floatRange == [tensorType(.float32, [4])])
        let downward = try inferNode(Node(opType: "Range", inputs: ["a", "l", "d"], outputs: ["y"]), inputs: [],
                                     initializers: ["a": Tensor(scalar: Int32(10)), "l": Tensor(scalar: Int32(4)), "d": Tensor(scalar: Int32(-2))])
        #expect(downward == [tensorType(.int32, [3])])
        let unknown = try inferNode(Node(opType: "Range", inputs: ["a", "l", "d"], outputs: ["y"]),
                                    inputs: [("l", .int64, [])], initializers: ["a": Tensor(scalar: Int64(1)), "d": Tensor(scalar: Int64(1))])
        #expect(unknown == [tensorType(.int64, ["?"])])
    }

    /// The attention-head split of a BERT export: the target shape of the Reshape is assembled from
    /// `Shape(x)` at run time, and inference must still see `[batch, seq, 12, 32]`.
    @Test func transformerShapeChainResolvesTheReshapeTarget() throws {
        let model = makeModel(
            [
                Node(opType: "Shape", inputs: ["x"], outputs: ["shape"]),
                Node(opType: "Gather", inputs: ["shape", "zero"], outputs: ["batch_size"], attributes: ["axis": .int(0)]),
                Node(opType: "Gather", inputs: ["shape", "one"], outputs: ["seq_length"], attributes: ["axis": .int(0)]),
                Node(opType: "Unsqueeze", inputs: ["batch_size", "axes0"], outputs: ["batch_1d"]),
                Node(opType: "Unsqueeze", inputs: ["seq_length", "axes0"], outputs: ["seq_1d"]),
                Node(opType: "Concat", inputs: ["batch_1d", "seq_1d", "heads", "head_size"], outputs: ["target"],
                     attributes: ["axis": .int(0)]),
                Node(opType: "Reshape", inputs: ["x", "target"], outputs: ["split"]),
                Node(opType: "Transpose", inputs: ["split"], outputs: ["heads_first"], attributes: ["perm": .ints([0, 2, 1, 3])]),
                // And back: [batch, seq, 384] via a target of [batch, seq, -1] computed the same way.
                Node(opType: "Concat", inputs: ["batch_1d", "seq_1d", "minus_one"], outputs: ["merge_target"], attributes: ["axis": .int(0)]),
                Node(opType: "Transpose", inputs: ["heads_first"], outputs: ["seq_first"], attributes: ["perm": .ints([0, 2, 1, 3])]),
                Node(opType: "Reshape", inputs: ["seq_first", "merge_target"], outputs: ["merged"]),
            ],
            inputs: [("x", .float32, ["batch", "seq", 384])], outputs: ["merged"],
            initializers: [
                "zero": Tensor(scalar: Int64(0)), "one": Tensor(scalar: Int64(1)), "axes0": int64s([1], [0]),
                "heads": int64s([1], [12]), "head_size": int64s([1], [32]), "minus_one": int64s([1], [-1]),
            ])
        let inferred = try ShapeInference.infer(model)
        #expect(inferredType(inferred, "batch_size") == tensorType(.int64, []))
        #expect(inferredType(inferred, "target") == tensorType(.int64, [4]))
        #expect(inferredType(inferred, "split") == tensorType(.float32, ["batch", "seq", 12, 32]))
        #expect(inferredType(inferred, "heads_first") == tensorType(.float32, ["batch", 12, "seq", 32]))
        #expect(inferredType(inferred, "merged") == tensorType(.float32, ["batch", "seq", 384]))
    }

    /// The attention-mask construction of PyTorch's exporter: a target shape cleaned with
    /// `Where(Equal(shape, -1), ones, shape)` and used by `Expand`.
    @Test func maskShapeArithmeticThroughWhereAndExpand() throws {
        let model = makeModel(
            [
                Node(opType: "Shape", inputs: ["mask"], outputs: ["shape"]),
                Node(opType: "Gather", inputs: ["shape", "zero"], outputs: ["b"]),
                Node(opType: "Gather", inputs: ["shape", "one"], outputs: ["s"]),
                Node(opType: "Unsqueeze", inputs: ["b", "axes0"], outputs: ["b1"]),
                Node(opType: "Unsqueeze", inputs: ["s", "axes0"], outputs: ["s1"]),
                Node(opType: "Concat", inputs: ["b1", "ones1", "s1", "s1"], outputs: ["target"], attributes: ["axis": .int(0)]),
                Node(opType: "Shape", inputs: ["target"], outputs: ["target_shape"]),
                Node(opType: "ConstantOfShape", inputs: ["target_shape"], outputs: ["all_ones"],
                     attributes: ["value": .tensor(int64s([1], [1]))]),
                Node(opType: "Mul", inputs: ["all_ones", "minus_one"], outputs: ["minus_ones"]),
                Node(opType: "Equal", inputs: ["target", "minus_ones"], outputs: ["is_free"]),
                Node(opType: "Where", inputs: ["is_free", "all_ones", "target"], outputs: ["clean_target"]),
                Node(opType: "Cast", inputs: ["mask"], outputs: ["mask_bool"], attributes: ["to": .int(9)]),
                Node(opType: "Unsqueeze", inputs: ["mask_bool", "axes12"], outputs: ["mask4"]),
                Node(opType: "Expand", inputs: ["mask4", "clean_target"], outputs: ["expanded"]),
            ],
            inputs: [("mask", .int64, ["batch", "seq"])], outputs: ["expanded"],
            initializers: [
                "zero": Tensor(scalar: Int64(0)), "one": Tensor(scalar: Int64(1)), "axes0": int64s([1], [0]),
                "ones1": int64s([1], [1]), "minus_one": Tensor(scalar: Int64(-1)), "axes12": int64s([2], [1, 2]),
            ])
        let inferred = try ShapeInference.infer(model)
        #expect(inferredType(inferred, "mask4") == tensorType(.bool, ["batch", 1, 1, "seq"]))
        #expect(inferredType(inferred, "expanded") == tensorType(.bool, ["batch", 1, "seq", "seq"]))
    }
}

@Suite struct ShapeInferenceSymbolicSliceTests {
    /// BERT's position ids: `table[:, 0:seq]` from a `[1, 512]` table, added to `[batch, seq, 384]`.
    @Test func positionIdSliceBroadcastsBackToTheSequenceLength() throws {
        let model = makeModel(
            [
                Node(opType: "Shape", inputs: ["ids"], outputs: ["shape"]),
                Node(opType: "Gather", inputs: ["shape", "one"], outputs: ["seq_length"]),
                Node(opType: "Unsqueeze", inputs: ["seq_length", "axes0"], outputs: ["end"]),
                Node(opType: "Slice", inputs: ["positions", "zero1", "end", "one1"], outputs: ["position_ids"]),
                Node(opType: "Gather", inputs: ["table", "position_ids"], outputs: ["position_embeddings"]),
                Node(opType: "Gather", inputs: ["words", "ids"], outputs: ["word_embeddings"]),
                Node(opType: "Add", inputs: ["word_embeddings", "position_embeddings"], outputs: ["sum"]),
                Node(opType: "Slice", inputs: ["ids", "zero1", "end", "one1"], outputs: ["whole"]),
            ],
            inputs: [("ids", .int64, ["batch", "seq"]), ("positions", .int64, [1, 512]),
                     ("table", .float32, [512, 384]), ("words", .float32, [100, 384])],
            outputs: ["sum", "whole"],
            initializers: ["one": Tensor(scalar: Int64(1)), "axes0": int64s([1], [0]), "zero1": int64s([1], [0]),
                           "one1": int64s([1], [1])])
        let inferred = try ShapeInference.infer(model)
        #expect(inferredType(inferred, "position_ids") == tensorType(.int64, [1, "min(seq,512)"]))
        #expect(inferredType(inferred, "sum") == tensorType(.float32, ["batch", "seq", 384]))
        // Slicing [0:seq] along the axis of length seq keeps it whole.
        #expect(inferredType(inferred, "whole") == tensorType(.int64, ["batch", "seq"]))
    }
}
