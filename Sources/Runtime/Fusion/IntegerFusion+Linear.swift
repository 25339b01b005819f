import GraphIR
import Tensors

/// What follows a fused linear operator: an optional bias Add (MatMul), Relu/Clip and QuantizeLinear,
/// each absorbed only when it is the sole reader of the value before it.
struct FusedTail {
    var removed: [Int]
    /// The value the fused node produces (the last absorbed node's output).
    var output: String
    var bias: String?
    var clamp: (low: Float?, high: Float?)?
    var quantize: QuantizedActivation?

    /// The fused node's inputs from 7 on: `y_scale`, `y_zero_point` (omitted for float output).
    var outputInputs: [String] {
        guard let quantize else { return ["", ""] }
        return [quantize.scale, quantize.zeroPoint]
    }

    /// Attributes for the absorbed clamp.
    var attributes: [(String, Attribute)] { Attribute.clampAttributes(clamp) }
}

extension IntegerFusionRewriter {
    mutating func fuseLinearOperators() {
        for index in graph.nodes.indices where isFree([index]) {
            let node = node(index)
            guard node.normalizedDomain.isEmpty else { continue }
            switch node.opType {
            case "MatMul" where hasKernel("QMatMul"): fuseMatMul(index, gemm: false)
            case "Gemm" where hasKernel("QMatMul"): fuseMatMul(index, gemm: true)
            case "Conv" where hasKernel("QConv"): fuseConvolution(index, transposed: false)
            case "ConvTranspose" where hasKernel("QConvTranspose"): fuseConvolution(index, transposed: true)
            case "QLinearMatMul" where hasKernel("QMatMul"): mapQLinearMatMul(index)
            case "QLinearConv" where hasKernel("QConv"): mapQLinearConv(index)
            default: break
            }
        }
    }

    /// Collects the nodes after `core` that the fused operator can absorb.
    mutating func fusedTail(after core: Int, biasColumns: Int?) -> FusedTail {
        var tail = FusedTail(removed: [core], output: node(core).outputs[0])
        if let columns = biasColumns, let add = soleReader(of: tail.output, ["Add"]) {
            let addNode = node(add)
            let other = addNode.inputs.count == 2 ? (addNode.inputs[0] == tail.output ? addNode.inputs[1] : addNode.inputs[0]) : ""
            if addNode.inputs.count == 2, addNode.inputs.filter({ $0 == tail.output }).count == 1,
               let bias = vectorConstant(other, columns: columns) {
                tail.bias = bias
                tail.removed.append(add)
                tail.output = addNode.outputs[0]
            }
        }
        if let activation = soleReader(of: tail.output, ["Relu", "Clip"]), input(node(activation), 0) == tail.output,
           let clamp = activationClamp(node(activation)) {
            tail.clamp = clamp
            tail.removed.append(activation)
            tail.output = node(activation).outputs[0]
        }
        if let quantize = activationQuantize(reading: tail.output) {
            tail.quantize = quantize
            tail.removed.append(quantize.index)
            tail.output = quantize.codes
        }
        return tail
    }

    /// After every other fusion: a fused GEMM or convolution whose codes only a DequantizeLinear with the
    /// same parameters reads (so every reader wants floats) writes those floats itself, absorbing a bias
    /// Add after it too (QMatMul with a constant B).
    mutating func absorbDequantizeAfterFusedOutputs() {
        for index in graph.nodes.indices where isFree([index]) {
            var fused = node(index)
            guard fused.domain == IntegerFusion.domain, ["QMatMul", "QConv", "QConvTranspose"].contains(fused.opType),
                  fused.attributes["dequantize_output"] == nil, fused.inputs.count >= 9, fused.outputs.count == 1,
                  let q = try? ActivationQuantization(scale: constant(fused.inputs[7]), zeroPoint: constant(fused.inputs[8]), what: ""),
                  let dq = soleReader(of: fused.outputs[0], ["DequantizeLinear"]), input(node(dq), 0) == fused.outputs[0],
                  let dequantize = activationDequantize(producing: node(dq).outputs[0]), dequantize.parameters == q
            else { continue }
            var removed = [index, dq]
            fused.outputs = [dequantize.real]
            fused.attributes["dequantize_output"] = .int(1)
            var columns: Int?
            if fused.opType == "QMatMul", let b = constant(fused.inputs[3]), b.rank == 2 {
                columns = (fused.attributes["transB"]?.intValue ?? 0) != 0 ? b.shape[0] : b.shape[1]
            }
            if let columns, let add = soleReader(of: dequantize.real, ["Add"]) {
                let addNode = node(add)
                let other = addNode.inputs.count == 2 ? (addNode.inputs[0] == dequantize.real ? addNode.inputs[1] : addNode.inputs[0]) : ""
                if addNode.inputs.count == 2, addNode.inputs.filter({ $0 == dequantize.real }).count == 1,
                   let values = constant(other), values.dtype == .float32, values.rank == 1, values.count == columns {
                    fused.inputs = Array(fused.inputs.prefix(9)) + [other]
                    fused.outputs = addNode.outputs
                    removed.append(add)
                }
            }
            plan(removing: Set(removed), anchor: removed.last!, with: [fused])
        }
    }

    /// A constant float32 of `columns` values (shape `[columns]` or `[1, …, 1, columns]` of rank ≤ 1 after
    /// dropping leading ones is required so adding it cannot change the output's rank), or the
    /// DequantizeLinear of a constant; returned as the name of a rank-1 float32 constant.
    mutating func vectorConstant(_ name: String, columns: Int) -> String? {
        let value: Tensor
        if let tensor = constant(name), tensor.dtype == .float32 {
            value = tensor
        } else if let index = producer(of: name, "DequantizeLinear"), let dequantized = dequantizedConstant(index) {
            value = dequantized
        } else {
            return nil
        }
        guard value.rank <= 1, value.count == columns || value.count == 1 else { return nil }
        if value.rank == 1, value.count == columns, constant(name) != nil { return name }
        let values = value.scalars(as: Float.self)
        let expanded = values.count == columns ? values : [Float](repeating: values[0], count: columns)
        return addConstant(try! Tensor(shape: [columns], scalars: expanded), base: name + "_vector")
    }

    /// The float32 values of a DequantizeLinear of constants (per tensor or per axis), or nil.
    func dequantizedConstant(_ index: Int) -> Tensor? {
        let dq = node(index)
        guard blockSize(dq) == 0, let codes = constant(input(dq, 0)), let scale = constant(input(dq, 1)),
              scale.dtype == .float32, scale.count == 1 || codes.rank == 1 else { return nil }
        let zeroPoint = constant(input(dq, 2))
        if !input(dq, 2).isEmpty && zeroPoint == nil { return nil }
        guard let values = try? codes.quantizedIntegerValues(input: 0), scale.count == 1 || scale.count == values.count,
              let zeros = try? zeroPoint?.quantizedIntegerValues(input: 2) ?? [0] else { return nil }
        let scales = scale.scalars(as: Float.self)
        let result = values.indices.map { i in
            Float(values[i] &- zeros[zeros.count == 1 ? 0 : i]) * scales[scales.count == 1 ? 0 : i]
        }
        return try? Tensor(shape: codes.shape, scalars: result)
    }

    /// A bias input of a fused node for `columns` channels: an int32 constant when it is a DequantizeLinear
    /// of int32 codes at exactly the accumulator scale `Float(s_in)·Float(s_w[j])` with zero point 0 (as
    /// quantizers write it), otherwise the float values as a rank-1 float32 constant.
    mutating func biasInput(_ name: String, columns: Int, inputScale: Float, weightScales: [Float]) -> String? {
        guard !name.isEmpty else { return "" }
        if let index = producer(of: name, "DequantizeLinear") {
            let dq = node(index)
            if let codes = constant(input(dq, 0)), codes.dtype == .int32, codes.count == columns, blockSize(dq) == 0,
               let scale = constant(input(dq, 1)), scale.dtype == .float32,
               scale.count == 1 || scale.count == columns {
                let zeroPoint = constant(input(dq, 2))
                let zeroIsZero = input(dq, 2).isEmpty
                    || (zeroPoint.map { $0.withUnsafeBytes { $0.allSatisfy { $0 == 0 } } } ?? false)
                let scales = scale.scalars(as: Float.self)
                let exact = (0..<columns).allSatisfy { j in
                    scales[scales.count == 1 ? 0 : j] == inputScale * weightScales[weightScales.count == 1 ? 0 : j]
                }
                if zeroIsZero && exact {
                    if codes.rank == 1 { return input(dq, 0) }
                    return addConstant(try! codes.reshaped([columns]), base: input(dq, 0) + "_vector")
                }
            }
        }
        return vectorConstant(name, columns: columns)
    }

    // MARK: - MatMul and Gemm

    private mutating func fuseMatMul(_ index: Int, gemm: Bool) {
        let core = node(index)
        guard core.inputs.count >= 2, core.outputs.count == 1 else { return }
        var attributes: [(String, Attribute)] = []
        var transposeB = false
        if gemm {
            guard opset >= 7, (core.attributes["transA"]?.intValue ?? 0) == 0,
                  (core.attributes["alpha"]?.floatValue ?? 1) == 1, (core.attributes["beta"]?.floatValue ?? 1) == 1
            else { return }
            transposeB = (core.attributes["transB"]?.intValue ?? 0) != 0
            attributes.append(("transB", .int(transposeB ? 1 : 0)))
            attributes.append(("a_rank", .int(2)))
        }
        guard let a = activationDequantize(producing: core.inputs[0]) else { return }
        var bInputs: [String]
        var columns: Int?
        var weightScales: [Float] = []
        if let w = weightDequantize(producing: core.inputs[1], rank: 2, channelAxis: transposeB ? 0 : 1) {
            columns = w.values.shape[transposeB ? 0 : 1]
            weightScales = w.quantization.scales
            bInputs = [w.codes, w.scale, w.zeroPoint]
        } else if !gemm, let b = activationDequantize(producing: core.inputs[1]) {
            bInputs = [b.codes, b.scale, b.zeroPoint]
        } else {
            return
        }
        var bias = ""
        if gemm, core.inputs.count > 2, !core.inputs[2].isEmpty {
            guard let columns, let name = biasInput(core.inputs[2], columns: columns, inputScale: a.parameters.scale,
                                                    weightScales: weightScales) else { return }
            bias = name
        }
        let tail = fusedTail(after: index, biasColumns: gemm ? nil : columns)
        if let tailBias = tail.bias { bias = tailBias }
        guard bias.isEmpty || columns != nil else { return }
        // A float bias must fit int32 accumulator units when the output is requantized.
        if !bias.isEmpty, tail.quantize != nil, let values = constant(bias), values.dtype == .float32,
           (try? FusedBias.int32(values.scalars(as: Float.self),
                                 accumulatorScales: weightScales.map { Double(a.parameters.scale) * Double($0) })) == nil {
            return
        }
        attributes += tail.attributes
        let inputs = [a.codes, a.scale, a.zeroPoint] + bInputs + [bias] + tail.outputInputs
        let fused = fusedNode("QMatMul", name: core.name, inputs: inputs, outputs: [tail.output], attributes: attributes)
        plan(removing: Set(tail.removed), anchor: tail.removed.last!, with: [fused])
    }

    // MARK: - Conv

    /// Conv attributes a fused convolution keeps.
    static let convolutionAttributes = ["auto_pad", "pads", "strides", "dilations", "group", "kernel_shape"]

    private mutating func fuseConvolution(_ index: Int, transposed: Bool) {
        let core = node(index)
        guard core.inputs.count >= 2, core.outputs.count == 1, !transposed || hasKernel("QConvTranspose"),
              let a = activationDequantize(producing: core.inputs[0]),
              let dq = producer(of: core.inputs[1], "DequantizeLinear"), let codes = constant(input(node(dq), 0)),
              codes.rank >= 3 else { return }
        let group = core.attributes["group"]?.intValue ?? 1
        // ConvTranspose weights are [C, M/group, k…]: per-channel scales along axis 1 name output channels
        // only when there is one group.
        guard let w = weightDequantize(producing: core.inputs[1], rank: codes.rank, channelAxis: transposed ? 1 : 0),
              !transposed || group == 1 || w.quantization.scales.count == 1 else { return }
        let channels = transposed ? codes.shape[1] * group : codes.shape[0]
        var bias = ""
        if core.inputs.count > 2, !core.inputs[2].isEmpty {
            guard let name = biasInput(core.inputs[2], columns: channels, inputScale: a.parameters.scale,
                                       weightScales: w.quantization.scales) else { return }
            bias = name
        }
        let tail = fusedTail(after: index, biasColumns: nil)
        if !bias.isEmpty, tail.quantize != nil, let values = constant(bias), values.dtype == .float32,
           (try? FusedBias.int32(values.scalars(as: Float.self),
                                 accumulatorScales: w.quantization.scales.map { Double(a.parameters.scale) * Double($0) })) == nil {
            return
        }
        var attributes: [(String, Attribute)] = []
        let kept = Self.convolutionAttributes + (transposed ? ["output_padding", "output_shape"] : [])
        for name in kept { if let value = core.attributes[name] { attributes.append((name, value)) } }
        attributes += tail.attributes
        let inputs = [a.codes, a.scale, a.zeroPoint, w.codes, w.scale, w.zeroPoint, bias] + tail.outputInputs
        let fused = fusedNode(transposed ? "QConvTranspose" : "QConv", name: core.name, inputs: inputs,
                              outputs: [tail.output], attributes: attributes)
        plan(removing: Set(tail.removed), anchor: tail.removed.last!, with: [fused])
    }

    /// QLinearConv with constant weights and per-tensor input and output parameters runs as `QConv`.
    private mutating func mapQLinearConv(_ index: Int) {
        let node = node(index)
        guard node.inputs.count >= 8, let w = constant(node.inputs[3]), w.rank >= 3,
              constant(node.inputs[4]) != nil, constant(node.inputs[5]) != nil,
              qOperatorActivation(node, scale: 1, zeroPoint: 2), qOperatorActivation(node, scale: 6, zeroPoint: 7)
        else { return }
        let bias = input(node, 8)
        if !bias.isEmpty, constant(bias)?.dtype != .int32 { return }
        var attributes: [(String, Attribute)] = []
        for name in Self.convolutionAttributes { if let value = node.attributes[name] { attributes.append((name, value)) } }
        let fused = fusedNode("QConv", name: node.name, inputs: Array(node.inputs[0..<6]) + [bias] + Array(node.inputs[6..<8]),
                              outputs: node.outputs, attributes: attributes)
        plan(removing: [index], anchor: index, with: [fused])
    }

    // MARK: - QOperator

    /// QLinearMatMul with per-tensor A and output parameters runs as `QMatMul`: a constant 2-D B may be
    /// quantized per tensor or per column, a runtime B (activation × activation) per tensor.
    private mutating func mapQLinearMatMul(_ index: Int) {
        let node = node(index)
        guard node.inputs.count == 8, qOperatorActivation(node, scale: 1, zeroPoint: 2),
              qOperatorActivation(node, scale: 6, zeroPoint: 7) else { return }
        if let b = constant(node.inputs[3]) {
            guard b.rank == 2, let bScale = constant(node.inputs[4]), bScale.dtype == .float32,
                  bScale.count == 1 || (bScale.rank == 1 && bScale.count == b.shape[1]),
                  let bZero = constant(node.inputs[5]), bZero.count == bScale.count, bZero.dtype == b.dtype else { return }
        } else {
            guard qOperatorActivation(node, scale: 4, zeroPoint: 5) else { return }
        }
        let fused = fusedNode("QMatMul", name: node.name, inputs: Array(node.inputs[0..<6]) + [""] + Array(node.inputs[6..<8]),
                              outputs: node.outputs)
        plan(removing: [index], anchor: index, with: [fused])
    }

    /// Whether the scale and zero point at these input positions are single constants of supported types.
    func qOperatorActivation(_ node: Node, scale: Int, zeroPoint: Int) -> Bool {
        guard let s = constant(input(node, scale)), s.dtype == .float32, s.count == 1,
              let z = constant(input(node, zeroPoint)), z.count == 1, z.dtype == .uint8 || z.dtype == .int8
        else { return false }
        return (try? ActivationQuantization(scale: s, zeroPoint: z, what: "")) != nil
    }
}
