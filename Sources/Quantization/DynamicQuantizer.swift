import GraphIR
import QuantCore
import Tensors

/// Dynamic quantization: weights stored as 8-bit codes offline (one scale per output channel by default),
/// activations quantized at run time from their own range, products in integers with int32 accumulation.
///
/// | operator | written as |
/// | --- | --- |
/// | MatMul `x·W`, Gemm (per-tensor activations) | `DynamicQuantizeLinear(x)` → `MatMulInteger(x_q, W_q, x_zp, W_zp)` → `Cast` → `Mul(·, x_s·W_s)` [→ `Add(bias)`] — ONNX Runtime's `quantize_dynamic` pattern |
/// | MatMul, Gemm (per-token activations) | `s = max(ReduceMax(|x|, last axis), ε) / 127`, `x_q = QuantizeLinear(x / s, 1, int8)` → `MatMulInteger(x_q, W_q, –, W_zp)` → `Cast` → `Mul(·, W_s)` → `Mul(·, s)` [→ `Add(bias)`] |
/// | Conv | `DynamicQuantizeLinear(x)` → `ConvInteger(x_q, W_q, x_zp, W_zp)` → `Cast` → `Mul(·, x_s·W_s[O, 1, …])` [→ `Add(B[O, 1, …])`] |
/// | Gather (embedding table), LSTM/GRU/RNN `W` and `R` | 8-bit codes, one scale per row → `DequantizeLinear` [→ `Reshape`] → the float operator |
///
/// ONNX has no integer LSTM/GRU/RNN and Gather only moves rows, so those keep float arithmetic and gain
/// only the smaller file. ConvInteger takes one weight zero point (ONNX Runtime requires it), so a
/// convolution with asymmetric per-channel weights falls back to one scale and zero point for the tensor.
struct DynamicQuantizer {
    let options: QuantizationOptions

    /// Operator types this mode rewrites.
    static let operators: Set<String> = ["MatMul", "Gemm", "Conv", "Gather", "LSTM", "GRU", "RNN"]

    /// ONNX `TensorProto.FLOAT`, for Cast's `to`.
    static let floatCode = 1

    func quantize(_ model: Model) throws -> QuantizationResult {
        try validateOptions()
        let opset = model.opsetVersion(domain: "") ?? PassContext.fallbackOpset
        guard opset >= 13 else {
            throw QuantizationError.unsupportedOption(
                "dynamic mode writes DynamicQuantizeLinear and per-axis DequantizeLinear, which need opset 13; the "
                    + "model imports opset \(opset) (convert it with onnx.version_converter first)")
        }
        var state = DynamicRewrite(options: options, rewriter: GraphRewriter(graph: model.graph), opset: opset)
        let policy = NodePolicy(options: options, defaultOperators: Self.operators)
        for node in model.graph.nodes {
            guard Self.operators.contains(node.opType) && node.normalizedDomain.isEmpty else {
                state.rewriter.keep(node)
                continue
            }
            if let reason = policy.skipReason(node) {
                state.report.keptFloat(node, reason: reason)
                state.rewriter.keep(node)
                continue
            }
            let format = try WeightFormat(policy.weightType(for: node),
                                          mapping: options.symmetricWeights ? .symmetric : .asymmetric)
            let outcome: Outcome
            switch node.opType {
            case "MatMul": outcome = try state.matMul(node, format: format)
            case "Gemm": outcome = try state.gemm(node, format: format)
            case "Conv": outcome = try state.conv(node, format: format)
            case "Gather": outcome = try state.gather(node, format: format)
            default: outcome = try state.recurrent(node, format: format)
            }
            switch outcome {
            case .rewritten(let detail): state.report.quantized(node, reason: detail)
            case .kept(let reason):
                state.report.keptFloat(node, reason: reason)
                state.rewriter.keep(node)
            }
        }
        guard state.report.nodes.contains(where: \.quantized) else {
            let reasons = state.report.nodes.map { "\($0.name.isEmpty ? $0.opType : $0.name): \($0.reason ?? "")" }
            throw QuantizationError.nothingToQuantize(
                reason: "dynamic mode found no MatMul, Gemm, Conv, Gather, LSTM, GRU or RNN with a constant float32 "
                    + "weight" + (reasons.isEmpty ? "" : " (" + reasons.prefix(8).joined(separator: "; ") + ")"))
        }
        var result = model
        result.graph = try state.rewriter.finish(context: PassContext(opsetImports: model.opsetImports))
        return QuantizationResult(model: result, report: state.report.report(options: options))
    }

    func validateOptions() throws {
        var types = [("--weight-type", options.resolvedWeightType)]
        for (name, override) in (options.plan?.nodes ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let type = override.weightType { types.append(("the plan's weight_type for node '\(name)'", type)) }
        }
        for (what, type) in types where type != .int8 && type != .uint8 {
            throw QuantizationError.unsupportedOption(
                "\(what) \(type): dynamic mode multiplies 8-bit codes (MatMulInteger/ConvInteger); use int8 or "
                    + "uint8, or --mode weight-only for int4/int2 weights")
        }
        if let groupSize = options.groupSize {
            throw QuantizationError.unsupportedOption(
                "--group-size \(groupSize) applies to weight-only mode; dynamic mode uses one scale per output "
                    + "channel (or per tensor with --per-channel false)")
        }
        if options.activationType.bitWidth != 8 {
            throw QuantizationError.unsupportedOption(
                "--activation-type \(options.activationType): dynamic mode quantizes activations to 8 bits "
                    + "(uint8 per tensor, int8 per token)")
        }
        if let types = options.operatorTypes {
            for type in types.sorted() where !Self.operators.contains(type) {
                throw QuantizationError.unsupportedOption(
                    "--ops \(type): dynamic mode quantizes " + Self.operators.sorted().joined(separator: ", "))
            }
        }
    }
}

/// What happened to one candidate node.
enum Outcome {
    /// Replaced; the detail goes to the report.
    case rewritten(String?)
    /// Left as it was, for this reason.
    case kept(String)
}

/// The rewrite state of one dynamic-quantization run.
struct DynamicRewrite {
    let options: QuantizationOptions
    var rewriter: GraphRewriter
    let opset: Int
    var report = ReportBuilder()

    init(options: QuantizationOptions, rewriter: GraphRewriter, opset: Int) {
        self.options = options
        self.rewriter = rewriter
        self.opset = opset
    }

    var constants: [String: Tensor] { rewriter.constants }

    /// "per output channel" or "per tensor", and the mapping, for the report.
    func granularityText(_ format: WeightFormat, perChannel: Bool) -> String {
        (perChannel ? "per output channel" : "per tensor") + ", " + (format.mapping == .symmetric ? "symmetric" : "asymmetric")
    }

    // MARK: - MatMul and Gemm

    mutating func matMul(_ node: Node, format: WeightFormat) throws -> Outcome {
        guard node.inputs.count == 2, node.outputs.count == 1 else { return .kept("unexpected inputs or outputs") }
        guard let weight = constants[node.inputs[1]] else { return .kept("the second input is not a constant weight") }
        guard constants[node.inputs[0]] == nil else { return .kept("both inputs are constant") }
        guard weight.dtype == .float32 else { return .kept("the weight is \(weight.dtype), not float32") }
        guard weight.rank == 2 else { return .kept("the weight has rank \(weight.rank); only 2-D weights are quantized") }
        return try integerMatMul(node, activation: node.inputs[0], weightName: node.inputs[1], weight: weight,
                                 transposed: false, alpha: 1, bias: nil, format: format)
    }

    mutating func gemm(_ node: Node, format: WeightFormat) throws -> Outcome {
        guard node.inputs.count >= 2, node.outputs.count == 1 else { return .kept("unexpected inputs or outputs") }
        let alpha = node[attribute: "alpha"]?.floatValue ?? 1
        let beta = node[attribute: "beta"]?.floatValue ?? 1
        guard (node[attribute: "transA"]?.intValue ?? 0) == 0 else { return .kept("transA = 1 is not rewritten") }
        let transB = (node[attribute: "transB"]?.intValue ?? 0) != 0
        guard let b = constants[node.inputs[1]] else { return .kept("B is not a constant weight") }
        guard constants[node.inputs[0]] == nil else { return .kept("A and B are both constant") }
        guard b.dtype == .float32, b.rank == 2 else { return .kept("B is not a 2-D float32 weight") }
        var bias: String?
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            let c = node.inputs[2]
            if beta == 1 {
                bias = c
            } else if let value = constants[c], value.dtype == .float32 {
                let scaled = value.scalars(as: Float.self).map { $0 * beta }
                bias = rewriter.addInitializer(try Tensor(shape: value.shape, scalars: scaled), base: c + "_beta")
            } else {
                return .kept("C is not constant and beta = \(beta) ≠ 1")
            }
        }
        let weight = transB ? try b.transposed2D() : b
        return try integerMatMul(node, activation: node.inputs[0], weightName: node.inputs[1], weight: weight,
                                 transposed: transB, alpha: alpha, bias: bias, format: format)
    }

    /// Weight codes `[K, N]`, scales `[N]` (or a scalar) with `alpha` folded in, and zero points.
    mutating func matMulWeight(_ name: String, weight: Tensor, transposed: Bool, alpha: Float,
                               format: WeightFormat, node: Node) throws -> GraphRewriter.Made {
        let perChannel = options.perChannel
        let key = "matmul|\(name)|\(transposed)|\(alpha)|\(format.requested)|\(format.mapping)|\(perChannel)"
        return try rewriter.memoized(key) { rewriter in
            let k = weight.shape[0], n = weight.shape[1]
            let quantized = perChannel
                ? try WeightQuantization.quantize(weight, axis: 0, blockSize: k, format: format, name: name, node: node.errorName)
                : try WeightQuantization.quantize(weight.reshaped([1, k * n]), axis: 1, blockSize: k * n, format: format,
                                                  name: name, node: node.errorName)
            let stem = rewriter.names.stem(.weight)
            let codes = rewriter.addInitializer(try quantized.quantized.storage.reshaped([k, n]), base: stem + "_q")
            var scales = quantized.params.scales
            if alpha != 1 { scales = scales.map { $0 * alpha } }
            let (scale, zero) = try rewriter.parameterInputs(
                scales: scales, zeroPoints: quantized.params.zeroPoints,
                parameterShape: GraphEditor.uniformShape(scales, quantized.params.zeroPoints, perChannel ? [n] : []),
                zeroPointType: format.storage.storageDType, stem: stem, omitZeroPoint: false)
            return .init(names: [codes, scale, zero!], sqnrDB: quantized.sqnrDB, perChannel: perChannel,
                         written: WrittenNames(codes: codes))
        }
    }

    mutating func integerMatMul(_ node: Node, activation: String, weightName: String, weight: Tensor, transposed: Bool,
                                alpha: Float, bias: String?, format: WeightFormat) throws -> Outcome {
        let made = try matMulWeight(weightName, weight: weight, transposed: transposed, alpha: alpha, format: format,
                                    node: node)
        let (codes, weightScale, weightZero) = (made.names[0], made.names[1], made.names[2])
        report.weight(weightName, type: format.reportName, sqnrDB: made.sqnrDB,
                      reason: granularityText(format, perChannel: options.perChannel), written: made.written)
        let stem = rewriter.names.stem(.node)
        let name = node.name.isEmpty ? nil : node.name
        let output = node.outputs[0]
        let product = rewriter.makeName(stem + "_acc")
        let widened = rewriter.makeName(stem + "_f")
        let scaledOutput = bias == nil ? output : rewriter.makeName(stem + "_y")
        switch options.dynamicActivations {
        case .perTensor:
            let (xq, xs, xz) = dynamicallyQuantized(activation)
            let scale = rewriter.makeName(stem + "_m")
            rewriter.emit("Mul", [xs, weightScale], [scale])
            rewriter.emit("MatMulInteger", [xq, codes, xz, weightZero], [product], name: name)
            rewriter.emit("Cast", [product], [widened], attributes: [("to", .int(DynamicQuantizer.floatCode))])
            rewriter.emit("Mul", [widened, scale], [scaledOutput], name: rewriter.makeName(stem + "_y_node"))
        case .perToken:
            let (xq, rowScale) = try tokenwiseQuantized(activation)
            let columnScaled = rewriter.makeName(stem + "_cs")
            rewriter.emit("MatMulInteger", [xq, codes, "", weightZero], [product], name: name)
            rewriter.emit("Cast", [product], [widened], attributes: [("to", .int(DynamicQuantizer.floatCode))])
            rewriter.emit("Mul", [widened, weightScale], [columnScaled])
            rewriter.emit("Mul", [columnScaled, rowScale], [scaledOutput], name: rewriter.makeName(stem + "_y_node"))
        }
        // Named apart from the original output: the MatMulInteger keeps the node's name, which may equal it.
        if let bias { rewriter.emit("Add", [scaledOutput, bias], [output], name: rewriter.makeName(stem + "_out_node")) }
        return .rewritten(options.dynamicActivations == .perTensor
                          ? "MatMulInteger, activation uint8 per tensor" : "MatMulInteger, activation int8 per token")
    }

    /// `DynamicQuantizeLinear(x)` → (codes, scale, zero point), made once per activation.
    mutating func dynamicallyQuantized(_ activation: String) -> (String, String, String) {
        let names = rewriter.memoized("dql|" + activation) { rewriter in
            let stem = rewriter.names.stem(.activation)
            let outputs = [rewriter.makeName(stem + "_q"), rewriter.makeName(stem + "_s"), rewriter.makeName(stem + "_z")]
            rewriter.emit("DynamicQuantizeLinear", [activation], outputs)
            return .init(names: outputs)
        }.names
        report.activation(activation, type: "uint8", reason: "per tensor at run time (DynamicQuantizeLinear)",
                          codes: names[0])
        return (names[0], names[1], names[2])
    }

    /// Symmetric int8 codes with one scale per row (last axis reduced), made once per activation:
    /// `s = max(ReduceMax(|x|), ε) / 127`, `q = QuantizeLinear(x / s, 1, int8 0)`.
    ///
    /// ε (1e-30) keeps an all-zero row from dividing by zero; its codes are then 0 as they should be.
    mutating func tokenwiseQuantized(_ activation: String) throws -> (String, String) {
        let opset = self.opset
        let names = try rewriter.memoized("token|" + activation) { rewriter in
            let stem = rewriter.names.stem(.activation)
            let magnitude = rewriter.makeName(stem + "_abs")
            let rowMaximum = rewriter.makeName(stem + "_max")
            let guarded = rewriter.makeName(stem + "_max_guarded")
            let scale = rewriter.makeName(stem + "_s")
            let normalized = rewriter.makeName(stem + "_normalized")
            let codes = rewriter.makeName(stem + "_q")
            rewriter.emit("Abs", [activation], [magnitude])
            if opset >= 18 {
                let axes = try rewriter.addInt64s([-1], base: "last_axis")
                rewriter.emit("ReduceMax", [magnitude, axes], [rowMaximum], attributes: [("keepdims", .int(1))])
            } else {
                rewriter.emit("ReduceMax", [magnitude], [rowMaximum],
                              attributes: [("axes", .ints([-1])), ("keepdims", .int(1))])
            }
            rewriter.emit("Max", [rowMaximum, rewriter.addScalar(1e-30, base: "epsilon")], [guarded])
            rewriter.emit("Div", [guarded, rewriter.addScalar(127, base: "int8_max")], [scale])
            rewriter.emit("Div", [activation, scale], [normalized])
            let unit = rewriter.sharedScalar(1)
            let zero = rewriter.sharedConstant(Tensor(scalar: Int8(0)), base: "zp_int8_0")
            rewriter.emit("QuantizeLinear", [normalized, unit, zero], [codes])
            return .init(names: [codes, scale])
        }.names
        report.activation(activation, type: "int8", reason: "per token (row) at run time, symmetric", codes: names[0])
        return (names[0], names[1])
    }

    // MARK: - Conv

    mutating func conv(_ node: Node, format: WeightFormat) throws -> Outcome {
        guard node.inputs.count >= 2, node.outputs.count == 1 else { return .kept("unexpected inputs or outputs") }
        guard let weight = constants[node.inputs[1]] else { return .kept("the weight is not constant") }
        guard constants[node.inputs[0]] == nil else { return .kept("the input is constant") }
        guard weight.dtype == .float32, weight.rank >= 3 else { return .kept("the weight is not a float32 kernel") }
        var bias: Tensor?
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            guard let value = constants[node.inputs[2]], value.dtype == .float32 else {
                return .kept("the bias is not a constant float32 tensor")
            }
            bias = value
        }
        let channels = weight.shape[0]
        let perChannelRequested = options.perChannel
        let name = node.inputs[1]
        let key = "conv|\(name)|\(format.requested)|\(format.mapping)|\(perChannelRequested)"
        // Broadcasts over [N, O, spatial…].
        let channelShape = [channels] + [Int](repeating: 1, count: weight.rank - 2)
        let made = try rewriter.memoized(key) { rewriter in
            let count = weight.count
            var perChannel = perChannelRequested && channels > 0
            var quantized = perChannel
                ? try WeightQuantization.quantize(weight.reshaped([channels, count / max(channels, 1)]), axis: 1,
                                                  blockSize: count / max(channels, 1), format: format, name: name,
                                                  node: node.errorName)
                : try WeightQuantization.quantize(weight.reshaped([1, count]), axis: 1, blockSize: count, format: format,
                                                  name: name, node: node.errorName)
            if perChannel, Set(quantized.params.zeroPoints).count > 1 {
                // ConvInteger takes a single weight zero point.
                perChannel = false
                quantized = try WeightQuantization.quantize(weight.reshaped([1, count]), axis: 1, blockSize: count,
                                                            format: format, name: name, node: node.errorName)
            }
            let stem = rewriter.names.stem(.weight)
            let codes = rewriter.addInitializer(try quantized.quantized.storage.reshaped(weight.shape), base: stem + "_q")
            let scales = quantized.params.scales
            let scale = Set(scales).count > 1
                ? rewriter.addInitializer(try Tensor(shape: channelShape, scalars: scales), base: stem + "_s")
                : rewriter.sharedScalar(scales[0])
            // ConvInteger takes one weight zero point (written even when 0, as ONNX Runtime's pattern has it).
            let zeroPoint = quantized.params.zeroPoints[0]
            let zero = rewriter.sharedConstant(
                Tensor.scalarZeroPoint(zeroPoint, type: format.storage), base: "zp_\(format.storage.storageDType)_\(zeroPoint)")
            return .init(names: [codes, scale, zero],
                         sqnrDB: quantized.sqnrDB, perChannel: perChannel, written: WrittenNames(codes: codes))
        }
        let names = made.names
        if perChannelRequested && !made.perChannel {
            report.note("ConvInteger takes one weight zero point, so convolutions with asymmetric weights use one "
                        + "scale and zero point per tensor")
        }
        report.weight(name, type: format.reportName, sqnrDB: made.sqnrDB,
                      reason: granularityText(format, perChannel: made.perChannel), written: made.written)
        let stem = rewriter.names.stem(.node)
        let (xq, xs, xz) = dynamicallyQuantized(node.inputs[0])
        let product = rewriter.makeName(stem + "_acc")
        let widened = rewriter.makeName(stem + "_f")
        let scale = rewriter.makeName(stem + "_m")
        let output = node.outputs[0]
        let scaledOutput = bias == nil ? output : rewriter.makeName(stem + "_y")
        let attributes = node.attributes.map { ($0.key, $0.value) }
        rewriter.emit("ConvInteger", [xq, names[0], xz, names[2]], [product], attributes: attributes,
                      name: node.name.isEmpty ? nil : node.name)
        rewriter.emit("Cast", [product], [widened], attributes: [("to", .int(DynamicQuantizer.floatCode))])
        rewriter.emit("Mul", [xs, names[1]], [scale])
        rewriter.emit("Mul", [widened, scale], [scaledOutput], name: rewriter.makeName(stem + "_y_node"))
        if let bias {
            let biasName = rewriter.addInitializer(try bias.reshaped(channelShape), base: stem + "_bias")
            rewriter.emit("Add", [scaledOutput, biasName], [output], name: rewriter.makeName(stem + "_out_node"))
        }
        return .rewritten("ConvInteger, activation uint8 per tensor")
    }

    // MARK: - Dequantized weights (Gather, recurrent operators)

    mutating func gather(_ node: Node, format: WeightFormat) throws -> Outcome {
        guard node.inputs.count == 2 else { return .kept("unexpected inputs") }
        guard let table = constants[node.inputs[0]] else { return .kept("the data input is not a constant table") }
        guard constants[node.inputs[1]] == nil else { return .kept("the indices are constant") }
        guard table.dtype == .float32, table.rank == 2 else { return .kept("the table is not a 2-D float32 tensor") }
        let axis = node[attribute: "axis"]?.intValue ?? 0
        guard axis == 0 || axis == -2 else { return .kept("gathers along axis \(axis), not the rows") }
        var edited = node
        edited.inputs[0] = try dequantizedWeight(node.inputs[0], weight: table, rows: table.shape[0], format: format,
                                                 node: node)
        rewriter.keep(edited)
        report.note("Gather tables are stored as 8-bit codes with one scale per row and dequantized in front of "
                    + "the Gather: the file shrinks, the lookup stays float")
        return .rewritten("table dequantized in front of the lookup")
    }

    mutating func recurrent(_ node: Node, format: WeightFormat) throws -> Outcome {
        var edited = node
        var any = false
        for index in [1, 2] where node.inputs.count > index {
            let name = node.inputs[index]
            guard let weight = constants[name], weight.dtype == .float32, weight.rank == 3 else { continue }
            edited.inputs[index] = try dequantizedWeight(name, weight: weight, rows: weight.shape[0] * weight.shape[1],
                                                         format: format, node: node)
            any = true
        }
        guard any else { return .kept("W and R are not constant float32 weights") }
        rewriter.keep(edited)
        report.note("ONNX has no integer LSTM/GRU/RNN: their W and R are stored as 8-bit codes (one scale per gate "
                    + "row) and dequantized in front of the operator; the recurrence runs in float32")
        return .rewritten("W/R dequantized in front of the operator (recurrence in float)")
    }

    /// Codes with one scale per row of `weight` viewed as `[rows, count / rows]`, dequantized
    /// (`DequantizeLinear`, axis 0) and reshaped back when the view differs from the weight's shape.
    /// Returns the name of the float value that replaces the weight.
    mutating func dequantizedWeight(_ name: String, weight: Tensor, rows: Int, format: WeightFormat,
                                    node: Node) throws -> String {
        let perChannel = options.perChannel && rows > 0
        let key = "dq|\(name)|\(rows)|\(format.requested)|\(format.mapping)|\(perChannel)"
        let made = try rewriter.memoized(key) { rewriter in
            let (written, sqnrDB) = try rewriter.dequantizedRows(weight, rows: rows, perRow: perChannel, format: format,
                                                                 name: name, node: node.errorName)
            return .init(names: [written.dequantized!], sqnrDB: sqnrDB, perChannel: perChannel, written: written)
        }
        report.weight(name, type: format.reportName, sqnrDB: made.sqnrDB,
                      reason: (perChannel ? "per row" : "per tensor") + ", dequantized in front of \(node.opType)",
                      written: made.written)
        return made.names[0]
    }
}

extension Tensor {
    /// A rank-0 zero point of an 8-bit storage type.
    static func scalarZeroPoint(_ value: Int32, type: QuantType) -> Tensor {
        type.isSigned ? Tensor(scalar: Int8(truncatingIfNeeded: value)) : Tensor(scalar: UInt8(truncatingIfNeeded: value))
    }
}
