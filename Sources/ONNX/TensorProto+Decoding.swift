import Foundation
import Tensors

/// Turns `TensorProto`s into `Tensor`s, checking every size against the bytes actually present before
/// allocating, so a hostile file cannot make us allocate what its dims merely claim.
///
/// Data may come from `raw_data` (little-endian, packed for 4-bit types), from the typed fields ONNX
/// defines for each element type, or from an external file next to the model.
struct TensorDecoder {
    /// Path or label of the model or `.pb` file, for messages.
    let file: String
    /// Folder that external data locations are relative to; `nil` when the model came from memory.
    let baseDirectory: URL?

    /// Decodes one tensor. `fallbackName` names it in messages when the proto has no name.
    func tensor(_ proto: Onnx_TensorProto, fallbackName: String) throws -> Tensor {
        let name = proto.name.isEmpty ? fallbackName : proto.name
        guard let dtype = DType(onnxCode: proto.dataType) else {
            throw ONNXError.unsupportedDataType(file: file, tensor: name, dataType: DType.onnxTypeName(code: proto.dataType))
        }
        if proto.hasSegment {
            throw ONNXError.invalidTensor(file: file, tensor: name, reason: "segmented tensors are not supported")
        }
        var shape: [Int] = []
        shape.reserveCapacity(proto.dims.count)
        for dim in proto.dims {
            guard dim >= 0 else {
                throw ONNXError.invalidTensor(file: file, tensor: name, reason: "dims \(proto.dims) have a negative dimension")
            }
            shape.append(Int(dim))
        }
        guard let count = try? Shape.elementCount(shape), let byteCount = dtype.storageByteCount(elements: count) else {
            throw ONNXError.invalidTensor(
                file: file, tensor: name, reason: "dims \(proto.dims) hold more elements than can be counted")
        }

        switch proto.dataLocation {
        case .external:
            return try ExternalDataReader(file: file, baseDirectory: baseDirectory).read(
                proto.externalData, tensor: name, dtype: dtype, shape: shape, byteCount: byteCount)
        case .default:
            break
        case .UNRECOGNIZED(let code):
            throw ONNXError.invalidTensor(file: file, tensor: name, reason: "unknown data_location \(code)")
        }

        if !proto.rawData.isEmpty {
            guard proto.rawData.count == byteCount else {
                throw ONNXError.invalidTensor(
                    file: file, tensor: name,
                    reason: "raw_data holds \(proto.rawData.count) bytes but dims \(shape) of \(dtype) need \(byteCount)")
            }
            return try proto.rawData.withUnsafeBytes { try Tensor(dtype: dtype, shape: shape, bytes: $0) }
        }
        return try typedFieldTensor(proto, name: name, dtype: dtype, shape: shape, count: count)
    }

    /// A tensor from the typed field ONNX assigns to `dtype` (`float_data`, `int32_data`, …).
    private func typedFieldTensor(
        _ proto: Onnx_TensorProto, name: String, dtype: DType, shape: [Int], count: Int
    ) throws -> Tensor {
        // 4-bit types put one packed byte (two elements) in each int32_data entry.
        let entriesNeeded = dtype.bitWidth == 4 ? count / 2 + count % 2 : count
        let (fieldName, entries) = Self.typedField(of: proto, dtype: dtype)
        guard entries == entriesNeeded else {
            var reason = "\(fieldName) holds \(entries) entries but dims \(shape) of \(dtype) need \(entriesNeeded)"
            if entries == 0, let other = Self.nonEmptyFieldNames(of: proto).first {
                reason += " (the data is in \(other), which \(DType.onnxTypeName(code: proto.dataType)) tensors do not use)"
            }
            throw ONNXError.invalidTensor(file: file, tensor: name, reason: reason)
        }
        var tensor = try Tensor(zeros: dtype, shape: shape)
        tensor.withUnsafeMutableBytes { destination in
            switch dtype {
            case .float32: Self.copy(proto.floatData, into: destination)
            case .float64: Self.copy(proto.doubleData, into: destination)
            case .int64: Self.copy(proto.int64Data, into: destination)
            case .uint64: Self.copy(proto.uint64Data, into: destination)
            case .int32: Self.copy(proto.int32Data, into: destination)
            case .uint32:
                for (index, value) in proto.uint64Data.enumerated() {
                    destination.storeBytes(of: UInt32(truncatingIfNeeded: value), toByteOffset: index * 4, as: UInt32.self)
                }
            case .bool:
                for (index, value) in proto.int32Data.enumerated() {
                    destination[index] = value != 0 ? 1 : 0
                }
            case .int8, .uint8, .float8e4m3fn, .float8e5m2, .int4, .uint4:
                // One byte per entry: the element's bits (or, for 4-bit types, a packed pair).
                for (index, value) in proto.int32Data.enumerated() {
                    destination[index] = UInt8(truncatingIfNeeded: value)
                }
            case .int16, .uint16, .float16, .bfloat16:
                // Half floats are stored as their bit patterns.
                for (index, value) in proto.int32Data.enumerated() {
                    destination.storeBytes(of: UInt16(truncatingIfNeeded: value), toByteOffset: index * 2, as: UInt16.self)
                }
            }
        }
        return tensor
    }

    /// The name and entry count of the typed field that holds `dtype`.
    private static func typedField(of proto: Onnx_TensorProto, dtype: DType) -> (String, Int) {
        switch dtype {
        case .float32: return ("float_data", proto.floatData.count)
        case .float64: return ("double_data", proto.doubleData.count)
        case .int64: return ("int64_data", proto.int64Data.count)
        case .uint32, .uint64: return ("uint64_data", proto.uint64Data.count)
        case .int32, .int16, .uint16, .int8, .uint8, .bool, .float16, .bfloat16, .float8e4m3fn, .float8e5m2,
             .int4, .uint4:
            return ("int32_data", proto.int32Data.count)
        }
    }

    private static func nonEmptyFieldNames(of proto: Onnx_TensorProto) -> [String] {
        var names: [String] = []
        if !proto.floatData.isEmpty { names.append("float_data") }
        if !proto.int32Data.isEmpty { names.append("int32_data") }
        if !proto.int64Data.isEmpty { names.append("int64_data") }
        if !proto.doubleData.isEmpty { names.append("double_data") }
        if !proto.uint64Data.isEmpty { names.append("uint64_data") }
        if !proto.stringData.isEmpty { names.append("string_data") }
        return names
    }

    private static func copy<T>(_ values: [T], into destination: UnsafeMutableRawBufferPointer) {
        values.withUnsafeBytes { source in
            if let base = source.baseAddress, let target = destination.baseAddress {
                target.copyMemory(from: base, byteCount: source.count)
            }
        }
    }
}
