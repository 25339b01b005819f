import GraphIR
import Tensors

/// Float subgraphs that run as one kernel, found by pattern when a graph is compiled.
///
/// Unlike a graph rewrite, a fusion keeps the original nodes: the plan compiles them beside the fused
/// kernel, and a run whose `ValueObserver` asks for a value inside a group runs them instead. So
/// calibration (which observes every Add and Mul output) sees the same values as without fusion, and
/// plain runs get the fused kernel. Fused groups run the built-in kernels, whatever the registry holds.
///
/// Rules:
/// - exact Gelu as exported from PyTorch: `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)`, in any operand
///   order and with the 0.5 applied at either Mul, or with `Mul(x, 1/√2)` for the Div — one vectorised
///   `x/2 · (1 + erf(x/√2))` instead of five passes over the tensor;
/// - GEMM epilogues: a Conv, Gemm or MatMul (for MatMul, then an Add of a constant float32 bias of one
///   value per column) followed by Relu, LeakyRelu, Clip (constant bounds), HardSigmoid, HardSwish, Gelu
///   or the Gelu pattern: the bias and activation are applied to each block of results while it is in
///   cache (`SGEMM.Epilogue`), rounded as the separate operators round them.
/// - Conv (constant float32 weights) → BatchNormalization (constant statistics) [→ activation]: the
///   normalisation folded into the weights and bias once, `W' = W·a`, `b' = (b − mean)·a + B` with
///   `a = scale / √(var + ε)` per output channel (in Double, rounded once) — one convolution instead of a
///   convolution and a pass over its output. Unlike the other rules this changes rounding (by a few ulps).
/// Every hidden value must be read only inside its group and not be a graph output.
struct FusedGroup {
    /// Index into the graph's nodes of the node whose output the group produces.
    var root: Int
    /// Indices into the graph's nodes of every member, the root included (in no particular order).
    var members: [Int]
    /// The values the fused kernel reads, in its input order.
    var inputs: [String]
    /// Operator name for profiles.
    var opType: String
    /// The member whose build context `makeKernel` receives (nil: it needs none).
    var primary: Int?
    var makeKernel: @Sendable (KernelBuildContext?) throws -> any Kernel
}

enum FloatFusion {
    /// The groups of `graph` to fuse; no node belongs to two groups. `opset` is the default domain's.
    static func groups(in graph: Graph, opset: Int) -> [FusedGroup] {
        let context = MatchContext(graph: graph)
        var gelus: [FusedGroup] = []
        for index in graph.nodes.indices where graph.nodes[index].normalizedDomain.isEmpty {
            if let group = matchGelu(root: index, context) { gelus.append(group) }
        }
        var claimed = Set<Int>()
        var result: [FusedGroup] = []
        var absorbed = Set<Int>()
        for index in graph.nodes.indices {
            guard let group = matchConvolutionBatchNorm(primary: index, context, opset: opset),
                  claimed.isDisjoint(with: group.members) else { continue }
            claimed.formUnion(group.members)
            result.append(group)
        }
        for index in graph.nodes.indices {
            guard let (group, gelu) = matchEpilogue(primary: index, context, opset: opset, gelus: gelus),
                  claimed.isDisjoint(with: group.members) else { continue }
            claimed.formUnion(group.members)
            if let gelu { absorbed.insert(gelu) }
            result.append(group)
        }
        for (index, group) in gelus.enumerated() where !absorbed.contains(index) && claimed.isDisjoint(with: group.members) {
            claimed.formUnion(group.members)
            result.append(group)
        }
        return result
    }

    /// What the matchers look up: producers, readers, constants.
    struct MatchContext {
        let graph: Graph
        let producers: [String: Int]
        let readers: [String: [Int]]
        let constants: [String: Tensor]
        let outputs: Set<String>

        init(graph: Graph) {
            self.graph = graph
            producers = graph.producers
            readers = graph.readers
            constants = graph.constantValues
            outputs = graph.outputNames
        }

        /// The node producing `name` when it is a default-domain `opType` node whose only output is read
        /// by exactly one node and is not a graph output: a value a fused group may hide.
        func privateProducer(of name: String, _ opType: String) -> Int? {
            guard let index = producers[name], graph.nodes[index].opType == opType,
                  graph.nodes[index].normalizedDomain.isEmpty, graph.nodes[index].outputs.count == 1,
                  readers[name]?.count == 1, !outputs.contains(name) else { return nil }
            return index
        }

        /// The value of a one-element float32 constant, with its rank.
        func scalar(_ name: String) -> (value: Float, rank: Int)? {
            guard let tensor = constants[name], tensor.dtype == .float32, tensor.count == 1 else { return nil }
            return (tensor.floats[0], tensor.rank)
        }

        /// The only node reading `name` (a value that is not a graph output), when it is a
        /// default-domain node with one output.
        func soleReader(of name: String) -> Int? {
            guard let readers = readers[name], readers.count == 1, !outputs.contains(name) else { return nil }
            let node = graph.nodes[readers[0]]
            guard node.normalizedDomain.isEmpty, node.outputs.count == 1, !node.outputs[0].isEmpty else { return nil }
            return readers[0]
        }
    }

    /// Whether `value` is within a few float32 ulps of `expected`.
    static func isClose(_ value: Float, _ expected: Float) -> Bool {
        abs(value - expected) <= 4 * expected.ulp
    }

    // MARK: - Gelu

    static func matchGelu(root: Int, _ c: MatchContext) -> FusedGroup? {
        let rootNode = c.graph.nodes[root]
        guard rootNode.opType == "Mul", rootNode.inputs.count == 2, rootNode.outputs.count == 1 else { return nil }
        // Flatten the product: the root's operands, one of which may itself be a private Mul.
        var leaves: [String] = []
        var mulNodes = [root]
        for operand in rootNode.inputs {
            if let inner = c.privateProducer(of: operand, "Mul"), c.graph.nodes[inner].inputs.count == 2 {
                mulNodes.append(inner)
                leaves += c.graph.nodes[inner].inputs
            } else {
                leaves.append(operand)
            }
        }
        guard leaves.count == 3 else { return nil }
        // One leaf is 0.5, one is 1 + erf(x/√2), one is x.
        var ranks: [Int] = []
        guard let halfIndex = leaves.firstIndex(where: { c.scalar($0).map { isClose($0.value, 0.5) } ?? false })
        else { return nil }
        ranks.append(c.scalar(leaves[halfIndex])!.rank)
        leaves.remove(at: halfIndex)
        for (gateIndex, gate) in leaves.enumerated() {
            guard let add = c.privateProducer(of: gate, "Add"), c.graph.nodes[add].inputs.count == 2 else { continue }
            let addInputs = c.graph.nodes[add].inputs
            guard let oneIndex = addInputs.firstIndex(where: { c.scalar($0).map { isClose($0.value, 1) } ?? false }),
                  let erf = c.privateProducer(of: addInputs[1 - oneIndex], "Erf")
            else { continue }
            let x = leaves[1 - gateIndex]
            guard let scaleNode = scaleByInverseRootTwo(of: x, erfInput: c.graph.nodes[erf].inputs[0], c) else {
                continue
            }
            ranks.append(c.scalar(addInputs[oneIndex])!.rank)
            ranks.append(scaleNode.constantRank)
            let minimumRank = ranks.max() ?? 0
            return FusedGroup(root: root, members: mulNodes + [add, erf, scaleNode.index], inputs: [x], opType: "Gelu",
                              primary: nil, makeKernel: { _ in FusedGeluKernel(minimumRank: minimumRank) })
        }
        return nil
    }

    /// The private Div(x, √2) or Mul(x, 1/√2) producing `erfInput`, with its constant's rank.
    private static func scaleByInverseRootTwo(of x: String, erfInput: String, _ c: MatchContext)
        -> (index: Int, constantRank: Int)? {
        let rootTwo: Float = 1.41421356237309504880
        if let div = c.privateProducer(of: erfInput, "Div") {
            let inputs = c.graph.nodes[div].inputs
            guard inputs.count == 2, inputs[0] == x, let divisor = c.scalar(inputs[1]), isClose(divisor.value, rootTwo)
            else { return nil }
            return (div, divisor.rank)
        }
        if let mul = c.privateProducer(of: erfInput, "Mul") {
            let inputs = c.graph.nodes[mul].inputs
            guard inputs.count == 2, let xIndex = inputs.firstIndex(of: x),
                  let factor = c.scalar(inputs[1 - xIndex]), isClose(factor.value, 1 / rootTwo)
            else { return nil }
            return (mul, factor.rank)
        }
        return nil
    }
}

extension FloatFusion {
    // MARK: - GEMM epilogues

    /// A Conv/Gemm/MatMul at `primary` with the bias Add and activation that follow it, and the index
    /// in `gelus` of a Gelu group it absorbs.
    static func matchEpilogue(primary: Int, _ c: MatchContext, opset: Int, gelus: [FusedGroup])
        -> (FusedGroup, absorbedGelu: Int?)? {
        let node = c.graph.nodes[primary]
        guard node.normalizedDomain.isEmpty, ["Conv", "Gemm", "MatMul"].contains(node.opType),
              node.outputs.count == 1, !node.outputs[0].isEmpty else { return nil }
        var members = [primary], root = primary
        var value = node.outputs[0]
        var bias: Tensor?
        if node.opType == "MatMul", let add = c.soleReader(of: value), c.graph.nodes[add].opType == "Add",
           c.graph.nodes[add].inputs.count == 2 {
            let other = c.graph.nodes[add].inputs.first { $0 != value } ?? ""
            if let constant = c.constants[other], constant.dtype == .float32, constant.rank == 1,
               c.graph.nodes[add].inputs.contains(value) {
                bias = constant
                members.append(add)
                root = add
                value = c.graph.nodes[add].outputs[0]
            }
        }
        var activation: SGEMM.Activation?
        var absorbedGelu: Int?
        if let reader = c.soleReader(of: value), c.graph.nodes[reader].inputs.first == value,
           let found = Self.activation(of: c.graph.nodes[reader], c, opset: opset) {
            activation = found
            members.append(reader)
            root = reader
        } else if let index = gelus.firstIndex(where: { $0.inputs == [value] }),
                  let readers = c.readers[value], Set(readers).isSubset(of: gelus[index].members),
                  !c.outputs.contains(value) {
            activation = .gelu
            members += gelus[index].members
            root = gelus[index].root
            absorbedGelu = index
        }
        guard members.count > 1 else { return nil }
        let epilogue = FusedEpilogue(bias: bias, activation: activation)
        let fusedActivation = activation
        let opType = node.opType
        let group = FusedGroup(
            root: root, members: members, inputs: node.inputs,
            opType: ([opType] + (bias == nil ? [] : ["Add"]) + (activation.map { ["\($0.operatorName)"] } ?? []))
                .joined(separator: "+"),
            primary: primary,
            makeKernel: { context in
                guard let context else { throw KernelError.invalid("fused \(opType) compiled without its context") }
                switch opType {
                case "Conv": return try ConvKernel(context, activation: fusedActivation)
                case "Gemm": return try GemmKernel(context, activation: fusedActivation)
                default: return MatMulKernel(constantB: context.constant(1), epilogue: epilogue)
                }
            })
        return (group, absorbedGelu)
    }

    /// The activation a node computes, when the epilogue can compute it the same way.
    static func activation(of node: Node, _ c: MatchContext, opset: Int) -> SGEMM.Activation? {
        func attribute(_ name: String, _ fallback: Float) -> Float? {
            switch node.attributes[name] {
            case nil: return fallback
            case .float(let value)?: return value
            default: return nil
            }
        }
        switch node.opType {
        case "Relu": return .relu
        case "HardSwish": return .hardSwish
        case "LeakyRelu": return attribute("alpha", 0.01).map { .leakyRelu(alpha: $0) }
        case "HardSigmoid":
            guard let alpha = attribute("alpha", 0.2), let beta = attribute("beta", 0.5) else { return nil }
            return .hardSigmoid(alpha: alpha, beta: beta)
        case "Gelu":
            guard opset >= 20, node.attributes["approximate"]?.stringValue ?? "none" == "none" else { return nil }
            return .gelu
        case "Clip":
            if opset < 11 {
                guard let low = attribute("min", -Float.greatestFiniteMagnitude),
                      let high = attribute("max", Float.greatestFiniteMagnitude) else { return nil }
                return .clip(low: low, high: high)
            }
            // Bounds must be constant float32 scalars (an absent one does not bound).
            var bounds: [Float] = [-.infinity, .infinity]
            for position in 1..<min(node.inputs.count, 3) where !node.inputs[position].isEmpty {
                guard let constant = c.constants[node.inputs[position]], constant.dtype == .float32,
                      constant.count == 1 else { return nil }
                bounds[position - 1] = constant.floats[0]
            }
            return .clip(low: bounds[0], high: bounds[1])
        default: return nil
        }
    }
}

extension SGEMM.Activation {
    /// The ONNX operator computing this activation (for profiles).
    var operatorName: String {
        switch self {
        case .relu: return "Relu"
        case .clip: return "Clip"
        case .leakyRelu: return "LeakyRelu"
        case .hardSigmoid: return "HardSigmoid"
        case .hardSwish: return "HardSwish"
        case .gelu: return "Gelu"
        }
    }
}

/// The fused exact Gelu on a float32 tensor (other dtypes run the original nodes). `minimumRank`: a
/// constant of rank r broadcasts a lower-rank x up to rank r (with leading ones), as the original nodes
/// would.
struct FusedGeluKernel: Kernel {
    let minimumRank: Int

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == .float32 else { throw FusedKernelDeclined() }
        let y = try mapVectorized(x, { VectorMath.gelu($0, $1, count: $2) }, context: context)
        guard x.rank < minimumRank else { return [y] }
        return [try y.reshaped(Array(repeating: 1, count: minimumRank - x.rank) + x.shape)]
    }
}

/// The bias and activation a fused GEMM-like kernel applies to its results (see `SGEMM.Epilogue`).
struct FusedEpilogue: Sendable {
    /// float32, one value per output column (a MatMul's bias Add).
    var bias: Tensor?
    var activation: SGEMM.Activation?

    var isEmpty: Bool { bias == nil && activation == nil }

    /// Calls `body` with the SGEMM form (nil when empty), the bias valid during the call.
    func withSGEMMEpilogue<R>(_ body: (SGEMM.Epilogue?) -> R) -> R {
        guard !isEmpty else { return body(nil) }
        guard let bias else { return body(SGEMM.Epilogue(activation: activation)) }
        return bias.withUnsafeBufferPointer(as: Float.self) {
            body(SGEMM.Epilogue(columnBias: $0.baseAddress, activation: activation))
        }
    }
}

/// Thrown by a fused kernel for inputs its fast path does not cover (a dtype other than float32, a bias
/// that would broadcast differently): the plan then runs the group's original nodes.
struct FusedKernelDeclined: Error {}

extension FloatFusion {
    // MARK: - BatchNormalization folded into Conv

    /// A Conv at `primary` with constant float32 weights (and bias), whose only reader is an inference
    /// BatchNormalization with constant float32 per-channel statistics, and the activation after it.
    static func matchConvolutionBatchNorm(primary: Int, _ c: MatchContext, opset: Int) -> FusedGroup? {
        let node = c.graph.nodes[primary]
        guard node.normalizedDomain.isEmpty, node.opType == "Conv", node.outputs.count == 1, !node.outputs[0].isEmpty,
              node.inputs.count >= 2, let weights = c.constants[node.inputs[1]], weights.dtype == .float32,
              weights.rank >= 3, let norm = c.soleReader(of: node.outputs[0]) else { return nil }
        let channels = weights.shape[0]
        let biasName = node.inputs.count > 2 ? node.inputs[2] : ""
        var bias: [Float]?
        if !biasName.isEmpty {
            guard let tensor = c.constants[biasName], tensor.dtype == .float32, tensor.count == channels else { return nil }
            bias = tensor.floats
        }
        let batchNorm = c.graph.nodes[norm]
        // The statistics must be constants, so the Conv's output can only be input 0.
        guard batchNorm.opType == "BatchNormalization", batchNorm.inputs.count == 5, batchNorm.inputs[0] == node.outputs[0],
              batchNorm.attributes["training_mode"]?.intValue ?? 0 == 0, batchNorm.attributes["spatial"]?.intValue ?? 1 != 0,
              opset >= 7 || batchNorm.attributes["is_test"]?.intValue ?? 0 != 0
        else { return nil }
        var statistics: [[Float]] = []
        for name in batchNorm.inputs.dropFirst() {
            guard let tensor = c.constants[name], tensor.dtype == .float32, tensor.shape == [channels] else { return nil }
            statistics.append(tensor.floats)
        }
        let epsilon: Float
        switch batchNorm.attributes["epsilon"] {
        case nil: epsilon = 1e-5
        case .float(let value)?: epsilon = value
        default: return nil
        }
        guard let folded = try? foldBatchNorm(weights: weights, bias: bias, scale: statistics[0], offset: statistics[1],
                                              mean: statistics[2], variance: statistics[3], epsilon: epsilon)
        else { return nil }
        var members = [primary, norm], root = norm
        var activation: SGEMM.Activation?
        let value = batchNorm.outputs[0]
        if let reader = c.soleReader(of: value), c.graph.nodes[reader].inputs.first == value,
           let found = Self.activation(of: c.graph.nodes[reader], c, opset: opset) {
            activation = found
            members.append(reader)
            root = reader
        }
        let fusedActivation = activation
        return FusedGroup(
            root: root, members: members, inputs: [node.inputs[0]],
            opType: (["Conv", "BatchNormalization"] + (activation.map { [$0.operatorName] } ?? [])).joined(separator: "+"),
            primary: primary,
            makeKernel: { context in
                guard let context else { throw KernelError.invalid("fused Conv compiled without its context") }
                return try ConvKernel(context, activation: fusedActivation, folded: folded)
            })
    }

    /// `W' = W·a`, `b' = (b − mean)·a + B` with `a = scale / √(var + ε)` per output channel (axis 0 of W).
    static func foldBatchNorm(weights: Tensor, bias: [Float]?, scale: [Float], offset: [Float], mean: [Float],
                              variance: [Float], epsilon: Float) throws -> (weights: Tensor, bias: Tensor) {
        let channels = weights.shape[0], perChannel = weights.count / max(channels, 1)
        var values = weights.floats
        var folded = [Float](repeating: 0, count: channels)
        for m in 0..<channels {
            let factor = Double(scale[m]) / (Double(variance[m]) + Double(epsilon)).squareRoot()
            for i in (m * perChannel)..<((m + 1) * perChannel) { values[i] = Float(Double(values[i]) * factor) }
            folded[m] = Float((Double(bias?[m] ?? 0) - Double(mean[m])) * factor + Double(offset[m]))
        }
        return (try Tensor(shape: weights.shape, scalars: values), try Tensor(shape: [channels], scalars: folded))
    }
}
