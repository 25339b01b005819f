import GraphIR
import Tensors
import _CKernels

// Kernels for ONNX MatMulInteger (10), QLinearMatMul (10, 21), ConvInteger (10) and QLinearConv (10).
// Integer products are exact; int32 accumulation wraps on overflow (ONNX: "the accumulation may
// overflow if and only if in 32 bits"); requantization follows the ONNX reference implementation (see
// `requantize`). The int32 accumulators come from the int8 GEMM at `level`; at `.reference` they come
// from the direct loops of IntegerMatMul.swift / IntegerConvolution.swift, the fast path's twin.

extension KernelRegistry {
    mutating func registerQLinearKernels() {
        // Constant weights are packed for the int8 GEMM here, once per session.
        register("MatMulInteger", since: 10) { MatMulIntegerKernel(constantB: $0.constant(1)) }
        register("QLinearMatMul", since: 10) { QLinearMatMulKernel(version: 10, constantB: $0.constant(3)) }
        register("QLinearMatMul", since: 21) { QLinearMatMulKernel(version: 21, constantB: $0.constant(3)) }
        register("ConvInteger", since: 10) {
            try ConvIntegerKernel(attributes: IntegerConvAttributes($0), constantW: $0.constant(1))
        }
        register("QLinearConv", since: 10) {
            try QLinearConvKernel(attributes: IntegerConvAttributes($0), constantW: $0.constant(3))
        }
    }
}

/// Checks that an 8-bit operand and its zero point have allowed, matching types.
private func checkEightBit(_ value: Tensor, index: Int, zeroPoint: Tensor?, zeroPointIndex: Int) throws {
    guard value.dtype == .int8 || value.dtype == .uint8 else {
        throw KernelError.invalidInput(index: index, reason: "must be int8 or uint8, got \(value.dtype)")
    }
    if let zeroPoint, zeroPoint.dtype != value.dtype {
        throw KernelError.invalidInput(
            index: zeroPointIndex, reason: "zero point of \(zeroPoint.dtype) must have the operand's type \(value.dtype)")
    }
}

/// A single-element tensor's value as Float (for scales) — ONNX per-tensor parameters may be any rank.
private func singleScale(_ tensor: Tensor, index: Int, name: String) throws -> Float {
    guard tensor.isSingleElement else {
        throw KernelError.invalidInput(index: index, reason: "\(name) must be a scalar, got shape \(tensor.shape)")
    }
    return try tensor.quantizationScaleValues(input: index)[0]
}

// MARK: - MatMulInteger

/// ONNX MatMulInteger: `Y = (A - a_zero_point) @ (B - b_zero_point)` in int32, numpy-matmul batching.
/// Zero points are per tensor, per row of A, or per column of B.
struct MatMulIntegerKernel: Kernel {
    let level: Int8GEMMLevel
    /// B packed at session creation when it is a constant.
    let prepacked: PackedIntegerMatMulB?

    init(constantB: Tensor?, level: Int8GEMMLevel = .best) {
        self.level = level
        prepacked = level == .reference ? nil : constantB.flatMap(PackedIntegerMatMulB.init)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 1)
        let aZero = optional(inputs, 2), bZero = optional(inputs, 3)
        try checkEightBit(a, index: 0, zeroPoint: aZero, zeroPointIndex: 2)
        try checkEightBit(b, index: 1, zeroPoint: bZero, zeroPointIndex: 3)
        let shape = try IntegerMatMulShape(a: a.shape, b: b.shape)
        let aZeros = try expandedZeroPoints(aZero, shape: shape, side: .rows, index: 2)
        let bZeros = try expandedZeroPoints(bZero, shape: shape, side: .columns, index: 3)
        var y = try Tensor(zeros: .int32, shape: shape.outputShape)
        y.withUnsafeMutableBufferPointer(as: Int32.self) { output in
            guard let output = output.baseAddress else { return }
            integerMatMulAccumulators(a: a, b: b, prepacked: prepacked, shape: shape, aZeros: aZeros, bZeros: bZeros,
                                      level: level, output: output, context: context)
        }
        return [y]
    }
}

/// A zero point expanded to one value per (operand batch, row) or (operand batch, column); zeros when absent.
private func expandedZeroPoints(
    _ zeroPoint: Tensor?, shape: IntegerMatMulShape, side: IntegerMatMulShape.Side, index: Int
) throws -> [Int32] {
    guard let zeroPoint else {
        // An empty shape is the per-tensor case: one index per (batch, row/column).
        return try shape.parameterIndices([], side: side, input: index).map { _ in 0 }
    }
    let values = try zeroPoint.quantizedIntegerValues(input: index)
    return try shape.parameterIndices(zeroPoint.shape, side: side, input: index).map { values[$0] }
}

/// A scale expanded like `expandedZeroPoints`.
private func expandedScales(
    _ scale: Tensor, shape: IntegerMatMulShape, side: IntegerMatMulShape.Side, index: Int
) throws -> [Float] {
    let values = try scale.quantizationScaleValues(input: index)
    return try shape.parameterIndices(scale.shape, side: side, input: index).map { values[$0] }
}

// MARK: - QLinearMatMul

/// ONNX QLinearMatMul: `y = saturate(round((a - a_zp) @ (b - b_zp) * (a_scale * b_scale / y_scale)) + y_zp)`.
///
/// The matmul accumulates in int32; requantization follows the ONNX reference (see `requantize`).
/// `a_scale`/`a_zero_point` are per tensor or per row, `b_scale`/`b_zero_point` per tensor or per
/// column, `y_scale`/`y_zero_point` per tensor. Opset 21 also allows float16/bfloat16 scales (the
/// multiplier is then computed in that precision); its float8 operands are not supported.
struct QLinearMatMulKernel: Kernel {
    let version: Int
    let level: Int8GEMMLevel
    /// B packed at session creation when it is a constant.
    let prepacked: PackedIntegerMatMulB?

    init(version: Int, constantB: Tensor?, level: Int8GEMMLevel = .best) {
        self.version = version
        self.level = level
        prepacked = level == .reference ? nil : constantB.flatMap(PackedIntegerMatMulB.init)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), aScale = try required(inputs, 1), aZero = try required(inputs, 2)
        let b = try required(inputs, 3), bScale = try required(inputs, 4), bZero = try required(inputs, 5)
        let yScale = try required(inputs, 6), yZero = try required(inputs, 7)
        for (tensor, index) in [(a, 0), (b, 3), (yZero, 7)] where Float8Format(tensor.dtype) != nil {
            throw KernelError.unsupported("QLinearMatMul with float8 input \(index) (\(tensor.dtype))")
        }
        try checkEightBit(a, index: 0, zeroPoint: aZero, zeroPointIndex: 2)
        try checkEightBit(b, index: 3, zeroPoint: bZero, zeroPointIndex: 5)
        guard yZero.dtype == .int8 || yZero.dtype == .uint8 else {
            throw KernelError.invalidInput(index: 7, reason: "must be int8 or uint8, got \(yZero.dtype)")
        }
        let scaleTypes: Set<DType> = version >= 21 ? [.float32, .float16, .bfloat16] : [.float32]
        guard scaleTypes.contains(aScale.dtype), bScale.dtype == aScale.dtype, yScale.dtype == aScale.dtype else {
            throw KernelError.invalidInput(
                index: 1, reason: "scales must share one type from \(scaleTypes.map(\.rawValue).sorted()), got "
                    + "\(aScale.dtype), \(bScale.dtype), \(yScale.dtype)")
        }
        let shape = try IntegerMatMulShape(a: a.shape, b: b.shape)
        let aZeros = try expandedZeroPoints(aZero, shape: shape, side: .rows, index: 2)
        let bZeros = try expandedZeroPoints(bZero, shape: shape, side: .columns, index: 5)
        let aScales = try expandedScales(aScale, shape: shape, side: .rows, index: 1)
        let bScales = try expandedScales(bScale, shape: shape, side: .columns, index: 4)
        let outputScale = try singleScale(yScale, index: 6, name: "y_scale")
        guard yZero.isSingleElement else {
            throw KernelError.invalidInput(index: 7, reason: "y_zero_point must be a scalar, got shape \(yZero.shape)")
        }
        let requant = Requantization(
            zeroPoint: try yZero.quantizedIntegerValues(input: 7)[0],
            range: quantizedIntegerRange(yZero.dtype) ?? 0...255, outputScale: outputScale)

        var accumulators = [Int32](repeating: 0, count: try Shape.elementCount(shape.outputShape))
        accumulators.withUnsafeMutableBufferPointer { output in
            guard let output = output.baseAddress else { return }
            integerMatMulAccumulators(a: a, b: b, prepacked: prepacked, shape: shape, aZeros: aZeros, bZeros: bZeros,
                                      level: level, output: output, context: context)
        }
        var y = try Tensor(zeros: yZero.dtype, shape: shape.outputShape)
        switch (aScale.dtype, y.dtype) {
        case (.float16, .uint8): requantizeRows(accumulators, shape, aScales, bScales, requant, Float16.self, UInt8.self, &y, context)
        case (.float16, _): requantizeRows(accumulators, shape, aScales, bScales, requant, Float16.self, Int8.self, &y, context)
        case (.bfloat16, .uint8): requantizeRows(accumulators, shape, aScales, bScales, requant, BFloat16.self, UInt8.self, &y, context)
        case (.bfloat16, _): requantizeRows(accumulators, shape, aScales, bScales, requant, BFloat16.self, Int8.self, &y, context)
        case (_, .uint8): requantizeRows(accumulators, shape, aScales, bScales, requant, Float.self, UInt8.self, &y, context)
        default: requantizeRows(accumulators, shape, aScales, bScales, requant, Float.self, Int8.self, &y, context)
        }
        return [y]
    }

    /// y = requantize(accumulator, a_scale[row] * b_scale[column] / y_scale), row by row in parallel.
    /// With one A scale (the usual per-tensor case) each B batch's column multipliers are computed once.
    private func requantizeRows<S: QuantizationFloatElement, Y: FixedWidthInteger & TensorScalar>(
        _ accumulators: [Int32], _ shape: IntegerMatMulShape, _ aScales: [Float], _ bScales: [Float],
        _ requant: Requantization, _ scaleType: S.Type, _ outputType: Y.Type, _ y: inout Tensor,
        _ context: ExecutionContext
    ) {
        let rows = shape.rows, columns = shape.columns
        let shared = aScales.allSatisfy { $0.bitPattern == aScales.first?.bitPattern }
        let table = shared ? bScales.map { requantizationMultiplier(aScales[0], $0, requant.outputScale, as: S.self) } : []
        let level = self.level
        y.withUnsafeMutableBufferPointer(as: Y.self) { output in
            guard let outputBase = output.baseAddress else { return }
            accumulators.withUnsafeBufferPointer { accumulators in
            table.withUnsafeBufferPointer { table in
                context.parallelFor(shape.batchCount * rows) { row in
                    let batch = row / rows
                    let aBatch = shape.aBatchIndex[batch], bBatch = shape.bBatchIndex[batch]
                    let source = accumulators.baseAddress! + row * columns
                    let target = outputBase + row * columns
                    if shared {
                        requantizeRun(source, count: columns, bias: nil, biasStep: 0, multipliers: table.baseAddress! + bBatch * columns,
                                      multiplierStep: 1, requant: requant, into: target, level: level)
                        return
                    }
                    let rowScale = aScales[aBatch * rows + row % rows]
                    let multipliers = (0..<columns).map {
                        requantizationMultiplier(rowScale, bScales[bBatch * columns + $0], requant.outputScale, as: S.self)
                    }
                    multipliers.withUnsafeBufferPointer {
                        requantizeRun(source, count: columns, bias: nil, biasStep: 0, multipliers: $0.baseAddress!,
                                      multiplierStep: 1, requant: requant, into: target, level: level)
                    }
                }
            }}
        }
    }
}

/// Output-side requantization parameters.
struct Requantization: Sendable {
    let zeroPoint: Int32
    let lower: Int32
    let upper: Int32
    let outputScale: Float

    init(zeroPoint: Int32, range: ClosedRange<Int32>, outputScale: Float) {
        self.zeroPoint = zeroPoint
        self.lower = range.lowerBound
        self.upper = range.upperBound
        self.outputScale = outputScale
    }
}

// MARK: - ConvInteger and QLinearConv

/// The conv zero points: `x_zero_point` per tensor, `w_zero_point` per tensor or per output channel
/// (expanded to one value per output channel); zeros when absent.
private func convZeroPoints(
    xZero: Tensor?, wZero: Tensor?, geometry: IntegerConvGeometry, xZeroIndex: Int, wZeroIndex: Int
) throws -> (x: Int32, w: [Int32]) {
    var xOffset: Int32 = 0
    if let xZero {
        guard xZero.isSingleElement else {
            throw KernelError.invalidInput(index: xZeroIndex, reason: "x zero point must be a scalar, got shape \(xZero.shape)")
        }
        xOffset = try xZero.quantizedIntegerValues(input: xZeroIndex)[0]
    }
    var wOffsets = [Int32](repeating: 0, count: geometry.outputChannels)
    if let wZero {
        let values = try wZero.quantizedIntegerValues(input: wZeroIndex)
        if values.count == 1 {
            wOffsets = [Int32](repeating: values[0], count: geometry.outputChannels)
        } else if wZero.rank == 1, values.count == geometry.outputChannels {
            wOffsets = values
        } else {
            throw KernelError.invalidInput(
                index: wZeroIndex,
                reason: "w zero point must be a scalar or 1-D of \(geometry.outputChannels) (output channels), got shape \(wZero.shape)")
        }
    }
    return (xOffset, wOffsets)
}

/// ONNX ConvInteger: `y = conv(x - x_zero_point, w - w_zero_point)` in int32, with Conv's `auto_pad`,
/// `pads`, `strides`, `dilations` and `group`. `x_zero_point` is per tensor; `w_zero_point` per tensor
/// or per output channel.
struct ConvIntegerKernel: Kernel {
    let attributes: IntegerConvAttributes
    let level: Int8GEMMLevel
    /// The weights packed at session creation when they are a constant.
    let prepacked: PackedConvWeights?

    init(attributes: IntegerConvAttributes, constantW: Tensor?, level: Int8GEMMLevel = .best) {
        self.attributes = attributes
        self.level = level
        prepacked = level == .reference ? nil : constantW.flatMap { PackedConvWeights($0, group: attributes.group) }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0), w = try required(inputs, 1)
        let xZero = optional(inputs, 2), wZero = optional(inputs, 3)
        try checkEightBit(x, index: 0, zeroPoint: xZero, zeroPointIndex: 2)
        try checkEightBit(w, index: 1, zeroPoint: wZero, zeroPointIndex: 3)
        let geometry = try IntegerConvGeometry(x: x.shape, w: w.shape, attributes: attributes)
        let zeros = try convZeroPoints(xZero: xZero, wZero: wZero, geometry: geometry, xZeroIndex: 2, wZeroIndex: 3)
        var y = try Tensor(zeros: .int32, shape: geometry.outputShape)
        try y.withUnsafeMutableBufferPointer(as: Int32.self) { output in
            let base = output.baseAddress
            let positions = geometry.outputPlaneSize, channels = geometry.outputChannels
            try integerConvolution(x: x, xZero: zeros.x, w: w, wZeros: zeros.w, geometry: geometry, prepacked: prepacked,
                                   level: level, context: context) { n, block, range, values, rowStride in
                storeChannelPlanes(values, rowStride: rowStride, batch: n, channels: block, positions: range, into: base!,
                                   outputChannels: channels, planeSize: positions)
            }
        }
        return [y]
    }
}

/// ONNX QLinearConv: `y = saturate(round((conv(x - x_zp, w - w_zp) + B) * (x_scale * w_scale / y_scale)) + y_zp)`.
///
/// `w_scale`/`w_zero_point` are per tensor or per output channel, the others per tensor. The optional
/// bias is int32 (scale `x_scale * w_scale`, zero point 0) and is added with wrapping, like the
/// accumulator. Requantization follows the ONNX reference (see `requantize`).
struct QLinearConvKernel: Kernel {
    let attributes: IntegerConvAttributes
    let level: Int8GEMMLevel
    /// The weights packed at session creation when they are a constant.
    let prepacked: PackedConvWeights?

    init(attributes: IntegerConvAttributes, constantW: Tensor?, level: Int8GEMMLevel = .best) {
        self.attributes = attributes
        self.level = level
        prepacked = level == .reference ? nil : constantW.flatMap { PackedConvWeights($0, group: attributes.group) }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0), xScale = try required(inputs, 1), xZero = try required(inputs, 2)
        let w = try required(inputs, 3), wScale = try required(inputs, 4), wZero = try required(inputs, 5)
        let yScale = try required(inputs, 6), yZero = try required(inputs, 7)
        let bias = optional(inputs, 8)
        try checkEightBit(x, index: 0, zeroPoint: xZero, zeroPointIndex: 2)
        try checkEightBit(w, index: 3, zeroPoint: wZero, zeroPointIndex: 5)
        guard yZero.dtype == .int8 || yZero.dtype == .uint8 else {
            throw KernelError.invalidInput(index: 7, reason: "must be int8 or uint8, got \(yZero.dtype)")
        }
        for (tensor, index) in [(xScale, 1), (wScale, 4), (yScale, 6)] where tensor.dtype != .float32 {
            throw KernelError.invalidInput(index: index, reason: "scale must be float32, got \(tensor.dtype)")
        }
        let geometry = try IntegerConvGeometry(x: x.shape, w: w.shape, attributes: attributes)
        let channels = geometry.outputChannels
        let inputScale = try singleScale(xScale, index: 1, name: "x_scale")
        let outputScale = try singleScale(yScale, index: 6, name: "y_scale")
        let weightScales = try wScale.quantizationScaleValues(input: 4)
        guard weightScales.count == 1 || (wScale.rank == 1 && weightScales.count == channels) else {
            throw KernelError.invalidInput(
                index: 4, reason: "w_scale must be a scalar or 1-D of \(channels) (output channels), got shape \(wScale.shape)")
        }
        guard yZero.isSingleElement else {
            throw KernelError.invalidInput(index: 7, reason: "y_zero_point must be a scalar, got shape \(yZero.shape)")
        }
        var biases = [Int32](repeating: 0, count: channels)
        if let bias {
            guard bias.dtype == .int32, bias.rank == 1, bias.count == channels else {
                throw KernelError.invalidInput(
                    index: 8, reason: "bias must be int32 of shape [\(channels)], got \(bias.dtype) \(bias.shape)")
            }
            biases = bias.scalars(as: Int32.self)
        }
        let zeros = try convZeroPoints(xZero: xZero, wZero: wZero, geometry: geometry, xZeroIndex: 2, wZeroIndex: 5)
        // One multiplier per output channel, computed in float32 as the reference does.
        let multipliers = (0..<channels).map { m in
            requantizationMultiplier(inputScale, weightScales[weightScales.count == 1 ? 0 : m], outputScale, as: Float.self)
        }
        let requant = Requantization(
            zeroPoint: try yZero.quantizedIntegerValues(input: 7)[0],
            range: quantizedIntegerRange(yZero.dtype) ?? 0...255, outputScale: outputScale)
        var y = try Tensor(zeros: yZero.dtype, shape: geometry.outputShape)
        let parameters = (zeros: zeros, biases: biases, multipliers: multipliers, requant: requant)
        if yZero.dtype == .uint8 {
            try run(x, w, geometry, parameters, into: &y, UInt8.self, context)
        } else {
            try run(x, w, geometry, parameters, into: &y, Int8.self, context)
        }
        return [y]
    }

    /// Convolves and requantizes each finished chunk of sums as it arrives: `requantize(sum + bias[m])`.
    private func run<Y: FixedWidthInteger & TensorScalar>(
        _ x: Tensor, _ w: Tensor, _ geometry: IntegerConvGeometry,
        _ parameters: (zeros: (x: Int32, w: [Int32]), biases: [Int32], multipliers: [Double], requant: Requantization),
        into y: inout Tensor, _ type: Y.Type, _ context: ExecutionContext
    ) throws {
        let positions = geometry.outputPlaneSize, channels = geometry.outputChannels
        let requant = parameters.requant
        try parameters.biases.withUnsafeBufferPointer { biases in
        try parameters.multipliers.withUnsafeBufferPointer { multipliers in
        try y.withUnsafeMutableBufferPointer(as: Y.self) { output in
            let base = output.baseAddress
            try integerConvolution(x: x, xZero: parameters.zeros.x, w: w, wZeros: parameters.zeros.w, geometry: geometry,
                                   prepacked: prepacked, level: level, context: context) { n, block, range, values, rowStride in
                let rows = range.count, width = block.count
                let blockBiases = biases.baseAddress! + block.lowerBound
                let blockMultipliers = multipliers.baseAddress! + block.lowerBound
                if width == 1, rowStride == 1 {
                    // One channel: requantize straight into its plane.
                    let target = base! + (n * channels + block.lowerBound) * positions + range.lowerBound
                    requantizeRun(values, count: rows, bias: blockBiases, biasStep: 0, multipliers: blockMultipliers,
                                  multiplierStep: 0, requant: requant, into: target, level: level)
                    return
                }
                // Requantize position by position (channels contiguous), then transpose the bytes.
                let block8 = UnsafeMutablePointer<Y>.allocate(capacity: rows * width)
                defer { block8.deallocate() }
                for r in 0..<rows {
                    requantizeRun(values + r * rowStride, count: width, bias: blockBiases, biasStep: 1,
                                  multipliers: blockMultipliers, multiplierStep: 1, requant: requant,
                                  into: block8 + r * width, level: level)
                }
                let target = base! + (n * channels + block.lowerBound) * positions + range.lowerBound
                block8.withMemoryRebound(to: UInt8.self, capacity: rows * width) { source in
                    target.withMemoryRebound(to: UInt8.self, capacity: (width - 1) * positions + rows) {
                        sq_transpose_u8(source, rows, width, width, $0, positions, 0)
                    }
                }
            }
        }}}
    }
}
