import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// A float-output `QMatMul` with constant weights whose result only an exact Gelu pattern reads, and whose
    /// Gelu only a vectorised `Quantize` reads (BERT's intermediate layer: dense → Gelu → QuantizeLinear),
    /// becomes one `QMatMul` with `activation = "Gelu"` and `quantize_float_output`: the Gelu and the
    /// quantization run on each tile of results while it is in cache, and the float tensor is never written.
    mutating func fuseQuantizedGelus() {
        guard hasKernel("QMatMul") else { return }
        let context = FloatFusion.MatchContext(graph: graph)
        for index in graph.nodes.indices where isFree([index]) && node(index).opType == "Mul" {
            guard let group = FloatFusion.matchGelu(root: index, context), group.inputs.count == 1, isFree(group.members),
                  let matMul = floatQMatMul(producing: group.inputs[0], readOnlyBy: Set(group.members)),
                  group.members.allSatisfy({ member in
                      node(member).inputs.allSatisfy { constant($0).map { $0.rank <= 1 } ?? true }
                  }),
                  let quantize = soleReader(of: node(index).outputs[0]), isFree([quantize]),
                  node(quantize).opType == "Quantize", node(quantize).domain == IntegerFusion.domain,
                  input(node(quantize), 0) == node(index).outputs[0],
                  constant(input(node(quantize), 1)) != nil,
                  input(node(quantize), 2).isEmpty || constant(input(node(quantize), 2)) != nil
            else { continue }
            let original = node(matMul)
            var inputs = original.inputs
            while inputs.count < 7 { inputs.append("") }
            inputs += [input(node(quantize), 1), input(node(quantize), 2)]
            var attributes = original.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            attributes += [("quantize_float_output", .int(1)), ("activation", .string(Array("Gelu".utf8)))]
            let fused = fusedNode("QMatMul", name: original.name, inputs: inputs, outputs: node(quantize).outputs,
                                  attributes: attributes)
            plan(removing: Set(group.members + [matMul, quantize]), anchor: quantize, with: [fused])
        }
    }

    /// The `QMatMul` producing `value` when it has constant weights, a plain float output (no requantization,
    /// clamp or absorbed DequantizeLinear) and `value` is read only by `readers`.
    private func floatQMatMul(producing value: String, readOnlyBy allowed: Set<Int>) -> Int? {
        guard let index = producers[value], isFree([index]) else { return nil }
        let matMul = node(index)
        guard matMul.opType == "QMatMul", matMul.domain == IntegerFusion.domain, matMul.outputs == [value],
              matMul.inputs.count <= 7, constant(input(matMul, 3)) != nil,
              ["clip_min", "clip_max", "dequantize_output", "quantize_float_output", "activation"]
                  .allSatisfy({ matMul.attributes[$0] == nil }),
              !graphOutputs.contains(value), let list = readers[value], Set(list).isSubset(of: allowed)
        else { return nil }
        return index
    }
}
