import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `DQ → Add | Mul [→ Relu | Clip] → Q`, `DQ… → Concat → Q`, `DQ → GlobalAveragePool → Q` and
    /// `DQ → f → Q` (f in `lookupOperators`) on per-tensor parameters become `QAdd`, `QMul`, `QConcat`,
    /// `QGlobalAveragePool` and `QLookup`.
    mutating func fuseElementwise() {
        for index in graph.nodes.indices where isFree([index]) {
            let node = node(index)
            guard node.normalizedDomain.isEmpty, node.outputs.count == 1 else { continue }
            switch node.opType {
            case "Add" where hasKernel("QAdd"), "Mul" where hasKernel("QMul"):
                fuseBinary(index, opType: node.opType == "Add" ? "QAdd" : "QMul")
            case "Concat" where hasKernel("QConcat"):
                fuseConcat(index)
            case _ where Self.lookupOperators.contains(node.opType) && hasKernel("QLookup"):
                fuseLookup(index)
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

extension IntegerFusionRewriter {
    /// Elementwise activations whose float32 kernels compute each element from its value alone with
    /// plain arithmetic (no vectorised transcendental whose lanes could round differently from a scalar
    /// tail), so running them on the 256 dequantized codes gives exactly what they compute in place.
    static let lookupOperators: Set<String> = ["Relu", "LeakyRelu", "HardSigmoid", "HardSwish", "Clip"]

    /// `DQ → f → Q` becomes `QLookup` with the table `Q(f(DQ(code)))` of every code, computed by the
    /// reference arithmetic of DequantizeLinear (`FusedDequantizeKernel.table`), f's own kernel from the
    /// registry, and QuantizeLinear's arithmetic (`ActivationQuantization.quantize`). f's other inputs
    /// (Clip bounds) must be constants.
    mutating func fuseLookup(_ index: Int) {
        let node = node(index)
        guard node.outputs.count == 1, let first = node.inputs.first, let x = activationDequantize(producing: first),
              let q = activationQuantize(reading: node.outputs[0]),
              let codes = try? Tensor(shape: [256], scalars: FusedDequantizeKernel.table(x.parameters)) else { return }
        var inputs: [Tensor?] = [codes]
        for name in node.inputs.dropFirst() {
            if name.isEmpty {
                inputs.append(nil)
            } else {
                guard let value = constant(name) else { return }
                inputs.append(value)
            }
        }
        guard let results = try? KernelEvaluator.evaluate(node, inputs: inputs, opset: opset, registry: registry),
              results.count == 1, results[0].dtype == .float32, results[0].shape == [256] else { return }
        let quantized = results[0].scalars(as: Float.self).map { q.parameters.quantize($0) }
        let table = q.parameters.dtype == .uint8 ? try? Tensor(shape: [256], scalars: quantized.map { UInt8($0) })
                                                 : try? Tensor(shape: [256], scalars: quantized.map { Int8($0) })
        guard let table else { return }
        let fused = fusedNode("QLookup", name: node.name, inputs: [x.codes], outputs: [q.codes],
                              attributes: [("table", .tensor(table))])
        // The DequantizeLinear goes too when f was its only reader, so the codes' producer sees its real readers.
        let dequantize: Set<Int> = soleReader(of: x.real) == index && isFree([x.index]) ? [x.index] : []
        plan(removing: Set([index, q.index]).union(dequantize), anchor: q.index, with: [fused])
    }

    /// A `QLookup` whose input only a `QConv` with a quantized output of the same type produces moves into
    /// that convolution as its `output_table`, applied while the codes are in registers.
    mutating func absorbLookupsIntoConvolutions() {
        for index in graph.nodes.indices where isFree([index]) {
            let lookup = node(index)
            guard lookup.domain == IntegerFusion.domain, lookup.opType == "QLookup", lookup.inputs.count == 1,
                  let table = lookup.attributes["table"]?.tensorValue,
                  let convolution = producers[lookup.inputs[0]], isFree([convolution]),
                  soleReader(of: lookup.inputs[0]) == index else { continue }
            var fused = node(convolution)
            guard fused.domain == IntegerFusion.domain, fused.opType == "QConv", fused.outputs.count == 1,
                  fused.attributes["output_table"] == nil, fused.attributes["dequantize_output"] == nil,
                  fused.inputs.count >= 9, let zeroPoint = constant(fused.inputs[8]), zeroPoint.dtype == table.dtype
            else { continue }
            fused.outputs = lookup.outputs
            fused.attributes["output_table"] = .tensor(table)
            plan(removing: [convolution, index], anchor: convolution, with: [fused])
        }
    }
}
