import Testing
import Tensors

@Suite struct TensorTests {
    @Test func storageIsAlignedAndZeroed() throws {
        let t = try Tensor(zeros: .float32, shape: [3, 5])
        #expect(t.count == 15)
        t.withUnsafeBytes { bytes in
            #expect(Int(bitPattern: bytes.baseAddress) % TensorStorage.alignment == 0)
            #expect(bytes.allSatisfy { $0 == 0 })
        }
    }

    @Test func copyOnWriteLeavesTheOriginalAlone() throws {
        let a = try Tensor(shape: [2, 2], scalars: [Float(1), 2, 3, 4])
        var b = a
        #expect(b.sharesStorage(with: a))
        b.withUnsafeMutableBufferPointer(as: Float.self) { $0[0] = 9 }
        #expect(!b.sharesStorage(with: a))
        #expect(a.scalars(as: Float.self) == [1, 2, 3, 4])
        #expect(b.scalars(as: Float.self) == [9, 2, 3, 4])
    }

    @Test func reshapeSharesStorageAndChecksCounts() throws {
        let a = try Tensor(shape: [2, 3], scalars: [Int32](0..<6))
        let b = try a.reshaped([3, 2])
        #expect(b.sharesStorage(with: a))
        #expect(throws: TensorError.incompatibleReshape(from: [2, 3], to: [4, 2])) { try a.reshaped([4, 2]) }
    }

    @Test func hostileShapesAreTypedErrors() {
        #expect(throws: TensorError.elementCountOverflow(shape: [Int.max, 3])) {
            try Tensor(zeros: .float32, shape: [Int.max, 3])
        }
        #expect(throws: TensorError.negativeDimension(shape: [2, -1])) { try Tensor(zeros: .int8, shape: [2, -1]) }
        // The element count fits but the byte count does not.
        #expect(throws: TensorError.self) { try Tensor(zeros: .float64, shape: [Int.max / 4]) }
    }

    @Test func int4IsPackedTwoPerByte() throws {
        #expect(try Tensor(zeros: .int4, shape: [5]).byteCount == 3)
        #expect(try Tensor(zeros: .uint4, shape: [2, 2]).byteCount == 2)
    }

    @Test func bfloat16RoundsToNearestEven() {
        #expect(BFloat16(Float(1.0)).bitPattern == 0x3F80)
        // 1 + 2^-8 is exactly halfway between two bfloat16 values: ties go to the even mantissa.
        #expect(BFloat16(Float(1.0) + Float(1.0 / 256)).bitPattern == 0x3F80)
        #expect(BFloat16(Float(1.0) + Float(3.0 / 256)).bitPattern == 0x3F82)
        #expect(BFloat16(Float.nan).floatValue.isNaN)
    }
}

@Suite struct TensorRowsTests {
    @Test func rowsCopyASliceOfTheFirstAxis() throws {
        let t = try Tensor(shape: [3, 2], scalars: [Int64](0..<6))
        #expect(try t.rows(1..<3).scalars(as: Int64.self) == [2, 3, 4, 5])
        #expect(try t.leadingRows(10).shape == [3, 2])
        #expect(throws: TensorError.self) { try t.rows(2..<4) }
    }
}
