import Tensors

/// What shape inference knows about one value: its element type, its shape, and — for small integer
/// or bool tensors such as shapes, axes and indices — its elements, which may be symbolic (`seq`).
///
/// Tracking elements is what lets `Shape → Gather → Unsqueeze → Concat → Reshape` chains resolve: the
/// `Shape` of a `[batch, seq, 384]` value holds `[batch, seq, 384]`, and the `Reshape` reading the
/// concatenation learns its target from it.
struct InferredType: Sendable, Equatable {
    var dtype: DType?
    /// nil when even the rank is unknown.
    var shape: [Dim]?
    /// Row-major elements of a rank-0 or rank-1 integer/bool tensor (bools as 0/1), when known.
    var value: [Dim]?
    /// A declared non-tensor type (sequence, map, optional), passed along untouched.
    var nonTensor: ValueType?

    /// Elements beyond this count are not tracked: shapes and index lists are short.
    static let maxTrackedElements = 64

    static let unknown = InferredType()

    init(dtype: DType? = nil, shape: [Dim]? = nil, value: [Dim]? = nil) {
        self.dtype = dtype
        self.shape = shape
        self.value = value
    }

    /// A known rank-1 integer value.
    static func vector(_ elements: [Dim], dtype: DType = .int64) -> InferredType {
        InferredType(dtype: dtype, shape: [.value(elements.count)], value: elements)
    }

    /// From a declared type; non-tensor types are carried as they are.
    init(declared type: ValueType?) {
        switch type {
        case .tensor(let elementType, let shape)?:
            self.init(dtype: elementType, shape: shape)
        case let other?:
            self.init()
            nonTensor = other
        case nil:
            self.init()
        }
    }

    /// From a constant tensor: its type and shape, and its elements when small and integral.
    init(constant tensor: Tensor) {
        self.init(dtype: tensor.dtype, shape: tensor.shape.map { .value($0) })
        if tensor.rank <= 1, tensor.count <= InferredType.maxTrackedElements, let integers = tensor.integerElements {
            value = integers.map { .value($0) }
        }
    }

    var rank: Int? { shape?.count }

    /// True when something is known worth writing down.
    var hasTensorInfo: Bool { nonTensor == nil && (dtype != nil || shape != nil) }

    /// Every element known as a number.
    var integerValue: [Int]? {
        guard let value else { return nil }
        let numbers = value.compactMap(\.intValue)
        return numbers.count == value.count ? numbers : nil
    }

    /// The type to record in `ValueInfo`.
    var valueType: ValueType? {
        if let nonTensor { return nonTensor }
        return hasTensorInfo ? .tensor(elementType: dtype, shape: shape) : nil
    }

    /// Keeps `value` only when it is consistent with the shape and small enough.
    mutating func normalizeValue() {
        guard let elements = value else { return }
        guard let shape, shape.count <= 1, let count = Dim.staticElementCount(shape), count == elements.count,
              count <= InferredType.maxTrackedElements, dtype.map({ $0.isInteger || $0 == .bool }) ?? true
        else {
            value = nil
            return
        }
    }
}

extension Dim {
    /// True when this is a concrete number.
    var isValue: Bool { intValue != nil }

    /// The product of fully known dims; nil when any is not a number or the product overflows.
    static func staticElementCount(_ dims: [Dim]) -> Int? {
        var count = 1
        for dim in dims {
            guard let value = dim.intValue, value >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: value)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// The symbol for `min(s, bound)`: what `x[0:s]` gives on an axis of known length `bound` — e.g.
    /// the position ids a BERT export slices from a `[1, 512]` table with the sequence length.
    static func minimum(of symbol: String, _ bound: Int) -> Dim { .symbol("min(\(symbol),\(bound))") }

    /// `(s, bound)` when this dim is a `minimum(of:_:)` symbol.
    var minimumParts: (symbol: String, bound: Int)? {
        guard case .symbol(let name) = self, name.hasPrefix("min("), name.hasSuffix(")"),
              let comma = name.lastIndex(of: ",") else { return nil }
        let symbol = String(name[name.index(name.startIndex, offsetBy: 4)..<comma])
        guard let bound = Int(name[name.index(after: comma)..<name.index(before: name.endIndex)]) else { return nil }
        return (symbol, bound)
    }

    /// The numpy broadcast of two dims, or nil when they cannot broadcast.
    ///
    /// A symbol broadcast with 1 stays the symbol; a symbol with a number n ≠ 1 gives n (the symbol must
    /// be n or 1 at run time); two different symbols, or anything with an unknown dim, give unknown
    /// unless a number other than 1 settles it. `s` with `min(s, n)` (n ≥ 1) gives `s`: when s ≤ n they
    /// are equal, and when s > n the broadcast is only valid if n is 1.
    static func broadcast(_ a: Dim, _ b: Dim) -> Dim? {
        if case .symbol(let x) = a, let clamp = b.minimumParts, clamp.symbol == x, clamp.bound >= 1 { return a }
        if case .symbol(let y) = b, let clamp = a.minimumParts, clamp.symbol == y, clamp.bound >= 1 { return b }
        switch (a, b) {
        case (.value(let x), .value(let y)):
            if x == y || y == 1 { return a }
            if x == 1 { return b }
            return nil
        case (.value(1), _): return b
        case (_, .value(1)): return a
        case (.value, _): return a
        case (_, .value): return b
        case (.symbol(let x), .symbol(let y)) where x == y: return a
        default: return .unknown
        }
    }

    /// Two dims that must be equal, merged into the most specific one; nil when two numbers differ.
    static func unify(_ a: Dim, _ b: Dim) -> Dim? {
        switch (a, b) {
        case (.value(let x), .value(let y)): return x == y ? a : nil
        case (.value, _): return a
        case (_, .value): return b
        case (.symbol, _): return a
        default: return b
        }
    }

    /// Two dims from alternatives (e.g. the branches of `If`): kept only where they agree.
    static func join(_ a: Dim, _ b: Dim) -> Dim { a == b ? a : .unknown }

    /// The product of dims: a number, a single symbol times ones, or unknown.
    static func product<C: Collection>(_ dims: C) -> Dim where C.Element == Dim {
        SymbolicProduct(dims)?.dim ?? .unknown
    }

    /// The sum of dims: a number, a symbol plus zeros, or unknown.
    static func sum<C: Collection>(_ dims: C) -> Dim where C.Element == Dim {
        var total = 0
        var symbolic: Dim? = nil
        for dim in dims {
            switch dim {
            case .value(let v):
                let (sum, overflow) = total.addingReportingOverflow(v)
                if overflow { return .unknown }
                total = sum
            case .symbol:
                if symbolic != nil { return .unknown }
                symbolic = dim
            case .unknown:
                return .unknown
            }
        }
        if let symbolic { return total == 0 ? symbolic : .unknown }
        return .value(total)
    }

    // MARK: Element arithmetic on tracked values

    static func add(_ a: Dim, _ b: Dim) -> Dim {
        if case .value(let x) = a, case .value(let y) = b {
            let (r, o) = x.addingReportingOverflow(y)
            return o ? .unknown : .value(r)
        }
        if a == .value(0) { return b }
        if b == .value(0) { return a }
        return .unknown
    }

    static func subtract(_ a: Dim, _ b: Dim) -> Dim {
        if case .value(let x) = a, case .value(let y) = b {
            let (r, o) = x.subtractingReportingOverflow(y)
            return o ? .unknown : .value(r)
        }
        if b == .value(0) { return a }
        if case .symbol(let x) = a, case .symbol(let y) = b, x == y { return .value(0) }
        return .unknown
    }

    static func multiply(_ a: Dim, _ b: Dim) -> Dim {
        if case .value(let x) = a, case .value(let y) = b {
            let (r, o) = x.multipliedReportingOverflow(by: y)
            return o ? .unknown : .value(r)
        }
        if a == .value(0) || b == .value(0) { return .value(0) }
        if a == .value(1) { return b }
        if b == .value(1) { return a }
        return .unknown
    }

    /// Integer division where truncating and flooring agree (both operands non-negative), or `x / 1`.
    static func divide(_ a: Dim, _ b: Dim) -> Dim {
        if case .value(let x) = a, case .value(let y) = b, x >= 0, y > 0 { return .value(x / y) }
        if b == .value(1) { return a }
        return .unknown
    }

    /// 1 when equal, 0 when different, unknown when it cannot tell. Symbols stand for sizes, so a
    /// symbol never equals a negative number (the `-1` placeholders of exported shape arithmetic).
    static func equal(_ a: Dim, _ b: Dim) -> Dim {
        compare(a, b, whenEqual: true, ==)
    }

    /// Compares two dims with `order`; for equal symbols `whenEqual` decides. A symbol (a size, ≥ 0)
    /// against a negative number compares as 0 would: every size lies on the same side.
    static func compare(_ a: Dim, _ b: Dim, whenEqual: Bool, _ order: (Int, Int) -> Bool) -> Dim {
        switch (a, b) {
        case (.value(let x), .value(let y)): return .value(order(x, y) ? 1 : 0)
        case (.symbol(let x), .symbol(let y)) where x == y: return .value(whenEqual ? 1 : 0)
        case (.symbol, .value(let y)) where y < 0: return .value(order(0, y) ? 1 : 0)
        case (.value(let x), .symbol) where x < 0: return .value(order(x, 0) ? 1 : 0)
        default: return .unknown
        }
    }
}

/// A product of dims as `coefficient · Π symbolᵉ`, for cancelling symbols (e.g. resolving the -1 of a
/// `Reshape` of `[batch, seq, 384]` to `[batch, -1, 12, 32]` as `seq`).
struct SymbolicProduct: Equatable {
    var coefficient: Int
    var symbols: [String: Int]

    /// nil when a dim is unknown, negative, or the product overflows.
    init?<C: Collection>(_ dims: C) where C.Element == Dim {
        coefficient = 1
        symbols = [:]
        for dim in dims {
            switch dim {
            case .value(let v):
                guard v >= 0 else { return nil }
                let (product, overflow) = coefficient.multipliedReportingOverflow(by: v)
                if overflow { return nil }
                coefficient = product
            case .symbol(let name):
                symbols[name, default: 0] += 1
            case .unknown:
                return nil
            }
        }
    }

    /// The quotient when it is exact and symbolic factors cancel; nil otherwise.
    func dividing(by divisor: SymbolicProduct) -> SymbolicProduct? {
        guard divisor.coefficient != 0, coefficient % divisor.coefficient == 0 else { return nil }
        var result = self
        result.coefficient = coefficient / divisor.coefficient
        for (name, power) in divisor.symbols {
            guard let own = result.symbols[name], own >= power else { return nil }
            result.symbols[name] = own == power ? nil : own - power
        }
        return result
    }

    /// As a single dim: a number, one symbol (coefficient 1, power 1), or unknown.
    var dim: Dim {
        if symbols.isEmpty { return .value(coefficient) }
        if coefficient == 0 { return .value(0) }
        if coefficient == 1, symbols.count == 1, let (name, power) = symbols.first, power == 1 { return .symbol(name) }
        return .unknown
    }
}

extension DType {
    /// The element type for an ONNX data-type code held in an `Int` attribute (the shared table lives in
    /// Tensors as `DType(onnxCode: Int32)`).
    init?(onnxCode code: Int) {
        guard let narrow = Int32(exactly: code) else { return nil }
        self.init(onnxCode: narrow)
    }

    /// The inclusive range of an integer type that fits in `Int`; nil for other types.
    var integerRange: ClosedRange<Int>? {
        switch self {
        case .int8: return Int(Int8.min)...Int(Int8.max)
        case .uint8: return 0...Int(UInt8.max)
        case .int16: return Int(Int16.min)...Int(Int16.max)
        case .uint16: return 0...Int(UInt16.max)
        case .int32: return Int(Int32.min)...Int(Int32.max)
        case .uint32: return 0...Int(UInt32.max)
        case .int64: return Int.min...Int.max
        case .uint64: return 0...Int.max
        case .int4: return -8...7
        case .uint4: return 0...15
        case .bool: return 0...1
        default: return nil
        }
    }
}
