import Tensors

// Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
// ReduceSumSquare, ReduceLogSum, ReduceLogSumExp.
//
// Axes are an attribute before opset 18 (ReduceSum: before 13) and an optional input after, which also
// brought `noop_with_empty_axes`. Reducing an empty set gives the fold's identity: 0 for sums, 1 for
// products, −inf/+inf (integer min/max) for max/min, then the finishing step, so LogSum and LogSumExp
// give −inf and Mean NaN (the spec leaves Mean undefined; NaN is numpy's and the ONNX reference's
// answer, ONNX Runtime returns 0).

// MARK: - Folds

/// An associative combination with an identity, folded over the reduced elements.
protocol ReductionFold: Sendable {
    static func identity<T: ElementwiseNumeric>(_: T.Type) -> T
    static func combine<T: ElementwiseNumeric>(_ accumulator: T, _ x: T) -> T
}

enum SumFold: ReductionFold {
    @inline(__always) static func identity<T: ElementwiseNumeric>(_: T.Type) -> T { T.zeroValue }
    @inline(__always) static func combine<T: ElementwiseNumeric>(_ a: T, _ x: T) -> T { T.add(a, x) }
}
enum ProductFold: ReductionFold {
    @inline(__always) static func identity<T: ElementwiseNumeric>(_: T.Type) -> T { T.oneValue }
    @inline(__always) static func combine<T: ElementwiseNumeric>(_ a: T, _ x: T) -> T { T.multiply(a, x) }
}
enum MaximumFold: ReductionFold {
    @inline(__always) static func identity<T: ElementwiseNumeric>(_: T.Type) -> T { T.lowestValue }
    @inline(__always) static func combine<T: ElementwiseNumeric>(_ a: T, _ x: T) -> T { T.maximum(a, x) }
}
enum MinimumFold: ReductionFold {
    @inline(__always) static func identity<T: ElementwiseNumeric>(_: T.Type) -> T { T.highestValue }
    @inline(__always) static func combine<T: ElementwiseNumeric>(_ a: T, _ x: T) -> T { T.minimum(a, x) }
}

/// What happens to each element before it is folded.
protocol ReductionPrelude: Sendable {
    static func apply<T: ElementwiseNumeric>(_ x: T) -> T
}
enum IdentityPrelude: ReductionPrelude {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ x: T) -> T { x }
}
enum MagnitudePrelude: ReductionPrelude {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ x: T) -> T { T.magnitude(x) }
}
enum SquarePrelude: ReductionPrelude {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ x: T) -> T { T.multiply(x, x) }
}

/// Folds `count` contiguous elements. Eight independent accumulators let the compiler keep them in one
/// vector register; the order is fixed, so the result does not depend on threads.
@inline(__always)
func foldRow<T: ElementwiseNumeric, Fold: ReductionFold, Prelude: ReductionPrelude>(
    _ x: UnsafePointer<T>, _ count: Int, _: Fold.Type, _: Prelude.Type
) -> T {
    // The NaN-propagating select of a float max does not vectorize on its own; these conditions are
    // resolved when the function is specialised.
    if T.self == Float.self, Fold.self == MaximumFold.self, Prelude.self == IdentityPrelude.self {
        let maximum = float32RowMaximum(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), count)
        return unsafeBitCast(maximum, to: T.self)
    }
    let identity = Fold.identity(T.self)
    var a0 = identity, a1 = identity, a2 = identity, a3 = identity
    var a4 = identity, a5 = identity, a6 = identity, a7 = identity
    var i = 0
    while i + 8 <= count {
        a0 = Fold.combine(a0, Prelude.apply(x[i]))
        a1 = Fold.combine(a1, Prelude.apply(x[i + 1]))
        a2 = Fold.combine(a2, Prelude.apply(x[i + 2]))
        a3 = Fold.combine(a3, Prelude.apply(x[i + 3]))
        a4 = Fold.combine(a4, Prelude.apply(x[i + 4]))
        a5 = Fold.combine(a5, Prelude.apply(x[i + 5]))
        a6 = Fold.combine(a6, Prelude.apply(x[i + 6]))
        a7 = Fold.combine(a7, Prelude.apply(x[i + 7]))
        i += 8
    }
    while i < count {
        a0 = Fold.combine(a0, Prelude.apply(x[i]))
        i += 1
    }
    return Fold.combine(Fold.combine(Fold.combine(a0, a1), Fold.combine(a2, a3)),
                        Fold.combine(Fold.combine(a4, a5), Fold.combine(a6, a7)))
}

/// The largest of `count` float32s (NaN if any is NaN, −inf for none), eight lanes at a time.
func float32RowMaximum(_ x: UnsafePointer<Float>, _ count: Int) -> Float {
    var lanes = SIMD8<Float>(repeating: -.infinity)
    var sawNaN = SIMDMask<SIMD8<Int32>>(repeating: false)
    var i = 0
    while i + 8 <= count {
        let values = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
        lanes.replace(with: values, where: values .> lanes)
        sawNaN .|= values .!= values
        i += 8
    }
    if any(sawNaN) { return .nan }
    var maximum = lanes.max()
    while i < count {
        if x[i] > maximum || x[i].isNaN { maximum = x[i] }
        i += 1
    }
    return maximum
}

/// How the folded value becomes the output.
enum ReductionFinish: Sendable {
    case none, mean, squareRoot, logarithm

    /// Applied through Double: for float32 this rounds to the same value as a float32 operation would
    /// (Double carries more than twice float32's bits), and integers truncate toward zero.
    @inline(__always)
    func apply<T: ElementwiseNumeric>(_ value: T, count: Int) -> T {
        switch self {
        case .none: return value
        case .mean: return T.exactlyConverted(value.doubleValue / Double(count)) ?? T.zeroValue
        case .squareRoot: return T.exactlyConverted(value.doubleValue.squareRoot()) ?? T.zeroValue
        case .logarithm: return T.exactlyConverted(Double.naturalLog(value.doubleValue)) ?? T.zeroValue
        }
    }
}

// MARK: - Axis layout

/// A tensor seen as [outer, length, inner] around a block of consecutive axes.
struct AxisSplit {
    let outer: Int, length: Int, inner: Int

    init(shape: [Int], axes: Range<Int>) {
        outer = shape[..<axes.lowerBound].reduce(1, *)
        length = shape[axes].reduce(1, *)
        inner = shape[axes.upperBound...].reduce(1, *)
    }
}

/// Normalised, sorted, de-duplicated axes; throws for an axis outside `-rank..<rank`.
func normalizedAxes(_ axes: [Int], rank: Int, opType: String) throws -> [Int] {
    var result = Set<Int>()
    for axis in axes {
        guard let normalized = Shape.normalizedAxis(axis, rank: rank) else {
            throw KernelError.invalid("\(opType): axis \(axis) is out of range for rank \(rank)")
        }
        result.insert(normalized)
    }
    return result.sorted()
}

/// `tensor` with its axes reordered by `permutation` (output axis i is input axis permutation[i]),
/// copied into a new contiguous tensor; works on any whole-byte dtype.
func permutedCopy(_ tensor: Tensor, permutation: [Int]) throws -> Tensor {
    let shape = permutation.map { tensor.shape[$0] }
    let sourceStrides = Shape.strides(tensor.shape)
    let permutedStrides = permutation.map { sourceStrides[$0] }
    var output = try Tensor(zeros: tensor.dtype, shape: shape)
    func copy<Word: FixedWidthInteger>(_: Word.Type) {
        tensor.withUnsafeBytes { sourceBytes in
            output.withUnsafeMutableBytes { targetBytes in
                let source = sourceBytes.baseAddress!.assumingMemoryBound(to: Word.self)
                let target = targetBytes.baseAddress!.assumingMemoryBound(to: Word.self)
                // Walk the output in order, reading the source through permuted strides.
                forEachRow(shape: shape, stridesA: permutedStrides, stridesB: permutedStrides) {
                    start, offset, _, count, step, _ in
                    for i in 0..<count { target[start + i] = source[offset + i * step] }
                }
            }
        }
    }
    switch tensor.dtype.bitWidth {
    case 8: copy(UInt8.self)
    case 16: copy(UInt16.self)
    case 32: copy(UInt32.self)
    case 64: copy(UInt64.self)
    default: throw KernelError.unsupported("reordering axes of \(tensor.dtype) tensors")
    }
    return output
}

// MARK: - Reduce kernel

/// Folds `data` over `axes` with `Fold`/`Prelude`, then applies `finish`. `output` must have the
/// reduced element count.
struct Reducer<T: ElementwiseNumeric, Fold: ReductionFold, Prelude: ReductionPrelude> {
    let finish: ReductionFinish

    /// Reduces a [outer, length, inner] view: each output (o, j) folds x[o, 0..<length, j].
    func reduce(_ x: UnsafePointer<T>, _ split: AxisSplit, into y: UnsafeMutablePointer<T>,
                context: ExecutionContext) {
        let (outer, length, inner) = (split.outer, split.length, split.inner)
        let total = outer * length * inner
        if inner == 1 {
            // Contiguous rows: MiniLM's reductions over the hidden size.
            let grain = ElementwiseParallel.rowGrain(rows: outer, rowLength: length)
            ElementwiseParallel.forRanges(outer, grain: grain, context: context) { rows in
                for row in rows {
                    let value = foldRow(x + row * length, length, Fold.self, Prelude.self)
                    y[row] = finish.apply(value, count: length)
                }
            }
            return
        }
        // Reduction over a leading or middle block: accumulate whole inner rows, which vectorizes.
        // Work items are (outer index, inner block) so that both tall and wide shapes split evenly.
        let block = min(inner, 1024)
        let blocksPerOuter = (inner + block - 1) / block
        let items = outer * blocksPerOuter
        let grain = total > ElementwiseParallel.cheapGrain ? 1 : items
        ElementwiseParallel.forRanges(items, grain: grain, context: context) { range in
            for item in range {
                let o = item / blocksPerOuter
                let start = (item % blocksPerOuter) * block
                let end = min(start + block, inner)
                let accumulator = y + o * inner
                let identity = Fold.identity(T.self)
                for j in start..<end { accumulator[j] = identity }
                var row = x + o * length * inner
                for _ in 0..<length {
                    for j in start..<end { accumulator[j] = Fold.combine(accumulator[j], Prelude.apply(row[j])) }
                    row += inner
                }
                if finish != .none {
                    for j in start..<end { accumulator[j] = finish.apply(accumulator[j], count: length) }
                }
            }
        }
    }
}

/// log Σ exp(x) over contiguous rows, shifted by the largest finite element for stability (as the ONNX
/// reference does); a row with no finite element uses shift 0.
func logSumExpRows<T: ElementwiseFloat>(
    _ x: UnsafePointer<T>, rows: Int, length: Int, into y: UnsafeMutablePointer<T>
) {
    for row in 0..<rows {
        let values = x + row * length
        var shift = -T.infinity
        for i in 0..<length where values[i].isFinite { shift = Swift.max(shift, values[i]) }
        if !shift.isFinite { shift = 0 }
        var sum: T = 0
        for i in 0..<length { sum += T.exponential(values[i] - shift) }
        y[row] = T.naturalLog(sum) + shift
    }
}

/// The reduce operators. `axesFromInput` selects opset 13 (ReduceSum) / 18 (others) semantics.
struct ReduceKernel<Fold: ReductionFold, Prelude: ReductionPrelude>: Kernel {
    let opType: String
    let finish: ReductionFinish
    /// Log-sum-exp instead of a fold (Fold/Prelude are then unused).
    var logSumExp = false
    /// Bool data is accepted (ReduceMax/ReduceMin from opset 20).
    var allowsBool = false
    let keepDimensions: Bool
    /// Axes from the attribute (nil when absent); unused when `axesFromInput`.
    let attributeAxes: [Int]?
    let axesFromInput: Bool
    let noopWithEmptyAxes: Bool

    struct Visitor: NumericVisitor {
        let kernel: ReduceKernel, data: Tensor, axes: [Int], outputShape: [Int], context: ExecutionContext
        func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
            try kernel.reduce(data, T.self, axes: axes, outputShape: outputShape, context: context)
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let data = try required(inputs, 0)
        if data.dtype == .bool && allowsBool {
            // Opset 20 bool max/min: any/all, computed on the same bytes read as uint8 (0 or 1).
            let bytes = try data.withUnsafeBytes { try Tensor(dtype: .uint8, shape: data.shape, bytes: $0) }
            var reduced = try run([bytes] + inputs.dropFirst(), context: context)[0]
            // An empty ReduceMin yields 255 (uint8's max), which is `true`.
            reduced.withUnsafeMutableBufferPointer(as: UInt8.self) { values in
                for i in values.indices { values[i] = min(values[i], 1) }
            }
            return [try reduced.withUnsafeBytes { try Tensor(dtype: .bool, shape: reduced.shape, bytes: $0) }]
        }
        var requested: [Int]? = attributeAxes
        if axesFromInput, let axesTensor = optional(inputs, 1) {
            guard axesTensor.rank <= 1 else {
                throw KernelError.invalidInput(
                    index: 1, reason: "\(opType) axes must be 1-D, got shape \(axesTensor.shape)")
            }
            requested = try axesTensor.integerValues()
        }
        var axes = try normalizedAxes(requested ?? [], rank: data.rank, opType: opType)
        // With noop_with_empty_axes, empty axes reduce each element on its own, so the shape stays and
        // only the per-element steps apply (ReduceSumSquare squares, ReduceLogSum takes the log), as in
        // the ONNX reference and ONNX Runtime.
        if axes.isEmpty && !noopWithEmptyAxes { axes = Array(0..<data.rank) }
        let reduced = Set(axes)
        let outputShape = data.shape.indices.compactMap { axis -> Int? in
            reduced.contains(axis) ? (keepDimensions ? 1 : nil) : data.shape[axis]
        }
        let visitor = Visitor(kernel: self, data: data, axes: axes, outputShape: outputShape, context: context)
        guard let result = try visitor.dispatch(data.dtype) else {
            throw ElementwiseChecks.unsupported(opType, data.dtype)
        }
        return [result]
    }

    func reduce<T: ElementwiseNumeric>(_ data: Tensor, _: T.Type, axes: [Int], outputShape: [Int],
                                       context: ExecutionContext) throws -> Tensor {
        var output = try Tensor(zeros: data.dtype, shape: outputShape)
        // Drop size-1 axes (they change nothing) and check whether the reduced axes are one block.
        let reduced = Set(axes)
        let significant = data.shape.indices.filter { data.shape[$0] != 1 }
        let reducedPositions = significant.indices.filter { reduced.contains(significant[$0]) }
        let isBlock = reducedPositions.isEmpty
            || reducedPositions.last! - reducedPositions.first! + 1 == reducedPositions.count
        var source = data
        var split: AxisSplit
        let compactShape = significant.map { data.shape[$0] }
        if isBlock {
            let block = reducedPositions.isEmpty ? compactShape.count..<compactShape.count
                : reducedPositions.first!..<(reducedPositions.last! + 1)
            split = AxisSplit(shape: compactShape, axes: block)
        } else {
            // Scattered axes: move the reduced ones last, then reduce contiguous rows.
            let kept = significant.filter { !reduced.contains($0) }
            let moved = significant.filter { reduced.contains($0) }
            let unit = data.shape.indices.filter { data.shape[$0] == 1 }
            source = try permutedCopy(data, permutation: kept + moved + unit)
            split = AxisSplit(outer: kept.map { data.shape[$0] }.reduce(1, *),
                              length: moved.map { data.shape[$0] }.reduce(1, *), inner: 1)
        }
        if split.length == 0 || source.count == 0 {
            // An empty reduced set: the fold's identity, finished (or an empty output).
            let value = logSumExp ? T.lowestValue : finish.apply(Fold.identity(T.self), count: 0)
            output.withUnsafeMutableBufferPointer(as: T.self) { y in
                for i in y.indices { y[i] = value }
            }
            return output
        }
        if logSumExp { return try logSumExpTensor(source, split: split, output: output) }
        // Size-1 reduced axes alone (or none) leave a length-1 fold, which `finish` still applies to.
        source.withUnsafeBufferPointer(as: T.self) { x in
            output.withUnsafeMutableBufferPointer(as: T.self) { y in
                Reducer<T, Fold, Prelude>(finish: finish).reduce(x.baseAddress!, split, into: y.baseAddress!,
                                                                 context: context)
            }
        }
        return output
    }

    /// Log-sum-exp over the reduced block of a non-empty `source`.
    private func logSumExpTensor(_ source: Tensor, split: AxisSplit, output: Tensor) throws -> Tensor {
        // Contiguous rows: move the reduced block last when it is not already.
        var rows = source
        if split.inner != 1 {
            rows = try permutedCopy(source.reshaped([split.outer, split.length, split.inner]), permutation: [0, 2, 1])
        }
        var result = output
        func compute<T: ElementwiseFloat>(_: T.Type) {
            rows.withUnsafeBufferPointer(as: T.self) { x in
                result.withUnsafeMutableBufferPointer(as: T.self) { y in
                    logSumExpRows(x.baseAddress!, rows: split.outer * split.inner, length: split.length,
                                  into: y.baseAddress!)
                }
            }
        }
        switch source.dtype {
        case .float32: compute(Float.self)
        case .float64: compute(Double.self)
        default:
            // Integers (opsets before 28): computed in Double, truncated toward zero as ONNX Runtime does.
            guard let integral = try IntegerLogSumExp(rows: rows, split: split, output: output).dispatch(source.dtype)
            else { throw ElementwiseChecks.unsupported(opType, source.dtype) }
            result = integral
        }
        return result
    }

    struct IntegerLogSumExp: NumericVisitor {
        let rows: Tensor, split: AxisSplit, output: Tensor
        func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
            let values = rows.withUnsafeBufferPointer(as: T.self) { $0.map(\.doubleValue) }
            var results = [Double](repeating: 0, count: split.outer * split.inner)
            values.withUnsafeBufferPointer { x in
                results.withUnsafeMutableBufferPointer { y in
                    logSumExpRows(x.baseAddress!, rows: split.outer * split.inner, length: split.length,
                                  into: y.baseAddress!)
                }
            }
            var converted = output
            converted.withUnsafeMutableBufferPointer(as: T.self) { target in
                for i in target.indices { target[i] = T.exactlyConverted(results[i]) ?? T.lowestValue }
            }
            return converted
        }
    }
}

extension AxisSplit {
    init(outer: Int, length: Int, inner: Int) {
        self.outer = outer
        self.length = length
        self.inner = inner
    }
}

// MARK: - Registration

extension KernelRegistry {
    mutating func registerReductionKernels() {
        func add<Fold: ReductionFold, Prelude: ReductionPrelude>(
            _ opType: String, _: Fold.Type, _: Prelude.Type, finish: ReductionFinish = .none,
            logSumExp: Bool = false, allowsBool: Bool = false, inputAxesSince: Int
        ) {
            register(opType, since: 1) { context in
                ReduceKernel<Fold, Prelude>(
                    opType: opType, finish: finish, logSumExp: logSumExp, allowsBool: allowsBool,
                    keepDimensions: try context.int("keepdims", default: 1) != 0,
                    attributeAxes: context.has("axes") ? try context.ints("axes") : nil,
                    axesFromInput: false, noopWithEmptyAxes: false).specialized
            }
            register(opType, since: inputAxesSince) { context in
                ReduceKernel<Fold, Prelude>(
                    opType: opType, finish: finish, logSumExp: logSumExp, allowsBool: allowsBool,
                    keepDimensions: try context.int("keepdims", default: 1) != 0,
                    attributeAxes: nil, axesFromInput: true,
                    noopWithEmptyAxes: try context.int("noop_with_empty_axes", default: 0) != 0).specialized
            }
        }
        add("ReduceSum", SumFold.self, IdentityPrelude.self, inputAxesSince: 13)
        add("ReduceMean", SumFold.self, IdentityPrelude.self, finish: .mean, inputAxesSince: 18)
        add("ReduceMax", MaximumFold.self, IdentityPrelude.self, allowsBool: true, inputAxesSince: 18)
        add("ReduceMin", MinimumFold.self, IdentityPrelude.self, allowsBool: true, inputAxesSince: 18)
        add("ReduceProd", ProductFold.self, IdentityPrelude.self, inputAxesSince: 18)
        add("ReduceL1", SumFold.self, MagnitudePrelude.self, inputAxesSince: 18)
        add("ReduceL2", SumFold.self, SquarePrelude.self, finish: .squareRoot, inputAxesSince: 18)
        add("ReduceSumSquare", SumFold.self, SquarePrelude.self, inputAxesSince: 18)
        add("ReduceLogSum", SumFold.self, IdentityPrelude.self, finish: .logarithm, inputAxesSince: 18)
        add("ReduceLogSumExp", SumFold.self, IdentityPrelude.self, logSumExp: true,
            inputAxesSince: 18)
    }
}
