import GraphIR
import QuantCore
import Tensors

/// Small graph edits the quantizers share: fresh initializers, QuantizeLinear/DequantizeLinear pairs,
/// scale and zero-point tensors for `QuantParams`, and opset/IR bookkeeping.
///
/// Every edit takes a `UniqueNamer` made once for the graph, so names stay unique without rescanning the
/// graph for each one.
struct GraphEditor {
    var graph: Graph
    private var namer: UniqueNamer

    init(graph: Graph) {
        self.graph = graph
        namer = UniqueNamer(graph: graph)
    }

    /// A name nothing in the graph uses yet, derived from `base`.
    mutating func freshName(_ base: String) -> String { namer.make(base: base) }

    /// Adds `tensor` as an initializer under a fresh name derived from `base`; returns the name.
    mutating func addInitializer(_ tensor: Tensor, base: String) -> String {
        let name = namer.make(base: base)
        graph.initializers[name] = tensor
        return name
    }

    /// Appends `node` (callers sort the graph once at the end).
    mutating func append(_ node: Node) { graph.nodes.append(node) }

    /// The scale and zero-point initializers of `params`: a scalar pair per tensor, 1-D tensors per axis.
    ///
    /// - Parameter zeroPointType: the storage type of the codes (`int32` for biases).
    mutating func parameterTensors(_ params: QuantParams, zeroPointType: DType, base: String) throws
        -> (scale: String, zeroPoint: String)
    {
        let shape = params.granularity == .perTensor ? [] : params.parameterShape
        let scale = addInitializer(try Tensor(shape: shape, scalars: params.scales), base: base + "_scale")
        let zeroPoint = addInitializer(try GraphEditor.integerTensor(params.zeroPoints, dtype: zeroPointType, shape: shape),
                                       base: base + "_zero_point")
        return (scale, zeroPoint)
    }

    /// `QuantizeLinear(value) → DequantizeLinear`, returning the names of the codes and of the dequantized value.
    ///
    /// - Parameters:
    ///   - quantize: parameters of the QuantizeLinear node (per tensor, or per axis along `axis`).
    ///   - dequantize: parameters of the DequantizeLinear node; the same as `quantize` except for smoothed
    ///     tensors, whose per-channel factors live only in the QuantizeLinear scale.
    mutating func insertQuantizeDequantize(of value: String, quantize: QuantParams, dequantize: QuantParams,
                                           axis: Int?) throws -> (codes: String, dequantized: String) {
        let base = GraphEditor.baseName(value)
        let zeroType = quantize.type.storageDType
        let (qScale, qZero) = try parameterTensors(quantize, zeroPointType: zeroType, base: base)
        let (dqScale, dqZero) = quantize == dequantize
            ? (qScale, qZero) : try parameterTensors(dequantize, zeroPointType: zeroType, base: base + "_dequantize")
        let codes = freshName(base + "_quantized")
        let dequantized = freshName(base + "_dequantized")
        var q = Node(name: freshName(base + "_QuantizeLinear"), opType: "QuantizeLinear",
                     inputs: [value, qScale, qZero], outputs: [codes])
        if let axis, quantize.granularity != .perTensor { q.attributes["axis"] = .int(axis) }
        append(q)
        var dq = Node(name: freshName(base + "_DequantizeLinear"), opType: "DequantizeLinear",
                      inputs: [codes, dqScale, dqZero], outputs: [dequantized])
        if let axis, dequantize.granularity != .perTensor { dq.attributes["axis"] = .int(axis) }
        append(dq)
        return (codes, dequantized)
    }

    /// A constant stored as codes (`storage`) behind a DequantizeLinear node; returns the dequantized name.
    mutating func addDequantizedConstant(_ storage: Tensor, params: QuantParams, zeroPointType: DType,
                                         axis: Int?, base: String) throws -> String {
        let shape = params.granularity == .perTensor ? [] : params.parameterShape
        return try addDequantizedConstant(
            storage, scale: try Tensor(shape: shape, scalars: params.scales),
            zeroPoint: try GraphEditor.integerTensor(params.zeroPoints, dtype: zeroPointType, shape: shape),
            axis: params.granularity == .perTensor ? nil : axis, base: base)
    }

    /// `DequantizeLinear(codes, scale, zeroPoint)` over a new initializer holding `storage`.
    mutating func addDequantizedConstant(_ storage: Tensor, scale: Tensor, zeroPoint: Tensor, axis: Int?,
                                         base: String) throws -> String {
        let codes = addInitializer(storage, base: base + "_quantized")
        let scaleName = addInitializer(scale, base: base + "_scale")
        let zeroName = addInitializer(zeroPoint, base: base + "_zero_point")
        let output = freshName(base + "_dequantized")
        var dq = Node(name: freshName(base + "_DequantizeLinear"), opType: "DequantizeLinear",
                      inputs: [codes, scaleName, zeroName], outputs: [output])
        if let axis { dq.attributes["axis"] = .int(axis) }
        append(dq)
        return output
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

    /// A readable base for names derived from a value (ONNX exporters use `/a/b/Op_output_0`).
    static func baseName(_ value: String) -> String {
        value.isEmpty ? "value" : value
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
