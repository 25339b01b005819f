import GraphIR
import OrderedCollections
import Tensors
import Testing

/// Expected shapes were worked out from the ONNX operator specifications and agree with
/// `onnx.shape_inference` (onnx 1.23) wherever that infers a value; where it gives up on a symbolic dim
/// (e.g. a 3×3 "same" convolution of `H`), ours keeps the symbol the formula preserves.
@Suite struct ShapeInferenceNeuralNetworkTests {
    func conv(_ attributes: [String: Attribute] = [:], op: String = "Conv", inputs: [String] = ["x", "w"]) -> Node {
        var node = Node(opType: op, inputs: inputs, outputs: ["y"])
        for (key, value) in attributes { node.attributes[key] = value }
        return node
    }

    @Test func convolutionOutputSizes() throws {
        let strided = try inferNode(conv(["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
                                    inputs: [("x", .float32, ["N", 3, 224, 224]), ("w", .float32, [16, 3, 3, 3])])
        #expect(strided == [tensorType(.float32, ["N", 16, 112, 112])])
        let depthwise = try inferNode(conv(["group": .int(8), "dilations": .ints([2, 2])]),
                                      inputs: [("x", .float32, [1, 8, 10, 10]), ("w", .float32, [8, 1, 3, 3])])
        #expect(depthwise == [tensorType(.float32, [1, 8, 6, 6])])
        // (H + 1 + 1 − 3)/1 + 1 = H, and SAME keeps ⌈H/1⌉ = H; with stride 2 the size is unknown.
        let same = try inferNode(conv(["pads": .ints([1, 1, 1, 1])]),
                                 inputs: [("x", .float32, ["N", 3, "H", "W"]), ("w", .float32, [16, 3, 3, 3])])
        #expect(same == [tensorType(.float32, ["N", 16, "H", "W"])])
        let upper = try inferNode(conv(["auto_pad": .text("SAME_UPPER"), "strides": .ints([1, 2])]),
                                  inputs: [("x", .float32, ["N", 3, "H", 9]), ("w", .float32, [16, 3, 3, 3])])
        #expect(upper == [tensorType(.float32, ["N", 16, "H", 5])])
    }

    @Test func convolutionContradictionsThrow() {
        #expect(throws: GraphError.self) {  // 3 input channels, weight expects 4
            try inferNode(conv(), inputs: [("x", .float32, [1, 3, 8, 8]), ("w", .float32, [16, 4, 3, 3])])
        }
        #expect(throws: GraphError.self) {  // 5×5 window over a 3×3 input
            try inferNode(conv(), inputs: [("x", .float32, [1, 3, 3, 3]), ("w", .float32, [16, 3, 5, 5])])
        }
        #expect(throws: GraphError.self) {
            try inferNode(conv(["auto_pad": .text("SOMETIMES")]),
                          inputs: [("x", .float32, [1, 3, 3, 3]), ("w", .float32, [16, 3, 1, 1])])
        }
    }

    @Test func convolutionTransposeOutputSizes() throws {
        let inputs: [(String, DType, [Dim])] = [("x", .float32, [1, 4, 3, 3]), ("w", .float32, [4, 3, 2, 2])]
        let plain = try inferNode(conv(["group": .int(2), "strides": .ints([2, 2])], op: "ConvTranspose"), inputs: inputs)
        #expect(plain == [tensorType(.float32, [1, 6, 6, 6])])
        let padded = try inferNode(conv(["group": .int(2), "strides": .ints([2, 2]), "output_padding": .ints([1, 1])],
                                        op: "ConvTranspose"), inputs: inputs)
        #expect(padded == [tensorType(.float32, [1, 6, 7, 7])])
        let explicit = try inferNode(conv(["group": .int(2), "strides": .ints([2, 2]), "output_shape": .ints([10, 10])],
                                          op: "ConvTranspose"), inputs: inputs)
        #expect(explicit == [tensorType(.float32, [1, 6, 10, 10])])
        let same = try inferNode(conv(["strides": .ints([2, 2]), "auto_pad": .text("SAME_UPPER")], op: "ConvTranspose"),
                                 inputs: [("x", .float32, [1, 4, 3, "W"]), ("w", .float32, [4, 3, 3, 3])])
        #expect(same == [tensorType(.float32, [1, 3, 6, "?"])])
    }

    @Test func poolingOutputSizes() throws {
        // ceil mode: ⌈(6 + 2 − 3)/2⌉ + 1 = 4; for 5×5, k 2, s 2, pads 1 the 4th window would start in the
        // end padding and is dropped (3, as onnxruntime and the ONNX reference compute).
        let ceil = try inferNode(
            Node(opType: "MaxPool", inputs: ["x"], outputs: ["y", "i"], attributes: [
                "kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "ceil_mode": .int(1),
            ]), inputs: [("x", .float32, [1, 1, 6, 6])])
        #expect(ceil == [tensorType(.float32, [1, 1, 4, 4]), tensorType(.int64, [1, 1, 4, 4])])
        let dropped = try inferNode(
            Node(opType: "MaxPool", inputs: ["x"], outputs: ["y"], attributes: [
                "kernel_shape": .ints([2, 2]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "ceil_mode": .int(1),
            ]), inputs: [("x", .float32, [1, 1, 5, 5])])
        #expect(dropped == [tensorType(.float32, [1, 1, 3, 3])])
        let valid = try inferNode(
            Node(opType: "AveragePool", inputs: ["x"], outputs: ["y"], attributes: [
                "kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "auto_pad": .text("VALID"),
            ]), inputs: [("x", .float32, ["N", 2, 7, 9])])
        #expect(valid == [tensorType(.float32, ["N", 2, 3, 4])])
        let same = try inferNode(
            Node(opType: "AveragePool", inputs: ["x"], outputs: ["y"], attributes: [
                "kernel_shape": .ints([2, 2]), "auto_pad": .text("SAME_UPPER"),
            ]), inputs: [("x", .float32, [1, 1, "H", 5])])
        #expect(same == [tensorType(.float32, [1, 1, "H", 5])])
        let global = try inferNode(Node(opType: "GlobalAveragePool", inputs: ["x"], outputs: ["y"]),
                                   inputs: [("x", .float32, ["N", 8, 7, 7])])
        #expect(global == [tensorType(.float32, ["N", 8, 1, 1])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "MaxPool", inputs: ["x"], outputs: ["y"]), inputs: [("x", .float32, [1, 1, 5, 5])])
        }
    }

    @Test func normalizations() throws {
        let bn = try inferNode(Node(opType: "BatchNormalization", inputs: ["x", "s", "b", "m", "v"], outputs: ["y"]),
                               inputs: [("x", .float32, ["N", 8, "H", "W"]), ("s", .float32, [8]), ("b", .float32, [8]),
                                        ("m", .float32, [8]), ("v", .float32, [8])])
        #expect(bn == [tensorType(.float32, ["N", 8, "H", "W"])])
        let ln = try inferNode(Node(opType: "LayerNormalization", inputs: ["x", "g", "b"], outputs: ["y", "mean", "inv"],
                                    attributes: ["axis": .int(-1)]),
                               inputs: [("x", .float32, ["batch", "seq", 384]), ("g", .float32, [384]), ("b", .float32, [384])])
        #expect(ln == [tensorType(.float32, ["batch", "seq", 384]), tensorType(.float32, ["batch", "seq", 1]),
                       tensorType(.float32, ["batch", "seq", 1])])
    }

    @Test func matrixProducts() throws {
        func matMul(_ a: [Dim], _ b: [Dim]) throws -> [ValueType?] {
            try inferNode(Node(name: "mm", opType: "MatMul", inputs: ["a", "b"], outputs: ["y"]),
                          inputs: [("a", .float32, a), ("b", .float32, b)])
        }
        #expect(try matMul(["batch", "seq", 384], [384, 1536]) == [tensorType(.float32, ["batch", "seq", 1536])])
        #expect(try matMul([2, 1, 3, 4], [5, 4, 6]) == [tensorType(.float32, [2, 5, 3, 6])])
        #expect(try matMul([3], [2, 3, 4]) == [tensorType(.float32, [2, 4])])
        #expect(try matMul([2, 3], [3]) == [tensorType(.float32, [2])])
        #expect(try matMul(["b", "s", "k"], ["k", 7]) == [tensorType(.float32, ["b", "s", 7])])
        #expect(throws: GraphError.shapeMismatch(node: "node 'mm' (MatMul)", reason: "inner dimensions differ: [2, 3] by [4, 5]")) {
            try matMul([2, 3], [4, 5])
        }

        let gemm = try inferNode(Node(opType: "Gemm", inputs: ["a", "b", "c"], outputs: ["y"], attributes: ["transB": .int(1)]),
                                 inputs: [("a", .float32, ["M", 3]), ("b", .float32, [5, 3]), ("c", .float32, [5])])
        #expect(gemm == [tensorType(.float32, ["M", 5])])
        let transposedA = try inferNode(Node(opType: "Gemm", inputs: ["a", "b"], outputs: ["y"], attributes: ["transA": .int(1)]),
                                        inputs: [("a", .float32, [3, 4]), ("b", .float32, [3, 6])])
        #expect(transposedA == [tensorType(.float32, [4, 6])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "Gemm", inputs: ["a", "b"], outputs: ["y"]),
                          inputs: [("a", .float32, [4, 3]), ("b", .float32, [4, 5])])
        }
    }

    @Test func resizeWithConstantScalesOrSizes() throws {
        func resize(_ x: [Dim], opset: Int, inputs: [String], attributes: [String: Attribute] = [:],
                    initializers: OrderedDictionary<String, Tensor>) throws -> [ValueType?] {
            var node = Node(opType: "Resize", inputs: ["x"] + inputs, outputs: ["y"])
            for (key, value) in attributes { node.attributes[key] = value }
            return try inferNode(node, inputs: [("x", .float32, x)], initializers: initializers, opset: opset)
        }
        #expect(try resize([1, 3, 10, 10], opset: 13, inputs: ["", "scales"],
                           initializers: ["scales": floats([4], [1, 1, 2, 1.5])]) == [tensorType(.float32, [1, 3, 20, 15])])
        #expect(try resize([1, 3, 7, 7], opset: 13, inputs: ["", "scales"],
                           initializers: ["scales": floats([4], [1, 1, 0.5, 0.3])]) == [tensorType(.float32, [1, 3, 3, 2])])
        #expect(try resize(["N", 3, 10, 10], opset: 13, inputs: ["", "", "sizes"],
                           initializers: ["sizes": int64s([4], [1, 3, 20, 15])]) == [tensorType(.float32, [1, 3, 20, 15])])
        #expect(try resize(["N", 3, 10, 10], opset: 10, inputs: ["scales"],
                           initializers: ["scales": floats([4], [1, 1, 2, 2])]) == [tensorType(.float32, ["N", 3, 20, 20])])
        // Opset 18: sizes for the listed axes only, scaled to keep the aspect ratio.
        let notLarger = try resize([1, 3, 10, 8], opset: 18, inputs: ["", "", "sizes"],
                                   attributes: ["axes": .ints([2, 3]), "keep_aspect_ratio_policy": .text("not_larger")],
                                   initializers: ["sizes": int64s([2], [20, 30])])
        #expect(notLarger == [tensorType(.float32, [1, 3, 20, 16])])
        let notSmaller = try resize([1, 3, 10, 8], opset: 18, inputs: ["", "", "sizes"],
                                    attributes: ["axes": .ints([2, 3]), "keep_aspect_ratio_policy": .text("not_smaller")],
                                    initializers: ["sizes": int64s([2], [20, 30])])
        #expect(notSmaller == [tensorType(.float32, [1, 3, 38, 30])])
        // Scales from a graph input are unknown: only the rank is known.
        let dynamic = try inferNode(Node(opType: "Resize", inputs: ["x", "", "s"], outputs: ["y"]),
                                    inputs: [("x", .float32, [1, 3, 10, 10]), ("s", .float32, [4])], opset: 13)
        #expect(dynamic == [tensorType(.float32, ["?", "?", "?", "?"])])
    }

    @Test func reductions() throws {
        let x: (String, DType, [Dim]) = ("x", .float32, ["b", "s", 384])
        let mean = try inferNode(Node(opType: "ReduceMean", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([-1])]),
                                 inputs: [x], opset: 17)
        #expect(mean == [tensorType(.float32, ["b", "s", 1])])
        let sum = try inferNode(Node(opType: "ReduceSum", inputs: ["x", "axes"], outputs: ["y"], attributes: ["keepdims": .int(0)]),
                                inputs: [x], initializers: ["axes": int64s([1], [1])], opset: 13)
        #expect(sum == [tensorType(.float32, ["b", 384])])
        let max = try inferNode(Node(opType: "ReduceMax", inputs: ["x", "axes"], outputs: ["y"]),
                                inputs: [x], initializers: ["axes": int64s([2], [0, 2])], opset: 18)
        #expect(max == [tensorType(.float32, [1, "s", 1])])
        let all = try inferNode(Node(opType: "ReduceMin", inputs: ["x"], outputs: ["y"]), inputs: [x], opset: 18)
        #expect(all == [tensorType(.float32, [1, 1, 1])])
        let noop = try inferNode(Node(opType: "ReduceL2", inputs: ["x"], outputs: ["y"], attributes: ["noop_with_empty_axes": .int(1)]),
                                 inputs: [x], opset: 18)
        #expect(noop == [tensorType(.float32, ["b", "s", 384])])
        let l2 = try inferNode(Node(opType: "ReduceL2", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([1])]),
                               inputs: [x], opset: 17)
        #expect(l2 == [tensorType(.float32, ["b", 1, 384])])
        // Axes from a graph input: with keepdims each axis is kept or 1, so only the rank is known.
        let unknownAxes = try inferNode(Node(opType: "ReduceSum", inputs: ["x", "axes"], outputs: ["y"]),
                                        inputs: [("x", .float32, ["b", 1, 384]), ("axes", .int64, [1])], opset: 13)
        #expect(unknownAxes == [tensorType(.float32, ["?", 1, "?"])])
        let argMax = try inferNode(Node(opType: "ArgMax", inputs: ["x"], outputs: ["y"], attributes: ["axis": .int(2), "keepdims": .int(0)]),
                                   inputs: [x])
        #expect(argMax == [tensorType(.int64, ["b", "s"])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "ReduceMean", inputs: ["x"], outputs: ["y"], attributes: ["axes": .ints([3])]), inputs: [x])
        }
    }

    @Test func topK() throws {
        let types = try inferNode(Node(opType: "TopK", inputs: ["x", "k"], outputs: ["v", "i"]),
                                  inputs: [("x", .float32, ["b", 10])], initializers: ["k": int64s([1], [3])])
        #expect(types == [tensorType(.float32, ["b", 3]), tensorType(.int64, ["b", 3])])
        #expect(throws: GraphError.self) {
            try inferNode(Node(opType: "TopK", inputs: ["x", "k"], outputs: ["v", "i"]),
                          inputs: [("x", .float32, ["b", 10])], initializers: ["k": int64s([1], [11])])
        }
    }

    @Test func recurrentLayers() throws {
        let lstm = try inferNode(
            Node(opType: "LSTM", inputs: ["x", "w", "r"], outputs: ["y", "h", "c"],
                 attributes: ["hidden_size": .int(16), "direction": .text("bidirectional")]),
            inputs: [("x", .float32, ["seq", "batch", 8]), ("w", .float32, [2, 64, 8]), ("r", .float32, [2, 64, 16])])
        #expect(lstm == [tensorType(.float32, ["seq", 2, "batch", 16]), tensorType(.float32, [2, "batch", 16]),
                         tensorType(.float32, [2, "batch", 16])])
        // Layout 1 puts batch first; the hidden size comes from R when the attribute is absent.
        let gru = try inferNode(
            Node(opType: "GRU", inputs: ["x", "w", "r"], outputs: ["y", "h"], attributes: ["layout": .int(1)]),
            inputs: [("x", .float32, ["batch", "seq", 8]), ("w", .float32, [1, 48, 8]), ("r", .float32, [1, 48, 16])],
            opset: 14)
        #expect(gru == [tensorType(.float32, ["batch", "seq", 1, 16]), tensorType(.float32, ["batch", 1, 16])])
    }

    @Test func quantizationOperators() throws {
        let x: (String, DType, [Dim]) = ("x", .float32, ["n", 4])
        let quantized = try inferNode(Node(opType: "QuantizeLinear", inputs: ["x", "s", "z"], outputs: ["y"]), inputs: [x],
                                      initializers: ["s": Tensor(scalar: Float(0.1)), "z": Tensor(scalar: Int8(0))])
        #expect(quantized == [tensorType(.int8, ["n", 4])])
        let defaultType = try inferNode(Node(opType: "QuantizeLinear", inputs: ["x", "s"], outputs: ["y"]), inputs: [x],
                                        initializers: ["s": Tensor(scalar: Float(0.1))])
        #expect(defaultType == [tensorType(.uint8, ["n", 4])])
        let dequantized = try inferNode(Node(opType: "DequantizeLinear", inputs: ["q", "s"], outputs: ["y"]),
                                        inputs: [("q", .int8, [4, 5])], initializers: ["s": Tensor(scalar: Float(0.5))], opset: 13)
        #expect(dequantized == [tensorType(.float32, [4, 5])])
        let half = try inferNode(Node(opType: "DequantizeLinear", inputs: ["q", "s"], outputs: ["y"]),
                                 inputs: [("q", .int8, [4, 5])], initializers: ["s": Tensor(scalar: Float16(0.5))], opset: 19)
        #expect(half == [tensorType(.float16, [4, 5])])
        let dynamic = try inferNode(Node(opType: "DynamicQuantizeLinear", inputs: ["x"], outputs: ["y", "s", "z"]), inputs: [x])
        #expect(dynamic == [tensorType(.uint8, ["n", 4]), tensorType(.float32, []), tensorType(.uint8, [])])

        let qconv = try inferNode(
            Node(opType: "QLinearConv", inputs: ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], outputs: ["y"]),
            inputs: [("x", .uint8, [1, 3, 8, 8]), ("w", .int8, [4, 3, 3, 3])],
            initializers: ["xs": Tensor(scalar: Float(0.1)), "xz": Tensor(scalar: UInt8(128)), "ws": Tensor(scalar: Float(0.1)),
                           "wz": Tensor(scalar: Int8(0)), "ys": Tensor(scalar: Float(0.2)), "yz": Tensor(scalar: UInt8(0))])
        #expect(qconv == [tensorType(.uint8, [1, 4, 6, 6])])
        let qmatmul = try inferNode(
            Node(opType: "QLinearMatMul", inputs: ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], outputs: ["y"]),
            inputs: [("a", .uint8, ["n", 3]), ("b", .int8, [3, 5])],
            initializers: ["as": Tensor(scalar: Float(0.1)), "az": Tensor(scalar: UInt8(128)), "bs": Tensor(scalar: Float(0.1)),
                           "bz": Tensor(scalar: Int8(0)), "ys": Tensor(scalar: Float(0.2)), "yz": Tensor(scalar: Int8(0))])
        #expect(qmatmul == [tensorType(.int8, ["n", 5])])
        let integerMatMul = try inferNode(Node(opType: "MatMulInteger", inputs: ["a", "b"], outputs: ["y"]),
                                          inputs: [("a", .uint8, ["n", 3]), ("b", .int8, [3, 5])])
        #expect(integerMatMul == [tensorType(.int32, ["n", 5])])
        let integerConv = try inferNode(Node(opType: "ConvInteger", inputs: ["x", "w"], outputs: ["y"]),
                                        inputs: [("x", .uint8, [1, 3, 8, 8]), ("w", .uint8, [4, 3, 3, 3])])
        #expect(integerConv == [tensorType(.int32, [1, 4, 6, 6])])
    }
}
