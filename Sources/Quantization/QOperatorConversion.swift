import GraphIR
import Tensors

/// Turns a QDQ graph into QOperator form with default-domain operators only:
///
/// - `DQ(x) · DQ(w) → Conv → Q` becomes `QLinearConv` (int32 bias codes as its bias);
///   without an output Q (or with a float bias), `ConvInteger → Cast → Mul(s_x · s_w) [→ Add(bias)]`.
/// - `DQ(a) · DQ(b) → MatMul → Q` becomes `QLinearMatMul`; without an output Q,
///   `MatMulInteger → Cast → Mul(s_a · s_b)`.
/// - `DQ(a) · DQ(B) → Gemm` becomes `MatMulInteger → Cast → Mul(α · s_a · s_b) [→ Add(β · C)]` (B's
///   codes transposed once when `transB`).
/// - `DQ(x) → Reshape/Transpose/… → Q` with the same scale and zero point runs the data-movement operator
///   on the codes directly (Resize only in `nearest` mode, which copies codes rather than interpolating).
///
/// Everything else (ConvTranspose, Add, pooling, activations, 16-bit codes, …) keeps its QDQ form, which
/// ONNX Runtime runs with QuantizeLinear/DequantizeLinear around the float operator.
struct QOperatorConversion {
    /// Data-movement operators that run on 8-bit codes (`MaxPool` from opset 12).
    static let codeOperators: Set<String> = [
        "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather", "MaxPool", "Resize",
    ]

    struct Result {
        var graph: Graph
        var notes: [String]
    }

    /// A DequantizeLinear node's operands, read from the graph.
    struct Dequantization {
        var codes: String
        var scale: [Float]
        var scaleName: String
        /// The zero point (zeros of the codes' type when the node has none).
        var zeroPoint: Tensor
        /// Nil when the node leaves the zero point out (ONNX's default 0).
        var zeroPointName: String?
        var axis: Int?
        var perTensor: Bool { scale.count == 1 && axis == nil }
        var codesType: DType { zeroPoint.dtype }
        var isInteger8: Bool { codesType == .uint8 || codesType == .int8 }
    }

    func convert(_ input: Graph, opset: Int = 21) throws -> Result {
        var editor = GraphEditor(graph: input)
        let constants = input.constantValues
        let producers = input.producers
        let readers = input.consumers
        let graphOutputs = input.outputNames
        var removed = Set<Int>()
        var counts: [String: Int] = [:]

        func dequantization(of value: String) -> Dequantization? {
            guard let index = producers[value], !removed.contains(index) else { return nil }
            let node = input.nodes[index]
            guard node.opType == "DequantizeLinear", node.inputs.count >= 2, node.attributes["block_size"] == nil,
                  let scale = constants[node.inputs[1]], scale.dtype == .float32 else { return nil }
            let zeroPointName = node.inputs.count > 2 && !node.inputs[2].isEmpty ? node.inputs[2] : nil
            let zeroPoint: Tensor
            if let zeroPointName {
                guard let value = constants[zeroPointName] else { return nil }
                zeroPoint = value
            } else {
                // Without a zero point the codes' type is known only for constant codes.
                guard let codes = constants[node.inputs[0]],
                      let zeros = try? GraphEditor.integerTensor([0], dtype: codes.dtype, shape: []) else { return nil }
                zeroPoint = zeros
            }
            return Dequantization(codes: node.inputs[0], scale: scale.scalars(as: Float.self),
                                  scaleName: node.inputs[1], zeroPoint: zeroPoint, zeroPointName: zeroPointName,
                                  axis: scale.rank == 0 ? nil : node.attributes["axis"]?.intValue ?? 1)
        }
        /// The zero-point input of `d` for an operator that requires one: its own, or a shared scalar 0.
        func zeroPointInput(_ d: Dequantization) throws -> String {
            if let name = d.zeroPointName { return name }
            return editor.sharedConstant(try GraphEditor.integerTensor([0], dtype: d.codesType, shape: []),
                                         base: "zp_\(d.codesType)_0")
        }
        /// The single QuantizeLinear reading `value` (per tensor, 8-bit), when nothing else reads it.
        func soleQuantize(of value: String) -> (index: Int, node: Node)? {
            guard !graphOutputs.contains(value), let list = readers[value], list.count == 1 else { return nil }
            let node = input.nodes[list[0]]
            guard node.opType == "QuantizeLinear", node.inputs.count == 3, node.attributes["axis"] == nil,
                  let scale = constants[node.inputs[1]], scale.count == 1,
                  let zero = constants[node.inputs[2]], zero.dtype == .uint8 || zero.dtype == .int8 else { return nil }
            return (list[0], node)
        }
        func replace(_ index: Int, with nodes: [Node], countingAs name: String) {
            removed.insert(index)
            nodes.forEach { editor.appendNode($0) }
            counts[name, default: 0] += 1
        }
        /// `Cast(int32 → float) → Mul(scale)` on an integer accumulator, ending in `output`; new names
        /// start with `stem`.
        func rescale(_ accumulator: String, scale: Tensor, output: String, stem: String) -> [Node] {
            let asFloat = editor.freshName(stem + "_f")
            let scaleName = scale.count == 1 && scale.rank == 0
                ? editor.sharedScalar(scale.scalars(as: Float.self)[0])
                : editor.addInitializer(scale, base: stem + "_m")
            return [
                Node(name: asFloat, opType: "Cast", inputs: [accumulator], outputs: [asFloat], attributes: ["to": .int(1)]),
                Node(name: editor.freshName(stem + "_y"), opType: "Mul", inputs: [asFloat, scaleName], outputs: [output]),
            ]
        }

        for (index, node) in input.nodes.enumerated() where node.normalizedDomain.isEmpty {
            let name = node.name.isEmpty ? editor.freshName(node.opType) : node.name
            switch node.opType {
            case "MatMul":
                guard let a = dequantization(of: node.inputs[0]), let b = dequantization(of: node.inputs[1]),
                      a.perTensor, a.isInteger8, b.isInteger8, b.perTensor || (b.axis == 1 && b.scale.count > 1) else { continue }
                if let q = soleQuantize(of: node.outputs[0]) {
                    replace(index, with: [Node(
                        name: name, opType: "QLinearMatMul",
                        inputs: [a.codes, a.scaleName, try zeroPointInput(a), b.codes, b.scaleName, try zeroPointInput(b),
                                 q.node.inputs[1], q.node.inputs[2]],
                        outputs: q.node.outputs)], countingAs: "QLinearMatMul")
                    removed.insert(q.index)
                } else {
                    let stem = editor.names.stem(.node)
                    let accumulator = editor.freshName(stem + "_acc")
                    let scale = try Tensor(shape: b.perTensor ? [] : [b.scale.count], scalars: b.scale.map { $0 * a.scale[0] })
                    replace(index, with: [Node(name: name, opType: "MatMulInteger",
                                               inputs: [a.codes, b.codes, try zeroPointInput(a), b.zeroPointName ?? ""],
                                               outputs: [accumulator])]
                            + rescale(accumulator, scale: scale, output: node.outputs[0], stem: stem),
                            countingAs: "MatMulInteger")
                }
            case "Conv":
                guard let x = dequantization(of: node.inputs[0]), let w = dequantization(of: node.inputs[1]),
                      x.perTensor, x.isInteger8, w.isInteger8, w.perTensor || w.axis == 0,
                      let weightCodes = constants[w.codes] else { continue }
                let bias = node.inputs.count > 2 && !node.inputs[2].isEmpty ? node.inputs[2] : nil
                let biasCodes = bias.flatMap { dequantization(of: $0) }.flatMap { $0.codesType == .int32 ? $0 : nil }
                if let q = soleQuantize(of: node.outputs[0]), bias == nil || biasCodes != nil {
                    var inputs = [x.codes, x.scaleName, try zeroPointInput(x), w.codes, w.scaleName, try zeroPointInput(w),
                                  q.node.inputs[1], q.node.inputs[2]]
                    if let biasCodes { inputs.append(biasCodes.codes) }
                    replace(index, with: [Node(name: name, opType: "QLinearConv", inputs: inputs,
                                               outputs: q.node.outputs, attributes: node.attributes)],
                            countingAs: "QLinearConv")
                    removed.insert(q.index)
                    continue
                }
                // ConvInteger takes one weight zero point; symmetric weights have 0 everywhere.
                guard try w.zeroPoint.floatArray().allSatisfy({ $0 == 0 }) else { continue }
                let stem = editor.names.stem(.node)
                let channels = weightCodes.shape[0]
                let broadcast = [1, channels] + [Int](repeating: 1, count: weightCodes.rank - 2)
                let scales = (0..<channels).map { x.scale[0] * w.scale[w.perTensor ? 0 : $0] }
                let accumulator = editor.freshName(stem + "_acc")
                var nodes = [Node(name: name, opType: "ConvInteger",
                                  inputs: [x.codes, w.codes, try zeroPointInput(x)], outputs: [accumulator],
                                  attributes: node.attributes)]
                if let bias {
                    let scaled = editor.freshName(stem + "_scaled")
                    nodes += rescale(accumulator, scale: try Tensor(shape: broadcast, scalars: scales), output: scaled, stem: stem)
                    let values = try biasValues(bias, dequantization: biasCodes, constants: constants)
                    let biasName = editor.addInitializer(try Tensor(shape: broadcast, scalars: values), base: stem + "_bias")
                    nodes.append(Node(name: editor.freshName(stem + "_add"), opType: "Add",
                                      inputs: [scaled, biasName], outputs: node.outputs))
                } else {
                    nodes += rescale(accumulator, scale: try Tensor(shape: broadcast, scalars: scales),
                                     output: node.outputs[0], stem: stem)
                }
                replace(index, with: nodes, countingAs: "ConvInteger")
            case "Gemm":
                let transA = node.attributes["transA"]?.intValue ?? 0, transB = node.attributes["transB"]?.intValue ?? 0
                guard transA == 0, let a = dequantization(of: node.inputs[0]), let b = dequantization(of: node.inputs[1]),
                      a.perTensor, a.isInteger8, b.isInteger8, var codes = constants[b.codes], codes.rank == 2,
                      b.perTensor || b.axis == (transB != 0 ? 0 : 1) else { continue }
                let stem = editor.names.stem(.node)
                let alpha = node.attributes["alpha"]?.floatValue ?? 1, beta = node.attributes["beta"]?.floatValue ?? 1
                var codesName = b.codes
                if transB != 0 {
                    codes = try transposed(codes)
                    codesName = editor.addInitializer(codes, base: stem + "_wt")
                }
                let accumulator = editor.freshName(stem + "_acc")
                let scale = try Tensor(shape: b.perTensor ? [] : [b.scale.count],
                                       scalars: b.scale.map { $0 * a.scale[0] * alpha })
                var nodes = [Node(name: name, opType: "MatMulInteger",
                                  inputs: [a.codes, codesName, try zeroPointInput(a), b.zeroPointName ?? ""],
                                  outputs: [accumulator])]
                if node.inputs.count > 2 && !node.inputs[2].isEmpty {
                    let scaled = editor.freshName(stem + "_scaled")
                    nodes += rescale(accumulator, scale: scale, output: scaled, stem: stem)
                    var c = node.inputs[2]
                    let cCodes = dequantization(of: c)
                    if let shape = constants[cCodes?.codes ?? c]?.shape {
                        let values = try biasValues(c, dequantization: cCodes, constants: constants)
                        c = editor.addInitializer(try Tensor(shape: shape, scalars: values.map { $0 * beta }),
                                                  base: stem + "_bias")
                    } else if beta != 1 {
                        let scaledC = editor.freshName(stem + "_c")
                        nodes.append(Node(name: scaledC, opType: "Mul",
                                          inputs: [c, editor.sharedScalar(beta, base: "beta")], outputs: [scaledC]))
                        c = scaledC
                    }
                    nodes.append(Node(name: editor.freshName(stem + "_add"), opType: "Add",
                                      inputs: [scaled, c], outputs: node.outputs))
                } else {
                    nodes += rescale(accumulator, scale: scale, output: node.outputs[0], stem: stem)
                }
                replace(index, with: nodes, countingAs: "MatMulInteger")
            case let op where QOperatorConversion.codeOperators.contains(op):
                // Linear and cubic Resize would round interpolated codes; nearest only copies them.
                guard node.outputs.count == 1, op != "MaxPool" || opset >= 12,
                      op != "Resize" || (node.attributes["mode"]?.stringValue ?? "nearest") == "nearest",
                      let x = dequantization(of: node.inputs[0]), x.perTensor, x.isInteger8,
                      let q = soleQuantize(of: node.outputs[0]),
                      constants[q.node.inputs[1]]?.scalars(as: Float.self) == x.scale,
                      constants[q.node.inputs[2]] == x.zeroPoint else { continue }
                var moved = node
                moved.inputs[0] = x.codes
                moved.outputs = q.node.outputs
                replace(index, with: [moved], countingAs: op + " on codes")
                removed.insert(q.index)
            default:
                continue
            }
        }
        editor.graph.removeNodes(at: removed)
        let graph = try editor.graph.sortedTopologically()
        let summary = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        return Result(graph: graph, notes: summary.isEmpty ? [] : ["QOperator form: " + summary])
    }

    /// Float bias values: dequantized int32 codes, or a float constant as it is.
    private func biasValues(_ name: String, dequantization: Dequantization?, constants: [String: Tensor]) throws -> [Float] {
        if let dequantization, let codes = constants[dequantization.codes] {
            let values = codes.scalars(as: Int32.self)
            return values.indices.map { Float(values[$0]) * dequantization.scale[dequantization.scale.count == 1 ? 0 : $0] }
        }
        guard let constant = constants[name] else { throw QuantizationError.unsupportedNode(node: name, reason: "bias is not constant") }
        return try constant.floatArray()
    }

    /// A 2-D tensor transposed (any element size).
    private func transposed(_ tensor: Tensor) throws -> Tensor {
        let rows = tensor.shape[0], columns = tensor.shape[1]
        let size = tensor.dtype.bitWidth / 8
        var result = try Tensor(zeros: tensor.dtype, shape: [columns, rows])
        tensor.withUnsafeBytes { source in
            result.withUnsafeMutableBytes { target in
                for r in 0..<rows {
                    for c in 0..<columns {
                        for byte in 0..<size { target[(c * rows + r) * size + byte] = source[(r * columns + c) * size + byte] }
                    }
                }
            }
        }
        return result
    }
}
