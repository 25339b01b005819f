import Tensors

// ArgMax, ArgMin and TopK: reductions that return int64 positions along one axis.
//
// NaN ranks above every number (numpy's argmax/argmin and sort treat it so): ArgMax and ArgMin return
// the first NaN, and TopK with largest=1 lists NaNs first. Equal values keep the lower index first,
// except ArgMax/ArgMin with select_last_index=1.

// MARK: - ArgMax / ArgMin

struct ArgExtremumKernel: Kernel {
    let opType: String
    let findsMaximum: Bool
    let axis: Int
    let keepDimensions: Bool
    let selectsLastIndex: Bool

    struct Visitor: NumericVisitor {
        let kernel: ArgExtremumKernel, x: Tensor, split: AxisSplit, outputShape: [Int], context: ExecutionContext
        func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
            var output = try Tensor(zeros: .int64, shape: outputShape)
            x.withUnsafeBufferPointer(as: T.self) { source in
                output.withUnsafeMutableBufferPointer(as: Int64.self) { target in
                    guard let input = source.baseAddress, let result = target.baseAddress else { return }
                    switch (kernel.findsMaximum, kernel.selectsLastIndex) {
                    case (true, false): Self.search(input, result, split, MaximumSearch<T, FirstOfEqual>.self, context)
                    case (true, true): Self.search(input, result, split, MaximumSearch<T, LastOfEqual>.self, context)
                    case (false, false): Self.search(input, result, split, MinimumSearch<T, FirstOfEqual>.self, context)
                    case (false, true): Self.search(input, result, split, MinimumSearch<T, LastOfEqual>.self, context)
                    }
                }
            }
            return output
        }

        static func search<T, Rule: ExtremumRule>(
            _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<Int64>, _ split: AxisSplit, _: Rule.Type,
            _ context: ExecutionContext
        ) where Rule.Element == T {
            let (outer, length, inner) = (split.outer, split.length, split.inner)
            let grain = outer * length * inner > ElementwiseParallel.cheapGrain ? 1 : outer
            ElementwiseParallel.forRanges(outer, grain: grain, context: context) { range in
                withUnsafeTemporaryAllocation(of: T.self, capacity: inner) { best in
                    for o in range {
                        let base = x + o * length * inner, indices = y + o * inner
                        for j in 0..<inner { best[j] = base[j]; indices[j] = 0 }
                        for l in 1..<length {
                            let row = base + l * inner
                            for j in 0..<inner where Rule.replaces(best[j], with: row[j]) {
                                best[j] = row[j]
                                indices[j] = Int64(l)
                            }
                        }
                    }
                }
            }
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        // Widening keeps order, and the int64 output is not narrowed.
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0)
        guard let axis = Shape.normalizedAxis(axis, rank: x.rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for rank \(x.rank)")
        }
        guard x.shape[axis] > 0 else {
            throw KernelError.invalidInput(index: 0, reason: "\(opType) over an empty axis \(axis) of shape \(x.shape)")
        }
        var outputShape = x.shape
        if keepDimensions { outputShape[axis] = 1 } else { outputShape.remove(at: axis) }
        let split = AxisSplit(shape: x.shape, axes: axis..<(axis + 1))
        let visitor = Visitor(kernel: self, x: x, split: split, outputShape: outputShape, context: context)
        guard let result = try visitor.dispatch(x.dtype) else { throw ElementwiseChecks.unsupported(opType, x.dtype) }
        return [result]
    }
}

/// Whether a candidate replaces the current best while scanning in index order.
protocol ExtremumRule {
    associatedtype Element: ElementwiseNumeric
    static func replaces(_ best: Element, with candidate: Element) -> Bool
}
/// Tie-breaking: keep the first or the last of equal values.
protocol TieRule { static var keepsLast: Bool { get } }
enum FirstOfEqual: TieRule { static var keepsLast: Bool { false } }
enum LastOfEqual: TieRule { static var keepsLast: Bool { true } }

/// NaN is the extreme for both directions, so the first (or last) NaN wins.
enum MaximumSearch<Element: ElementwiseNumeric, Tie: TieRule>: ExtremumRule {
    @inline(__always) static func replaces(_ best: Element, with candidate: Element) -> Bool {
        if best.isNaNElement { return Tie.keepsLast && candidate.isNaNElement }
        if candidate.isNaNElement { return true }
        return Tie.keepsLast ? candidate >= best : candidate > best
    }
}
enum MinimumSearch<Element: ElementwiseNumeric, Tie: TieRule>: ExtremumRule {
    @inline(__always) static func replaces(_ best: Element, with candidate: Element) -> Bool {
        if best.isNaNElement { return Tie.keepsLast && candidate.isNaNElement }
        if candidate.isNaNElement { return true }
        return Tie.keepsLast ? candidate <= best : candidate < best
    }
}

// MARK: - TopK

/// The k largest (or smallest) elements along `axis`, sorted, with their int64 indices. Ties keep the
/// lower index first. `sorted=0` leaves the order unspecified, so sorted output serves it too.
struct TopKKernel: Kernel {
    let axis: Int
    let largest: Bool
    /// Opset 1 takes k from an attribute; later opsets from input 1.
    let attributeK: Int?

    struct Visitor: NumericVisitor {
        let x: Tensor, k: Int, largest: Bool, split: AxisSplit, outputShape: [Int], context: ExecutionContext
        func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> [Tensor] {
            var values = try Tensor(zeros: x.dtype, shape: outputShape)
            var indices = try Tensor(zeros: .int64, shape: outputShape)
            let (outer, length, inner) = (split.outer, split.length, split.inner)
            let (k, largest) = (k, largest)
            guard k > 0, outer * inner > 0 else { return [values, indices] }
            x.withUnsafeBufferPointer(as: T.self) { source in
            values.withUnsafeMutableBufferPointer(as: T.self) { valueBuffer in
            indices.withUnsafeMutableBufferPointer(as: Int64.self) { indexBuffer in
                let input = source.baseAddress!
                let valueOut = valueBuffer.baseAddress!, indexOut = indexBuffer.baseAddress!
                let slices = outer * inner
                let grain = outer * length * inner > ElementwiseParallel.cheapGrain / 4 ? 1 : slices
                ElementwiseParallel.forRanges(slices, grain: grain, context: context) { range in
                    var order = [Int](repeating: 0, count: length)
                    for slice in range {
                        let o = slice / inner, j = slice % inner
                        let base = input + o * length * inner + j
                        for l in 0..<length { order[l] = l }
                        // "a before b": NaN ranks highest; equal values by index.
                        let before: (Int, Int) -> Bool = { a, b in
                            let va = base[a * inner], vb = base[b * inner]
                            let above = largest ? Self.ranksAbove(va, vb) : Self.ranksAbove(vb, va)
                            if above { return true }
                            let below = largest ? Self.ranksAbove(vb, va) : Self.ranksAbove(va, vb)
                            return !below && a < b
                        }
                        Self.partialSort(&order, k: k, by: before)
                        let outBase = o * k * inner + j
                        for r in 0..<k {
                            valueOut[outBase + r * inner] = base[order[r] * inner]
                            indexOut[outBase + r * inner] = Int64(order[r])
                        }
                    }
                }
            }}}
            return [values, indices]
        }

        @inline(__always) static func ranksAbove<T: ElementwiseNumeric>(_ a: T, _ b: T) -> Bool {
            a > b || (a.isNaNElement && !b.isNaNElement)
        }

        /// Puts the first `k` elements of `order` under `before` in front, sorted.
        static func partialSort(_ order: inout [Int], k: Int, by before: (Int, Int) -> Bool) {
            if k * 4 >= order.count {
                order.sort(by: before)
                return
            }
            // Keep a sorted window of the best k and insert the rest where they belong.
            var window = Array(order[0..<k])
            window.sort(by: before)
            for candidate in order[k...] where before(candidate, window[k - 1]) {
                var position = k - 1
                while position > 0 && before(candidate, window[position - 1]) { position -= 1 }
                window.removeLast()
                window.insert(candidate, at: position)
            }
            order.replaceSubrange(0..<k, with: window)
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0)
        let k: Int
        if let attributeK {
            k = attributeK
        } else {
            let kTensor = try required(inputs, 1)
            guard kTensor.count == 1, kTensor.rank <= 1 else {
                throw KernelError.invalidInput(
                    index: 1, reason: "TopK K must hold one integer, got shape \(kTensor.shape)")
            }
            k = try kTensor.integerValues()[0]
        }
        guard let axis = Shape.normalizedAxis(axis, rank: x.rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for rank \(x.rank)")
        }
        guard k >= 0, k <= x.shape[axis] else {
            throw KernelError.invalid(
                "TopK: k = \(k) must be in 0...\(x.shape[axis]) (axis \(axis) of shape \(x.shape))")
        }
        var outputShape = x.shape
        outputShape[axis] = k
        let split = AxisSplit(shape: x.shape, axes: axis..<(axis + 1))
        let visitor = Visitor(x: x, k: k, largest: largest, split: split, outputShape: outputShape, context: context)
        guard let result = try visitor.dispatch(x.dtype) else { throw ElementwiseChecks.unsupported("TopK", x.dtype) }
        return result
    }
}

// MARK: - Registration

extension KernelRegistry {
    mutating func registerIndexReductionKernels() {
        for (opType, findsMaximum) in [("ArgMax", true), ("ArgMin", false)] {
            // select_last_index arrived in opset 12; reading it with default 0 serves every version.
            register(opType, since: 1) { context in
                ArgExtremumKernel(opType: opType, findsMaximum: findsMaximum,
                                  axis: try context.int("axis", default: 0),
                                  keepDimensions: try context.int("keepdims", default: 1) != 0,
                                  selectsLastIndex: try context.int("select_last_index", default: 0) != 0)
            }
        }
        register("TopK", since: 1) { context in
            TopKKernel(axis: try context.int("axis", default: -1), largest: true, attributeK: try context.int("k"))
        }
        register("TopK", since: 10) { context in
            TopKKernel(axis: try context.int("axis", default: -1), largest: true, attributeK: nil)
        }
        register("TopK", since: 11) { context in
            TopKKernel(axis: try context.int("axis", default: -1),
                       largest: try context.int("largest", default: 1) != 0, attributeK: nil)
        }
    }
}
