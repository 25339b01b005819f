import Tensors
import _CKernels

/// A fused GEMM's float output, an optional Gelu, then QuantizeLinear — a `QMatMul` that absorbed the
/// `Gelu → QuantizeLinear` after it (BERT's intermediate layer):
///
///     v = Float(acc) · scale[j] + bias[j]          (as `FloatOutputStage`)
///     g = v/2 · (1 + erf(v/√2))                    (the vectorised Gelu of the Gelu kernel), or g = v
///     y = clamp(round_half_even(g / s_y[j]) + z_y[j])   (`FloatQuantization`, per tensor or per column)
///
/// Every step is the unfused kernel's own arithmetic, so the codes equal the unfused graph's bit for bit.
struct FloatQuantizedOutput: Sendable {
    let scales: [Float]
    let bias: [Float]?
    let gelu: Bool
    let quantization: FloatQuantization

    func channels(_ range: Range<Int>) -> FloatQuantizedOutput {
        let quantization = self.quantization.channels == 1 ? self.quantization : self.quantization.slice(range)
        return FloatQuantizedOutput(scales: Array(scales[range]), bias: bias.map { Array($0[range]) }, gelu: gelu,
                                    quantization: quantization)
    }

    /// Float values to codes for `rows` rows of `count` columns starting at column `first` (in place on `values`).
    func finish(_ values: UnsafeMutablePointer<Float>, rows: Int, first: Int, count: Int,
                into y: UnsafeMutablePointer<UInt8>, level: TransformerKernelLevel) {
        if gelu { VectorMath.gelu(values, values, count: rows * count) }
        quantization.quantize(values, rows: rows, firstChannel: first, channelCount: count, into: y, level: level)
    }

    /// The reference twin over accumulators laid out `[rows, columns]`.
    func reference(_ acc: [Int32]) -> [Int32] {
        var values = FusedInt8Reference.scaled(acc, scales: scales, bias: bias, lower: -.infinity, upper: .infinity)
        var codes = [UInt8](repeating: 0, count: values.count)
        let columns = scales.count
        values.withUnsafeMutableBufferPointer { values in
            codes.withUnsafeMutableBufferPointer { codes in
                guard let base = values.baseAddress else { return }
                finish(base, rows: values.count / columns, first: 0, count: columns, into: codes.baseAddress!,
                       level: .reference)
            }
        }
        return codes.map { quantization.dtype == .int8 ? Int32(Int8(bitPattern: $0)) : Int32($0) }
    }
}

/// Runs `FloatQuantizedOutput` over tiles: the float values of one tile row go to a scratch row, then to codes.
struct FloatQuantizedOutputStage: FusedGEMMOutputStage {
    let output: FloatQuantizedOutput
    let scales: UnsafePointer<Float>
    let bias: UnsafePointer<Float>?
    let y: UnsafeMutablePointer<UInt8>
    let rowStride: Int

    func finish(_ acc: UnsafePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>) {
        // Only reached at the reference level (`correctAndFinish` below handles the others).
        finishRows(acc, ldc: ldc, rows: rows, columns: columns, corrections: nil, level: .reference)
    }

    func correctAndFinish(_ acc: UnsafeMutablePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>,
                          corrections: GEMMCorrections, level: Int8GEMMLevel) {
        if level == .reference {
            FusedInt8GEMM.correct(acc, ldc: ldc, rows: rows, columns: columns, offsets: corrections.offsets,
                                  zeroPoints: corrections.zeroPoints, rowSums: corrections.rowSums)
            finish(acc, ldc: ldc, rows: rows, columns: columns)
        } else {
            finishRows(acc, ldc: ldc, rows: rows, columns: columns, corrections: corrections, level: .best)
        }
    }

    /// With `corrections`, corrects while scaling (`sq_qgemm_float_output`); without, `acc` is corrected.
    private func finishRows(_ acc: UnsafePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>,
                            corrections: GEMMCorrections?, level: TransformerKernelLevel) {
        let first = columns.lowerBound, width = columns.count
        guard width > 0 else { return }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: width) { scratch in
            let values = scratch.baseAddress!
            for i in rows {
                let row = acc + i * ldc + first
                let vectorised = corrections.map { corrections in
                    sq_qgemm_float_output(
                        level.rawValue, row, ldc, 1, width, corrections.offsets.baseAddress! + first,
                        corrections.zeroPoints.map { $0.baseAddress! + first }, corrections.rowSums.baseAddress.map { $0 + i },
                        scales + first, bias.map { $0 + first }, -.infinity, .infinity, values, width) != 0
                } ?? false
                if !vectorised {
                    // The float stage's arithmetic, correcting first when `acc` holds raw sums.
                    let scale = scales + first
                    for j in 0..<width {
                        var sum = row[j]
                        if let corrections {
                            sum = sum &+ corrections.offsets[first + j]
                            if let zeroPoints = corrections.zeroPoints { sum = sum &- zeroPoints[first + j] &* corrections.rowSums[i] }
                        }
                        values[j] = Float(sum) * scale[j]
                        if let bias { values[j] = values[j] + bias[first + j] }
                    }
                }
                output.finish(values, rows: 1, first: first, count: width, into: y + i * rowStride + first, level: level)
            }
        }
    }
}
