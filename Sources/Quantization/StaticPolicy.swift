import GraphIR
import Tensors

/// Decides, for a static quantization, which nodes compute in (or pass through) the quantized domain and
/// which activation tensors get a QuantizeLinear/DequantizeLinear pair.
///
/// The rule avoids needless pairs. An integer-compute operator (Conv, ConvTranspose, Gemm, MatMul) needs
/// its activation inputs quantized. Any other registered operator is quantized only when it sits between
/// quantized tensors: every data input comes out of the quantized domain (a graph input, an integer
/// operator, or another quantized operator) and some quantized operator reads its output. Two sweeps find
/// that: forward, which tensors *can* come out of the quantized domain; backward, which ones a quantized
/// reader *wants*. So `MatMul → Add(bias) → Reshape → MatMul` quantizes only the second MatMul's input
/// (after the float Add), while `Conv → Relu → MaxPool → Conv` stays quantized throughout.
struct StaticPolicy {
    /// What happens to one node.
    enum Status: Equatable {
        case float(reason: String)
        /// An integer-compute node; `weights` is nil when every operand is an activation (attention).
        case integerCompute(weights: WeightSlots?)
        /// A quantized-domain, pass-through or clamp node between quantized tensors.
        case active(OperatorRole)

        var isQuantized: Bool { if case .float = self { return false } else { return true } }
    }

    let graph: Graph
    let constants: [String: Tensor]
    private(set) var status: [Status]
    /// Activation tensors that get a QuantizeLinear/DequantizeLinear pair, in definition order.
    private(set) var quantizedTensors: [String]
    /// The quantized activation inputs of each quantized node, by node index.
    private(set) var activationInputs: [Int: [String]]
    let producers: [String: Int]
    let readers: [String: [Int]]

    /// - Parameters:
    ///   - graph: topologically sorted.
    ///   - nonFloat: values known not to be float32 (shape inference).
    ///   - blocked: tensors that must stay float, with the reason (non-finite range, masking constant, …).
    init(graph: Graph, options: QuantizationOptions, registry: OperatorQuantizerRegistry,
         nonFloat: Set<String>, blocked: [String: String]) {
        self.graph = graph
        constants = graph.constantValues
        producers = graph.producers
        readers = graph.consumers
        status = []
        quantizedTensors = []
        activationInputs = [:]

        // Candidates: what each node would quantize, before looking at its neighbours.
        var candidates: [Int: (role: OperatorRole, weights: WeightSlots?, data: [String])] = [:]
        var status = [Status](repeating: .float(reason: ""), count: graph.nodes.count)
        for (index, node) in graph.nodes.enumerated() {
            switch candidate(node, options: options, registry: registry, nonFloat: nonFloat, blocked: blocked) {
            case .failure(let reason): status[index] = .float(reason: reason.message)
            case .success(let value): candidates[index] = value
            }
        }

        // Forward: values that can come out of the quantized domain.
        var source = Set(graph.runtimeInputs.map(\.name).filter { !nonFloat.contains($0) && blocked[$0] == nil })
        for (index, node) in graph.nodes.enumerated() {
            guard let candidate = candidates[index] else { continue }
            let outputs = node.outputs.filter { !$0.isEmpty && blocked[$0] == nil && !nonFloat.contains($0) }
            switch candidate.role {
            case .integerCompute:
                source.formUnion(outputs)
            case .passThrough, .quantizedDomain, .clamp:
                if !candidate.data.isEmpty && candidate.data.allSatisfy(source.contains) { source.formUnion(outputs) }
            }
        }

        // Backward: values a quantized reader wants quantized; nodes between quantized tensors.
        var wanted = Set<String>()
        for index in graph.nodes.indices.reversed() {
            guard let candidate = candidates[index] else { continue }
            let node = graph.nodes[index]
            switch candidate.role {
            case .integerCompute:
                status[index] = .integerCompute(weights: candidate.weights)
                wanted.formUnion(candidate.data)
                activationInputs[index] = candidate.data
            case .passThrough, .quantizedDomain, .clamp:
                let outputWanted = node.outputs.contains { wanted.contains($0) }
                let inputsQuantizable = !candidate.data.isEmpty && candidate.data.allSatisfy(source.contains)
                if outputWanted && inputsQuantizable {
                    status[index] = .active(candidate.role)
                    wanted.formUnion(candidate.data)
                    activationInputs[index] = candidate.data
                } else if !inputsQuantizable {
                    let input = candidate.data.first { !source.contains($0) } ?? node.inputs.first ?? ""
                    status[index] = .float(reason: "its input '\(input)' does not come out of the quantized domain")
                } else {
                    status[index] = .float(reason: "no quantized operator reads its output")
                }
            }
        }
        self.status = status

        var ordered: [String] = graph.runtimeInputs.map(\.name).filter(wanted.contains)
        for node in graph.nodes {
            ordered.append(contentsOf: node.outputs.filter { !$0.isEmpty && wanted.contains($0) })
        }
        quantizedTensors = ordered
    }

    private struct Refusal: Error { let message: String }

    /// The node's role, weights and quantizable activation inputs, or why it stays float.
    private func candidate(
        _ node: Node, options: QuantizationOptions, registry: OperatorQuantizerRegistry,
        nonFloat: Set<String>, blocked: [String: String]
    ) -> Result<(role: OperatorRole, weights: WeightSlots?, data: [String]), Refusal> {
        guard let quantizer = registry.quantizer(for: node) else {
            let domain = node.normalizedDomain.isEmpty ? "" : node.normalizedDomain + "."
            return .failure(Refusal(message: OperatorQuantizerRegistry.floatByDesign[node.opType]
                                        ?? "no op quantizer for \(domain)\(node.opType)"))
        }
        if let ops = options.operatorTypes, !ops.contains(node.opType) {
            return .failure(Refusal(message: "\(node.opType) is not among the --ops"))
        }
        if options.excludedNodes.contains(node.name) {
            return .failure(Refusal(message: "excluded (--exclude)"))
        }
        if options.plan?.nodes[node.name]?.skip == true {
            return .failure(Refusal(message: "skipped by the plan"))
        }
        if let reason = quantizer.floatReason(for: node, constants: constants) {
            return .failure(Refusal(message: reason))
        }
        let weights = quantizer.role == .integerCompute ? quantizer.weights(of: node, constants: constants) : nil
        if quantizer.role == .integerCompute && weights == nil && !options.quantizeActivationProducts {
            return .failure(Refusal(message: "both operands are activations (attention): kept float by default, "
                                        + "see --quantize-activation-products"))
        }
        if let weights, let weight = constants[node.inputs[weights.weight]], weight.dtype != .float32 {
            return .failure(Refusal(message: "its weight '\(node.inputs[weights.weight])' is \(weight.dtype), not float32"))
        }
        var taken = Set<Int>()
        if let weights {
            taken.insert(weights.weight)
            if let bias = weights.bias { taken.insert(bias) }
            taken.formUnion(weights.parameters)
        }
        var data: [String] = []
        for index in quantizer.dataInputs(of: node, constants: constants)
        where index < node.inputs.count && !taken.contains(index) && !node.inputs[index].isEmpty {
            let name = node.inputs[index]
            if constants[name] != nil {
                if quantizer.role == .integerCompute {
                    return .failure(Refusal(message: "its operand '\(name)' is a constant it cannot use as a weight"))
                }
                return .failure(Refusal(message: "its input '\(name)' is a constant"))
            }
            if nonFloat.contains(name) {
                return .failure(Refusal(message: "its input '\(name)' is not a float32 tensor"))
            }
            if let reason = blocked[name] {
                return .failure(Refusal(message: "its input '\(name)' stays float: \(reason)"))
            }
            if !data.contains(name) { data.append(name) }
        }
        if data.isEmpty { return .failure(Refusal(message: "it has no activation input")) }
        return .success((quantizer.role, weights, data))
    }

    // MARK: - Reading the decisions

    /// Whether the node producing `tensor` computes in (or passes through) the quantized domain, so the
    /// value exists only in quantized form once the graph runs on integers.
    func producerIsQuantized(_ tensor: String) -> Bool {
        guard let producer = producers[tensor] else { return false }
        return status[producer].isQuantized
    }

    /// For a pass-through output, the input whose parameters it shares.
    func sharedSource(of tensor: String) -> String? {
        guard let producer = producers[tensor], status[producer] == .active(.passThrough) else { return nil }
        return activationInputs[producer]?.first
    }

    /// Node indices with a given status kind.
    var integerComputeNodes: [Int] {
        status.indices.filter { if case .integerCompute = status[$0] { return true } else { return false } }
    }
}
