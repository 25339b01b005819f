import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `Shape` / `Size` of a DequantizeLinear output read the codes instead (same shape), so the
    /// DequantizeLinear is not kept alive for them alone.
    mutating func rewriteShapeReads() {
        for index in graph.nodes.indices {
            var node = node(index)
            guard ["Shape", "Size"].contains(node.opType), node.normalizedDomain.isEmpty, !node.inputs.isEmpty,
                  let dq = producer(of: node.inputs[0], "DequantizeLinear") else { continue }
            node.inputs[0] = input(self.node(dq), 0)
            plan(removing: [index], anchor: index, with: [node])
        }
    }

    /// Operators that only move or select elements, so they commute with a per-tensor DequantizeLinear
    /// (which is also monotone, for MaxPool): `op(DQ(x)) = DQ(op(x))`.
    private func isLayoutOnly(_ node: Node) -> Bool {
        guard node.normalizedDomain.isEmpty else { return false }
        switch node.opType {
        case "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather", "Identity",
             "DepthToSpace", "SpaceToDepth":
            return node.outputs.count == 1
        case "MaxPool":
            // int8/uint8 MaxPool exists from opset 12; the Indices output would change meaning.
            return opset >= 12 && (node.outputs.count == 1 || node.outputs[1].isEmpty)
        case "Resize":
            let mode = node.attributes["mode"]?.stringValue ?? "nearest"
            let coordinates = node.attributes["coordinate_transformation_mode"]?.stringValue ?? "half_pixel"
            return opset >= 11 && mode == "nearest" && coordinates != "tf_crop_and_resize" && node.outputs.count == 1
        default:
            return false
        }
    }

    /// `DQ(x) → layout op` becomes `layout op (x) → DQ`: the operator moves codes (a quarter of the
    /// bytes), and a QuantizeLinear after it meets the DequantizeLinear (see `fuseRequantizations`).
    mutating func moveDequantizeAfterLayoutOperators() {
        for index in graph.nodes.indices where isFree([index]) {
            let node = node(index)
            guard isLayoutOnly(node), let data = node.inputs.first, !data.isEmpty,
                  node.inputs.dropFirst().allSatisfy({ $0 != data }),
                  let dq = activationDequantize(producing: data), constant(dq.codes) == nil else { continue }
            var moved = node
            moved.inputs[0] = dq.codes
            moved.outputs = [namer.make(base: node.outputs[0] + "_codes")]
            let dequantize = Node(name: nodeName(node.name + "_dequantize"), opType: "DequantizeLinear",
                                  inputs: [moved.outputs[0], dq.scale, dq.zeroPoint], outputs: node.outputs)
            plan(removing: [index], anchor: index, with: [moved, dequantize])
        }
    }

    /// `DQ → Q` on per-tensor parameters: nothing when both sides agree (the codes pass through), otherwise
    /// one table lookup per element (`Requantize`).
    mutating func fuseRequantizations() {
        for index in graph.nodes.indices where isFree([index]) {
            guard node(index).opType == "QuantizeLinear", let q = activationQuantize(at: index),
                  let dq = activationDequantize(producing: q.real) else { continue }
            if q.parameters == dq.parameters && !graphOutputs.contains(q.codes) {
                plan(removing: [index], anchor: index, with: [])
                redirect(q.codes, to: dq.codes)
            } else if hasKernel("Requantize") {
                let fused = fusedNode("Requantize", name: node(index).name,
                                      inputs: [dq.codes, dq.scale, dq.zeroPoint, q.scale, q.zeroPoint], outputs: [q.codes])
                plan(removing: [index], anchor: index, with: [fused])
            }
        }
    }

    /// A QuantizeLinear to uint8/int8 with constant float32 scales and zero points, one per channel along
    /// the last axis of its input (`axis` −1, or the last axis of a declared rank).
    func lastAxisChannelQuantize(_ node: Node) -> Bool {
        guard node.inputs.count == 3, blockSize(node) == 0, let scale = constant(input(node, 1)),
              scale.dtype == .float32, scale.rank == 1, scale.count > 1,
              let zeroPoint = constant(input(node, 2)), zeroPoint.shape == scale.shape,
              zeroPoint.dtype == .uint8 || zeroPoint.dtype == .int8 else { return false }
        if let declared = node.attributes["output_dtype"]?.intValue, declared != 0,
           declared != Int(zeroPoint.dtype.onnxCode) { return false }
        let axis = node.attributes["axis"]?.intValue ?? 1
        if axis == -1 { return true }
        let info = graph.inputs.first { $0.name == node.inputs[0] } ?? graph.valueInfo[node.inputs[0]]
        guard let rank = info?.type?.tensorShape?.count else { return false }
        return axis == rank - 1
    }

    /// Per-tensor QuantizeLinear and DequantizeLinear of activations run as the vectorised `Quantize` /
    /// `Dequantize` (bit-identical to the reference kernels).
    mutating func vectoriseQuantizeDequantize() {
        guard hasKernel("Quantize"), hasKernel("Dequantize") else { return }
        for index in graph.nodes.indices where isFree([index]) {
            let node = node(index)
            guard node.normalizedDomain.isEmpty, node.outputs.count == 1 else { continue }
            if node.opType == "QuantizeLinear", let q = activationQuantize(at: index) {
                let fused = fusedNode("Quantize", name: node.name, inputs: [q.real, q.scale, q.zeroPoint], outputs: [q.codes])
                plan(removing: [index], anchor: index, with: [fused])
            } else if node.opType == "QuantizeLinear", lastAxisChannelQuantize(node) {
                let fused = fusedNode("Quantize", name: node.name, inputs: Array(node.inputs.prefix(3)), outputs: node.outputs)
                plan(removing: [index], anchor: index, with: [fused])
            } else if node.opType == "DequantizeLinear", let dq = activationDequantize(producing: node.outputs[0]) {
                let fused = fusedNode("Dequantize", name: node.name, inputs: [dq.codes, dq.scale, dq.zeroPoint],
                                      outputs: [dq.real])
                plan(removing: [index], anchor: index, with: [fused])
            }
        }
    }
}
