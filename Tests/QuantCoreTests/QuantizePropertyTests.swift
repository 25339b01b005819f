import PropertyBased
import Testing
import Tensors
@testable import QuantCore

/// Properties of quantize / dequantize for every type and granularity, on random tensors and ranges.
///
/// The reference here is plain index arithmetic (which parameter an element belongs to) and the
/// definitions of the types — never the code under test.
@Suite struct QuantizePropertyTests {
    /// A small deterministic generator for tensor contents (the property library draws shapes and seeds).
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }
    }

    static let granularities: [Granularity] = [
        .perTensor, .perChannel(axis: 0), .perChannel(axis: 2), .perChannel(axis: -2),
        .perGroup(axis: 1, size: 2), .perGroup(axis: 2, size: 3), .perGroup(axis: 0, size: 1),
    ]

    /// Every integer type and mapping the properties cover.
    static let integerSchemes: [QuantScheme] = {
        var schemes: [QuantScheme] = []
        for bits in 1...16 {
            for signed in [true, false] {
                let type = try! QuantType.integer(bits: bits, signed: signed)
                for mapping in Mapping.allCases {
                    for range in IntegerRange.allCases {
                        for reduce in [false, true] {
                            let scheme = QuantScheme(type: type, mapping: mapping, range: range, reduceRange: reduce)
                            if (try? scheme.validate()) != nil { schemes.append(scheme) }
                        }
                    }
                }
            }
        }
        return schemes
    }()

    /// The parameter index of the element at `index` (row-major) of `shape` — ONNX's scale layout.
    static func parameterIndex(_ index: Int, shape: [Int], granularity: Granularity) -> Int {
        var coordinates = [Int](repeating: 0, count: shape.count)
        var rest = index
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            coordinates[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        switch granularity {
        case .perTensor: return 0
        case .perChannel(let axis): return coordinates[axis < 0 ? axis + shape.count : axis]
        case .perGroup(let axis, let size):
            let a = axis < 0 ? axis + shape.count : axis
            var blocked = shape
            blocked[a] = (shape[a] + size - 1) / size
            coordinates[a] /= size
            var flat = 0
            for (c, d) in zip(coordinates, blocked) { flat = flat * d + c }
            return flat
        }
    }

    /// A random tensor of `shape`, values spread over roughly [−spread, spread] with an offset.
    static func randomTensor(shape: [Int], seed: Int, spread: Float, offset: Float) throws -> Tensor {
        var rng = SplitMix(state: UInt64(seed))
        let count = shape.reduce(1, *)
        return try Tensor(shape: shape, scalars: (0..<count).map { _ in (2 * rng.uniform() - 1) * spread + offset })
    }

    /// Per-parameter [min, max] computed by plain indexing.
    static func ranges(_ x: [Float], shape: [Int], granularity: Granularity) throws -> QuantRange {
        let layout = try granularity.layout(for: shape)
        var lo = [Float](repeating: .infinity, count: layout.parameterCount), hi = lo.map { -$0 }
        for (i, v) in x.enumerated() {
            let p = parameterIndex(i, shape: shape, granularity: granularity)
            lo[p] = min(lo[p], v)
            hi[p] = max(hi[p], v)
        }
        return try QuantRange(minimum: lo, maximum: hi, parameterShape: layout.parameterShape)
    }

    @Test func integerTypesRoundTripWithinHalfAStep() async {
        await propertyCheck(count: 60, input: Gen.int(in: 0...1_000_000), Gen.int(in: 1...4), Gen.int(in: 1...5),
                            Gen.float(in: 0.001...1000)) { seed, a, b, spread in
            let shape = [a, b, 3]
            var rng = SplitMix(state: UInt64(seed))
            let offset = (2 * rng.uniform() - 1) * spread
            let granularity = Self.granularities[seed % Self.granularities.count]
            let scheme0 = Self.integerSchemes[(seed / 7) % Self.integerSchemes.count]
            var scheme = scheme0
            scheme.granularity = granularity
            do {
                let x = try Self.randomTensor(shape: shape, seed: seed, spread: spread, offset: offset)
                let values = x.scalars(as: Float.self)
                let params = try QuantParams(scheme: scheme, range: Self.ranges(values, shape: shape, granularity: granularity))
                let q = try x.quantized(with: params)
                let codes = q.codes()
                let y = try q.dequantized().scalars(as: Float.self)
                let fake = try x.fakeQuantized(with: params).scalars(as: Float.self)
                #expect(y == fake)
                let range = try #require(params.codeRange)
                for (i, v) in values.enumerated() {
                    let p = Self.parameterIndex(i, shape: shape, granularity: granularity)
                    let s = params.scales[p], z = params.zeroPoints[p]
                    #expect(range.contains(codes[i]))
                    let lower = Float(range.lowerBound - z) * s, upper = Float(range.upperBound - z) * s
                    if v >= lower && v <= upper {
                        // Inside the range: within half a step, up to float32 rounding of x / s and (q − z)·s.
                        let slack = s / 2 * (1 + 1e-5) + v.ulp * 2
                        #expect(abs(y[i] - v) <= slack, "\(scheme.type) \(scheme.mapping) \(granularity): \(v) → \(y[i]), s = \(s)")
                    }
                    // Zero is exact, and re-quantizing a dequantized value gives the same code.
                    #expect(params.fakeQuantize(0, parameter: p) == 0)
                    #expect(params.quantize(y[i], parameter: p) == codes[i])
                }
            } catch {
                Issue.record("\(scheme.type) \(granularity): \(error)")
            }
        }
    }

    @Test func everyIntegerCodeSurvivesDequantizeThenQuantize() throws {
        for scheme in Self.integerSchemes {
            let params = try QuantParams(scheme: scheme, minimum: -3.7, maximum: 11.2)
            let range = try #require(params.codeRange)
            for code in range {
                #expect(params.quantize(params.dequantize(code)) == code, "\(scheme.type) \(scheme.mapping) code \(code)")
            }
        }
    }

    @Test func perGroupWithOneGroupEqualsPerTensor() async {
        await propertyCheck(count: 40, input: Gen.int(in: 0...1_000_000), Gen.int(in: 1...40)) { seed, n in
            let scheme = Self.integerSchemes[seed % Self.integerSchemes.count]
            do {
                let x = try Self.randomTensor(shape: [1, n], seed: seed, spread: 5, offset: 1)
                let values = x.scalars(as: Float.self)
                var tensorScheme = scheme
                tensorScheme.granularity = .perTensor
                var groupScheme = scheme
                groupScheme.granularity = .perGroup(axis: 1, size: n + seed % 3)
                let perTensor = try QuantParams(scheme: tensorScheme, minimum: values.min()!, maximum: values.max()!)
                let perGroup = try QuantParams(scheme: groupScheme, range: Self.ranges(values, shape: [1, n], granularity: groupScheme.granularity))
                #expect(perGroup.scales == perTensor.scales)
                #expect(perGroup.zeroPoints == perTensor.zeroPoints)
                #expect(try x.quantized(with: perGroup).codes() == x.quantized(with: perTensor).codes())
                #expect(try x.fakeQuantized(with: perGroup) == x.fakeQuantized(with: perTensor))
                // With several rows, one group per row is per-channel along the rows.
                let rows = try Self.randomTensor(shape: [3, n], seed: seed + 1, spread: 5, offset: -1)
                var channelScheme = scheme
                channelScheme.granularity = .perChannel(axis: 0)
                groupScheme.granularity = .perGroup(axis: 1, size: n)
                let rowValues = rows.scalars(as: Float.self)
                let byGroup = try QuantParams(scheme: groupScheme, range: Self.ranges(rowValues, shape: [3, n], granularity: groupScheme.granularity))
                let byChannel = try QuantParams(scheme: channelScheme, range: Self.ranges(rowValues, shape: [3, n], granularity: channelScheme.granularity))
                #expect(try rows.fakeQuantized(with: byGroup) == rows.fakeQuantized(with: byChannel))
            } catch {
                Issue.record("\(scheme.type): \(error)")
            }
        }
    }

    static let floatTypes: [QuantType] = [.float16, .bfloat16, .float8e4m3fn, .float8e5m2]

    @Test(arguments: floatTypes)
    func floatTypesRoundTripWithinHalfAnUlp(type: QuantType) async {
        // Mantissa bits and smallest normal exponent of each format.
        let (mantissa, minimumExponent): (Int, Int) = switch type.kind {
        case .float16: (10, -14)
        case .bfloat16: (7, -126)
        case .float8e4m3fn: (3, -6)
        default: (2, -14)
        }
        await propertyCheck(count: 40, input: Gen.int(in: 0...1_000_000), Gen.float(in: 0.01...1000)) { seed, spread in
            let granularity = Self.granularities[seed % Self.granularities.count]
            do {
                let x = try Self.randomTensor(shape: [2, 4, 3], seed: seed, spread: spread, offset: 0)
                let values = x.scalars(as: Float.self)
                let scheme = QuantScheme(type: type, granularity: granularity)
                let params = try QuantParams(scheme: scheme, range: Self.ranges(values, shape: [2, 4, 3], granularity: granularity))
                let y = try x.quantized(with: params).dequantized().scalars(as: Float.self)
                #expect(try x.fakeQuantized(with: params).scalars(as: Float.self) == y)
                for (i, v) in values.enumerated() {
                    let p = Self.parameterIndex(i, shape: [2, 4, 3], granularity: granularity)
                    let s = params.scales[p]
                    let scaled = abs(v / s)
                    // Half an ulp of the format at |x/s| (subnormals have the smallest normal's ulp), times s.
                    let exponent = max(scaled == 0 ? minimumExponent : Int(scaled.exponent), minimumExponent)
                    let halfUlp = Float(sign: .plus, exponent: exponent - mantissa - 1, significand: 1) * s
                    #expect(abs(y[i] - v) <= halfUlp * (1 + 1e-5) + v.ulp * 2, "\(type): \(v) → \(y[i]), s = \(s)")
                    #expect(params.fakeQuantize(0, parameter: p) == 0)
                    #expect(params.fakeQuantize(y[i], parameter: p) == y[i])
                }
            } catch {
                Issue.record("\(type): \(error)")
            }
        }
    }

    @Test func everyFloat8CodeSurvivesDequantizeThenQuantize() throws {
        for type in [QuantType.float8e4m3fn, .float8e5m2] {
            for scale: Float in [1, 0.37, 1000, 1e-6] {
                let params = try QuantParams(type: type, scales: [scale])
                for code in Int32(0)...255 {
                    let value = params.dequantize(code)
                    guard value.isFinite else { continue }
                    let back = params.quantize(value)
                    // ±0 are two codes of one value.
                    if value == 0 { #expect(back & 0x7F == 0) } else { #expect(back == code, "\(type) s=\(scale) code \(code)") }
                }
            }
        }
    }

    @Test func log2RoundsInTheLogDomainAndIsIdempotent() async {
        await propertyCheck(count: 40, input: Gen.int(in: 0...1_000_000), Gen.int(in: 2...8)) { seed, bits in
            let type = try! QuantType.log2(bits: bits)
            let levels = (1 << (bits - 1)) - 1
            let granularity = Self.granularities[seed % Self.granularities.count]
            do {
                let x = try Self.randomTensor(shape: [2, 4, 3], seed: seed, spread: 3, offset: 0)
                let params = try WeightRangeRules.log2(x, granularity: granularity, type: type)
                let values = x.scalars(as: Float.self)
                let y = try x.quantized(with: params).dequantized().scalars(as: Float.self)
                for (i, v) in values.enumerated() {
                    let s = params.scales[Self.parameterIndex(i, shape: [2, 4, 3], granularity: granularity)]
                    let smallest = s * Float(sign: .plus, exponent: 1 - levels, significand: 1)
                    let magnitude = abs(v)
                    if magnitude >= smallest && magnitude <= s {
                        // Within the exponent range the level is 2^round(log2|x|): at most √2 − 1 away, relatively.
                        #expect(abs(y[i] - v) <= 0.41422 * magnitude, "log2_\(bits): \(v) → \(y[i])")
                        #expect(y[i].sign == v.sign)
                    }
                    if magnitude < smallest / 2 { #expect(y[i] == 0) }
                    // Every level is a power of two times s.
                    if y[i] != 0 { #expect((abs(y[i]) / s).significand == 1) }
                    #expect(params.fakeQuantize(y[i], parameter: Self.parameterIndex(i, shape: [2, 4, 3], granularity: granularity)) == y[i])
                }
                #expect(params.fakeQuantize(0) == 0)
            } catch {
                Issue.record("log2_\(bits): \(error)")
            }
        }
    }

    @Test func binaryAndTernaryCodesAreFixedPoints() async {
        await propertyCheck(count: 30, input: Gen.int(in: 0...1_000_000)) { seed in
            let granularity = Self.granularities[seed % Self.granularities.count]
            do {
                let x = try Self.randomTensor(shape: [2, 4, 3], seed: seed, spread: 2, offset: 0.1)
                for params in [try WeightRangeRules.binary(x, granularity: granularity),
                               try WeightRangeRules.ternary(x, granularity: granularity)] {
                    let y = try x.fakeQuantized(with: params)
                    #expect(try y.fakeQuantized(with: params) == y)
                    let values = x.scalars(as: Float.self), out = y.scalars(as: Float.self)
                    for (i, v) in values.enumerated() {
                        let p = Self.parameterIndex(i, shape: [2, 4, 3], granularity: granularity)
                        let alpha = params.scales[p]
                        if case .binary = params.type.kind {
                            #expect(out[i] == (v < 0 ? -alpha : alpha))
                        } else {
                            let delta = params.ternaryThresholds![p]
                            #expect(out[i] == (v > delta ? alpha : (v < -delta ? -alpha : 0)))
                        }
                    }
                }
                // Ternary keeps zero exact; binary cannot represent it (0 → +α, documented).
                let ternary = try WeightRangeRules.ternary(x, granularity: .perTensor)
                #expect(ternary.fakeQuantize(0) == 0)
            } catch {
                Issue.record("\(granularity): \(error)")
            }
        }
    }
}
