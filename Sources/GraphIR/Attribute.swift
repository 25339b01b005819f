import Tensors

/// A node attribute: every kind ONNX defines.
///
/// Strings are kept as raw bytes, since ONNX allows non-UTF-8 string attributes; `stringValue` decodes
/// them for the common case.
public indirect enum Attribute: Sendable, Equatable {
    case float(Float)
    case int(Int)
    case string([UInt8])
    case tensor(Tensor)
    case graph(Graph)
    case sparseTensor(SparseTensor)
    case type(ValueType)
    case floats([Float])
    case ints([Int])
    case strings([[UInt8]])
    case tensors([Tensor])
    case graphs([Graph])
    case sparseTensors([SparseTensor])
    case types([ValueType])

    /// A string attribute from Swift text.
    public static func text(_ value: String) -> Attribute { .string(Array(value.utf8)) }

    public var intValue: Int? { if case .int(let v) = self { return v } else { return nil } }
    public var floatValue: Float? { if case .float(let v) = self { return v } else { return nil } }
    public var intsValue: [Int]? { if case .ints(let v) = self { return v } else { return nil } }
    public var floatsValue: [Float]? { if case .floats(let v) = self { return v } else { return nil } }
    public var tensorValue: Tensor? { if case .tensor(let v) = self { return v } else { return nil } }
    public var graphValue: Graph? { if case .graph(let v) = self { return v } else { return nil } }
    public var stringValue: String? {
        if case .string(let bytes) = self { return String(decoding: bytes, as: UTF8.self) }
        return nil
    }
    public var stringsValue: [String]? {
        if case .strings(let list) = self { return list.map { String(decoding: $0, as: UTF8.self) } }
        return nil
    }
}

/// A sparse tensor in ONNX's coordinate form: `values` at `indices` of a dense tensor of shape `dims`.
public struct SparseTensor: Sendable, Equatable {
    public var values: Tensor
    /// Either `[nnz, rank]` coordinates or `[nnz]` linearised indices (int64).
    public var indices: Tensor
    public var dims: [Int]
    public var valuesName: String

    public init(values: Tensor, indices: Tensor, dims: [Int], valuesName: String = "") {
        self.values = values
        self.indices = indices
        self.dims = dims
        self.valuesName = valuesName
    }
}
