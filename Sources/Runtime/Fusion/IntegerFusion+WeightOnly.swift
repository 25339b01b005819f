import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// `MatMul(A, DequantizeLinear(W))` with a constant weight-only quantized `W` (int4/uint4/int8/uint8,
    /// float32 scales; per tensor, per channel or blocked) that no integer fusion took becomes
    /// `WeightOnlyMatMul`, whose weights are dequantized and packed once. A bias Add of one constant per
    /// column and an activation the SGEMM epilogue computes (Relu, Clip, Gelu and its exported pattern, …)
    /// after it are absorbed, as `FloatFusion` absorbs them after a float MatMul.
    mutating func fuseWeightOnlyMatMuls() {
        guard hasKernel("WeightOnlyMatMul") else { return }
        let weightTypes: Set<DType> = [.int4, .uint4, .int8, .uint8]
        let match = FloatFusion.MatchContext(graph: graph)
        let gelus = graph.nodes.indices.compactMap { FloatFusion.matchGelu(root: $0, match) }
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
            let epilogue = weightOnlyEpilogue(after: node.outputs[0], columns: codes.shape[1], match: match, gelus: gelus)
            attributes += epilogue.activation.map(WeightOnlyActivation.attributes) ?? []
            let fused = fusedNode("WeightOnlyMatMul", name: node.name,
                                  inputs: [node.inputs[0]] + [input(dequantize, 0), input(dequantize, 1), input(dequantize, 2),
                                                               epilogue.bias],
                                  outputs: [epilogue.output], attributes: attributes)
            plan(removing: Set([index] + epilogue.nodes), anchor: index, with: [fused])
        }
    }

    /// The bias Add and activation after a MatMul output `value` that a fused GEMM can apply itself: the
    /// nodes, the bias constant's name ("" for none), the activation and the value the last one produces.
    func weightOnlyEpilogue(after value: String, columns: Int, match: FloatFusion.MatchContext, gelus: [FusedGroup])
        -> (nodes: [Int], bias: String, activation: SGEMM.Activation?, output: String) {
        var nodes: [Int] = [], bias = "", output = value
        if let add = soleReader(of: output, ["Add"]), isFree([add]), let other = otherOperand(of: add, than: output),
           let values = constant(other), values.dtype == .float32, values.rank == 1, values.count == columns {
            (bias, output) = (other, node(add).outputs[0])
            nodes.append(add)
        }
        if let (members, activation, last) = fusableActivation(after: output, match: match, gelus: gelus, geluPatternOnly: false) {
            return (nodes + members, bias, activation, last)
        }
        return (nodes, bias, nil, output)
    }

    /// The activation reading `value` that an epilogue can apply: a Relu, Clip, … node, or the exported Gelu
    /// pattern (a `FloatFusion` Gelu group, which the epilogue computes with the same vector function).
    /// With `geluPatternOnly`, only the latter, whose results are those of the unfused graph bit for bit.
    func fusableActivation(after value: String, match: FloatFusion.MatchContext, gelus: [FusedGroup], geluPatternOnly: Bool)
        -> (nodes: [Int], activation: SGEMM.Activation, output: String)? {
        if !geluPatternOnly, let reader = soleReader(of: value), isFree([reader]), node(reader).inputs.first == value,
           node(reader).outputs.count == 1, let activation = FloatFusion.activation(of: node(reader), match, opset: opset) {
            return ([reader], activation, node(reader).outputs[0])
        }
        // Its constants must not raise the rank of what they multiply.
        if !graphOutputs.contains(value), let gelu = gelus.first(where: { $0.inputs == [value] }),
           Set(readers[value] ?? []).isSubset(of: gelu.members), isFree(gelu.members),
           gelu.members.allSatisfy({ member in node(member).inputs.allSatisfy { (constant($0)?.rank ?? 0) <= 1 } }) {
            return (gelu.members, .gelu, node(gelu.root).outputs[0])
        }
        return nil
    }
}

/// How a `WeightOnlyMatMul` node names its fused activation: `activation` (the ONNX operator's name) and
/// `activation_parameters` (Clip's bounds, LeakyRelu's alpha, HardSigmoid's alpha and beta).
enum WeightOnlyActivation {
    static func attributes(_ activation: SGEMM.Activation) -> [(String, Attribute)] {
        var result: [(String, Attribute)] = [("activation", .text(activation.operatorName))]
        switch activation {
        case .clip(let low, let high): result.append(("activation_parameters", .floats([low, high])))
        case .leakyRelu(let alpha): result.append(("activation_parameters", .floats([alpha])))
        case .hardSigmoid(let alpha, let beta): result.append(("activation_parameters", .floats([alpha, beta])))
        case .relu, .hardSwish, .gelu: break
        }
        return result
    }

    /// The activation a node's attributes name, nil when none; throws for an unknown name or wrong parameters.
    static func read(_ context: KernelBuildContext) throws -> SGEMM.Activation? {
        guard context.has("activation") else { return nil }
        let name = try context.string("activation")
        let parameters = try context.floats("activation_parameters", default: [])
        let expected = ["Relu": 0, "HardSwish": 0, "Gelu": 0, "LeakyRelu": 1, "Clip": 2, "HardSigmoid": 2][name]
        guard let expected else { throw KernelError.invalidAttribute("activation", "'\(name)' is not a fused activation") }
        guard parameters.count == expected else {
            throw KernelError.invalidAttribute("activation_parameters", "\(name) takes \(expected) values, got \(parameters.count)")
        }
        switch name {
        case "Relu": return .relu
        case "HardSwish": return .hardSwish
        case "Gelu": return .gelu
        case "LeakyRelu": return .leakyRelu(alpha: parameters[0])
        case "Clip": return .clip(low: parameters[0], high: parameters[1])
        default: return .hardSigmoid(alpha: parameters[0], beta: parameters[1])
        }
    }
}
