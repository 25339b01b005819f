import GraphIR
import Tensors

/// `com.swiftquant::DynamicQMatMul`: what ONNX Runtime's dynamic quantization writes for a MatMul,
///
///     (xq, xs, xz) = DynamicQuantizeLinear(x)
///     y = Float(MatMulInteger(xq, W, xz, w_zp)) · (xs · w_scale) [+ bias]
///
/// in one kernel: the activation's range and codes, the integer GEMM against W packed at session
/// creation, and the float scaling. Inputs: 0 `x` (float32, `[..., K]`), 1 `W` (int8/uint8 constant
/// `[K, N]`), 2 `w_scale` (float32, one or N values), 3 `w_zero_point` (one or N values, W's type),
/// 4 `bias` (optional float32, N values). Every float operation is the one the unfused nodes perform,
/// in the same order, so the result equals the unfused graph bit for bit.
struct FusedDynamicQMatMulKernel: Kernel {
    let weights: FusedInt8Weights
    let weightValues: Tensor
    let weightQuantization: WeightQuantization
    let bias: [Float]?

    init(_ context: KernelBuildContext) throws {
        guard let w = context.constant(1), w.rank == 2 else { throw KernelError.invalid("W must be a 2-D constant") }
        let (k, n) = (w.shape[0], w.shape[1])
        weightQuantization = try WeightQuantization(scale: try context.constantInput(2, "w_scale"),
                                                    zeroPoint: try context.constantInput(3, "w_zero_point"),
                                                    weightType: w.dtype, channels: n)
        bias = try FusedBias.read(try context.constantInput(4, "bias"), channels: n).float
        if context.constant(4)?.dtype == .int32 { throw KernelError.invalid("bias must be float32") }
        weights = try FusedInt8Weights(weights: w, k: k, n: n, transposed: false,
                                       zeroPoints: weightQuantization.zeroPoints, bias: nil)
        weightValues = w
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let (m, shape) = try checkedShape(x)
        let y = try context.output(.float32, shape: shape)
        guard m > 0, weights.columns > 0 else { return [y.tensor] }
        let k = weights.depth, n = weights.columns
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(m * k, 1))
        defer { codes.deallocate() }
        let parameters = x.withUnsafeBufferPointer(as: Float.self) { source in
            let parameters = DynamicQuantizeLinearKernel.parameters(for: source)
            let base = source.baseAddress!, scale = parameters.scale, zero = Float(parameters.zeroPoint)
            Parallel.forRanges(source.count, threads: context.threadCount, grain: 1 << 15) { range in
                FloatQuantization.quantize(base + range.lowerBound, range.count, scale, zero, 0, 255,
                                             codes + range.lowerBound)
            }
            return parameters
        }
        let scales = (0..<n).map { parameters.scale * weightQuantization.scale($0) }
        // One unit row scale per row: `(Float(acc) · scale[j]) · 1` is `Float(acc) · scale[j]` exactly, so the
        // tiled per-row GEMM computes this operator's float steps too.
        let rowScales = [Float](repeating: 1, count: m)
        scales.withUnsafeBufferPointer { scales in
            rowScales.withUnsafeBufferPointer { rowScales in
                let run = { (bias: UnsafePointer<Float>?) in
                    let stage = RowColumnScaledOutputStage(
                        columnScales: scales.baseAddress!, rowScales: rowScales.baseAddress!, bias: bias,
                        rowScaleFirst: false, output: y.pointer(as: Float.self), rowStride: n, level: .best)
                    RowScaledGEMM.run(m: m, a: codes, offsets: weights.columnOffsets(activationZeroPoint: Int32(parameters.zeroPoint)),
                                      weights: weights, stage: stage, threads: context.threadCount, level: .best)
                }
                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
            }
        }
        return [y.tensor]
    }

    /// The reference twin: the reference DynamicQuantizeLinear kernel, then the accumulators and the
    /// scaling element by element.
    func runReference(_ inputs: [Tensor?]) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let (m, shape) = try checkedShape(x)
        let quantized = try DynamicQuantizeLinearKernel().run([x], context: ExecutionContext(threadCount: 1))
        let scale = quantized[1].scalars(as: Float.self)[0]
        let acc = FusedInt8Reference.accumulators(
            m: m, k: weights.depth, n: weights.columns, a: try quantized[0].quantizedIntegerValues(input: 0),
            activationZeroPoint: Int32(quantized[2].scalars(as: UInt8.self)[0]),
            b: try weightValues.quantizedIntegerValues(input: 1), weightZeroPoints: weightQuantization.zeroPoints,
            bias: nil)
        let scales = (0..<weights.columns).map { scale * weightQuantization.scale($0) }
        let values = FusedInt8Reference.scaled(acc, scales: scales, bias: bias, lower: -.infinity, upper: .infinity)
        return [try Tensor(shape: shape, scalars: values)]
    }

    private func checkedShape(_ x: Tensor) throws -> (rows: Int, shape: [Int]) {
        guard x.dtype == .float32 else { throw KernelError.invalidInput(index: 0, reason: "x must be float32, got \(x.dtype)") }
        guard x.rank >= 1, x.shape[x.rank - 1] == weights.depth else {
            throw KernelError.invalidInput(index: 0, reason: "x \(x.shape) does not end in K = \(weights.depth)")
        }
        let leading = Array(x.shape.dropLast())
        return (try Shape.elementCount(leading), leading + [weights.columns])
    }
}
