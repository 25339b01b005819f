import Tensors
import _CKernels

/// Requantizes a run of int32 sums to 8-bit values the ONNX reference's way (see `requantize`):
/// `out[i] = clamp(round_half_even(Double(sums[i] &+ bias[i]) · multiplier[i]) + zeroPoint)`, where `bias`
/// and `multipliers` advance by `biasStep` / `multiplierStep` (0: one value for the run, 1: one per sum).
/// Runs the vectorized C kernel of `level`'s instruction set, or the Swift loop at `.reference` (its twin).
func requantizeRun<Y: FixedWidthInteger & TensorScalar>(
    _ sums: UnsafePointer<Int32>, count: Int, bias: UnsafePointer<Int32>?, biasStep: Int,
    multipliers: UnsafePointer<Double>, multiplierStep: Int, requant: Requantization,
    into out: UnsafeMutablePointer<Y>, level: Int8GEMMLevel
) {
    precondition(Y.bitWidth == 8, "requantizeRun writes bytes")
    if level != .reference {
        let done = out.withMemoryRebound(to: UInt8.self, capacity: count) { bytes in
            sq_requantize_u8(Int32(level.rawValue), sums, count, bias, biasStep, multipliers, multiplierStep,
                             requant.zeroPoint, requant.lower, requant.upper, bytes)
        }
        if done != 0 { return }
    }
    for i in 0..<count {
        let sum = bias.map { sums[i] &+ $0[i * biasStep] } ?? sums[i]
        out[i] = Y(truncatingIfNeeded: requantize(sum, multiplier: multipliers[i * multiplierStep],
                                                  zeroPoint: requant.zeroPoint, lower: requant.lower, upper: requant.upper))
    }
}
