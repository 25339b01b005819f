/// The numeric element-type codes of ONNX's `TensorProto.DataType` enum.
///
/// Kept here as a plain number table so that both the ONNX module (tensor decoding) and runtime kernels
/// (`Cast`'s `to` attribute) share one mapping; the Tensors module knows nothing else of ONNX.
extension DType {
    /// The dtype with ONNX `TensorProto.DataType` code `onnxCode`, or `nil` for codes with no `DType`
    /// (0 UNDEFINED, 8 STRING, 14/15 complex, 18/20 the FNUZ float8 variants, 23 FLOAT4E2M1, unknown codes).
    public init?(onnxCode: Int32) {
        switch onnxCode {
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

    /// This dtype's ONNX `TensorProto.DataType` code.
    public var onnxCode: Int32 {
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

    /// The ONNX spelling of a `TensorProto.DataType` code (`"FLOAT"`, `"STRING"`, …), for messages;
    /// `"code N"` for numbers ONNX does not define.
    public static func onnxTypeName(code: Int32) -> String {
        let names: [Int32: String] = [
            0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
            8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
            15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
            20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1",
        ]
        return names[code] ?? "code \(code)"
    }
}
