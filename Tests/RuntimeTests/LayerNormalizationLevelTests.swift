@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// The vectorised LayerNormalization rows (`sq_layer_norm_rows`) against the Swift loop, its reference twin,
/// at widths that are and are not multiples of the vector width, with a large common offset in some rows.
@Suite struct LayerNormalizationLevelTests {
    @Test(arguments: [1, 7, 16, 37, 384, 1000])
    func everyLevelMatchesTheSwiftLoop(width: Int) throws {
        var generator = SeededGenerator(seed: UInt64(width))
        let rows = 9
        var values = (0..<(rows * width)).map { _ in Float.random(in: -4...4, using: &generator) }
        for i in 0..<width { values[2 * width + i] += 500 }  // a row far from zero
        let x = try Tensor(shape: [rows, width], scalars: values)
        let gamma = try Tensor(shape: [width], scalars: (0..<width).map { _ in Float.random(in: -2...2, using: &generator) })
        let beta = try Tensor(shape: [width], scalars: (0..<width).map { _ in Float.random(in: -1...1, using: &generator) })
        var kernel = LayerNormalizationKernel(axis: -1, epsilon: 1e-5)
        kernel.level = .reference
        let expected = try kernel.run([x, gamma, beta], context: ExecutionContext(threadCount: 1))
        for level in TransformerKernelLevel.available {
            kernel.level = level
            for threads in [1, 2] {
                let got = try kernel.run([x, gamma, beta], context: ExecutionContext(threadCount: threads))
                for (output, reference) in zip(got, expected) {
                    #expect(output.shape == reference.shape)
                    let worst = zip(output.floats, reference.floats).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                    #expect(worst <= 2e-5, "width \(width), level \(level): relative difference \(worst)")
                }
            }
        }
    }
}
