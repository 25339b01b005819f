import GraphIR
import Tensors

// Integer-compute operators: activations in, constant weights per output channel, bias int32.

/// Conv: weight `[M, C/group, k…]` per output channel along axis 0, bias `[M]`.
struct ConvQuantizer: OperatorQuantizer {
    var role: OperatorRole { .integerCompute }

    func weights(of node: Node, constants: [String: Tensor]) -> WeightSlots? {
        guard node.inputs.count >= 2, let weight = constants[node.inputs[1]], weight.rank >= 3 else { return nil }
        return WeightSlots(weight: 1, outputChannelAxis: 0, bias: constantBias(node, at: 2, constants: constants))
    }

    func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int] { [0] }

    func floatReason(for node: Node, constants: [String: Tensor]) -> String? {
        weights(of: node, constants: constants) == nil ? "its weight is not a constant tensor" : nil
    }
}

/// ConvTranspose: weight `[C, M/group, k…]` per output channel along axis 1; bias `[M]`, whose channel `m`
/// uses the weight scale of index `m mod (M/group)`.
struct ConvTransposeQuantizer: OperatorQuantizer {
    var role: OperatorRole { .integerCompute }

    func weights(of node: Node, constants: [String: Tensor]) -> WeightSlots? {
        guard node.inputs.count >= 2, let weight = constants[node.inputs[1]], weight.rank >= 3 else { return nil }
        return WeightSlots(weight: 1, outputChannelAxis: 1, bias: constantBias(node, at: 2, constants: constants))
    }

    func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int] { [0] }

    func floatReason(for node: Node, constants: [String: Tensor]) -> String? {
        weights(of: node, constants: constants) == nil ? "its weight is not a constant tensor" : nil
    }
}

/// Gemm `alpha · A' · B' + beta · C`: a constant B is the weight (per output channel: axis 1, or 0 when
/// transposed); C is an int32 bias when it is a constant vector of N and alpha = beta = 1, otherwise it
/// stays a float parameter.
struct GemmQuantizer: OperatorQuantizer {
    var role: OperatorRole { .integerCompute }

    func weights(of node: Node, constants: [String: Tensor]) -> WeightSlots? {
        let transA = node.attributes["transA"]?.intValue ?? 0
        let transB = node.attributes["transB"]?.intValue ?? 0
        let alpha = node.attributes["alpha"]?.floatValue ?? 1
        let beta = node.attributes["beta"]?.floatValue ?? 1
        let hasC = node.inputs.count >= 3 && !node.inputs[2].isEmpty
        if node.inputs.count >= 2, let b = constants[node.inputs[1]], b.rank == 2 {
            let n = transB != 0 ? b.shape[0] : b.shape[1]
            var bias: Int?
            var parameters: [Int] = []
            if hasC {
                if let c = constants[node.inputs[2]], c.count == n, c.rank <= 2, c.shape.last == n,
                   alpha == 1, beta == 1 {
                    bias = 2
                } else {
                    parameters = [2]
                }
            }
            return WeightSlots(weight: 1, outputChannelAxis: transB != 0 ? 0 : 1,
                               reductionAxis: transA == 0 ? (transB != 0 ? 1 : 0) : nil,
                               bias: bias, parameters: parameters)
        }
        if let a = constants[node.inputs[0]], a.rank == 2 {
            return WeightSlots(weight: 0, outputChannelAxis: nil, parameters: hasC ? [2] : [])
        }
        return nil
    }

    func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int] { [0, 1] }
}

/// MatMul: a constant B is the weight, per output column (its last axis); a constant A (B an activation)
/// is quantized per tensor. Two activations (attention) are both quantized per tensor.
struct MatMulQuantizer: OperatorQuantizer {
    var role: OperatorRole { .integerCompute }

    func weights(of node: Node, constants: [String: Tensor]) -> WeightSlots? {
        guard node.inputs.count == 2 else { return nil }
        if let b = constants[node.inputs[1]], b.rank >= 2 {
            return WeightSlots(weight: 1, outputChannelAxis: b.rank - 1, reductionAxis: b.rank == 2 ? 0 : nil)
        }
        if let a = constants[node.inputs[0]], a.rank >= 2 {
            return WeightSlots(weight: 0, outputChannelAxis: nil)
        }
        return nil
    }

    func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int] { [0, 1] }

    func floatReason(for node: Node, constants: [String: Tensor]) -> String? {
        for name in node.inputs where (constants[name]?.rank ?? 2) < 2 {
            return "a 1-D constant operand ('\(name)') is not a weight matrix"
        }
        return nil
    }
}

/// The input at `index` when it is a constant 1-D tensor (a per-channel bias).
private func constantBias(_ node: Node, at index: Int, constants: [String: Tensor]) -> Int? {
    guard node.inputs.count > index, !node.inputs[index].isEmpty,
          let bias = constants[node.inputs[index]], bias.rank == 1 else { return nil }
    return index
}
