import GraphIR
import QuantCore
import Tensors

/// Names for what a quantizer adds to a graph: short, deterministic and unique.
///
/// Generated names repeat in every node that reads them, so on a small model long names (the exporter's
/// `/blocks/blocks.1/expand/expand.2/HardSwish_output_0` plus a suffix, five or six times per quantized
/// tensor) outweigh the bytes quantization saves. Each quantized tensor therefore gets a stem of a kind
/// letter and a counter — `a3` an activation, `w5` a weight, `b2` a bias, `n4` a rewritten node — and its
/// values a short suffix (`a3_q` codes, `a3_dq` the dequantized value, `w5_s` per-channel scales). The
/// report maps each stem's names back to the float tensor (`TensorDecision.codes` and `.dequantized`),
/// and in the graph a QuantizeLinear reads the original name. Scalar parameters are named by value
/// (`scale_0.0235294`, `zp_uint8_128`) and shared by every node that uses the same value.
struct GeneratedNames {
    /// The letter that starts a stem.
    enum Kind: String {
        case activation = "a", weight = "w", bias = "b", node = "n"
    }

    private var namer: UniqueNamer
    private var counters: [Kind: Int] = [:]
    /// Shared constants made so far, by what they hold.
    private var shared: [String: String] = [:]

    init(graph: Graph) { namer = UniqueNamer(graph: graph) }

    /// A name nothing in the graph uses yet: `base`, else `base_1`, `base_2`, …
    mutating func fresh(_ base: String) -> String { namer.make(base: base) }

    /// The next stem of `kind`: `a0`, `a1`, … in the order asked.
    mutating func stem(_ kind: Kind) -> String {
        let count = counters[kind, default: 0]
        counters[kind] = count + 1
        return kind.rawValue + String(count)
    }

    /// The name of the shared constant holding `key`'s content, if one was made.
    func sharedName(_ key: String) -> String? { shared[key] }

    mutating func rememberShared(_ key: String, name: String) { shared[key] = name }
}

/// The names written for a quantized tensor: its codes, and its dequantized value when the graph has one.
struct WrittenNames: Equatable {
    var codes: String
    var dequantized: String?
}

/// An editor that can add initializers and nodes; the quantizers' shared edits (scale and zero-point
/// initializers, DequantizeLinear of constant codes) are written once on top of it.
protocol GraphBuilding {
    var names: GeneratedNames { get set }
    /// Stores `tensor` as an initializer under `name` (already unique).
    mutating func storeInitializer(_ tensor: Tensor, name: String)
    /// Adds `node` to the graph being built.
    mutating func appendNode(_ node: Node)
}

extension GraphBuilding {
    /// Adds `tensor` as an initializer under a fresh name derived from `base`; returns the name.
    mutating func addInitializer(_ tensor: Tensor, base: String) -> String {
        let name = names.fresh(base)
        storeInitializer(tensor, name: name)
        return name
    }

    /// A constant shared by every reader that wants the same `base` and content: made once, named
    /// `base` (or `base_1`, … when the graph already uses the name).
    mutating func sharedConstant(_ tensor: Tensor, base: String) -> String {
        let content = tensor.withUnsafeBytes { Array($0) }
        let key = "\(base)|\(tensor.dtype)|\(tensor.shape)|\(content)"
        if let known = names.sharedName(key) { return known }
        let name = addInitializer(tensor, base: base)
        names.rememberShared(key, name: name)
        return name
    }

    /// A float32 scalar shared by value, named `base` followed by the value (`scale_0.0235294`).
    mutating func sharedScalar(_ value: Float, base: String = "scale") -> String {
        sharedConstant(Tensor(scalar: value), base: "\(base)_\(value)")
    }

    /// Appends a node named after its first output (unique, since values are), reading `inputs`.
    mutating func addNode(_ opType: String, _ inputs: [String], _ outputs: [String],
                          attributes: [String: Attribute] = [:], name: String? = nil) {
        var inputs = inputs
        while inputs.last?.isEmpty == true { inputs.removeLast() }  // absent optional inputs at the end
        var node = Node(name: name ?? outputs.first ?? names.fresh(opType), opType: opType, inputs: inputs,
                        outputs: outputs)
        for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { node.attributes[key] = value }
        appendNode(node)
    }

    /// The scale and zero-point inputs of a QuantizeLinear/DequantizeLinear for `params`.
    ///
    /// An empty `parameterShape` gives scalars (the first value) shared by value; otherwise `<stem>_s` and
    /// `<stem>_z` of that shape (pass `uniformShape(…)` to write per-axis values that are all alike as
    /// scalars). The zero point is left out (nil) when `omitZeroPoint` is set and every zero point is 0:
    /// ONNX's default then stands in (DequantizeLinear only — a QuantizeLinear without one would change
    /// its output type).
    ///
    /// - Parameter zeroPointType: the storage type of the codes (`int32` for biases).
    mutating func parameterInputs(scales: [Float], zeroPoints: [Int32], parameterShape: [Int], zeroPointType: DType,
                                  stem: String, omitZeroPoint: Bool) throws -> (scale: String, zeroPoint: String?) {
        let uniform = parameterShape.isEmpty
        let scale = uniform ? sharedScalar(scales[0])
            : addInitializer(try Tensor(shape: parameterShape, scalars: scales), base: stem + "_s")
        if omitZeroPoint && zeroPoints.allSatisfy({ $0 == 0 }) { return (scale, nil) }
        let zeroPoint: String
        if uniform {
            zeroPoint = sharedConstant(try GraphEditor.integerTensor([zeroPoints[0]], dtype: zeroPointType, shape: []),
                                       base: "zp_\(zeroPointType)_\(zeroPoints[0])")
        } else {
            let tensor = try GraphEditor.integerTensor(zeroPoints, dtype: zeroPointType, shape: parameterShape)
            // Symmetric weights of equal width share one array of zeros.
            zeroPoint = zeroPoints.allSatisfy { $0 == 0 }
                ? sharedConstant(tensor, base: "zeros_\(zeroPointType)_" + parameterShape.map(String.init).joined(separator: "x"))
                : addInitializer(tensor, base: stem + "_z")
        }
        return (scale, zeroPoint)
    }

    /// `DequantizeLinear(codes, scale, zero point)` over constant codes named `<stem>_q`, producing
    /// `<stem>_dq`; returns both names.
    ///
    /// Per-axis parameters that are all alike are written as scalars (without `axis`). With
    /// `blockSize` the parameters keep their blocked shape (ONNX blocked quantization needs it).
    ///
    /// - Parameters:
    ///   - parameterShape: the shape of the scales when there are several (`[C]` per axis, the blocked
    ///     shape with `blockSize`).
    ///   - zeroPointType: the storage type of the codes (`int32` for biases).
    ///   - omitZeroPoint: leave a zero point of all zeros out (ONNX's default). ONNX Runtime fuses a Gemm
    ///     into QGemm only when its 8-bit weight's DequantizeLinear has one, so static weights keep it.
    mutating func addDequantizedConstant(_ codes: Tensor, scales: [Float], zeroPoints: [Int32], parameterShape: [Int],
                                         zeroPointType: DType, axis: Int?, blockSize: Int? = nil,
                                         omitZeroPoint: Bool = true, stem: String) throws
        -> (codes: String, dequantized: String)
    {
        let codesName = addInitializer(codes, base: stem + "_q")
        let shape = blockSize == nil ? GraphEditor.uniformShape(scales, zeroPoints, parameterShape) : parameterShape
        let perTensor = shape.isEmpty
        let (scale, zeroPoint) = try parameterInputs(scales: scales, zeroPoints: zeroPoints, parameterShape: shape,
                                                     zeroPointType: zeroPointType, stem: stem,
                                                     omitZeroPoint: omitZeroPoint)
        var attributes: [String: Attribute] = [:]
        if !perTensor, let axis { attributes["axis"] = .int(axis) }
        if let blockSize { attributes["block_size"] = .int(blockSize) }
        let output = names.fresh(stem + "_dq")
        addNode("DequantizeLinear", [codesName, scale] + (zeroPoint.map { [$0] } ?? []), [output],
                attributes: attributes)
        return (codesName, output)
    }

    /// `addDequantizedConstant` for the codes and parameters of `quantized` (per tensor → scalars).
    mutating func addDequantizedConstant(_ quantized: QuantizedTensor, axis: Int?, omitZeroPoint: Bool = true,
                                         stem: String) throws -> (codes: String, dequantized: String) {
        let params = quantized.params
        return try addDequantizedConstant(quantized.storage, scales: params.scales, zeroPoints: params.zeroPoints,
                                          parameterShape: params.granularity == .perTensor ? [] : params.parameterShape,
                                          zeroPointType: params.type.storageDType, axis: axis,
                                          omitZeroPoint: omitZeroPoint, stem: stem)
    }

    /// A 1-D int64 constant (shapes, axes), shared by value.
    mutating func addInt64s(_ values: [Int], base: String) throws -> String {
        sharedConstant(try Tensor(shape: [values.count], scalars: values.map { Int64($0) }), base: base)
    }

    /// A float32 scalar constant, shared by value.
    mutating func addScalar(_ value: Float, base: String) -> String {
        sharedConstant(Tensor(scalar: value), base: base)
    }

    /// The codes of `quantized` stored in `storedShape` behind a DequantizeLinear under a new weight stem,
    /// reshaped to `shape` when the stored view differs. Returns the value that replaces the weight and
    /// the names the report gives.
    ///
    /// - Parameter parameterShape: the shape of the scales when there are several.
    mutating func dequantizedWeight(_ quantized: QuantizedTensor, storedShape: [Int], shape: [Int], parameterShape: [Int],
                                    axis: Int?, blockSize: Int? = nil) throws -> WrittenNames {
        let stem = names.stem(.weight)
        let params = quantized.params
        let made = try addDequantizedConstant(
            try quantized.storage.reshaped(storedShape), scales: params.scales, zeroPoints: params.zeroPoints,
            parameterShape: parameterShape, zeroPointType: params.type.storageDType, axis: axis, blockSize: blockSize,
            stem: stem)
        guard storedShape != shape else { return WrittenNames(codes: made.codes, dequantized: made.dequantized) }
        let reshaped = names.fresh(stem + "_reshaped")
        let shapeName = try addInt64s(shape, base: "shape_" + shape.map(String.init).joined(separator: "x"))
        addNode("Reshape", [made.dequantized, shapeName], [reshaped])
        return WrittenNames(codes: made.codes, dequantized: reshaped)
    }

    /// `weight` quantized with one scale per row of its `[rows, count / rows]` view (one for the whole
    /// tensor when `perRow` is false), stored behind a DequantizeLinear (`axis` 0) and reshaped back:
    /// how the weight modes and static mode store embedding tables and recurrent weights, whose
    /// operators have no integer form. Returns the names written and the weight's SQNR.
    mutating func dequantizedRows(_ weight: Tensor, rows: Int, perRow: Bool, format: WeightFormat, name: String,
                                  node: String) throws -> (written: WrittenNames, sqnrDB: Double?) {
        let view = perRow ? [rows, weight.count / max(rows, 1)] : [1, weight.count]
        let quantized = try WeightQuantization.quantize(weight.reshaped(view), axis: 1, blockSize: view[1],
                                                        format: format, name: name, node: node)
        let storedShape = perRow ? view : weight.shape
        let written = try dequantizedWeight(quantized.quantized, storedShape: storedShape, shape: weight.shape,
                                            parameterShape: perRow ? [rows] : [], axis: perRow ? 0 : nil)
        return (written, quantized.sqnrDB)
    }
}

/// Small graph edits the static quantizer and the QOperator conversion share: QuantizeLinear/
/// DequantizeLinear pairs, dequantized constants and fresh names. Nodes are appended; callers sort the
/// graph once at the end.
struct GraphEditor: GraphBuilding {
    var graph: Graph
    var names: GeneratedNames

    init(graph: Graph) {
        self.graph = graph
        names = GeneratedNames(graph: graph)
    }

    mutating func storeInitializer(_ tensor: Tensor, name: String) { graph.initializers[name] = tensor }

    mutating func appendNode(_ node: Node) { graph.nodes.append(node) }

    /// A name nothing in the graph uses yet, derived from `base`.
    mutating func freshName(_ base: String) -> String { names.fresh(base) }

    /// `QuantizeLinear(value) → DequantizeLinear` under a new activation stem: codes `<stem>_q`, the
    /// dequantized value `<stem>_dq`. Returns both names.
    ///
    /// - Parameters:
    ///   - quantize: parameters of the QuantizeLinear node (per tensor, or per axis along `axis`).
    ///   - dequantize: parameters of the DequantizeLinear node; the same as `quantize` except for smoothed
    ///     tensors, whose per-channel factors live only in the QuantizeLinear scale.
    mutating func insertQuantizeDequantize(of value: String, quantize: QuantParams, dequantize: QuantParams,
                                           axis: Int?) throws -> (codes: String, dequantized: String) {
        let stem = names.stem(.activation)
        let zeroType = quantize.type.storageDType
        /// The scale and zero-point inputs of one node and its attributes (`axis` when per axis).
        func parameters(_ params: QuantParams, stem: String) throws -> ([String], [String: Attribute]) {
            let shape = GraphEditor.uniformShape(params.scales, params.zeroPoints,
                                                 params.granularity == .perTensor ? [] : params.parameterShape)
            let (scale, zeroPoint) = try parameterInputs(scales: params.scales, zeroPoints: params.zeroPoints,
                                                         parameterShape: shape, zeroPointType: zeroType, stem: stem,
                                                         omitZeroPoint: false)
            return ([scale, zeroPoint!], shape.isEmpty || axis == nil ? [:] : ["axis": .int(axis!)])
        }
        let (quantizeInputs, quantizeAttributes) = try parameters(quantize, stem: stem)
        let (dequantizeInputs, dequantizeAttributes) = quantize == dequantize
            ? (quantizeInputs, quantizeAttributes) : try parameters(dequantize, stem: stem + "_dq")
        let codes = names.fresh(stem + "_q")
        let dequantized = names.fresh(stem + "_dq")
        addNode("QuantizeLinear", [value] + quantizeInputs, [codes], attributes: quantizeAttributes)
        addNode("DequantizeLinear", [codes] + dequantizeInputs, [dequantized], attributes: dequantizeAttributes)
        return (codes, dequantized)
    }

    /// `shape`, or `[]` (scalars) when every scale and every zero point is the same: per-axis parameters
    /// that are all alike need no array.
    static func uniformShape(_ scales: [Float], _ zeroPoints: [Int32], _ shape: [Int]) -> [Int] {
        Set(scales).count == 1 && Set(zeroPoints).count <= 1 ? [] : shape
    }

    /// `values` as a tensor of an integer `dtype` (values must fit; they come from validated parameters).
    static func integerTensor(_ values: [Int32], dtype: DType, shape: [Int]) throws -> Tensor {
        switch dtype {
        case .int8: return try Tensor(shape: shape, scalars: values.map { Int8(clamping: $0) })
        case .uint8: return try Tensor(shape: shape, scalars: values.map { UInt8(clamping: $0) })
        case .int16: return try Tensor(shape: shape, scalars: values.map { Int16(clamping: $0) })
        case .uint16: return try Tensor(shape: shape, scalars: values.map { UInt16(clamping: $0) })
        case .int4, .uint4:
            return try Tensor.packInt4(values.map { Int8(truncatingIfNeeded: $0) }, signed: dtype == .int4, shape: shape)
        default: return try Tensor(shape: shape, scalars: values)
        }
    }
}

extension Model {
    /// Raises the IR version to what `opset` needs (opset 13 → IR 7, 19 → 9, 21 → 10, 23 → 11).
    mutating func raiseIRVersion(forOpset opset: Int) {
        let needed: Int
        switch opset {
        case ..<13: needed = 6
        case 13...15: needed = 7
        case 16...18: needed = 8
        case 19...20: needed = 9
        case 21...22: needed = 10
        default: needed = 11
        }
        irVersion = max(irVersion, needed)
    }
}
