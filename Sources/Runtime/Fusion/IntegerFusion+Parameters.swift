import GraphIR
import Tensors

/// A per-tensor quantized activation seen at a DequantizeLinear or QuantizeLinear node: the node, the
/// 8-bit value's name, and the names and values of its scale and zero point.
struct QuantizedActivation {
    let index: Int
    /// The 8-bit codes: the DequantizeLinear input or the QuantizeLinear output.
    let codes: String
    /// The float side: the DequantizeLinear output or the QuantizeLinear input.
    let real: String
    let scale: String
    /// Never empty: an omitted zero point is materialised as a constant.
    let zeroPoint: String
    let parameters: ActivationQuantization
}

/// A DequantizeLinear of a constant int8/uint8 weight, per tensor or per output channel.
struct QuantizedWeight {
    let index: Int
    let codes: String
    let values: Tensor
    let scale: String
    let zeroPoint: String
    let quantization: WeightQuantization
}

extension IntegerFusionRewriter {
    /// The DequantizeLinear producing `value` when it dequantizes an 8-bit activation with constant
    /// per-tensor float32 parameters (and, for an omitted zero point, a type we can tell: uint8 after a
    /// QuantizeLinear without one, or a declared graph input type).
    mutating func activationDequantize(producing value: String) -> QuantizedActivation? {
        guard let index = producer(of: value, "DequantizeLinear") else { return nil }
        let dq = node(index)
        guard blockSize(dq) == 0 else { return nil }
        let codes = input(dq, 0)
        let dtype: DType
        if let zeroPoint = constant(input(dq, 2)) {
            dtype = zeroPoint.dtype
        } else if input(dq, 2).isEmpty, let known = eightBitType(of: codes) {
            dtype = known
        } else {
            return nil
        }
        return activation(at: index, codes: codes, real: dq.outputs[0], dtype: dtype)
    }

    /// The QuantizeLinear at `index` when it quantizes to uint8/int8 with constant per-tensor float32
    /// parameters.
    mutating func activationQuantize(at index: Int) -> QuantizedActivation? {
        let q = node(index)
        guard q.opType == "QuantizeLinear", q.normalizedDomain.isEmpty, blockSize(q) == 0,
              let output = q.outputs.first, !output.isEmpty else { return nil }
        let dtype: DType
        if let zeroPoint = constant(input(q, 2)) {
            dtype = zeroPoint.dtype
        } else if input(q, 2).isEmpty {
            switch q.attributes["output_dtype"]?.intValue ?? 0 {
            case 0, Int(DType.uint8.onnxCode): dtype = .uint8
            case Int(DType.int8.onnxCode): dtype = .int8
            default: return nil
            }
        } else {
            return nil
        }
        if let declared = q.attributes["output_dtype"]?.intValue, declared != 0, declared != Int(dtype.onnxCode) {
            return nil
        }
        return activation(at: index, codes: output, real: input(q, 0), dtype: dtype)
    }

    /// The QuantizeLinear reading `value` as its only reader, when it qualifies as `activationQuantize`.
    mutating func activationQuantize(reading value: String) -> QuantizedActivation? {
        guard let index = soleReader(of: value, ["QuantizeLinear"]), input(node(index), 0) == value else { return nil }
        return activationQuantize(at: index)
    }

    private mutating func activation(at index: Int, codes: String, real: String, dtype: DType) -> QuantizedActivation? {
        let node = node(index)
        guard dtype == .uint8 || dtype == .int8 else { return nil }
        let scaleName = input(node, 1)
        guard let scale = constant(scaleName), scale.dtype == .float32, scale.count == 1 else { return nil }
        var zeroPointName = input(node, 2)
        if let zeroPoint = constant(zeroPointName) {
            guard zeroPoint.count == 1, zeroPoint.dtype == dtype else { return nil }
        } else if zeroPointName.isEmpty {
            let zero = dtype == .uint8 ? Tensor(scalar: UInt8(0)) : Tensor(scalar: Int8(0))
            zeroPointName = addConstant(zero, base: scaleName + "_zero_point")
        } else {
            return nil
        }
        guard let parameters = try? ActivationQuantization(scale: scale, zeroPoint: constant(zeroPointName), what: "")
        else { return nil }
        return QuantizedActivation(index: index, codes: codes, real: real, scale: scaleName, zeroPoint: zeroPointName,
                                   parameters: parameters)
    }

    /// The DequantizeLinear producing `value` from a constant int8/uint8 tensor of `rank` dimensions,
    /// quantized per tensor or per channel along `channelAxis` (`channels` values).
    mutating func weightDequantize(producing value: String, rank: Int, channelAxis: Int) -> QuantizedWeight? {
        guard let index = producer(of: value, "DequantizeLinear") else { return nil }
        let dq = node(index)
        guard blockSize(dq) == 0, let values = constant(input(dq, 0)), values.rank == rank,
              values.dtype == .int8 || values.dtype == .uint8 else { return nil }
        let scaleName = input(dq, 1)
        guard let scale = constant(scaleName), scale.dtype == .float32 else { return nil }
        let channels = values.shape[channelAxis]
        if scale.count != 1 {
            let axis = dq.attributes["axis"]?.intValue ?? 1
            guard scale.rank == 1, scale.count == channels, (axis < 0 ? axis + rank : axis) == channelAxis else { return nil }
        }
        var zeroPointName = input(dq, 2)
        if zeroPointName.isEmpty {
            zeroPointName = addConstant(try! Tensor(zeros: values.dtype, shape: scale.shape), base: scaleName + "_zero_point")
        } else if constant(zeroPointName) == nil {
            return nil
        }
        guard let quantization = try? WeightQuantization(scale: scale, zeroPoint: constant(zeroPointName),
                                                         weightType: values.dtype, channels: channels)
        else { return nil }
        return QuantizedWeight(index: index, codes: input(dq, 0), values: values, scale: scaleName,
                               zeroPoint: zeroPointName, quantization: quantization)
    }

    /// The 8-bit type of `value` when the graph says it: a QuantizeLinear without zero point or
    /// `output_dtype` produces uint8; a declared input or annotation gives its element type.
    func eightBitType(of value: String) -> DType? {
        if let index = producer(of: value, "QuantizeLinear"), input(node(index), 2).isEmpty {
            let declared = node(index).attributes["output_dtype"]?.intValue ?? 0
            if declared == 0 || declared == Int(DType.uint8.onnxCode) { return .uint8 }
            if declared == Int(DType.int8.onnxCode) { return .int8 }
            return nil
        }
        let info = graph.inputs.first { $0.name == value } ?? graph.valueInfo[value]
        if case .tensor(let type?, _)? = info?.type, type == .uint8 || type == .int8 { return type }
        return nil
    }

    func blockSize(_ node: Node) -> Int { node.attributes["block_size"]?.intValue ?? 0 }

    /// The real-valued clamp of a Relu or Clip node with constant bounds, or nil when the node is neither
    /// or its bounds are not constant.
    func activationClamp(_ node: Node) -> (low: Float?, high: Float?)? {
        guard node.normalizedDomain.isEmpty else { return nil }
        switch node.opType {
        case "Relu":
            return (0, nil)
        case "Clip" where opset < 11:
            let low = node.attributes["min"]?.floatValue, high = node.attributes["max"]?.floatValue
            return (low, high)
        case "Clip":
            func bound(_ index: Int) -> Float?? {
                let name = input(node, index)
                if name.isEmpty { return .some(nil) }
                guard let tensor = constant(name), tensor.dtype == .float32, tensor.count == 1 else { return nil }
                return .some(tensor.scalars(as: Float.self)[0])
            }
            guard let low = bound(1), let high = bound(2) else { return nil }
            return (low, high)
        default:
            return nil
        }
    }
}

/// Attribute builders for fused nodes.
extension Attribute {
    static func clampAttributes(_ clamp: (low: Float?, high: Float?)?) -> [(String, Attribute)] {
        var result: [(String, Attribute)] = []
        if let low = clamp?.low { result.append(("clip_min", .float(low))) }
        if let high = clamp?.high { result.append(("clip_max", .float(high))) }
        return result
    }
}
