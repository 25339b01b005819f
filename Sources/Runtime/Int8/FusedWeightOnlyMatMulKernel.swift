import GraphIR
import Tensors

/// `com.swiftquant::WeightOnlyMatMul`: `Y = A · DequantizeLinear(W)` for float32 `A` and a constant
/// weight-only quantized `W` (`[K, N]`; int4/uint4/int8/uint8, per tensor, per channel or blocked along K
/// with opset 21's `block_size`). Inputs: `A`, `W`, `w_scale`, `w_zero_point` (optional), `bias` (optional
/// float32, N values); attributes `axis`, `block_size` (DequantizeLinear's), `prepack` (default 1), and
/// `activation` / `activation_parameters` (see `WeightOnlyActivation`). The bias and activation are the
/// SGEMM epilogue's: `y = act(A·W + bias)`, each step rounded as the separate Add and activation round it.
///
/// The weights are dequantized by the reference DequantizeLinear kernel itself, so every float weight
/// equals the unfused graph's. With `prepack = 1` (what the fusion writes) that happens once, when the
/// session is built, into SGEMM's packed panels: a run costs exactly a float MatMul against a constant,
/// and the weights take 4 bytes each in memory (8× an int4 model's). With `prepack = 0` only the codes are
/// kept (0.5 or 1 byte per weight) and each run dequantizes them into a scratch matrix before the GEMM.
struct FusedWeightOnlyMatMulKernel: Kernel {
    let k: Int
    let n: Int
    let packed: SGEMM.PackedMatrix?
    /// The DequantizeLinear inputs and kernel, kept for `prepack = 0`.
    let dequantize: (kernel: DequantizeLinearKernel, inputs: [Tensor?])?
    let epilogue: FusedEpilogue

    init(_ context: KernelBuildContext) throws {
        guard let w = context.constant(1), w.rank == 2 else { throw KernelError.invalid("W must be a 2-D constant") }
        let (k, n) = (w.shape[0], w.shape[1])
        (self.k, self.n) = (k, n)
        let kernel = try DequantizeLinearKernel(context, version: 21)
        let inputs: [Tensor?] = [w, try context.constantInput(2, "w_scale"), try context.constantInput(3, "w_zero_point")]
        guard inputs[1] != nil else { throw KernelError.invalid("w_scale must be given") }
        let bias = try context.constantInput(4, "bias")
        if let bias, bias.dtype != .float32 || bias.rank != 1 || bias.count != n {
            throw KernelError.invalid("bias must be float32 of \(n) values, got \(bias.dtype) \(bias.shape)")
        }
        epilogue = FusedEpilogue(bias: bias, activation: try WeightOnlyActivation.read(context))
        if try context.int("prepack", default: 1) != 0 {
            let weights = try kernel.run(inputs, context: ExecutionContext(threadCount: 1))[0]
            guard weights.dtype == .float32 else { throw KernelError.invalid("W must dequantize to float32") }
            packed = weights.withUnsafeBufferPointer(as: Float.self) {
                SGEMM.PackedMatrix(k: k, n: n, b: $0.baseAddress!, ldb: n)
            }
            dequantize = nil
        } else {
            packed = nil
            dequantize = (kernel, inputs)
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0)
        guard a.dtype == .float32, a.rank >= 1, a.shape[a.rank - 1] == k else {
            throw KernelError.invalidInput(index: 0, reason: "A must be float32 ending in K = \(k), got \(a.dtype) \(a.shape)")
        }
        let leading = Array(a.shape.dropLast())
        let m = try Shape.elementCount(leading)
        let y = try context.output(.float32, shape: leading + [n])
        guard m > 0, n > 0 else { return [y.tensor] }
        if k == 0 {
            // An empty sum: zeros, then the bias and activation.
            let c = y.pointer(as: Float.self)
            c.initialize(repeating: 0, count: m * n)
            epilogue.withSGEMMEpilogue { $0?.apply(to: c, rows: m, columns: n, ldc: n) }
            return [y.tensor]
        }
        let weights = try dequantize.map { try $0.kernel.run($0.inputs, context: context)[0] }
        a.withUnsafeBufferPointer(as: Float.self) { aBuffer in
            epilogue.withSGEMMEpilogue { epilogue in
                let c = y.pointer(as: Float.self)
                if let packed {
                    SGEMM.multiply(m: m, a: aBuffer.baseAddress!, lda: k, packedB: packed, c: c, ldc: n,
                                   threads: context.threadCount, epilogue: epilogue)
                } else if let weights {
                    weights.withUnsafeBufferPointer(as: Float.self) { bBuffer in
                        SGEMM.multiply(m: m, n: n, k: k, a: aBuffer.baseAddress!, lda: k, b: bBuffer.baseAddress!, ldb: n,
                                       c: c, ldc: n, threads: context.threadCount, epilogue: epilogue)
                    }
                }
            }
        }
        return [y.tensor]
    }
}
