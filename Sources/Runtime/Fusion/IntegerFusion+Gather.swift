import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `Gather(DequantizeLinear(table), indices)` along axis 0, with the table's codes and parameters
    /// constant (int8/uint8/int4/uint4 codes, float32 scales, any DequantizeLinear layout), becomes
    /// `DequantizeGather`, which dequantizes only the gathered rows. The DequantizeLinear stays while
    /// other nodes read it.
    mutating func fuseDequantizedGathers() {
        guard hasKernel("DequantizeGather") else { return }
        for index in graph.nodes.indices where isFree([index]) {
            let gather = node(index)
            guard gather.opType == "Gather", gather.normalizedDomain.isEmpty, gather.inputs.count == 2,
                  gather.outputs.count == 1, let dq = producer(of: gather.inputs[0], "DequantizeLinear") else { continue }
            let dequantize = node(dq)
            guard dequantize.outputs.first == gather.inputs[0], let table = constant(input(dequantize, 0)),
                  let scale = constant(input(dequantize, 1)),
                  input(dequantize, 2).isEmpty || constant(input(dequantize, 2)) != nil else { continue }
            let gatherAxis = gather.attributes["axis"]?.intValue ?? 0
            guard Shape.normalizedAxis(gatherAxis, rank: table.rank) == 0 else { continue }
            // The operator versions in force must accept what the fused kernel accepts.
            let fourBit = table.dtype == .int4 || table.dtype == .uint4
            let block = opset >= 21 ? blockSize(dequantize) : 0
            guard opset >= 21 || !fourBit, opset >= 13 || scale.count == 1 else { continue }
            let axis = opset >= 13 ? dequantize.attributes["axis"]?.intValue ?? 1 : 1
            guard (try? FusedDequantizeGatherKernel(table: table, scale: scale, zeroPoint: constant(input(dequantize, 2)),
                                                    axis: axis, blockSize: block)) != nil else { continue }
            let fused = fusedNode("DequantizeGather", name: gather.name,
                                  inputs: [input(dequantize, 0), input(dequantize, 1), input(dequantize, 2), gather.inputs[1]],
                                  outputs: gather.outputs,
                                  attributes: [("axis", .int(axis)), ("block_size", .int(block))])
            plan(removing: [index], anchor: index, with: [fused])
        }
    }
}
