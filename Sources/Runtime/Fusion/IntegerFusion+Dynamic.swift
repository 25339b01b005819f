import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `DynamicQuantizeLinear(x) → MatMulInteger(·, W) → Cast(float) → Mul(·, Mul(x_scale, w_scale))
    /// [→ Add(bias)]`, as ONNX Runtime's `quantize_dynamic` writes a MatMul, becomes `DynamicQMatMul(x)`.
    mutating func fuseDynamicMatMuls() {
        guard hasKernel("DynamicQMatMul") else { return }
        for index in graph.nodes.indices where isFree([index]) {
            let matMul = node(index)
            guard matMul.opType == "MatMulInteger", matMul.normalizedDomain.isEmpty, matMul.inputs.count >= 3,
                  let quantizer = producer(of: matMul.inputs[0], "DynamicQuantizeLinear") else { continue }
            let dynamic = node(quantizer)
            guard dynamic.outputs.count == 3, dynamic.outputs[0] == matMul.inputs[0], matMul.inputs[2] == dynamic.outputs[2],
                  let w = constant(matMul.inputs[1]), w.rank == 2, w.dtype == .int8 || w.dtype == .uint8 else { continue }
            let columns = w.shape[1]
            var weightZero = input(matMul, 3)
            if let zero = constant(weightZero) {
                guard zero.dtype == w.dtype, zero.count == 1 || (zero.rank == 1 && zero.count == columns) else { continue }
            } else if weightZero.isEmpty {
                weightZero = addConstant(w.dtype == .int8 ? Tensor(scalar: Int8(0)) : Tensor(scalar: UInt8(0)),
                                         base: matMul.inputs[1] + "_zero_point")
            } else {
                continue
            }
            guard let cast = soleReader(of: matMul.outputs[0], ["Cast"]),
                  node(cast).attributes["to"]?.intValue == Int(DType.float32.onnxCode),
                  let scaling = soleReader(of: node(cast).outputs[0], ["Mul"]) else { continue }
            let scalingNode = node(scaling)
            guard scalingNode.inputs.count == 2, scalingNode.inputs.contains(node(cast).outputs[0]) else { continue }
            let scalesName = scalingNode.inputs[0] == node(cast).outputs[0] ? scalingNode.inputs[1] : scalingNode.inputs[0]
            guard let scalesProducer = producer(of: scalesName, "Mul"), node(scalesProducer).inputs.count == 2,
                  node(scalesProducer).inputs.contains(dynamic.outputs[1]) else { continue }
            let product = node(scalesProducer)
            let weightScale = product.inputs[0] == dynamic.outputs[1] ? product.inputs[1] : product.inputs[0]
            guard let scale = constant(weightScale), scale.dtype == .float32,
                  scale.count == 1 || (scale.rank == 1 && scale.count == columns) else { continue }
            var removed = [index, cast, scaling]
            var output = scalingNode.outputs[0]
            var bias = ""
            if let add = soleReader(of: output, ["Add"]), node(add).inputs.count == 2,
               node(add).inputs.filter({ $0 == output }).count == 1 {
                let other = node(add).inputs[0] == output ? node(add).inputs[1] : node(add).inputs[0]
                if let values = constant(other), values.dtype == .float32, values.rank == 1, values.count == columns {
                    bias = other
                    removed.append(add)
                    output = node(add).outputs[0]
                }
            }
            let fused = fusedNode("DynamicQMatMul", name: matMul.name,
                                  inputs: [dynamic.inputs[0], matMul.inputs[1], weightScale, weightZero, bias], outputs: [output])
            plan(removing: Set(removed), anchor: removed.last!, with: [fused])
        }
        fuseRowQuantizedMatMuls()
    }
}

// MARK: - Per-row (per-token) dynamic quantization

/// A matched `Abs → ReduceMax → [Max(ε)] → Div(d) → Div(x, ·) → QuantizeLinear(·, 1, z)` chain.
struct RowQuantization {
    /// The nodes the fused `QuantizeRows` replaces.
    let nodes: [Int]
    let x: String
    let codes: String
    let scale: String
    let zeroPoint: String
    let epsilon: Float
    let divisor: Float
}

extension IntegerFusionRewriter {
    /// The per-row dynamic MatMul `quantize --mode dynamic` writes by default (see
    /// `FusedRowScaledQMatMulKernel`): the row quantization becomes `QuantizeRows` (codes and scales as
    /// before, for every reader), and each `MatMulInteger → Cast → Mul(w_scale) → Mul(s) [→ Add(bias)]`
    /// reading them becomes `RowScaledQMatMul` [with the Gelu after it]. Matched by structure and constant
    /// values, not names.
    mutating func fuseRowQuantizedMatMuls() {
        guard hasKernel("QuantizeRows"), hasKernel("RowScaledQMatMul") else { return }
        var quantized: [String: RowQuantization] = [:]
        for index in graph.nodes.indices where isFree([index]) {
            guard let match = rowQuantization(at: index), isFree(match.nodes) else { continue }
            let fused = fusedNode("QuantizeRows", name: node(index).name, inputs: [match.x, match.zeroPoint],
                                  outputs: [match.codes, match.scale],
                                  attributes: [("epsilon", .float(match.epsilon)), ("divisor", .float(match.divisor))])
            plan(removing: Set(match.nodes), anchor: index, with: [fused])
            quantized[match.codes] = match
        }
        let match = FloatFusion.MatchContext(graph: graph)
        let gelus = graph.nodes.indices.compactMap { FloatFusion.matchGelu(root: $0, match) }
        for index in graph.nodes.indices where isFree([index]) {
            let matMul = node(index)
            guard matMul.opType == "MatMulInteger", matMul.normalizedDomain.isEmpty, matMul.outputs.count == 1,
                  let rows = quantized[input(matMul, 0)] else { continue }
            plan(rowScaledMatMul: index, rows: rows, match: match, gelus: gelus)
        }
    }

    /// The row quantization ending in the QuantizeLinear at `index`, when it has the exact form
    /// (see `FusedQuantizeRowsKernel`) and its intermediate values have no other reader.
    mutating func rowQuantization(at index: Int) -> RowQuantization? {
        let quantize = node(index)
        guard quantize.opType == "QuantizeLinear", quantize.normalizedDomain.isEmpty, blockSize(quantize) == 0,
              quantize.outputs.count == 1, let unit = floatScalar(input(quantize, 1)), unit == 1,
              let zero = constant(input(quantize, 2)), zero.count == 1, zero.dtype == .int8 || zero.dtype == .uint8,
              (quantize.attributes["output_dtype"]?.intValue ?? 0) == 0
                || quantize.attributes["output_dtype"]?.intValue == Int(zero.dtype.onnxCode),
              let normalize = producer(of: input(quantize, 0), "Div"), soleReader(of: input(quantize, 0)) == index
        else { return nil }
        let (x, scale) = (input(node(normalize), 0), input(node(normalize), 1))
        guard let division = producer(of: scale, "Div"), let divisor = floatScalar(input(node(division), 1))
        else { return nil }
        var nodes = [index, normalize, division]
        var maximum = input(node(division), 0)
        var epsilon = -Float.infinity
        if let guardIndex = producer(of: maximum, "Max"), node(guardIndex).inputs.count == 2,
           soleReader(of: maximum) == division {
            let operands = node(guardIndex).inputs
            // ε > 0 makes Max's operand order irrelevant (a −0 guard against +0 would not be).
            guard let bound = floatScalar(operands[1]) ?? floatScalar(operands[0]), bound.isFinite, bound > 0 else { return nil }
            epsilon = bound
            maximum = floatScalar(operands[1]) != nil ? operands[0] : operands[1]
            nodes.append(guardIndex)
        }
        guard let reduce = producer(of: maximum, "ReduceMax"), soleReader(of: maximum) == nodes.last!,
              (node(reduce).attributes["keepdims"]?.intValue ?? 1) == 1, reducesLastAxisOnly(node(reduce)),
              let magnitude = producer(of: input(node(reduce), 0), "Abs"), input(node(magnitude), 0) == x,
              soleReader(of: input(node(reduce), 0)) == reduce
        else { return nil }
        nodes += [reduce, magnitude]
        return RowQuantization(nodes: nodes, x: x, codes: quantize.outputs[0], scale: scale,
                               zeroPoint: input(quantize, 2), epsilon: epsilon, divisor: divisor)
    }

    /// Whether the ReduceMax reduces exactly axis −1 (attribute before opset 18, constant input after).
    func reducesLastAxisOnly(_ reduce: Node) -> Bool {
        let axes: [Int]
        if opset >= 18 {
            guard let tensor = constant(input(reduce, 1)), tensor.dtype == .int64 else { return false }
            axes = tensor.scalars(as: Int64.self).map { Int($0) }
        } else {
            guard let list = reduce.attributes["axes"]?.intsValue else { return false }
            axes = list
        }
        return axes == [-1]
    }

    /// The value of a constant holding one float32 (rank 0 or 1), which cannot change a broadcast's shape
    /// beyond rank 1.
    func floatScalar(_ name: String) -> Float? {
        guard let tensor = constant(name), tensor.dtype == .float32, tensor.count == 1, tensor.rank <= 1 else { return nil }
        return tensor.scalars(as: Float.self)[0]
    }

    /// Plans `RowScaledQMatMul` for the MatMulInteger at `index` when the nodes after it have the form
    /// `Cast(float) → Mul → Mul [→ Add(bias)]`, one Mul by the constant weight scales and one by the rows',
    /// absorbing an exported Gelu pattern after them (which `FloatFusion` would run as one vector Gelu).
    mutating func plan(rowScaledMatMul index: Int, rows: RowQuantization, match: FloatFusion.MatchContext,
                       gelus: [FusedGroup]) {
        let matMul = node(index)
        guard let w = constant(input(matMul, 1)), w.rank == 2, w.dtype == .int8 || w.dtype == .uint8 else { return }
        let columns = w.shape[1]
        let activationZero = input(matMul, 2)
        if !activationZero.isEmpty {
            guard let zero = constant(activationZero), zero.count == 1,
                  zero.dtype == constant(rows.zeroPoint)?.dtype else { return }
        }
        let weightZero = input(matMul, 3)
        if !weightZero.isEmpty {
            guard let zero = constant(weightZero), zero.dtype == w.dtype, zero.rank <= 1,
                  zero.count == 1 || zero.count == columns else { return }
        }
        guard let cast = soleReader(of: matMul.outputs[0], ["Cast"]),
              node(cast).attributes["to"]?.intValue == Int(DType.float32.onnxCode),
              let first = soleReader(of: node(cast).outputs[0], ["Mul"]),
              let firstOperand = otherOperand(of: first, than: node(cast).outputs[0]),
              let second = soleReader(of: node(first).outputs[0], ["Mul"]),
              let secondOperand = otherOperand(of: second, than: node(first).outputs[0]) else { return }
        let rowScaleFirst = firstOperand == rows.scale
        let weightScale = rowScaleFirst ? secondOperand : firstOperand
        guard (rowScaleFirst ? secondOperand : firstOperand) != rows.scale,
              (rowScaleFirst ? firstOperand : secondOperand) == rows.scale,
              let scale = constant(weightScale), scale.dtype == .float32, scale.rank <= 1,
              scale.count == 1 || scale.count == columns,
              (try? WeightQuantization(scale: scale, zeroPoint: constant(weightZero), weightType: w.dtype,
                                       channels: columns)) != nil else { return }
        var removed = [index, cast, first, second]
        var output = node(second).outputs[0]
        var bias = ""
        if let add = soleReader(of: output, ["Add"]), let other = otherOperand(of: add, than: output),
           let values = constant(other), values.dtype == .float32, values.rank == 1, values.count == columns {
            bias = other
            removed.append(add)
            output = node(add).outputs[0]
        }
        var attributes: [(String, Attribute)] = rowScaleFirst ? [("row_scale_first", .int(1))] : []
        if let (members, _, last) = fusableActivation(after: output, match: match, gelus: gelus, geluPatternOnly: true) {
            removed += members
            output = last
            attributes.append(("activation", .text("Gelu")))
        }
        let fused = fusedNode("RowScaledQMatMul", name: matMul.name,
                              inputs: [rows.codes, rows.scale, input(matMul, 1), weightScale, weightZero, bias, activationZero],
                              outputs: [output], attributes: attributes)
        plan(removing: Set(removed), anchor: removed.last!, with: [fused])
    }

    /// The other input of a two-input node that reads `value` once.
    func otherOperand(of index: Int, than value: String) -> String? {
        let inputs = node(index).inputs
        guard inputs.count == 2, inputs.filter({ $0 == value }).count == 1 else { return nil }
        return inputs[0] == value ? inputs[1] : inputs[0]
    }
}
