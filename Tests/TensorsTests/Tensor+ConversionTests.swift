import Testing
import Tensors

/// Expected values below were computed with numpy 2.4 (`astype`) and ml_dtypes 0.6 (bfloat16, int4) on
/// x86-64; ONNX Runtime 1.31's Cast gives the same integers for the float → integer cases.
@Suite struct TensorConversionTests {
    /// float32 sources with NaN, infinities, out-of-range values and halves.
    static let awkwardFloats: [Float] = [
        .nan, .infinity, -.infinity, 300.7, -300.7, 1e10, -1e10, 3e9, -1.5, 2.5, -2.5, 0, 4294967296, 9.3e18, -0, 1e20,
    ]

    @Test func floatToIntegerTruncatesAndNeverTraps() throws {
        let source = try Tensor(shape: [16], scalars: Self.awkwardFloats)
        #expect(try source.converted(to: .int8).scalars(as: Int8.self)
            == [0, 0, 0, 44, -44, 0, 0, 0, -1, 2, -2, 0, 0, 0, 0, 0])
        #expect(try source.converted(to: .uint8).scalars(as: UInt8.self)
            == [0, 0, 0, 44, 212, 0, 0, 0, 255, 2, 254, 0, 0, 0, 0, 0])
        #expect(try source.converted(to: .int16).scalars(as: Int16.self)
            == [0, 0, 0, 300, -300, 0, 0, 0, -1, 2, -2, 0, 0, 0, 0, 0])
        #expect(try source.converted(to: .uint16).scalars(as: UInt16.self)
            == [0, 0, 0, 300, 65236, 0, 0, 0, 65535, 2, 65534, 0, 0, 0, 0, 0])
        let m32 = Int32.min
        #expect(try source.converted(to: .int32).scalars(as: Int32.self)
            == [m32, m32, m32, 300, -300, m32, m32, m32, -1, 2, -2, 0, m32, m32, 0, m32])
        #expect(try source.converted(to: .uint32).scalars(as: UInt32.self)
            == [2_147_483_648, 0, 2_147_483_648, 300, 4_294_966_996, 0, 2_147_483_648, 3_000_000_000,
                4_294_967_295, 2, 4_294_967_294, 0, 0, 0, 0, 0])
        let m64 = Int64.min
        #expect(try source.converted(to: .int64).scalars(as: Int64.self)
            == [m64, m64, m64, 300, -300, 10_000_000_000, -10_000_000_000, 3_000_000_000, -1, 2, -2, 0,
                4_294_967_296, m64, 0, m64])
        #expect(try source.converted(to: .uint64).scalars(as: UInt64.self)
            == [9_223_372_036_854_775_808, 0, 9_223_372_036_854_775_808, 300, 18_446_744_073_709_551_316,
                10_000_000_000, 18_446_744_063_709_551_616, 3_000_000_000, 18_446_744_073_709_551_615, 2,
                18_446_744_073_709_551_614, 0, 4_294_967_296, 9_300_000_300_729_368_576, 0, 0])
        #expect(try source.converted(to: .bool).scalars(as: Bool.self)
            == [true, true, true, true, true, true, true, true, true, true, true, false, true, true, false, true])
    }

    @Test func doubleToIntegerEdges() throws {
        let source = try Tensor(shape: [8], scalars: [
            Double.nan, 2_147_483_647.9, -2_147_483_648.9, 4_294_967_295.5, -1, 1.8446744073709552e19,
            9.223372036854775e18, -9.3e18,
        ])
        #expect(try source.converted(to: .int32).scalars(as: Int32.self)
            == [.min, 2_147_483_647, .min, .min, -1, .min, .min, .min])
        #expect(try source.converted(to: .uint32).scalars(as: UInt32.self)
            == [2_147_483_648, 2_147_483_647, 2_147_483_648, 4_294_967_295, 4_294_967_295, 0, 0, 2_147_483_648])
        #expect(try source.converted(to: .int64).scalars(as: Int64.self)
            == [.min, 2_147_483_647, -2_147_483_648, 4_294_967_295, -1, .min, 9_223_372_036_854_774_784, .min])
        #expect(try source.converted(to: .uint64).scalars(as: UInt64.self)
            == [9_223_372_036_854_775_808, 2_147_483_647, 18_446_744_071_562_067_968, 4_294_967_295,
                18_446_744_073_709_551_615, 0, 9_223_372_036_854_774_784, 9_223_372_036_854_775_808])
        #expect(try source.converted(to: .int16).scalars(as: Int16.self) == [0, -1, 0, 0, -1, 0, 0, 0])
    }

    @Test func float16RoundsToNearestEven() throws {
        // 1 + 2^-11 and 2049 lie exactly halfway between float16 neighbours: ties go to the even one.
        let source = try Tensor(shape: [11], scalars: [
            Float(1) + 0x1p-11, 1 + 3 * 0x1p-11, 2049, 2051, 65519, 65520, 1e-8, 0x1p-25, 0x1p-24, -(1 + 0x1p-11), 0.1,
        ])
        let bits = try source.converted(to: .float16).scalars(as: Float16.self).map(\.bitPattern)
        #expect(bits == [0x3C00, 0x3C02, 0x6800, 0x6802, 0x7BFF, 0x7C00, 0x0000, 0x0000, 0x0001, 0xBC00, 0x2E66])
        // float64 → float16 rounds once: just above the tie goes up (rounding via float32 would not).
        let double = try Tensor(shape: [1], scalars: [1 + 0x1p-11 + 0x1p-40])
        #expect(try double.converted(to: .float16).scalars(as: Float16.self).map(\.bitPattern) == [0x3C01])
    }

    @Test func bfloat16RoundsToNearestEven() throws {
        let source = try Tensor(shape: [5], scalars: [Float(1) + 0x1p-8, 1 + 3 * 0x1p-8, 0.1, -3.0e38, 3.4e38])
        let bits = try source.converted(to: .bfloat16).scalars(as: BFloat16.self).map(\.bitPattern)
        #expect(bits == [0x3F80, 0x3F82, 0x3DCD, 0xFF62, 0x7F80])
        // float64 → bfloat16 goes through float32, as ml_dtypes does.
        let double = try Tensor(shape: [1], scalars: [1 + 0x1p-8 + 0x1p-40])
        #expect(try double.converted(to: .bfloat16).scalars(as: BFloat16.self).map(\.bitPattern) == [0x3F80])
        let integers = try Tensor(shape: [4], scalars: [Int64(257), 259, 16_777_217, -129])
        #expect(try integers.converted(to: .bfloat16).scalars(as: BFloat16.self).map(\.bitPattern)
            == [0x4380, 0x4382, 0x4B80, 0xC301])
        // bfloat16 → float32 is exact.
        let back = try Tensor(shape: [2], scalars: [BFloat16(bitPattern: 0x3F82), BFloat16(bitPattern: 0xFF80)])
        #expect(try back.floatArray() == [1.015625, -.infinity])
    }

    @Test func integerToIntegerWraps() throws {
        let source = try Tensor(shape: [5], scalars: [Int64(200), -200, 65541, -1, 2_147_483_648])
        #expect(try source.converted(to: .int8).scalars(as: Int8.self) == [-56, 56, 5, -1, 0])
        #expect(try source.converted(to: .uint8).scalars(as: UInt8.self) == [200, 56, 5, 255, 0])
        #expect(try source.converted(to: .int16).scalars(as: Int16.self) == [200, -200, 5, -1, 0])
        #expect(try source.converted(to: .uint16).scalars(as: UInt16.self) == [200, 65336, 5, 65535, 0])
        #expect(try source.converted(to: .int32).scalars(as: Int32.self) == [200, -200, 65541, -1, .min])
        #expect(try source.converted(to: .uint32).scalars(as: UInt32.self)
            == [200, 4_294_967_096, 65541, 4_294_967_295, 2_147_483_648])
        let unsigned = try Tensor(shape: [2], scalars: [UInt64.max, 1 << 63])
        #expect(try unsigned.converted(to: .int64).scalars(as: Int64.self) == [-1, .min])
        #expect(try unsigned.converted(to: .float32).scalars(as: Float.self) == [1.8446744e19, 9.223372e18])
    }

    @Test func integerToFloatRoundsLikeC() throws {
        let source = try Tensor(shape: [5], scalars: [Int64(16_777_217), 9_007_199_254_740_993, .min, .max, 50_331_651])
        #expect(try source.converted(to: .float32).scalars(as: Float.self).map(\.bitPattern)
            == [0x4B80_0000, 0x5A00_0000, 0xDF00_0000, 0x5F00_0000, 0x4C40_0001])
        #expect(try source.converted(to: .float64).scalars(as: Double.self)
            == [16_777_217, 9_007_199_254_740_992, -9.223372036854776e18, 9.223372036854776e18, 50_331_651])
        let small = try Tensor(shape: [5], scalars: [Int32(65519), 65520, 2049, -70000, 3])
        #expect(try small.converted(to: .float16).scalars(as: Float16.self) == [65504, .infinity, 2048, -.infinity, 3])
    }

    @Test func float16AndBoolSources() throws {
        let halves = try Tensor(shape: [5], scalars: [Float16.nan, .infinity, 65504, -300.5, 2.75])
        #expect(try halves.converted(to: .int8).scalars(as: Int8.self) == [0, 0, -32, -44, 2])
        let subnormal = try Tensor(shape: [1], scalars: [Float16(bitPattern: 1)])
        #expect(try subnormal.floatArray() == [0x1p-24])
        let flags = try Tensor(shape: [2], scalars: [true, false])
        #expect(try flags.converted(to: .float32).scalars(as: Float.self) == [1, 0])
        #expect(try flags.converted(to: .int64).scalars(as: Int64.self) == [1, 0])
        #expect(try flags.converted(to: .bfloat16).floatArray() == [1, 0])
        // A stray storage byte other than 0/1 still reads as true.
        let odd = try [UInt8(2), 0].withUnsafeBytes { try Tensor(dtype: .bool, shape: [2], bytes: $0) }
        #expect(try odd.converted(to: .int32).scalars(as: Int32.self) == [1, 0])
    }

    @Test func everyPairRoundTripsSmallIntegers() throws {
        // 0…5 are exact in every numeric type, so any conversion chain must give them back.
        let numeric: [DType] = [.float32, .float64, .float16, .bfloat16, .int8, .uint8, .int16, .uint16,
                                .int32, .uint32, .int64, .uint64, .int4, .uint4]
        let base = try Tensor(shape: [2, 3], scalars: [Float(0), 1, 2, 3, 4, 5])
        for from in numeric {
            let source = try base.converted(to: from)
            #expect(source.dtype == from && source.shape == [2, 3])
            for to in numeric + [.bool] {
                let converted = try source.converted(to: to)
                #expect(converted.dtype == to && converted.shape == [2, 3])
                let expected: [Float] = to == .bool ? [0, 1, 1, 1, 1, 1] : [0, 1, 2, 3, 4, 5]
                #expect(try converted.floatArray() == expected, "\(from) → \(to)")
            }
        }
    }

    @Test func sameDTypeSharesStorageAndEmptyTensorsConvert() throws {
        let t = try Tensor(shape: [3], scalars: [Float(1), 2, 3])
        #expect(try t.converted(to: .float32).sharesStorage(with: t))
        let empty = try Tensor(zeros: .float32, shape: [0, 4])
        let converted = try empty.converted(to: .int64)
        #expect(converted.shape == [0, 4] && converted.count == 0)
        let scalar = Tensor(scalar: Double(-7.9))
        #expect(try scalar.converted(to: .int32).scalars(as: Int32.self) == [-7])
        #expect(try scalar.converted(to: .int32).shape == [])
    }

    @Test func float8IsNotConvertedYet() throws {
        let t = try Tensor(shape: [1], scalars: [Float(1)])
        #expect(throws: TensorError.unsupportedConversion(from: .float32, to: .float8e4m3fn)) {
            try t.converted(to: .float8e4m3fn)
        }
        let f8 = try Tensor(zeros: .float8e5m2, shape: [2])
        #expect(throws: TensorError.unsupportedConversion(from: .float8e5m2, to: .float32)) { try f8.floatArray() }
        #expect(try f8.converted(to: .float8e5m2) == f8)
    }

    // MARK: 4-bit

    @Test func int4ConversionsWrapLikeTheONNXReference() throws {
        // ml_dtypes int4/uint4 (the ONNX reference): truncate, then keep the low nibble.
        let floats = try Tensor(shape: [16], scalars: [
            Float(0), 1.5, -1.5, 7, 8, -8, -9, 10, 20, 100, 300.5, .nan, .infinity, -.infinity, 7.9, -8.9,
        ])
        #expect(try floats.converted(to: .int4).unpackedInt4() == [0, 1, -1, 7, -8, -8, 7, -6, 4, 4, -4, 0, 0, 0, 7, -8])
        #expect(try floats.converted(to: .uint4).unpackedInt4() == [0, 1, 15, 7, 8, 8, 7, 10, 4, 4, 12, 0, 0, 0, 7, 8])
        let ints = try Tensor(shape: [16], scalars: [
            Int32(0), 1, -1, 7, 8, -8, -9, 10, 20, 100, 300, -300, 15, 16, -16, 255,
        ])
        #expect(try ints.converted(to: .int4).unpackedInt4() == [0, 1, -1, 7, -8, -8, 7, -6, 4, 4, -4, 4, -1, 0, 0, -1])
        #expect(try ints.converted(to: .uint4).unpackedInt4() == [0, 1, 15, 7, 8, 8, 7, 10, 4, 4, 12, 4, 15, 0, 0, 15])
        // 4-bit sources widen exactly; int4 ↔ uint4 reinterprets the nibble.
        let signed = try Tensor.packInt4([-8, -1, 0, 7, 3], signed: true, shape: [5])
        #expect(try signed.floatArray() == [-8, -1, 0, 7, 3])
        #expect(try signed.converted(to: .uint4).unpackedInt4() == [8, 15, 0, 7, 3])
        #expect(try signed.converted(to: .bool).scalars(as: Bool.self) == [true, true, false, true, true])
    }

    @Test func int4PackingLayoutAndErrors() throws {
        let packed = try Tensor.packInt4([1, -2, 3], signed: true, shape: [3])
        // First element in the low nibble: 0xE1, then 0x03 (the high nibble of the last byte is zero).
        #expect(packed.withUnsafeBytes { Array($0) } == [0xE1, 0x03])
        #expect(try packed.unpackedInt4() == [1, -2, 3])
        let unsigned = try Tensor.packInt4([15, 0, 9, 4], signed: false, shape: [2, 2])
        #expect(unsigned.withUnsafeBytes { Array($0) } == [0x0F, 0x49])
        #expect(try unsigned.unpackedInt4() == [15, 0, 9, 4])
        #expect(throws: TensorError.self) { try Tensor.packInt4([8], signed: true, shape: [1]) }
        #expect(throws: TensorError.self) { try Tensor.packInt4([-1], signed: false, shape: [1]) }
        #expect(throws: TensorError.sizeMismatch(what: "values for int4 shape [3]", expected: 3, actual: 2)) {
            try Tensor.packInt4([1, 2], signed: true, shape: [3])
        }
        #expect(throws: TensorError.dtypeMismatch(what: "unpackedInt4()", expected: .int4, actual: .int8)) {
            try Tensor(zeros: .int8, shape: [1]).unpackedInt4()
        }
    }

    // MARK: ONNX codes

    @Test func onnxCodesMatchTensorProto() {
        let table: [(Int32, DType)] = [
            (1, .float32), (2, .uint8), (3, .int8), (4, .uint16), (5, .int16), (6, .int32), (7, .int64), (9, .bool),
            (10, .float16), (11, .float64), (12, .uint32), (13, .uint64), (16, .bfloat16), (17, .float8e4m3fn),
            (19, .float8e5m2), (21, .uint4), (22, .int4),
        ]
        for (code, dtype) in table {
            #expect(DType(onnxCode: code) == dtype)
            #expect(dtype.onnxCode == code)
        }
        #expect(Set(table.map(\.1)) == Set(DType.allCases))
        for code: Int32 in [0, 8, 14, 15, 18, 20, 23, 99, -1] { #expect(DType(onnxCode: code) == nil) }
        #expect(DType.onnxTypeName(code: 8) == "STRING")
        #expect(DType.onnxTypeName(code: 77) == "code 77")
    }
}
