@testable import Runtime
import Tensors
import Testing
import _CKernels

/// `sq_f16_to_f32` / `sq_f32_to_f16` against the element-by-element Swift conversions (`Float(Float16)`,
/// `Float16(Float)`, IEEE round to nearest even), bit for bit; NaN only has to stay NaN.
@Suite struct HalfConversionTests {
    static func sameBits(_ a: UInt32, _ b: UInt32) -> Bool {
        a == b || (Float(bitPattern: a).isNaN && Float(bitPattern: b).isNaN)
    }

    @Test func everyHalfWidensExactly() throws {
        // Every bit pattern, plus 7 so the vector tail runs too.
        let halves = (0..<65_543).map { UInt16(truncatingIfNeeded: $0) }
        var fast = [Float](repeating: -1, count: halves.count)
        var reference = [Float](repeating: -1, count: halves.count)
        let converted = halves.withUnsafeBufferPointer { source in
            fast.withUnsafeMutableBufferPointer { sq_f16_to_f32(source.baseAddress!, $0.baseAddress!, halves.count) }
        }
        guard converted == 1 else { return }  // no AVX-512F: the reference loop is the only path
        halves.withUnsafeBufferPointer { source in
            reference.withUnsafeMutableBufferPointer { ReducedPrecision.widenHalves(source, into: $0) }
        }
        let mismatches = zip(fast, reference).filter { !Self.sameBits($0.bitPattern, $1.bitPattern) }.count
        #expect(mismatches == 0)
    }

    @Test func narrowingRoundsToNearestEvenLikeSwift() throws {
        var values: [Float] = [0, -0, .infinity, -.infinity, .nan, 65504, 65519.99, 65520, 65536, -65520, 1e-8, 3e-8,
                               Float.leastNonzeroMagnitude, -Float.leastNormalMagnitude, 1e30]
        // Every finite half, the midpoints between neighbours (ties) and the floats just beside them.
        for bits in 0..<0x7C00 {
            let low = Float(Float16(bitPattern: UInt16(bits))), high = Float(Float16(bitPattern: UInt16(bits + 1)))
            let middle = (low + high) / 2
            values += [low, -low, middle, -middle, middle.nextUp, middle.nextDown]
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<10_000 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))) }
        values += [1, 2, 3]  // a length that is not a multiple of 16
        var fast = [UInt16](repeating: 0xFFFF, count: values.count)
        var reference = [UInt16](repeating: 0xFFFF, count: values.count)
        let converted = values.withUnsafeBufferPointer { source in
            fast.withUnsafeMutableBufferPointer { sq_f32_to_f16(source.baseAddress!, $0.baseAddress!, values.count) }
        }
        guard converted == 1 else { return }
        values.withUnsafeBufferPointer { source in
            reference.withUnsafeMutableBufferPointer { ReducedPrecision.narrowToHalves(source, into: $0) }
        }
        let mismatches = zip(fast, reference).filter { a, b in
            a != b && !(Float16(bitPattern: a).isNaN && Float16(bitPattern: b).isNaN)
        }.count
        #expect(mismatches == 0)
    }

    @Test func tensorsRoundTripThroughTheFastPath() throws {
        let values: [Float] = (0..<37).map { Float($0) * 0.37 - 5 }
        let tensor = try Tensor(shape: [37], scalars: values)
        let half = try ReducedPrecision.narrow(tensor, to: .float16)
        #expect(half.dtype == .float16)
        let back = try ReducedPrecision.widen(half)
        #expect(back.scalars(as: Float.self) == values.map { Float(Float16($0)) })
    }
}
