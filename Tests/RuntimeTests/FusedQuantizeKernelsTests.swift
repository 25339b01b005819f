import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// The vectorised per-tensor and per-channel Quantize / Dequantize / Requantize against the reference QuantizeLinear and
/// DequantizeLinear kernels: bit-identical, including ties, NaN, infinities and both 8-bit types.
@Suite struct FusedQuantizeKernelsTests {
    private func reference(_ opType: String, _ inputs: [Tensor?]) throws -> Tensor {
        let node = Node(opType: opType, inputs: ["x", "s", "z"], outputs: ["y"])
        let context = buildContext(node, constants: [:], opset: 13)
        let kernel: any Kernel = opType == "QuantizeLinear" ? try QuantizeLinearKernel(context, version: 13)
                                                            : try DequantizeLinearKernel(context, version: 13)
        return try kernel.run(inputs, context: ExecutionContext(threadCount: 1))[0]
    }

    @Test func quantizeEqualsReferenceOnTiesAndSpecialValues() throws {
        var generator = SeededGenerator(seed: 9)
        let scale: Float = 0.1
        var values: [Float] = [.nan, -.nan, .infinity, -.infinity, 0, -0.0, 1e30, -1e30, .ulpOfOne, 3.4e38,
                               .leastNonzeroMagnitude, -.leastNonzeroMagnitude]
        values += (-400...400).map { Float($0) * 0.05 }  // many exact and near ties of x / 0.1
        values += (0..<5000).map { _ in Float.random(in: -40...40, using: &generator) }
        let x = try Tensor(shape: [values.count], scalars: values)
        for (dtype, zeroPoint) in [(DType.uint8, Int32(0)), (.uint8, 157), (.uint8, 255), (.int8, -128), (.int8, 3), (.int8, 127)] {
            let zero = dtype == .uint8 ? Tensor(scalar: UInt8(zeroPoint)) : Tensor(scalar: Int8(zeroPoint))
            let constants = ["s": Tensor(scalar: scale), "z": zero]
            let node = Node(opType: "Quantize", domain: IntegerFusion.domain, inputs: ["x", "s", "z"], outputs: ["y"])
            var kernel = try FusedQuantizeKernel(buildContext(node, constants: constants))
            let expected = try reference("QuantizeLinear", [x, constants["s"], zero])
            for level in TransformerKernelLevel.available {
                kernel.level = level
                for threads in [1, 3] {
                    #expect(try kernel.run([x, constants["s"], zero], context: ExecutionContext(threadCount: threads))[0] == expected,
                            "level \(level), \(dtype) zero point \(zeroPoint)")
                }
            }
        }
    }

    /// Per-channel scales along the last axis (static quantization's SmoothQuant form) against the
    /// reference QuantizeLinear with `axis = -1`, at a channel count that is not a multiple of the vector width.
    @Test func perChannelQuantizeEqualsReference() throws {
        var generator = SeededGenerator(seed: 21)
        let rows = 37, channels = 67
        var values = (0..<(rows * channels)).map { _ in Float.random(in: -30...30, using: &generator) }
        for (i, special) in [Float.nan, .infinity, -.infinity, 3.4e38, -3.4e38, 0.25, -0.25, 2.5].enumerated() {
            values[i * 11] = special
        }
        let x = try Tensor(shape: [rows, channels], scalars: values)
        let scaleValues = (0..<channels).map { c in Float(0.01 + 0.37 * Double(c % 9)) }
        let scale = try Tensor(shape: [channels], scalars: scaleValues)
        for dtype in [DType.uint8, .int8] {
            let zeros = (0..<channels).map { sweepZeroPoints[$0 % sweepZeroPoints.count] }
            let zero = dtype == .uint8 ? try Tensor(shape: [channels], scalars: zeros.map { UInt8($0) })
                                       : try Tensor(shape: [channels], scalars: zeros.map { Int8(truncatingIfNeeded: $0 - 128) })
            let referenceNode = Node(opType: "QuantizeLinear", inputs: ["x", "s", "z"], outputs: ["y"],
                                     attributes: ["axis": .int(-1)])
            let referenceKernel = try QuantizeLinearKernel(buildContext(referenceNode, constants: [:], opset: 13), version: 13)
            let expected = try referenceKernel.run([x, scale, zero], context: ExecutionContext(threadCount: 1))[0]
            let node = Node(opType: "Quantize", domain: IntegerFusion.domain, inputs: ["x", "s", "z"], outputs: ["y"])
            var kernel = try FusedQuantizeKernel(buildContext(node, constants: ["s": scale, "z": zero]))
            for level in TransformerKernelLevel.available {
                kernel.level = level
                for threads in [1, 3] {
                    #expect(try kernel.run([x, scale, zero], context: ExecutionContext(threadCount: threads))[0] == expected,
                            "level \(level), \(dtype)")
                }
            }
            let wrong = try Tensor(shape: [channels, rows], scalars: values)
            #expect(throws: KernelError.self) { try kernel.run([wrong, scale, zero], context: ExecutionContext(threadCount: 1)) }
        }
    }

    @Test func dequantizeAndRequantizeEqualReferenceForEveryCode() throws {
        for dtype in [DType.uint8, .int8] {
            let codes = dtype == .uint8 ? try Tensor(shape: [256], scalars: (0...255).map { UInt8($0) })
                                        : try Tensor(shape: [256], scalars: (-128...127).map { Int8($0) })
            for zeroPoint in sweepZeroPoints {
                let zero = FusedTestData.zeroPoint(dtype, zeroPoint)
                let scale = Tensor(scalar: Float(0.0371))
                let node = Node(opType: "Dequantize", domain: IntegerFusion.domain, inputs: ["x", "s", "z"], outputs: ["y"])
                let kernel = try FusedDequantizeKernel(buildContext(node, constants: ["s": scale, "z": zero]))
                let dequantized = try reference("DequantizeLinear", [codes, scale, zero])
                #expect(try kernel.run([codes, scale, zero], context: ExecutionContext(threadCount: 2))[0] == dequantized)

                // Into the other type at another scale: DQ then Q of the reference kernels.
                let outType: DType = dtype == .uint8 ? .int8 : .uint8
                let outZero = FusedTestData.zeroPoint(outType, sweepZeroPoints[(Int(zeroPoint) + 3) % 7])
                let outScale = Tensor(scalar: Float(0.05))
                let requantizeNode = Node(opType: "Requantize", domain: IntegerFusion.domain,
                                          inputs: ["x", "s", "z", "ys", "yz"], outputs: ["y"])
                let requantize = try FusedRequantizeKernel(buildContext(
                    requantizeNode, constants: ["s": scale, "z": zero, "ys": outScale, "yz": outZero]))
                let expected = try reference("QuantizeLinear", [dequantized, outScale, outZero])
                #expect(try requantize.run([codes], context: ExecutionContext(threadCount: 1))[0] == expected)
            }
        }
    }
}
