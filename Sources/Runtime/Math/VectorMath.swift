import _CKernels

/// Vectorised float32 functions over buffers, computed in `_CKernels` (vector_math.c) at the best
/// instruction-set level the CPU has (AVX-512F, AVX2+FMA, or the baseline SIMD). Their reference twins
/// are the per-element Swift functions of the unary and activation kernels (libm `erff`, `expf`), and
/// the Swift softmax loop.
///
/// Accuracy: `exp` within 1 ulp on [−103, 88.7]; `erf` within 2.2 ulp and 1.3e-7 absolute with FMA
/// (3.1 ulp, 1.8e-7 on the baseline level); `gelu` inherits erf's absolute error times |x|/2.
/// `x` and `y` may be the same buffer.
public enum VectorMath {
    /// `y[i] = eˣ⁽ⁱ⁾`.
    public static func exp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
                           level: SGEMM.Level? = nil) {
        sq_vec_exp(level?.rawValue ?? -1, x, y, count)
    }

    /// `y[i] = erf(x[i])`.
    public static func erf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
                           level: SGEMM.Level? = nil) {
        sq_vec_erf(level?.rawValue ?? -1, x, y, count)
    }

    /// The exact Gelu, `y[i] = x[i]/2 · (1 + erf(x[i]/√2))`.
    public static func gelu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
                            level: SGEMM.Level? = nil) {
        sq_vec_gelu(level?.rawValue ?? -1, x, y, count)
    }

    /// Softmax of `rows` contiguous rows of `length` floats, `y = exp(x − max) / Σ exp(x − max)`, or
    /// with `logarithmic`, `y = x − max − log Σ exp(x − max)`. A row holding NaN becomes NaN.
    public static func softmaxRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int,
                                   length: Int, logarithmic: Bool = false, level: SGEMM.Level? = nil) {
        sq_softmax_rows(level?.rawValue ?? -1, x, y, rows, length, logarithmic ? 1 : 0)
    }
}
