import Tensors

/// Folds an inference-mode `BatchNormalization` into the `Conv` or `ConvTranspose` that feeds it.
///
/// For output channel `m`, with `s_m = γ_m / √(var_m + ε)`:
///
///     W'[m, …] = W[m, …] · s_m
///     B'_m     = (B_m − mean_m) · s_m + β_m        (B_m = 0 when the convolution has no bias)
///
/// so that `Conv(x; W', B') = BN(Conv(x; W, B))`. The arithmetic runs in `Double` and is rounded once
/// to the weight's dtype (float32, float64, float16 or bfloat16).
///
/// For `ConvTranspose` the weight is `[C_in, M / group, k…]`, so the output channel of element
/// `[c, j, …]` is `(c / (C_in / group)) · (M / group) + j`.
///
/// Conditions, all required: the convolution's weight and bias, and the four BN parameters, are
/// constants; the convolution output is read by the BN alone and is no graph output; the BN is in
/// inference mode (`training_mode` 0, `spatial` 1 where those exist) and none of its optional outputs
/// is used; every BN parameter holds one value per output channel; `var + ε > 0` everywhere (otherwise
/// the unfolded graph computes Inf/NaN, which folding would not reproduce exactly).
///
/// The folded convolution writes the BN's output name, so readers and graph outputs are unaffected. New
/// weights get fresh names (the old ones may be shared); old constants left unread are removed.
public struct BatchNormFolding: GraphPass {
    public var name: String { "batchnorm-folding" }

    public init() {}

    public func run(on graph: inout Graph, context: PassContext) throws -> Bool {
        let constants = graph.constantValues
        let producers = graph.producers
        let readers = graph.readers
        let graphOutputs = graph.outputNames
        var namer = UniqueNamer(graph: graph, reserved: context.outerScope)
        var removed = Set<Int>()
        var touchedConstants = Set<String>()

        for (bnIndex, bn) in graph.nodes.enumerated() where bn.opType == "BatchNormalization" && bn.normalizedDomain == "" {
            guard let convOutput = bn.inputs.first, !convOutput.isEmpty,
                  let convIndex = producers[convOutput], !removed.contains(convIndex) else { continue }
            let conv = graph.nodes[convIndex]
            guard conv.normalizedDomain == "", conv.opType == "Conv" || conv.opType == "ConvTranspose",
                  conv.outputs.first == convOutput, readers[convOutput] == [bnIndex], !graphOutputs.contains(convOutput),
                  isInferenceMode(bn, readers: readers, graphOutputs: graphOutputs),
                  let folded = try fold(conv: conv, bn: bn, constants: constants, namer: &namer)
            else { continue }

            graph.initializers[folded.weightName] = folded.weight
            graph.initializers[folded.biasName] = folded.bias
            var newConv = conv
            newConv.inputs = [conv.inputs[0], folded.weightName, folded.biasName]
            newConv.outputs = [bn.outputs[0]]
            graph.nodes[convIndex] = newConv
            graph.valueInfo.removeValue(forKey: convOutput)
            removed.insert(bnIndex)
            touchedConstants.formUnion(conv.inputs.dropFirst().filter { !$0.isEmpty })
            touchedConstants.formUnion(bn.inputs.dropFirst().filter { !$0.isEmpty })
        }
        guard !removed.isEmpty else { return false }
        graph.removeNodes(at: removed)

        // Drop constants only the folded nodes read (Constant nodes are left to dead-code elimination).
        let stillRead = graph.readers
        let declaredInputs = Set(graph.inputs.map(\.name))
        for name in touchedConstants where stillRead[name] == nil && !graphOutputs.contains(name) && !declaredInputs.contains(name) {
            graph.initializers.removeValue(forKey: name)
            graph.valueInfo.removeValue(forKey: name)
        }
        return true
    }

    /// True when `bn` normalises with its stored statistics and nothing reads its optional outputs.
    private func isInferenceMode(_ bn: Node, readers: [String: [Int]], graphOutputs: Set<String>) -> Bool {
        if let training = bn[attribute: "training_mode"]?.intValue, training != 0 { return false }
        if let spatial = bn[attribute: "spatial"]?.intValue, spatial != 1 { return false }
        if let isTest = bn[attribute: "is_test"]?.intValue, isTest == 0 { return false }
        guard let output = bn.outputs.first, !output.isEmpty else { return false }
        for extra in bn.outputs.dropFirst() where !extra.isEmpty {
            if readers[extra] != nil || graphOutputs.contains(extra) { return false }
        }
        return true
    }

    private struct Folded {
        var weightName: String
        var weight: Tensor
        var biasName: String
        var bias: Tensor
    }

    private func fold(conv: Node, bn: Node, constants: [String: Tensor], namer: inout UniqueNamer) throws -> Folded? {
        guard conv.inputs.count >= 2, bn.inputs.count >= 5,
              let weight = constants[conv.inputs[1]], weight.rank >= 3,
              let weights = weight.doubleElements, weight.dtype.isFloatingPoint,
              let gamma = constants[bn.inputs[1]]?.doubleElements,
              let beta = constants[bn.inputs[2]]?.doubleElements,
              let mean = constants[bn.inputs[3]]?.doubleElements,
              let variance = constants[bn.inputs[4]]?.doubleElements
        else { return nil }
        let biasInput = conv.inputs.count > 2 ? conv.inputs[2] : ""
        var convBias: [Double]? = nil
        if !biasInput.isEmpty {
            guard let values = constants[biasInput]?.doubleElements else { return nil }
            convBias = values
        }

        let group = conv[attribute: "group"]?.intValue ?? 1
        guard group >= 1 else { return nil }
        let isTranspose = conv.opType == "ConvTranspose"
        // Output channels, and how many consecutive weight elements share one channel index pattern.
        let outputChannels: Int
        if isTranspose {
            let (product, overflow) = weight.shape[1].multipliedReportingOverflow(by: group)
            guard !overflow, weight.shape[0] % group == 0 else { return nil }
            outputChannels = product
        } else {
            outputChannels = weight.shape[0]
        }
        guard outputChannels > 0, [gamma, beta, mean, variance].allSatisfy({ $0.count == outputChannels }),
              convBias == nil || convBias?.count == outputChannels
        else { return nil }

        let epsilon = Double(bn[attribute: "epsilon"]?.floatValue ?? 1e-5)
        var scale = [Double](repeating: 0, count: outputChannels)
        var newBias = [Double](repeating: 0, count: outputChannels)
        for m in 0..<outputChannels {
            let denominator = variance[m] + epsilon
            guard denominator > 0, denominator.isFinite else { return nil }
            scale[m] = gamma[m] / denominator.squareRoot()
            newBias[m] = ((convBias?[m] ?? 0) - mean[m]) * scale[m] + beta[m]
        }

        var newWeights = weights
        if isTranspose {
            // Weight [C_in, M/g, k…]: row c, column j scales by channel (c / (C_in/g))·(M/g) + j.
            let inputChannels = weight.shape[0]
            let perGroupIn = inputChannels / group
            let perGroupOut = weight.shape[1]
            let kernelSize = weights.count / max(inputChannels * perGroupOut, 1)
            for c in 0..<inputChannels {
                for j in 0..<perGroupOut {
                    let channel = (c / perGroupIn) * perGroupOut + j
                    let start = (c * perGroupOut + j) * kernelSize
                    for offset in start..<(start + kernelSize) { newWeights[offset] *= scale[channel] }
                }
            }
        } else {
            let kernelSize = weights.count / outputChannels
            for m in 0..<outputChannels {
                for offset in (m * kernelSize)..<((m + 1) * kernelSize) { newWeights[offset] *= scale[m] }
            }
        }

        guard let foldedWeight = try Tensor.floating(weight.dtype, shape: weight.shape, values: newWeights),
              let foldedBias = try Tensor.floating(weight.dtype, shape: [outputChannels], values: newBias)
        else { return nil }
        let stem = bn.name.isEmpty ? bn.outputs[0] : bn.name
        return Folded(
            weightName: namer.make(base: "\(conv.inputs[1])_bn_folded"), weight: foldedWeight,
            biasName: namer.make(base: "\(stem)_folded_bias"), bias: foldedBias)
    }
}
