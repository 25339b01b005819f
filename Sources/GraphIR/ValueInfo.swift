import Tensors

/// One dimension of a declared shape: a number, a named symbol (`batch`), or unknown.
public enum Dim: Sendable, Hashable, CustomStringConvertible {
    case value(Int)
    case symbol(String)
    case unknown

    public var intValue: Int? { if case .value(let v) = self { return v } else { return nil } }

    public var description: String {
        switch self {
        case .value(let v): return String(v)
        case .symbol(let s): return s
        case .unknown: return "?"
        }
    }
}

/// The declared type of a value. Tensors carry an element type (nil when the file has one we do not
/// represent) and an optional shape; the other ONNX type kinds are kept for round-tripping.
public indirect enum ValueType: Sendable, Equatable {
    case tensor(elementType: DType?, shape: [Dim]?)
    case sequence(ValueType?)
    case optional(ValueType?)
    case map(keyType: DType?, valueType: ValueType?)
    case sparseTensor(elementType: DType?, shape: [Dim]?)
    /// A type kind this IR does not model; the ONNX element code is kept where one exists.
    case unsupported(onnxElementType: Int32)

    public var tensorElementType: DType? {
        if case .tensor(let t, _) = self { return t } else { return nil }
    }
    public var tensorShape: [Dim]? {
        if case .tensor(_, let s) = self { return s } else { return nil }
    }
}

/// A named value with its declared type (graph inputs, outputs, and intermediate annotations).
public struct ValueInfo: Sendable, Equatable {
    public var name: String
    public var type: ValueType?
    public var docString: String

    public init(name: String, type: ValueType? = nil, docString: String = "") {
        self.name = name
        self.type = type
        self.docString = docString
    }

    /// A float/int tensor value with a fully known or symbolic shape.
    public init(name: String, dtype: DType, shape: [Dim]?) {
        self.init(name: name, type: .tensor(elementType: dtype, shape: shape))
    }
}
