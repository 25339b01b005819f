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
    }
}
