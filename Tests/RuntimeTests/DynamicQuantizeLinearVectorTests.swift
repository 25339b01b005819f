@testable import Runtime
import Testing

/// DynamicQuantizeLinear's vectorised path (AVX-512 range and QuantizeLinear loops) against its scalar
/// reference: the same codes, scale and zero point for every input, bit for bit.
@Suite struct DynamicQuantizeLinearVectorTests {
    static func run(_ values: [Float], vectorised: Bool) -> ([UInt8], UInt32, UInt8) {
        var codes = [UInt8](repeating: 7, count: values.count)
        let parameters = values.withUnsafeBufferPointer { source in
            codes.withUnsafeMutableBufferPointer {
                DynamicQuantizeLinearKernel.quantize(source, into: $0, vectorised: vectorised)
            }
        }
        return (codes, parameters.scale.bitPattern, parameters.zeroPoint)
    }

    @Test(arguments: [0, 1, 5, 15, 16, 17, 63, 1000, 4099])
    func vectorisedEqualsReference(count: Int) {
        var generator = SystemRandomNumberGenerator()
        let cases: [[Float]] = [
            (0..<count).map { _ in Float.random(in: -3...5, using: &generator) },
            (0..<count).map { _ in Float.random(in: 0.5...9, using: &generator) },        // all positive: zero point 0
            (0..<count).map { _ in -Float.random(in: 0.5...9, using: &generator) },       // all negative: zero point 255
            (0..<count).map { $0 % 7 == 3 ? .nan : Float($0 % 11) - 4.5 },                  // NaN skipped, quantized to 0
            (0..<count).map { $0 % 5 == 0 ? -0.0 : 0 },                                      // an empty range: scale 1
            (0..<count).map { $0 == count / 2 ? .infinity : Float($0) },
            (0..<count).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator)) },
        ]
        for values in cases {
            let fast = Self.run(values, vectorised: true), reference = Self.run(values, vectorised: false)
            #expect(fast.0 == reference.0)
            #expect(fast.1 == reference.1 || (Float(bitPattern: fast.1).isNaN && Float(bitPattern: reference.1).isNaN))
            #expect(fast.2 == reference.2)
        }
    }

    @Test func handComputedParameters() {
        // Range [-1, 2]: scale 3/255, zero point round(1 / (3/255)) = 85; 2 → round(170) + 85 = 255;
        // 0.5 → 42.5, a tie, rounds to the even 42: 127.
        let (codes, scale, zeroPoint) = Self.run([-1, 0, 2, 0.5], vectorised: true)
        #expect(Float(bitPattern: scale) == Float(3) / 255)
        #expect(zeroPoint == 85)
        #expect(codes == [0, 85, 255, 127])
    }
}
