import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `Add(a, b) → LayerNormalization` over the last axis, where only the normalisation reads the sum and
    /// only its first output is used (a Transformer's residual connection), becomes `AddLayerNormalization`.
    mutating func fuseResidualLayerNorms() {
        guard hasKernel("AddLayerNormalization") else { return }
        for index in graph.nodes.indices where isFree([index]) {
            let norm = node(index)
            guard norm.opType == "LayerNormalization", norm.normalizedDomain.isEmpty, (2...3).contains(norm.inputs.count),
                  !norm.outputs.isEmpty, !norm.outputs[0].isEmpty, norm.outputs.dropFirst().allSatisfy(\.isEmpty),
                  norm.attributes.keys.allSatisfy({ ["axis", "epsilon", "stash_type"].contains($0) }),
                  (norm.attributes["axis"]?.intValue ?? -1) == -1, (norm.attributes["stash_type"]?.intValue ?? 1) == 1,
                  let add = producer(of: norm.inputs[0], "Add"), soleReader(of: norm.inputs[0]) == index,
                  isFree([add]), node(add).inputs.count == 2, node(add).outputs.count == 1
            else { continue }
            let attributes = norm.attributes["epsilon"].map { [("epsilon", $0)] } ?? []
            let fused = fusedNode("AddLayerNormalization", name: norm.name,
                                  inputs: node(add).inputs + Array(norm.inputs.dropFirst()), outputs: [norm.outputs[0]],
                                  attributes: attributes)
            plan(removing: [add, index], anchor: index, with: [fused])
        }
    }
}
