import Tensors

extension DType {
    /// The `TensorProto.DataType` code of this element type.
    public var onnxDataType: Int32 {
        switch self {
        case .float32: return 1
        case .uint8: return 2
        case .int8: return 3
        case .uint16: return 4
        case .int16: return 5
        case .int32: return 6
        case .int64: return 7
        case .bool: return 9
        case .float16: return 10
        case .float64: return 11
        case .uint32: return 12
        case .uint64: return 13
        case .bfloat16: return 16
        case .float8e4m3fn: return 17
        case .float8e5m2: return 19
        case .uint4: return 21
        case .int4: return 22
        }
    }

    /// The element type of an ONNX `TensorProto.DataType` code, or `nil` for codes this library does not
    /// represent (undefined, string, complex, the FNUZ and other small float formats, 2-bit integers).
    public init?(onnxDataType code: Int32) {
        switch code {
        case 1: self = .float32
        case 2: self = .uint8
        case 3: self = .int8
        case 4: self = .uint16
        case 5: self = .int16
        case 6: self = .int32
        case 7: self = .int64
        case 9: self = .bool
        case 10: self = .float16
        case 11: self = .float64
        case 12: self = .uint32
        case 13: self = .uint64
        case 16: self = .bfloat16
        case 17: self = .float8e4m3fn
        case 19: self = .float8e5m2
        case 21: self = .uint4
        case 22: self = .int4
        default: return nil
        }
    }
}

/// ONNX's name of a `TensorProto.DataType` code, for messages.
func onnxDataTypeName(_ code: Int32) -> String {
    let names = [
        "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING", "BOOL",
        "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN",
        "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0",
        "UINT2", "INT2", "FLOAT6E2M3", "FLOAT6E3M2",
    ]
    return names.indices.contains(Int(code)) ? names[Int(code)] : "unknown data type \(code)"
}
