import Tensors

/// Element-wise operators: unary maps, broadcasting arithmetic, comparisons, logic, `Where`, `Cast`.
extension NodeInference {
    /// Type and shape of input `index`, elements dropped.
    func sameAsInput(_ index: Int) -> InferredType {
        InferredType(dtype: input(index).dtype, shape: input(index).shape)
    }

    func negationOrAbsolute() throws -> InferredType {
        var result = sameAsInput(0)
        result.value = input(0).value?.map { element -> Dim in
            guard let number = element.intValue else {
                // |symbol| is the symbol (dims are non-negative); -symbol is not tracked.
                return node.opType == "Abs" ? element : .unknown
            }
            if number == Int.min { return .unknown }
            return .value(node.opType == "Abs" ? abs(number) : -number)
        }
        return result
    }

    func dropout() throws -> [InferredType] {
        [sameAsInput(0), InferredType(dtype: .bool, shape: input(0).shape)]
    }

    func logicalNot() -> InferredType {
        var result = InferredType(dtype: .bool, shape: input(0).shape)
        result.value = input(0).value?.map { element in element.intValue.map { .value($0 == 0 ? 1 : 0) } ?? .unknown }
        return result
    }

    /// The numpy broadcast of the shapes of `indices` (omitted inputs skipped), typed `dtype`.
    func broadcastOutput(of indices: [Int], dtype: DType?) throws -> InferredType {
        InferredType(dtype: dtype, shape: try broadcastShape(of: indices.filter(has)))
    }

    /// The numpy broadcast of several input shapes; nil when any rank is unknown.
    func broadcastShape(of indices: [Int]) throws -> [Dim]? {
        var result: [Dim] = []
        for index in indices {
            guard let shape = input(index).shape else { return nil }
            result = try broadcast(result, shape)
        }
        return result
    }

    func broadcast(_ a: [Dim], _ b: [Dim]) throws -> [Dim] {
        let rank = max(a.count, b.count)
        return try (0..<rank).map { axis in
            let left = axis < rank - a.count ? Dim.value(1) : a[axis - (rank - a.count)]
            let right = axis < rank - b.count ? Dim.value(1) : b[axis - (rank - b.count)]
            guard let dim = Dim.broadcast(left, right) else {
                throw mismatch("shapes \(a) and \(b) do not broadcast")
            }
            return dim
        }
    }

    /// The common element type of `indices`; an error when two known types differ.
    func commonType(_ indices: [Int]) throws -> DType? {
        var common: DType? = nil
        for index in indices where has(index) {
            guard let type = input(index).dtype else { continue }
            if let known = common, known != type {
                throw mismatch("inputs have different element types \(known) and \(type)")
            }
            common = type
        }
        return common
    }

    /// The tracked elements of `indices` broadcast to `shape` (rank ≤ 1), or nil when any is untracked.
    func broadcastElements(_ indices: [Int], to shape: [Dim]?) -> [[Dim]]? {
        guard let shape, shape.count <= 1, let count = Dim.staticElementCount(shape),
              count <= InferredType.maxTrackedElements else { return nil }
        var result: [[Dim]] = []
        for index in indices {
            guard let elements = elements(index) else { return nil }
            if elements.count == count {
                result.append(elements)
            } else if elements.count == 1 {
                result.append(Array(repeating: elements[0], count: count))
            } else {
                return nil
            }
        }
        return result
    }

    /// `Add`, `Sub`, `Mul`, `Div`, `Mod`, bit operations and the variadic `Max`/`Min`/`Sum`/`Mean`.
    func arithmetic() throws -> InferredType {
        let operands = Array(0..<inputCount).filter(has)
        var result = try broadcastOutput(of: operands, dtype: try commonType(operands))
        guard let dtype = result.dtype, dtype.isInteger,
              let columns = broadcastElements(operands, to: result.shape), let first = columns.first
        else { return result }
        let combine: ((Dim, Dim) -> Dim)?
        switch node.opType {
        case "Add", "Sum": combine = Dim.add
        case "Sub": combine = Dim.subtract
        case "Mul": combine = Dim.multiply
        case "Div": combine = Dim.divide
        case "Max": combine = { a, b in a.isValue && b.isValue ? .value(max(a.intValue!, b.intValue!)) : .unknown }
        case "Min": combine = { a, b in a.isValue && b.isValue ? .value(min(a.intValue!, b.intValue!)) : .unknown }
        default: combine = nil
        }
        guard let combine else { return result }
        result.value = columns.dropFirst().reduce(first) { partial, column in zip(partial, column).map(combine) }
        // Integer results outside the element type would wrap at run time; do not claim them.
        if let bounds = dtype.integerRange, let elements = result.value {
            result.value = elements.map { element in
                if let number = element.intValue, !bounds.contains(number) { return .unknown }
                return element
            }
        }
        return result
    }

    func comparison() throws -> InferredType {
        _ = try commonType([0, 1])
        var result = try broadcastOutput(of: [0, 1], dtype: .bool)
        guard let columns = broadcastElements([0, 1], to: result.shape) else { return result }
        let compare: (Dim, Dim) -> Dim
        switch node.opType {
        case "Equal": compare = Dim.equal
        case "Greater": compare = { Dim.compare($0, $1, whenEqual: false, >) }
        case "Less": compare = { Dim.compare($0, $1, whenEqual: false, <) }
        case "GreaterOrEqual": compare = { Dim.compare($0, $1, whenEqual: true, >=) }
        default: compare = { Dim.compare($0, $1, whenEqual: true, <=) }
        }
        result.value = zip(columns[0], columns[1]).map(compare)
        return result
    }

    func logical() throws -> InferredType {
        var result = try broadcastOutput(of: [0, 1], dtype: .bool)
        guard let columns = broadcastElements([0, 1], to: result.shape) else { return result }
        result.value = zip(columns[0], columns[1]).map { a, b -> Dim in
            guard let x = a.intValue.map({ $0 != 0 }), let y = b.intValue.map({ $0 != 0 }) else {
                // One known operand can still decide And/Or.
                let known = a.intValue ?? b.intValue
                if node.opType == "And", known == 0 { return .value(0) }
                if node.opType == "Or", let known, known != 0 { return .value(1) }
                return .unknown
            }
            switch node.opType {
            case "And": return .value(x && y ? 1 : 0)
            case "Or": return .value(x || y ? 1 : 0)
            default: return .value(x != y ? 1 : 0)
            }
        }
        return result
    }

    func whereOutput() throws -> InferredType {
        var result = try broadcastOutput(of: [0, 1, 2], dtype: try commonType([1, 2]))
        guard let columns = broadcastElements([0, 1, 2], to: result.shape) else { return result }
        result.value = (0..<columns[0].count).map { i in
            guard let condition = columns[0][i].intValue else {
                return columns[1][i] == columns[2][i] ? columns[1][i] : .unknown
            }
            return condition != 0 ? columns[1][i] : columns[2][i]
        }
        return result
    }

    /// `Cast`/`CastLike`: the shape stays; tracked integer elements survive when they fit the target.
    func cast(to target: DType?) throws -> InferredType {
        if node.opType == "Cast", node[attribute: "to"] == nil { throw invalidAttribute("to", "is required") }
        var result = InferredType(dtype: target, shape: input(0).shape)
        guard let elements = input(0).value, let target, let bounds = target.integerRange,
              input(0).dtype.map({ $0.isInteger || $0 == .bool }) ?? false
        else { return result }
        result.value = elements.map { element in
            switch element {
            case .value(let number):
                if target == .bool { return .value(number != 0 ? 1 : 0) }
                return bounds.contains(number) ? element : .unknown
            case .symbol:
                // A symbolic size fits any 32- or 64-bit integer; whether it is zero is not known.
                return target == .int64 || target == .int32 || target == .uint64 || target == .uint32 ? element : .unknown
            case .unknown:
                return .unknown
            }
        }
        return result
    }
}
