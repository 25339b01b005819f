import GraphIR
import QuantCore
import Tensors

/// Float16 conversion: weights and activations in float16, with the operators that need float32 kept in
/// float32 behind `Cast` nodes. Graph inputs and outputs keep their float32 types (a `Cast` at each
/// boundary), so callers feed and read what they did before.
///
/// Which nodes run in float16:
/// - *compute* operators (`MatMul`, `Gemm`, `Conv`, `ConvTranspose`, `LSTM`, `GRU`, `RNN`): always, when
///   their float inputs are float32 — their weights are what the mode stores in float16;
/// - *pass-through* operators (element-wise arithmetic and activations, `Where`, `Clip`, pooling, `Resize`,
///   and data movement such as `Reshape`, `Transpose`, `Concat`, `Gather`): when at least one of their
///   float inputs already is float16, so float32 regions (e.g. mask and pooling arithmetic fed by float32
///   graph inputs) do not gain needless casts;
/// - everything else stays float32: normalizations (`LayerNormalization`, `BatchNormalization`, …),
///   `Softmax`/`LogSoftmax`, reductions, `Exp`/`Log`/`Pow` (their range or accumulated error does not fit
///   float16's 11-bit significand and ±65504 range), shape arithmetic (`Range`, `Cast`, comparisons…),
///   and nodes holding subgraphs (the values they capture stay float32 too).
///
/// A float32 constant read by a float16 node is stored as float16; finite values beyond ±65504 (e.g.
/// attention-mask fills of −3.4e38) are clamped to ±65504 rather than turned into infinities, which would
/// give NaN once multiplied by 0.
struct FP16Converter {
    let options: QuantizationOptions

    /// ONNX element-type codes for Cast's `to`.
    static let float32Code = 1, float16Code = 10

    /// Compute operators and the input positions that carry the float type `T`.
    static let computeOperators: [String: [Int]] = [
        "MatMul": [0, 1], "Gemm": [0, 1, 2], "Conv": [0, 1, 2], "ConvTranspose": [0, 1, 2],
        "LSTM": [0, 1, 2, 3, 5, 6, 7], "GRU": [0, 1, 2, 3, 5], "RNN": [0, 1, 2, 3, 5],
    ]

    /// Pass-through operators and their `T` input positions (nil: every input).
    static let passThroughOperators: [String: [Int]?] = {
        var table: [String: [Int]?] = [:]
        for op in ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Concat", "PRelu", "Clip"] { table[op] = .some(nil) }
        for op in ["Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Elu", "Selu",
                   "Softplus", "Softsign", "Neg", "Abs", "Sqrt", "Reciprocal", "Identity", "Dropout", "Floor", "Ceil",
                   "Round", "Sign", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Tile",
                   "Slice", "Gather", "GatherElements", "Split", "DepthToSpace", "SpaceToDepth", "MaxPool",
                   "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize"] {
            table[op] = [0]
        }
        table["Where"] = [1, 2]
        table["Pad"] = [0, 2]
        return table
    }()

    func quantize(_ model: Model) throws -> QuantizationResult {
        try validateOptions()
        var conversion = FP16Conversion(model: model, options: options)
        try conversion.run()
        guard conversion.report.nodes.contains(where: \.quantized) else {
            throw QuantizationError.nothingToQuantize(
                reason: "fp16 mode found no float32 MatMul, Gemm, Conv, ConvTranspose, LSTM, GRU or RNN to run in float16")
        }
        var result = model
        result.graph = conversion.graph
        return QuantizationResult(model: result, report: conversion.report.report(options: options))
    }

    func validateOptions() throws {
        if options.resolvedWeightType != .float16 {
            throw QuantizationError.unsupportedOption(
                "--weight-type \(options.resolvedWeightType): fp16 mode stores float16 weights (integer weights are "
                    + "--mode dynamic or --mode weight-only)")
        }
        if let groupSize = options.groupSize {
            throw QuantizationError.unsupportedOption("--group-size \(groupSize) applies to weight-only mode, not fp16")
        }
        for (name, override) in (options.plan?.nodes ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let type = override.weightType, type != .float16 {
                throw QuantizationError.unsupportedOption(
                    "the plan's weight_type \(type) for node '\(name)': fp16 mode converts to float16 or skips a node")
            }
        }
        if let types = options.operatorTypes {
            let known = Set(Self.computeOperators.keys).union(Self.passThroughOperators.keys)
            for type in types.sorted() where !known.contains(type) {
                throw QuantizationError.unsupportedOption(
                    "--ops \(type): fp16 mode runs these in float16: " + known.sorted().joined(separator: ", "))
            }
        }
    }
}

/// The state of one float16 conversion of the main graph.
struct FP16Conversion {
    let options: QuantizationOptions
    var graph: Graph
    var report = ReportBuilder()
    private var namer: UniqueNamer
    private let constants: [String: Tensor]
    /// Element types of the values of the input graph, as far as they are known.
    private let types: [String: DType]
    /// Values whose type this conversion changed to float16 (node outputs).
    private var converted = Set<String>()
    /// Float16 (or float32) stand-ins made for a value, by value name.
    private var halfCopies: [String: String] = [:]
    private var floatCopies: [String: String] = [:]
    private var emitted: [Node] = []
    /// Values read by nodes that hold subgraphs: their producers stay float32.
    private let pinned: Set<String>
    private var clampedConstants = 0

    /// The model's opsets, for the clean-up pass.
    private let passContext: PassContext

    init(model: Model, options: QuantizationOptions) {
        self.options = options
        graph = model.graph
        passContext = PassContext(opsetImports: model.opsetImports)
        namer = UniqueNamer(graph: model.graph)
        constants = model.graph.constantValues
        let annotated = (try? ShapeInference.infer(model).graph) ?? model.graph
        var types: [String: DType] = [:]
        for info in annotated.inputs + annotated.outputs + Array(annotated.valueInfo.values) {
            if let dtype = info.type?.tensorElementType { types[info.name] = dtype }
        }
        for (name, tensor) in constants { types[name] = tensor.dtype }
        self.types = types
        var pinned = Set<String>()
        for node in model.graph.nodes where node.hasSubgraphs { pinned.formUnion(Graph.valuesRead(by: node)) }
        self.pinned = pinned
    }

    mutating func run() throws {
        let policy = NodePolicy(options: options,
                                defaultOperators: Set(FP16Converter.computeOperators.keys)
                                    .union(FP16Converter.passThroughOperators.keys))
        for node in graph.nodes {
            let decision = decide(node, policy: policy)
            if let positions = decision.positions {
                try emitHalf(node, positions: positions)
                report.quantized(node)
            } else {
                emitFloat(node)
                if let reason = decision.reason { report.keptFloat(node, reason: reason) }
            }
        }
        try restoreFloatOutputs()
        graph.nodes = emitted
        for name in converted {
            if let info = graph.valueInfo[name], case .tensor(_, let shape)? = info.type {
                graph.valueInfo[name] = ValueInfo(name: name, dtype: .float16, shape: shape)
            }
        }
        _ = try DeadCodeElimination().run(on: &graph, context: passContext)
        report.note("LayerNormalization, Softmax, reductions, Exp/Log/Pow and shape arithmetic stay float32 behind "
                    + "Cast nodes; graph inputs and outputs stay float32")
        if graph.nodes.contains(where: \.hasSubgraphs) {
            report.note("nodes inside subgraphs (If/Loop/Scan bodies) stay float32, and so do the values they read")
        }
        if clampedConstants > 0 {
            report.note("\(clampedConstants) constant values beyond float16's range were clamped to ±65504")
        }
    }

    /// Whether `node` runs in float16 (with the positions of its `T` inputs), and otherwise why not —
    /// nil reason for nodes that have no float32 input to speak of.
    func decide(_ node: Node, policy: NodePolicy) -> (positions: [Int]?, reason: String?) {
        let compute = FP16Converter.computeOperators[node.opType]
        let passThrough = FP16Converter.passThroughOperators[node.opType]
        guard node.normalizedDomain.isEmpty, compute != nil || passThrough != nil else {
            return (nil, readsFloat(node) ? "\(node.opType) stays float32" : nil)
        }
        let positions = (compute ?? passThrough.flatMap { $0 } ?? Array(node.inputs.indices))
            .filter { $0 < node.inputs.count && !node.inputs[$0].isEmpty }
        let floatPositions = positions.filter { types[node.inputs[$0]] == .float32 || converted.contains(node.inputs[$0]) }
        guard !floatPositions.isEmpty, floatPositions.count == positions.count else { return (nil, nil) }
        if let reason = policy.skipReason(node) { return (nil, reason) }
        if node.outputs.contains(where: pinned.contains) { return (nil, "its output is read inside a subgraph") }
        // A lookup in a constant table is where an embedding weight lives: it runs in float16 like a
        // compute operator. Other pass-through nodes follow their inputs.
        let constantTable = node.opType == "Gather" && constants[node.inputs[0]] != nil
        if compute == nil && !constantTable && !positions.contains(where: { converted.contains(node.inputs[$0]) }) {
            return (nil, nil)
        }
        return (positions, nil)
    }

    func readsFloat(_ node: Node) -> Bool {
        node.inputs.contains { types[$0] == .float32 || converted.contains($0) }
    }

    /// Emits `node` in float16: `T` inputs made float16, its float32 outputs declared float16.
    mutating func emitHalf(_ node: Node, positions: [Int]) throws {
        var edited = node
        for index in node.inputs.indices where !node.inputs[index].isEmpty {
            let name = node.inputs[index]
            edited.inputs[index] = positions.contains(index) ? try half(name) : float(name)
        }
        for (index, output) in node.outputs.enumerated() where !output.isEmpty && outputIsFloat(node, index) {
            converted.insert(output)
        }
        for index in positions where index < 2 {
            if let tensor = constants[node.inputs[index]], tensor.dtype == .float32, tensor.count > 1 {
                report.weight(node.inputs[index], type: "fp16", sqnrDB: nil, reason: "stored as float16", written: nil)
            }
        }
        emitted.append(edited)
    }

    /// Emits a float32 node, reading float32 stand-ins of any converted input.
    mutating func emitFloat(_ node: Node) {
        var edited = node
        for index in node.inputs.indices where converted.contains(node.inputs[index]) {
            edited.inputs[index] = float(node.inputs[index])
        }
        emitted.append(edited)
    }

    /// Whether output `index` of a float16 node has the float type: the inferred type when known, else
    /// every output but MaxPool's indices and Dropout's mask.
    func outputIsFloat(_ node: Node, _ index: Int) -> Bool {
        if let dtype = types[node.outputs[index]] { return dtype == .float32 }
        return index == 0 || !["MaxPool", "Dropout"].contains(node.opType)
    }

    /// A float16 version of `name`: itself when converted, a float16 constant, or a Cast.
    mutating func half(_ name: String) throws -> String {
        if converted.contains(name) { return name }
        if let known = halfCopies[name] { return known }
        let copy = namer.make(base: name + "_fp16")
        if let tensor = constants[name] {
            graph.initializers[copy] = try halfTensor(tensor)
        } else {
            emitted.append(Node(name: namer.make(base: name + "_to_fp16"), opType: "Cast", inputs: [name],
                                outputs: [copy], attributes: ["to": .int(FP16Converter.float16Code)]))
        }
        halfCopies[name] = copy
        return copy
    }

    /// A float32 version of a converted value (a Cast, made once).
    mutating func float(_ name: String) -> String {
        guard converted.contains(name) else { return name }
        if let known = floatCopies[name] { return known }
        let copy = namer.make(base: name + "_fp32")
        emitted.append(Node(name: namer.make(base: name + "_to_fp32"), opType: "Cast", inputs: [name],
                            outputs: [copy], attributes: ["to": .int(FP16Converter.float32Code)]))
        floatCopies[name] = copy
        return copy
    }

    /// `tensor` in float16, finite values beyond ±65504 clamped to it.
    mutating func halfTensor(_ tensor: Tensor) throws -> Tensor {
        let limit = Float(Float16.greatestFiniteMagnitude)
        var values = tensor.scalars(as: Float.self)
        for index in values.indices where values[index].isFinite && abs(values[index]) > limit {
            values[index] = values[index] < 0 ? -limit : limit
            clampedConstants += 1
        }
        return try Tensor(shape: tensor.shape, scalars: values).converted(to: .float16)
    }

    /// Graph outputs produced in float16 get a Cast back to float32 under their own name.
    mutating func restoreFloatOutputs() throws {
        for output in graph.outputs where converted.contains(output.name) {
            let half = namer.make(base: output.name + "_fp16")
            for index in emitted.indices {
                emitted[index].inputs = emitted[index].inputs.map { $0 == output.name ? half : $0 }
                emitted[index].outputs = emitted[index].outputs.map { $0 == output.name ? half : $0 }
            }
            emitted.append(Node(name: namer.make(base: output.name + "_to_fp32"), opType: "Cast", inputs: [half],
                                outputs: [output.name], attributes: ["to": .int(FP16Converter.float32Code)]))
            converted.remove(output.name)
            converted.insert(half)
        }
    }
}
