import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `DQ → Add | Mul [→ Relu | Clip] → Q`, `DQ… → Concat → Q` and `DQ → GlobalAveragePool → Q` on
    /// per-tensor parameters become `QAdd`, `QMul`, `QConcat` and `QGlobalAveragePool`.
    mutating func fuseElementwise() {
        for index in graph.nodes.indices where isFree([index]) {
            let node = node(index)
            guard node.normalizedDomain.isEmpty, node.outputs.count == 1 else { continue }
            switch node.opType {
            case "Add" where hasKernel("QAdd"), "Mul" where hasKernel("QMul"):
                fuseBinary(index, opType: node.opType == "Add" ? "QAdd" : "QMul")
            case "Concat" where hasKernel("QConcat"):
                fuseConcat(index)
            case "GlobalAveragePool" where hasKernel("QGlobalAveragePool"):
                guard let x = activationDequantize(producing: node.inputs[0]),
                      let q = activationQuantize(reading: node.outputs[0]) else { continue }
                let fused = fusedNode("QGlobalAveragePool", name: node.name,
                                      inputs: [x.codes, x.scale, x.zeroPoint, q.scale, q.zeroPoint], outputs: [q.codes])
                plan(removing: [index, q.index], anchor: q.index, with: [fused])
            default:
                break
            }
        }
    }

    private mutating func fuseBinary(_ index: Int, opType: String) {
        let node = node(index)
        guard node.inputs.count == 2, let a = activationDequantize(producing: node.inputs[0]),
              let b = activationDequantize(producing: node.inputs[1]) else { return }
        var removed = [index], value = node.outputs[0]
        var clamp: (low: Float?, high: Float?)?
        if let activation = soleReader(of: value, ["Relu", "Clip"]), input(self.node(activation), 0) == value,
           let bounds = activationClamp(self.node(activation)) {
            clamp = bounds
            removed.append(activation)
            value = self.node(activation).outputs[0]
        }
        guard let q = activationQuantize(reading: value) else { return }
        removed.append(q.index)
        let fused = fusedNode(opType, name: node.name,
                              inputs: [a.codes, a.scale, a.zeroPoint, b.codes, b.scale, b.zeroPoint, q.scale, q.zeroPoint],
                              outputs: [q.codes], attributes: Attribute.clampAttributes(clamp))
        plan(removing: Set(removed), anchor: q.index, with: [fused])
    }

    private mutating func fuseConcat(_ index: Int) {
        let node = node(index)
        guard let axis = node.attributes["axis"], !node.inputs.isEmpty else { return }
        var inputs: [String] = []
        for name in node.inputs {
            guard let x = activationDequantize(producing: name) else { return }
            inputs += [x.codes, x.scale, x.zeroPoint]
        }
        guard let q = activationQuantize(reading: node.outputs[0]) else { return }
        let fused = fusedNode("QConcat", name: node.name, inputs: inputs + [q.scale, q.zeroPoint], outputs: [q.codes],
                              attributes: [("axis", axis)])
        plan(removing: [index, q.index], anchor: q.index, with: [fused])
    }
}
