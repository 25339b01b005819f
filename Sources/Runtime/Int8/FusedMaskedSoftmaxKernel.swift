import GraphIR
import Tensors
import _CKernels

/// `com.swiftquant::MaskedSoftmax`: attention's `Add(scores, mask) → Softmax(axis −1)
/// [→ Where(IsNaN(s), c, s)]` in one pass per row.
///
///     y = softmax(a + b) along the last axis,   then y = isnan(y) ? c : y   (when `c` is given)
///
/// Inputs: 0 `a`, 1 `b` (broadcast together, numpy style), 2 `c` (optional, a one-element constant of the
/// same type). The sum is rounded to float32 before the softmax, as the Add computes it, and the softmax is
/// the Softmax kernel's, so float32 results equal the unfused graph's bit for bit. Other float types and
/// scalar sums run the unfused kernels.
struct FusedMaskedSoftmaxKernel: Kernel {
    /// The NaN replacement `c`, when the Where was absorbed.
    let replacement: Tensor?
    /// The instruction-set level of the softmax rows (tests force each).
    var level = TransformerKernelLevel.best

    init(_ context: KernelBuildContext) throws {
        try self.init(replacement: try context.constantInput(2, "nan_value"))
    }

    init(replacement: Tensor?) throws {
        if let replacement, replacement.count != 1 {
            throw KernelError.invalid("nan_value must hold one value, got shape \(replacement.shape)")
        }
        self.replacement = replacement
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 1)
        guard a.dtype == .float32, b.dtype == .float32, replacement.map({ $0.dtype == .float32 }) ?? true,
              let shape = Shape.broadcast(a.shape, b.shape), let length = shape.last, length > 0
        else {
            return [try unfused(a, b, context: context)]
        }
        let rows = try Shape.elementCount(shape) / length
        guard rows > 0 else { return [try Tensor(zeros: .float32, shape: shape)] }
        let aRows = BroadcastRows(input: a.shape, output: shape), bRows = BroadcastRows(input: b.shape, output: shape)
        let y = try context.output(.float32, shape: shape)
        let out = y.pointer(as: Float.self)
        let nanValue = replacement?.floats[0]
        let level = self.level
        a.withUnsafeBufferPointer(as: Float.self) { aBuffer in
            b.withUnsafeBufferPointer(as: Float.self) { bBuffer in
                let aBase = aBuffer.baseAddress!, bBase = bBuffer.baseAddress!
                let grain = ElementwiseParallel.rowGrain(rows: rows, rowLength: length,
                                                         elements: ElementwiseParallel.transcendentalGrain)
                let leftStep = aRows.lastStride, rightStep = bRows.lastStride
                // One pass per row when an operand is read with step 1 (the sum is symmetric: it goes first).
                let vectorised = level == .avx512 && (leftStep == 1 || rightStep == 1)
                ElementwiseParallel.forRanges(rows, grain: grain, context: context) { range in
                    for row in range {
                        let target = out + row * length
                        let left = aBase + aRows.offset(row), right = bBase + bRows.offset(row)
                        if vectorised {
                            let (x, mask, maskStep) = leftStep == 1 ? (left, right, rightStep) : (right, left, leftStep)
                            Self.maskedRow(x, mask: mask, maskStep: maskStep, into: target, length: length,
                                           nanValue: nanValue, level: level)
                            continue
                        }
                        if leftStep == 1 && rightStep == 1 {
                            for i in 0..<length { target[i] = left[i] + right[i] }
                        } else {
                            for i in 0..<length { target[i] = left[i &* leftStep] + right[i &* rightStep] }
                        }
                    }
                    if !vectorised {
                        Self.normalize(out + range.lowerBound * length, rows: range.count, length: length,
                                       nanValue: nanValue, level: level)
                    }
                }
            }
        }
        return [y.tensor]
    }

    /// `softmax(x + mask)` of one row into `y` (which may be `x`), NaN rows replaced by `nanValue` if given:
    /// `sq_masked_softmax_row` at the AVX-512 level, otherwise the sum and `normalize`.
    @inline(__always)
    static func maskedRow(_ x: UnsafePointer<Float>, mask: UnsafePointer<Float>, maskStep: Int,
                          into y: UnsafeMutablePointer<Float>, length: Int, nanValue: Float?,
                          level: TransformerKernelLevel) {
        if level == .avx512,
           sq_masked_softmax_row(level.rawValue, x, mask, maskStep, y, length, nanValue == nil ? 0 : 1, nanValue ?? 0) != 0 {
            return
        }
        for i in 0..<length { y[i] = x[i] + mask[i &* maskStep] }
        normalize(y, rows: 1, length: length, nanValue: nanValue, level: level)
    }

    /// Softmax of `rows` contiguous rows of `length` sums in place, then NaN replaced by `nanValue` if given.
    static func normalize(_ block: UnsafeMutablePointer<Float>, rows: Int, length: Int, nanValue: Float?,
                          level: TransformerKernelLevel) {
        if level == .reference {
            let softmax = SoftmaxKernel(opType: "Softmax", axis: -1, coercesTo2D: false, logarithmic: false)
            for row in 0..<rows { softmax.normalizeRow(UnsafePointer(block + row * length), block + row * length, length) }
        } else {
            VectorMath.softmaxRows(block, block, rows: rows, length: length,
                                   level: level == .portable ? SGEMM.Level.portable : nil)
        }
        if let nanValue {
            for i in 0..<(rows * length) where block[i].isNaN { block[i] = nanValue }
        }
    }

    /// The operators the kernel replaces, run one after the other.
    private func unfused(_ a: Tensor, _ b: Tensor, context: ExecutionContext) throws -> Tensor {
        let sum = try BinaryArithmeticKernel<AddOperation>(opType: "Add").run([a, b], context: context)[0]
        let s = try SoftmaxKernel(opType: "Softmax", axis: -1, coercesTo2D: false, logarithmic: false)
            .run([sum], context: context)[0]
        guard let replacement else { return s }
        let isNaN = try FloatClassKernel(infinities: nil).run([s], context: context)[0]
        return try WhereKernel().run([isNaN, replacement, s], context: context)[0]
    }
}

/// Where row `r` of a broadcast output (all axes but the last) starts in one input, and the input's
/// step along the last axis (0 when broadcast there).
struct BroadcastRows {
    /// Output extents of the leading axes and the input's stride on each (0 where broadcast).
    private let extents: [Int]
    private let strides: [Int]
    let lastStride: Int

    init(input: [Int], output: [Int]) {
        let rank = output.count, lead = rank - input.count
        var strides = [Int](repeating: 0, count: rank)
        var step = 1
        for axis in stride(from: rank - 1, through: lead, by: -1) {
            let extent = input[axis - lead]
            strides[axis] = extent == 1 && output[axis] != 1 ? 0 : step
            step *= extent
        }
        extents = Array(output.dropLast())
        self.strides = Array(strides.dropLast())
        lastStride = rank == 0 ? 0 : strides[rank - 1]
    }

    /// The element offset of row `row`'s first element.
    @inline(__always)
    func offset(_ row: Int) -> Int {
        var remaining = row, offset = 0
        for axis in stride(from: extents.count - 1, through: 0, by: -1) {
            let extent = extents[axis]
            offset += (remaining % extent) * strides[axis]
            remaining /= extent
        }
        return offset
    }
}
