/// The reference twin of `SGEMM`: a plain triple loop accumulating in Double, kept simple so it can
/// serve as the test oracle. `C = alpha · op(A) · op(B) + beta · C`; when `beta == 0`, C is not read.
public enum ReferenceGEMM {
    /// - Parameters: as `SGEMM.multiply`, on arrays; `c` is updated in place.
    public static func multiply(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: [Float], lda: Int, transposeA: Bool = false,
        b: [Float], ldb: Int, transposeB: Bool = false,
        beta: Float = 0, c: inout [Float], ldc: Int
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = transposeA ? a[p * lda + i] : a[i * lda + p]
                    let y = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += Double(x) * Double(y)
                }
                let prior = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                c[i * ldc + j] = Float(Double(alpha) * sum + prior)
            }
        }
    }
}
