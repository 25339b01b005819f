import Tensors

/// One node being inferred: its input types, attribute readers, and the rule for its operator.
struct NodeInference {
    let node: Node
    /// nil for a domain the model does not import.
    let opset: Int?
    /// Aligned with `node.inputs`; `.unknown` for omitted inputs.
    let inputs: [InferredType]
    /// Constant tensors behind the inputs, where they are constants.
    let constants: [Tensor?]
    let engine: InferenceEngine
    /// Everything visible at this node, for inferring subgraphs.
    let scopeTypes: [String: InferredType]
    let scopeConstants: [String: Tensor]
    /// Subgraph attributes rewritten with their own annotations.
    var updatedSubgraphs: [String: Attribute] = [:]

    /// The output types, one per output (shorter lists leave the rest unknown).
    mutating func run() throws -> [InferredType] {
        guard node.normalizedDomain == "", let opset else {
            try inferSubgraphsGenerically()
            return []
        }
        if let rule = try standardRule(opset: opset) { return rule }
        try inferSubgraphsGenerically()
        return []
    }

    // MARK: Inputs

    var inputCount: Int { node.inputs.count }

    /// True when input `index` is given (not omitted).
    func has(_ index: Int) -> Bool { index < node.inputs.count && !node.inputs[index].isEmpty }

    func input(_ index: Int) -> InferredType { index < inputs.count ? inputs[index] : .unknown }

    func constant(_ index: Int) -> Tensor? { index < constants.count ? constants[index] : nil }

    /// The elements of input `index` when every one is a known number.
    func integers(_ index: Int) -> [Int]? { input(index).integerValue }

    /// The elements of input `index` as dims (numbers or symbols) when all are tracked.
    func elements(_ index: Int) -> [Dim]? { input(index).value }

    /// Input `index` as floating-point numbers, when it is a constant.
    func doubles(_ index: Int) -> [Double]? {
        if let values = constant(index)?.doubleElements { return values }
        return integers(index).map { $0.map(Double.init) }
    }

    // MARK: Attributes

    func intAttribute(_ name: String) throws -> Int? {
        guard let attribute = node[attribute: name] else { return nil }
        guard let value = attribute.intValue else { throw invalidAttribute(name, "must be an integer") }
        return value
    }

    func intAttribute(_ name: String, default fallback: Int) throws -> Int { try intAttribute(name) ?? fallback }

    func intsAttribute(_ name: String) throws -> [Int]? {
        guard let attribute = node[attribute: name] else { return nil }
        guard let value = attribute.intsValue else { throw invalidAttribute(name, "must be a list of integers") }
        return value
    }

    func floatsAttribute(_ name: String) throws -> [Float]? {
        guard let attribute = node[attribute: name] else { return nil }
        guard let value = attribute.floatsValue else { throw invalidAttribute(name, "must be a list of floats") }
        return value
    }

    func stringAttribute(_ name: String, default fallback: String) throws -> String {
        guard let attribute = node[attribute: name] else { return fallback }
        guard let value = attribute.stringValue else { throw invalidAttribute(name, "must be a string") }
        return value
    }

    /// The element type named by an integer attribute holding an ONNX type code (e.g. `Cast`'s `to`).
    func dtypeAttribute(_ name: String) throws -> DType? {
        guard let code = try intAttribute(name) else { return nil }
        return DType(onnxCode: code)
    }

    // MARK: Errors

    func mismatch(_ reason: String) -> GraphError { .shapeMismatch(node: node.label, reason: reason) }

    func invalidAttribute(_ name: String, _ reason: String) -> GraphError {
        .invalidAttribute(node: node.label, attribute: name, reason: reason)
    }

    /// `axis` normalised into `0..<rank`, or a mismatch error naming what the axis belongs to.
    func normalizedAxis(_ axis: Int, rank: Int, _ what: String = "axis") throws -> Int {
        guard let normalized = Shape.normalizedAxis(axis, rank: rank) else {
            throw mismatch("\(what) \(axis) is out of range for rank \(rank)")
        }
        return normalized
    }

    /// Distinct normalised axes, or an error for out-of-range or repeated ones.
    func normalizedAxes(_ axes: [Int], rank: Int) throws -> [Int] {
        var seen = Set<Int>()
        return try axes.map { axis in
            let normalized = try normalizedAxis(axis, rank: rank)
            guard seen.insert(normalized).inserted else { throw mismatch("axis \(axis) is repeated in \(axes)") }
            return normalized
        }
    }

    // MARK: Subgraphs

    /// Infers the graph in attribute `name` in this node's scope; returns its output types.
    mutating func inferSubgraph(_ name: String, inputSeeds: [InferredType] = []) throws -> [InferredType]? {
        guard let body = node[attribute: name]?.graphValue else { return nil }
        let (annotated, types) = try engine.infer(
            body, outer: scopeTypes, outerConstants: scopeConstants, inputSeeds: inputSeeds)
        updatedSubgraphs[name] = .graph(annotated)
        return annotated.outputs.map { types[$0.name] ?? .unknown }
    }

    /// Annotates every subgraph with its declared inputs, for operators without a specific rule.
    mutating func inferSubgraphsGenerically() throws {
        for (name, attribute) in node.attributes {
            switch attribute {
            case .graph:
                _ = try inferSubgraph(name)
            case .graphs(let bodies):
                updatedSubgraphs[name] = .graphs(try bodies.map {
                    try engine.infer($0, outer: scopeTypes, outerConstants: scopeConstants).graph
                })
            default: break
            }
        }
    }

    // MARK: Dispatch

    /// The rule for a default-domain operator, or nil when there is none.
    mutating func standardRule(opset: Int) throws -> [InferredType]? {
        switch node.opType {
        // Element-wise, one input, same type and shape.
        case "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softmax", "LogSoftmax", "Hardmax",
             "Sqrt", "Exp", "Log", "Erf", "Reciprocal", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Gelu",
             "Mish", "ThresholdedRelu", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Tan", "Asin", "Acos",
             "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Shrink", "LRN", "InstanceNormalization",
             "MeanVarianceNormalization", "LpNormalization", "CumSum", "Trilu", "ReverseSequence", "ScatterND",
             "ScatterElements", "Scatter", "BitwiseNot", "Clip", "Swish":
            return [sameAsInput(0)]
        case "Identity": return [input(0)]
        case "Neg", "Abs": return [try negationOrAbsolute()]
        case "Dropout": return try dropout()
        case "IsNaN", "IsInf": return [InferredType(dtype: .bool, shape: input(0).shape)]
        case "Not": return [logicalNot()]
        case "PRelu": return [try broadcastOutput(of: [0, 1], dtype: input(0).dtype)]
        case "Add", "Sub", "Mul", "Div", "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
             "Max", "Min", "Sum", "Mean":
            return [try arithmetic()]
        case "Pow": return [try broadcastOutput(of: [0, 1], dtype: input(0).dtype)]
        case "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual": return [try comparison()]
        case "And", "Or", "Xor": return [try logical()]
        case "Where": return [try whereOutput()]
        case "Cast": return [try cast(to: try dtypeAttribute("to"))]
        case "CastLike": return [try cast(to: input(1).dtype)]

        // Shapes, layout and indexing.
        case "Shape": return [shapeOf(opset: opset)]
        case "Size": return [size()]
        case "Constant": return [try constantOutput()]
        case "ConstantOfShape": return [try constantOfShape()]
        case "Range": return [try range()]
        case "Reshape": return [try reshape(opset: opset)]
        case "Transpose": return [try transpose()]
        case "Flatten": return [try flatten()]
        case "Squeeze": return [try squeeze(opset: opset)]
        case "Unsqueeze": return [try unsqueeze(opset: opset)]
        case "Concat": return [try concat()]
        case "Split": return try split(opset: opset)
        case "Slice": return [try slice(opset: opset)]
        case "Pad": return [try pad(opset: opset)]
        case "Gather": return [try gather()]
        case "GatherElements": return [InferredType(dtype: input(0).dtype, shape: input(1).shape)]
        case "GatherND": return [try gatherND()]
        case "Expand": return [try expand()]
        case "Tile": return [try tile()]
        case "DepthToSpace", "SpaceToDepth": return [try depthSpace()]
        case "NonZero": return [InferredType(dtype: .int64, shape: input(0).rank.map { [.value($0), .unknown] })]
        case "EyeLike": return [InferredType(dtype: try dtypeAttribute("dtype") ?? input(0).dtype, shape: input(0).shape)]

        // Reductions and selection.
        case "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
             "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare":
            return [try reduce(opset: opset)]
        case "ArgMax", "ArgMin": return [try argReduce()]
        case "TopK": return try topK(opset: opset)

        // Neural-network layers.
        case "Conv": return [try convolution(data: 0, weight: 1, dtype: input(0).dtype)]
        case "ConvInteger": return [try convolution(data: 0, weight: 1, dtype: .int32)]
        case "QLinearConv": return [try convolution(data: 0, weight: 3, dtype: input(7).dtype ?? input(0).dtype)]
        case "ConvTranspose": return [try convolutionTranspose()]
        case "MaxPool", "AveragePool", "LpPool": return try pooling(opset: opset)
        case "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool": return [try globalPooling()]
        case "BatchNormalization": return try batchNormalization(opset: opset)
        case "LayerNormalization": return try layerNormalization()
        case "Gemm": return [try gemm()]
        case "MatMul": return [try matMul(left: 0, right: 1, dtype: input(0).dtype)]
        case "MatMulInteger": return [try matMul(left: 0, right: 1, dtype: .int32)]
        case "QLinearMatMul": return [try matMul(left: 0, right: 3, dtype: input(7).dtype ?? input(0).dtype)]
        case "Resize": return [try resize(opset: opset)]
        case "Upsample": return [try upsample(opset: opset)]
        case "LSTM": return try recurrent(gates: 4, hasCellState: true)
        case "GRU": return try recurrent(gates: 3, hasCellState: false)
        case "RNN": return try recurrent(gates: 1, hasCellState: false)

        // Quantization.
        case "QuantizeLinear": return [try quantizeLinear()]
        case "DequantizeLinear": return [try dequantizeLinear(opset: opset)]
        case "DynamicQuantizeLinear":
            return [
                InferredType(dtype: .uint8, shape: input(0).shape),
                InferredType(dtype: .float32, shape: []),
                InferredType(dtype: .uint8, shape: []),
            ]

        // Control flow.
        case "If": return try ifOutputs()
        case "Loop": return try loopOutputs()
        case "Scan": return try scanOutputs(opset: opset)

        default: return nil
        }
    }
}
