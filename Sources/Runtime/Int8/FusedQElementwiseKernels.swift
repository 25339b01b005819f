import GraphIR
import QuantCore
import Tensors
import _CKernels

// Integer-domain Add, Mul, Concat and GlobalAveragePool between DequantizeLinear and QuantizeLinear:
// 8-bit codes in, 8-bit codes out, no float tensors in between.

/// `com.swiftquant::QAdd` / `QMul`: `y = Q_y(DQ_a(a) ∘ DQ_b(b))` with numpy broadcasting, ∘ = + or ×.
///
/// Inputs: `a`, `a_scale`, `a_zero_point`, `b`, `b_scale`, `b_zero_point`, `y_scale`, `y_zero_point`
/// (constants, per tensor); attributes `clip_min` / `clip_max` (a fused Relu/Clip). The operands are
/// dequantized with exactly DequantizeLinear's arithmetic and the result quantized with QuantizeLinear's
/// float32 arithmetic, so the output equals the unfused DequantizeLinear → Add/Mul → QuantizeLinear bit
/// for bit. Rows with contiguous operands (or one broadcast value, e.g. a squeeze-excite gate per channel)
/// run the vectorised C kernel (`sq_qbinary_u8`); a long row against one value becomes a 256-entry table
/// of its codes, then a lookup.
struct FusedQBinaryKernel: Kernel {
    enum Operation: Sendable { case add, multiply }

    let operation: Operation
    let left: ActivationQuantization
    let right: ActivationQuantization
    let output: ActivationQuantization
    let clamp: ClosedRange<Int32>
    let leftTable: [Float]
    let rightTable: [Float]
    /// The C kernel's constants, and the same with the operands swapped.
    let parameters: sq_qbinary
    let swappedParameters: sq_qbinary
    /// The instruction set of the C kernel (tests force each); `.reference` runs the Swift loop, its twin.
    var level: Int8GEMMLevel = .best

    init(_ context: KernelBuildContext, operation: Operation) throws {
        self.operation = operation
        left = try ActivationQuantization(scale: try context.constantInput(1, "a_scale"),
                                          zeroPoint: try context.constantInput(2, "a_zero_point"), what: "A")
        right = try ActivationQuantization(scale: try context.constantInput(4, "b_scale"),
                                           zeroPoint: try context.constantInput(5, "b_zero_point"), what: "B")
        output = try ActivationQuantization(scale: try context.constantInput(6, "y_scale"),
                                            zeroPoint: try context.constantInput(7, "y_zero_point"), what: "y")
        let bounds = try context.fusedClamp()
        clamp = output.clampRange(low: bounds.low, high: bounds.high)
        leftTable = FusedDequantizeKernel.table(left)
        rightTable = FusedDequantizeKernel.table(right)
        let (y, range) = (output, clamp)
        func constants(_ a: ActivationQuantization, _ b: ActivationQuantization) -> sq_qbinary {
            sq_qbinary(a_signed: a.dtype == .int8 ? 1 : 0, b_signed: b.dtype == .int8 ? 1 : 0, a_zero: a.zeroPoint,
                       b_zero: b.zeroPoint, a_scale: a.scale, b_scale: b.scale, y_scale: y.scale,
                       y_zero: y.zeroPoint, y_lower: range.lowerBound, y_upper: range.upperBound)
        }
        parameters = constants(left, right)
        swappedParameters = constants(right, left)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 3)
        guard a.dtype == left.dtype, b.dtype == right.dtype else {
            throw KernelError.invalid("operands are \(a.dtype) and \(b.dtype), their zero points \(left.dtype) and \(right.dtype)")
        }
        guard let shape = Shape.broadcast(a.shape, b.shape) else {
            throw KernelError.invalid("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let y = try context.output(output.dtype, shape: shape)
        guard y.tensor.count > 0 else { return [y.tensor] }
        let (rowShape, stridesA, stridesB) = Self.coalesced(shape, broadcastStrides(a.shape, to: shape),
                                                            broadcastStrides(b.shape, to: shape))
        var rows: [Row] = []
        forEachRow(shape: rowShape, stridesA: stridesA, stridesB: stridesB) { offset, offsetA, offsetB, count, strideA, strideB in
            // Long rows are cut so that every thread gets a share.
            let piece = max(1 << 14, (y.tensor.count + context.threadCount - 1) / context.threadCount)
            for start in stride(from: 0, to: count, by: piece) {
                rows.append(Row(output: offset + start, a: offsetA + start * strideA, b: offsetB + start * strideB,
                                count: min(piece, count - start), strideA: strideA, strideB: strideB))
            }
        }
        var probe = parameters
        let vectorised = level != .reference && sq_qbinary_u8(Int32(level.rawValue), 0, nil, nil, 0, 0, &probe, nil) != 0
        a.withUnsafeBytes { aRaw in
            b.withUnsafeBytes { bRaw in
                let aCodes = aRaw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let bCodes = bRaw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let target = y.bytes.assumingMemoryBound(to: UInt8.self)
                Parallel.forEach(rows.count, threads: context.threadCount) { index in
                    let row = rows[index]
                    if !vectorised || !runVectorised(row, aCodes, bCodes, target) {
                        referenceRow(row, aCodes, bCodes, target)
                    }
                }
            }
        }
        return [y.tensor]
    }

    /// One run of output elements: `count` of them from `output`, the operands stepping by their strides.
    private struct Row {
        var output: Int, a: Int, b: Int, count: Int, strideA: Int, strideB: Int
    }

    /// Merges adjacent axes through which both operands step contiguously (or which both broadcast), and
    /// drops axes of one element, so that rows are as long as possible.
    private static func coalesced(_ shape: [Int], _ a: [Int], _ b: [Int]) -> ([Int], [Int], [Int]) {
        var merged: [Int] = [], stridesA: [Int] = [], stridesB: [Int] = []
        for axis in shape.indices where shape[axis] != 1 {
            let size = shape[axis]
            if let last = merged.indices.last, stridesA[last] == a[axis] * size, stridesB[last] == b[axis] * size {
                merged[last] *= size
                stridesA[last] = a[axis]
                stridesB[last] = b[axis]
            } else {
                merged.append(size)
                stridesA.append(a[axis])
                stridesB.append(b[axis])
            }
        }
        return (merged, stridesA, stridesB)
    }

    /// Every byte pattern once: the operand codes of a 256-entry table.
    private static let allCodes: [UInt8] = (0...255).map { UInt8($0) }

    /// The C kernel over a row with one operand contiguous and the other contiguous or one value (the
    /// operation commutes exactly, so either may be the contiguous one); false for other strides. A long
    /// row against one value runs as a table of the 256 codes, made by the same kernel, then a lookup.
    private func runVectorised(_ row: Row, _ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>,
                               _ y: UnsafeMutablePointer<UInt8>) -> Bool {
        var (first, second, step, constants) = (a + row.a, b + row.b, row.strideB, parameters)
        if row.strideA == 0, row.strideB == 1 {
            (first, second, step, constants) = (b + row.b, a + row.a, 0, swappedParameters)
        } else if row.strideA != 1 || row.strideB > 1 {
            return false
        }
        let level = Int32(self.level.rawValue), multiply: Int32 = operation == .multiply ? 1 : 0
        guard step == 0, row.count >= 512 else {
            _ = sq_qbinary_u8(level, multiply, first, second, step, row.count, &constants, y + row.output)
            return true
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { table in
            Self.allCodes.withUnsafeBufferPointer { codes in
                _ = sq_qbinary_u8(level, multiply, codes.baseAddress!, second, 0, 256, &constants, table.baseAddress!)
            }
            _ = sq_lookup_u8(level, table.baseAddress!, first, y + row.output, row.count)
        }
        return true
    }

    /// The reference twin: the dequantized operands from the 256-entry tables, QuantizeLinear's arithmetic.
    private func referenceRow(_ row: Row, _ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>,
                              _ target: UnsafeMutablePointer<UInt8>) {
        let scale = output.scale, zero = Float(output.zeroPoint)
        let lower = Float(clamp.lowerBound), upper = Float(clamp.upperBound)
        let multiply = operation == .multiply
        let low = lower - zero - 1, high = upper - zero + 1
        let zeroCode = Int32(zero), lowCode = Int32(lower), highCode = Int32(upper)
        leftTable.withUnsafeBufferPointer { la in
            rightTable.withUnsafeBufferPointer { lb in
                for i in 0..<row.count {
                    let x = la[Int(a[row.a + i * row.strideA])], w = lb[Int(b[row.b + i * row.strideB])]
                    let code = roundedCode((multiply ? x * w : x + w) / scale, low: low, high: high) &+ zeroCode
                    target[row.output + i] = UInt8(truncatingIfNeeded: code < lowCode ? lowCode : (code > highCode ? highCode : code))
                }
            }
        }
    }
}

/// `com.swiftquant::QConcat`: `y = Q_y(Concat(DQ_1(x_1), …))` along `axis`. Inputs are triples
/// (`x_i`, `x_i_scale`, `x_i_zero_point`) followed by `y_scale`, `y_zero_point`; each input's codes map to
/// output codes through a 256-entry table (exactly QuantizeLinear of DequantizeLinear), copied unchanged
/// where the parameters agree.
struct FusedQConcatKernel: Kernel {
    let axis: Int
    let inputs: [ActivationQuantization]
    let output: ActivationQuantization
    /// Per input: the code table, or nil when it is the identity.
    let tables: [[UInt8]?]

    init(_ context: KernelBuildContext) throws {
        axis = try context.int("axis")
        let count = context.node.inputs.count
        guard count >= 5, (count - 2) % 3 == 0 else { throw KernelError.invalid("QConcat takes triples then y_scale, y_zero_point") }
        output = try ActivationQuantization(scale: try context.constantInput(count - 2, "y_scale"),
                                            zeroPoint: try context.constantInput(count - 1, "y_zero_point"), what: "y")
        inputs = try (0..<((count - 2) / 3)).map { i in
            try ActivationQuantization(scale: try context.constantInput(3 * i + 1, "scale"),
                                       zeroPoint: try context.constantInput(3 * i + 2, "zero_point"), what: "input \(i)")
        }
        let output = self.output
        tables = inputs.map { $0 == output ? nil : FusedRequantizeKernel.table(from: $0, to: output) }
    }

    func run(_ values: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let parts = try (0..<inputs.count).map { try required(values, 3 * $0) }
        let rank = parts[0].rank
        guard let axis = Shape.normalizedAxis(self.axis, rank: rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for rank \(rank)")
        }
        var shape = parts[0].shape
        shape[axis] = 0
        for (index, part) in parts.enumerated() {
            guard part.dtype == inputs[index].dtype, part.rank == rank,
                  (0..<rank).allSatisfy({ $0 == axis || part.shape[$0] == parts[0].shape[$0] }) else {
                throw KernelError.invalidInput(index: 3 * index, reason: "shape \(part.shape) or type \(part.dtype) does not fit")
            }
            shape[axis] += part.shape[axis]
        }
        var y = try Tensor(zeros: output.dtype, shape: shape)
        let outer = shape[..<axis].reduce(1, *), rowBytes = shape[axis...].reduce(1, *)
        guard y.count > 0 else { return [y] }
        y.withUnsafeMutableBytes { target in
            var start = 0
            for (index, part) in parts.enumerated() {
                let chunk = part.shape[axis...].reduce(1, *)
                part.withUnsafeBytes { source in
                    for o in 0..<outer {
                        let from = UnsafeRawBufferPointer(rebasing: source[(o * chunk)..<((o + 1) * chunk)])
                        let to = UnsafeMutableRawBufferPointer(rebasing: target[(o * rowBytes + start)..<(o * rowBytes + start + chunk)])
                        if let table = tables[index] {
                            applyByteTable(table, from, to, threads: 1)
                        } else {
                            to.copyMemory(from: from)
                        }
                    }
                }
                start += chunk
            }
        }
        return [y]
    }
}

/// `com.swiftquant::QGlobalAveragePool`: `y[n, c] = Q_y(mean(DQ_x(x[n, c, …])))` in integers:
///
///     acc = Σ x − count·x_zp,   y = clamp(round(acc · x_scale / (y_scale · count)) + y_zp)
///
/// with the fixed-point multiplier of `QMatMul` (within one step of the unfused float mean).
/// Inputs: `x`, `x_scale`, `x_zero_point`, `y_scale`, `y_zero_point`.
struct FusedQGlobalAveragePoolKernel: Kernel {
    let input: ActivationQuantization
    let output: ActivationQuantization

    init(_ context: KernelBuildContext) throws {
        input = try ActivationQuantization(scale: try context.constantInput(1, "x_scale"),
                                           zeroPoint: try context.constantInput(2, "x_zero_point"), what: "x")
        output = try ActivationQuantization(scale: try context.constantInput(3, "y_scale"),
                                            zeroPoint: try context.constantInput(4, "y_zero_point"), what: "y")
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let (x, sums, positions) = try channelSums(inputs)
        let requantized = try requantization(positions)
        var y = try Tensor(zeros: output.dtype, shape: Array(x.shape.prefix(2)) + [Int](repeating: 1, count: x.rank - 2))
        sums.withUnsafeBufferPointer { acc in
            y.withUnsafeMutableBytes { raw in
                if output.dtype == .uint8 {
                    requantized.columns.apply(acc.baseAddress!, count: acc.count, firstColumn: 0, perColumn: false,
                                              output: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), stride: 1)
                } else {
                    requantized.columns.apply(acc.baseAddress!, count: acc.count, firstColumn: 0, perColumn: false,
                                              output: raw.baseAddress!.assumingMemoryBound(to: Int8.self), stride: 1)
                }
            }
        }
        return [y]
    }

    /// The reference twin: the same sums, requantized with `FixedPointMultiplier.scaled` element by element.
    func runReference(_ inputs: [Tensor?]) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let values = try x.quantizedIntegerValues(input: 0)
        let planes = x.shape.prefix(2).reduce(1, *), positions = values.count / max(planes, 1)
        let acc = (0..<planes).map { plane in
            values[(plane * positions)..<((plane + 1) * positions)].reduce(Int32(0)) { $0 &+ ($1 &- input.zeroPoint) }
        }
        let requantized = try requantization(positions)
        let codes = FusedInt8Reference.requantized(acc, multipliers: requantized.multipliers,
                                                   zeroPoint: output.zeroPoint, range: requantized.clamp)
        let shape = Array(x.shape.prefix(2)) + [Int](repeating: 1, count: x.rank - 2)
        return [output.dtype == .uint8 ? try Tensor(shape: shape, scalars: codes.map { UInt8($0) })
                                       : try Tensor(shape: shape, scalars: codes.map { Int8($0) })]
    }

    private func requantization(_ positions: Int) throws -> QuantizedOutput {
        try QuantizedOutput(output, realMultipliers: [Double(input.scale) / (Double(output.scale) * Double(max(positions, 1)))],
                            low: nil, high: nil)
    }

    /// `Σ (x − x_zp)` per (image, channel) plane, wrapping in int32.
    private func channelSums(_ inputs: [Tensor?]) throws -> (Tensor, [Int32], Int) {
        let x = try required(inputs, 0)
        guard x.dtype == input.dtype, x.rank >= 3 else {
            throw KernelError.invalidInput(index: 0, reason: "x must be \(input.dtype) of rank ≥ 3, got \(x.dtype) \(x.shape)")
        }
        let planes = x.shape[0] * x.shape[1], positions = x.count / max(planes, 1)
        var sums = [Int32](repeating: 0, count: planes)
        let zero = input.zeroPoint
        // int8 codes are summed as uint8 (x ^ 0x80 = x + 128), then the 128 per code taken off.
        let flip: UInt8 = input.dtype == .int8 ? 0x80 : 0
        let offset = input.dtype == .int8 ? zero &+ 128 : zero
        x.withUnsafeBytes { raw in
            sums.withUnsafeMutableBufferPointer { sums in
                let codes = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                for plane in 0..<planes {
                    let sum = Int32(truncatingIfNeeded: sq_sum_u8(codes + plane * positions, positions, flip))
                    sums[plane] = sum &- Int32(truncatingIfNeeded: positions) &* offset
                }
            }
        }
        return (x, sums, positions)
    }
}

/// `com.swiftquant::QLookup`: `y = table[x]` on 8-bit codes — an absorbed `DequantizeLinear → f →
/// QuantizeLinear` with f an elementwise activation, whose table holds for each of the 256 codes exactly
/// what the three reference kernels compute (see `IntegerFusionRewriter.fuseLookup`). Input `x`;
/// attribute `table`: 256 codes of the output type, indexed by the byte of x's code.
struct FusedQLookupKernel: Kernel {
    let table: [UInt8]
    let dtype: DType
    /// The instruction set of the C kernel (tests force each); `.reference` runs the Swift loop.
    var level: Int8GEMMLevel = .best

    init(_ context: KernelBuildContext) throws {
        guard let tensor = context.node.attributes["table"]?.tensorValue, tensor.count == 256,
              tensor.dtype == .uint8 || tensor.dtype == .int8 else {
            throw KernelError.invalidAttribute("table", "must be 256 uint8 or int8 codes")
        }
        table = tensor.withUnsafeBytes { Array($0.bindMemory(to: UInt8.self)) }
        dtype = tensor.dtype
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == .uint8 || x.dtype == .int8 else {
            throw KernelError.invalidInput(index: 0, reason: "x must be uint8 or int8, got \(x.dtype)")
        }
        let y = try context.output(dtype, shape: x.shape)
        x.withUnsafeBytes { source in
            table.withUnsafeBufferPointer { buffer in
                // An empty run only asks whether the level has a kernel.
                let level = Int32(level.rawValue), lookup = buffer.baseAddress!
                guard source.count > 0, sq_lookup_u8(level, lookup, nil, nil, 0) != 0 else {
                    applyByteTable(table, source, UnsafeMutableRawBufferPointer(start: y.bytes, count: source.count),
                                   threads: context.threadCount)
                    return
                }
                let from = source.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let to = y.bytes.assumingMemoryBound(to: UInt8.self)
                Parallel.forRanges(source.count, threads: context.threadCount, grain: 1 << 16) { range in
                    _ = sq_lookup_u8(level, lookup, from + range.lowerBound, to + range.lowerBound, range.count)
                }
            }
        }
        return [y.tensor]
    }
}
