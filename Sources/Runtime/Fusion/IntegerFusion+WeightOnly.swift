import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `MatMul(A, DequantizeLinear(W))` with a constant weight-only quantized `W` (int4/uint4/int8/uint8,
    /// float32 scales; per tensor, per channel or blocked) that no integer fusion took becomes
    /// `WeightOnlyMatMul`, whose weights are dequantized and packed once.
    mutating func fuseWeightOnlyMatMuls() {
        guard hasKernel("WeightOnlyMatMul") else { return }
        let weightTypes: Set<DType> = [.int4, .uint4, .int8, .uint8]
        for index in graph.nodes.indices where isFree([index]) {
            let node = node(index)
            guard node.opType == "MatMul", node.normalizedDomain.isEmpty, node.inputs.count == 2,
                  let dq = producer(of: node.inputs[1], "DequantizeLinear") else { continue }
            let dequantize = self.node(dq)
            guard let codes = constant(input(dequantize, 0)), codes.rank == 2, weightTypes.contains(codes.dtype),
                  let scale = constant(input(dequantize, 1)), scale.dtype == .float32,
                  input(dequantize, 2).isEmpty || constant(input(dequantize, 2)) != nil else { continue }
            // The weights must dequantize cleanly now; otherwise the unfused graph reports the problem.
            var probe = Node(opType: "DequantizeLinear", inputs: dequantize.inputs, outputs: ["w"])
            probe.attributes = dequantize.attributes
            let constants: [Tensor?] = dequantize.inputs.map { constant($0) }
            let context = KernelBuildContext(node: probe, opsetVersion: 21, constantInputs: constants,
                                             compileSubgraph: { _, _ in throw KernelError.unsupported("subgraphs") })
            guard let kernel = try? DequantizeLinearKernel(context, version: 21),
                  (try? kernel.run(constants, context: ExecutionContext(threadCount: 1)))?.first?.dtype == .float32
            else { continue }
            var attributes: [(String, Attribute)] = []
            for name in ["axis", "block_size"] { if let value = dequantize.attributes[name] { attributes.append((name, value)) } }
            let fused = fusedNode("WeightOnlyMatMul", name: node.name,
                                  inputs: [node.inputs[0]] + dequantize.inputs, outputs: node.outputs, attributes: attributes)
            plan(removing: [index], anchor: index, with: [fused])
        }
    }
}
