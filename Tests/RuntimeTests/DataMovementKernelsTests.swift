import GraphIR
import Runtime
import Tensors
import Testing

@Suite struct DataMovementKernelsTests {
    typealias H = ShapeKernelHarness

    // MARK: Concat

    @Test func concatJoinsAlongAnAxis() throws {
        let a = H.floats([2, 2], [1, 2, 3, 4]), b = H.floats([2, 1], [5, 6])
        let joined = try H.one("Concat", [a, b], attributes: [("axis", .int(1))])
        #expect(joined == H.floats([2, 3], [1, 2, 5, 3, 4, 6]))
        let negative = try H.one("Concat", opset: 11, [a, b], attributes: [("axis", .int(-1))])
        #expect(negative == joined)
        let rows = try H.one("Concat", [a, H.floats([1, 2], [7, 8]), try Tensor(zeros: .float32, shape: [0, 2])],
                             attributes: [("axis", .int(0))])
        #expect(rows == H.floats([3, 2], [1, 2, 3, 4, 7, 8]))
        let shorts = try H.one("Concat", [try Tensor(shape: [2], scalars: [Int16(1), 2]), try Tensor(shape: [1], scalars: [Int16(-3)])],
                               attributes: [("axis", .int(0))])
        #expect(shorts.scalars(as: Int16.self) == [1, 2, -3])
    }

    @Test func concatRejectsMismatchesAndEarlyNegativeAxes() throws {
        let a = H.floats([2, 2], [1, 2, 3, 4])
        let shape = #expect(throws: KernelError.self) {
            try H.one("Concat", [a, H.floats([3, 1], [5, 6, 7])], attributes: [("axis", .int(1))])
        }
        #expect(shape?.description.contains("does not match") == true)
        #expect(throws: KernelError.self) {
            try H.one("Concat", [a, try Tensor(shape: [2, 1], scalars: [Int32(5), 6])], attributes: [("axis", .int(1))])
        }
        #expect(throws: KernelError.self) { try H.one("Concat", opset: 10, [a, a], attributes: [("axis", .int(-1))]) }
        #expect(throws: KernelError.self) { try H.one("Concat", [a, a], attributes: [("axis", .int(2))]) }
        #expect(throws: KernelError.self) { try H.one("Concat", [a, a]) }
        #expect(throws: KernelError.self) { try H.one("Concat", [a, H.floats([2], [1, 2])], attributes: [("axis", .int(0))]) }
    }

    @Test func largeSplitAndConcatRoundTrip() throws {
        // 3 × 200 × 300 floats (720 KiB): both kernels take their threaded paths.
        let data = H.iota([3, 200, 300])
        let parts = try H.run("Split", opset: 13, [data, H.int64s([120, 7, 173])], attributes: [("axis", .int(2))], outputs: 3)
        #expect(parts.map(\.shape) == [[3, 200, 120], [3, 200, 7], [3, 200, 173]])
        #expect(parts[1].scalars(as: Float.self)[0..<7] == [120, 121, 122, 123, 124, 125, 126])
        let joined = try H.one("Concat", parts, attributes: [("axis", .int(-1))])
        #expect(joined == data)
    }

    // MARK: Split

    @Test func splitByInputSizesFromOpset13() throws {
        let data = H.iota([3, 2])
        let parts = try H.run("Split", opset: 13, [data, H.int64s([1, 2])], outputs: 2)
        #expect(parts == [H.floats([1, 2], [0, 1]), H.floats([2, 2], [2, 3, 4, 5])])
        let columns = try H.run("Split", opset: 13, [data], attributes: [("axis", .int(-1))], outputs: 2)
        #expect(columns == [H.floats([3, 1], [0, 2, 4]), H.floats([3, 1], [1, 3, 5])])
        let withEmpty = try H.run("Split", opset: 13, [H.iota([3]), H.int64s([0, 3, 0])], outputs: 3)
        #expect(withEmpty.map(\.shape) == [[0], [3], [0]])
    }

    @Test func splitByAttributeBeforeOpset13() throws {
        let parts = try H.run("Split", opset: 11, [H.iota([5])], attributes: [("split", .ints([2, 3]))], outputs: 2)
        #expect(parts == [H.floats([2], [0, 1]), H.floats([3], [2, 3, 4])])
        // At opset 13 the attribute is gone: two outputs split 4 evenly.
        let even = try H.run("Split", opset: 13, [H.iota([4])], attributes: [("split", .ints([1, 3]))], outputs: 2)
        #expect(even.map(\.shape) == [[2], [2]])
        #expect(throws: KernelError.self) {
            try H.run("Split", opset: 7, [H.iota([2, 2])], attributes: [("axis", .int(-1))], outputs: 2)
        }
    }

    @Test func splitNumOutputsLeavesASmallerLastChunkFromOpset18() throws {
        let parts = try H.run("Split", opset: 18, [H.iota([7])], attributes: [("num_outputs", .int(3))], outputs: 3)
        #expect(parts == [H.floats([3], [0, 1, 2]), H.floats([3], [3, 4, 5]), H.floats([1], [6])])
        // Opset 13 requires an even split of 7 into 3.
        let uneven = #expect(throws: KernelError.self) { try H.run("Split", opset: 13, [H.iota([7])], outputs: 3) }
        #expect(uneven?.description.contains("evenly") == true)
    }

    @Test func splitRejectsBadSizes() throws {
        let data = H.iota([4])
        #expect(throws: KernelError.self) { try H.run("Split", opset: 13, [data, H.int64s([1, 2])], outputs: 2) }
        #expect(throws: KernelError.self) { try H.run("Split", opset: 13, [data, H.int64s([5, -1])], outputs: 2) }
        #expect(throws: KernelError.self) { try H.run("Split", opset: 13, [data, H.int64s([4])], outputs: 2) }
        #expect(throws: KernelError.self) {
            try H.run("Split", opset: 18, [data, H.int64s([2, 2])], attributes: [("num_outputs", .int(2))], outputs: 2)
        }
        #expect(throws: KernelError.self) {
            try H.run("Split", opset: 18, [data], attributes: [("num_outputs", .int(3))], outputs: 2)
        }
        // ceil(5 / 4) = 2 leaves -1 for the last of four parts.
        #expect(throws: KernelError.self) {
            try H.run("Split", opset: 18, [H.iota([5])], attributes: [("num_outputs", .int(4))], outputs: 4)
        }
    }

    // MARK: Slice

    @Test func sliceWithNegativeStepsAndExtremeEnds() throws {
        let data = H.iota([4, 5])
        // numpy: x[-1::-2, 4:0:-3]
        let backwards = try H.one("Slice", opset: 13, [data, H.int64s([-1, 4]), H.int64s([Int(Int64.min), 0]),
                                                        H.int64s([0, 1]), H.int64s([-2, -3])])
        #expect(backwards == H.floats([2, 2], [19, 16, 9, 6]))
        // numpy: x[:, 1:]
        let tail = try H.one("Slice", opset: 10, [data, H.int64s([1]), H.int64s([Int(Int64.max)]), H.int64s([1])])
        #expect(tail == H.floats([4, 4], [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19]))
        // A step of INT64_MIN picks just the start.
        let one = try H.one("Slice", opset: 13, [H.iota([5]), H.int64s([4]), H.int64s([Int(Int64.min)]), H.int64s([0]), H.int64s([Int(Int64.min)])])
        #expect(one == H.floats([1], [4]))
        // Out-of-range starts clamp; an empty result keeps its rank.
        let empty = try H.one("Slice", opset: 13, [data, H.int64s([10]), H.int64s([20]), H.int64s([1])])
        #expect(empty.shape == [4, 0])
        let int32Indices = try H.one("Slice", opset: 13, [data, try Tensor(shape: [1], scalars: [Int32(3)]),
                                                          try Tensor(shape: [1], scalars: [Int32(1)]),
                                                          try Tensor(shape: [1], scalars: [Int32(0)]),
                                                          try Tensor(shape: [1], scalars: [Int32(-1)])])
        #expect(int32Indices == H.floats([2, 5], [15, 16, 17, 18, 19, 10, 11, 12, 13, 14]))
    }

    @Test func sliceReadsAttributesAtOpset1AndInputsFrom10() throws {
        let data = H.floats([2, 4], [1, 2, 3, 4, 5, 6, 7, 8])
        let attributes: [(String, Attribute)] = [("starts", .ints([0, 1])), ("ends", .ints([-1, 1000]))]
        #expect(try H.one("Slice", opset: 9, [data], attributes: attributes) == H.floats([1, 3], [2, 3, 4]))
        let inputs = try H.one("Slice", opset: 10, [data, H.int64s([1, 0]), H.int64s([2, 3]), H.int64s([0, 1]), H.int64s([1, 2])])
        #expect(inputs == H.floats([1, 2], [5, 7]))
    }

    @Test func sliceSharesStorageWhenNothingIsCut() throws {
        let data = H.iota([3, 4])
        let all = try H.one("Slice", opset: 13, [data, H.int64s([0]), H.int64s([Int(Int64.max)])])
        #expect(all == data && all.sharesStorage(with: data))
    }

    @Test func sliceRejectsZeroStepsRepeatedAxesAndEarlyNegativeAxes() throws {
        let data = H.iota([4, 5])
        let zero = #expect(throws: KernelError.self) {
            try H.one("Slice", opset: 13, [data, H.int64s([0]), H.int64s([2]), H.int64s([0]), H.int64s([0])])
        }
        #expect(zero?.description.contains("step") == true)
        #expect(throws: KernelError.self) { try H.one("Slice", opset: 13, [data, H.int64s([0, 0]), H.int64s([1, 1]), H.int64s([1, -1])]) }
        #expect(throws: KernelError.self) { try H.one("Slice", opset: 10, [data, H.int64s([0]), H.int64s([1]), H.int64s([-1])]) }
        #expect(throws: KernelError.self) { try H.one("Slice", opset: 13, [data, H.int64s([0]), H.int64s([1]), H.int64s([2])]) }
        #expect(throws: KernelError.self) { try H.one("Slice", opset: 13, [data, H.int64s([0, 1]), H.int64s([1])]) }
        #expect(throws: KernelError.self) { try H.one("Slice", opset: 13, [data, H.floats([1], [0]), H.floats([1], [1])]) }
        #expect(throws: KernelError.self) { try H.one("Slice", opset: 13, [data, H.int64s([0])]) }
        #expect(try H.one("Slice", opset: 11, [data, H.int64s([0]), H.int64s([1]), H.int64s([-1])]).shape == [4, 1])
    }

    // MARK: Pad

    @Test func padConstantReflectEdgeAndWrapMatchTheSpecExamples() throws {
        let data = H.floats([3, 2], [1.0, 1.2, 2.3, 3.4, 4.5, 5.7])
        let pads = H.int64s([0, 2, 0, 0])
        let constant = try H.one("Pad", opset: 11, [data, pads, Tensor(scalar: Float(9))])
        #expect(constant == H.floats([3, 4], [9, 9, 1.0, 1.2, 9, 9, 2.3, 3.4, 9, 9, 4.5, 5.7]))
        let zeros = try H.one("Pad", opset: 13, [data, pads])
        #expect(zeros == H.floats([3, 4], [0, 0, 1.0, 1.2, 0, 0, 2.3, 3.4, 0, 0, 4.5, 5.7]))
        let reflect = try H.one("Pad", opset: 13, [data, pads], attributes: [("mode", .text("reflect"))])
        #expect(reflect == H.floats([3, 4], [1.0, 1.2, 1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7, 4.5, 5.7]))
        let edge = try H.one("Pad", opset: 13, [data, pads], attributes: [("mode", .text("edge"))])
        #expect(edge == H.floats([3, 4], [1.0, 1.0, 1.0, 1.2, 2.3, 2.3, 2.3, 3.4, 4.5, 4.5, 4.5, 5.7]))
        let wrap = try H.one("Pad", opset: 19, [data, H.int64s([2, 1, 1, 1])], attributes: [("mode", .text("wrap"))])
        #expect(wrap == H.floats([6, 4], [3.4, 2.3, 3.4, 2.3, 5.7, 4.5, 5.7, 4.5, 1.2, 1.0, 1.2, 1.0,
                                        3.4, 2.3, 3.4, 2.3, 5.7, 4.5, 5.7, 4.5, 1.2, 1.0, 1.2, 1.0]))
    }

    @Test func padReflectsAndWrapsRepeatedlyLikeNumpy() throws {
        let data = H.floats([3], [1, 2, 3])
        // np.pad([1, 2, 3], (4, 4), 'reflect') and (4, 5) 'wrap'
        let reflect = try H.one("Pad", opset: 13, [data, H.int64s([4, 4])], attributes: [("mode", .text("reflect"))])
        #expect(reflect.scalars(as: Float.self) == [1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3])
        let wrap = try H.one("Pad", opset: 19, [data, H.int64s([4, 5])], attributes: [("mode", .text("wrap"))])
        #expect(wrap.scalars(as: Float.self) == [3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2])
    }

    @Test func negativePadsCropBeforePadding() throws {
        let data = H.iota([3, 3])
        // numpy: np.pad(x[1:, :-1], ((0, 0), (1, 0)))
        let cropped = try H.one("Pad", opset: 13, [data, H.int64s([-1, 1, 0, -1])])
        #expect(cropped == H.floats([2, 3], [0, 3, 4, 0, 6, 7]))
        // numpy: np.pad(x[:, 1:], ((1, 0), (0, 2)), mode='edge')
        let edge = try H.one("Pad", opset: 13, [data, H.int64s([1, -1, 0, 2])], attributes: [("mode", .text("edge"))])
        #expect(edge == H.floats([4, 4], [1, 2, 2, 2, 1, 2, 2, 2, 4, 5, 5, 5, 7, 8, 8, 8]))
    }

    @Test func padAttributesAtOpset2AndAxesFromOpset18() throws {
        let data = H.floats([1, 2], [1, 2])
        let attributes: [(String, Attribute)] = [("pads", .ints([0, 1, 0, 0])), ("value", .float(1.5))]
        #expect(try H.one("Pad", opset: 7, [data], attributes: attributes) == H.floats([1, 3], [1.5, 1, 2]))
        let halves = try H.one("Pad", opset: 7, [try Tensor(shape: [1], scalars: [Float16(1)])],
                               attributes: [("pads", .ints([1, 0])), ("value", .float(0.5))])
        #expect(halves.scalars(as: Float16.self) == [0.5, 1])
        let lastAxis = try H.one("Pad", opset: 18, [data, H.int64s([1, 2]), Tensor(scalar: Float(-1)), H.int64s([-1])])
        #expect(lastAxis == H.floats([1, 5], [-1, 1, 2, -1, -1]))
        let bytes = try H.one("Pad", opset: 13, [try Tensor(shape: [2], scalars: [Int8(4), 5]), H.int64s([1, 1]), Tensor(scalar: Int8(-7))])
        #expect(bytes.scalars(as: Int8.self) == [-7, 4, 5, -7])
    }

    @Test func padRejectsBadArguments() throws {
        let data = H.iota([2, 2])
        #expect(throws: KernelError.self) { try H.one("Pad", opset: 13, [data, H.int64s([0, 1])]) }
        #expect(throws: KernelError.self) { try H.one("Pad", opset: 13, [data, H.int64s([-3, 0, 0, 0])]) }
        #expect(throws: KernelError.self) { try H.one("Pad", opset: 13, [data, H.int64s([Int(Int64.min), 0, Int(Int64.max), 0])]) }
        #expect(throws: KernelError.self) {
            try H.one("Pad", opset: 18, [data, H.int64s([0, 0])], attributes: [("mode", .text("wrap"))])
        }
        #expect(throws: KernelError.self) {
            try H.one("Pad", opset: 13, [data, H.int64s([-2, 0, 1, 0])], attributes: [("mode", .text("reflect"))])
        }
        #expect(throws: KernelError.self) { try H.one("Pad", opset: 13, [data, H.int64s([0, 0, 0, 0]), Tensor(scalar: Int32(1))]) }
        #expect(throws: KernelError.self) { try H.one("Pad", opset: 18, [data, H.int64s([0, 0]), nil, H.int64s([2])]) }
    }

    // MARK: Transpose

    /// `output[i] = input[j]` with `j[perm[k]] = i[k]`, written out the slow way.
    static func referenceTranspose(_ values: [Float], shape: [Int], perm: [Int]) -> [Float] {
        let outputShape = perm.map { shape[$0] }
        let inputStrides = Shape.strides(shape)
        var result: [Float] = []
        var index = [Int](repeating: 0, count: shape.count)
        for _ in 0..<values.count {
            var offset = 0
            for k in 0..<perm.count { offset += index[k] * inputStrides[perm[k]] }
            result.append(values[offset])
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < outputShape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }

    @Test(arguments: [
        ([2, 3], [1, 0]), ([1, 64, 40], [0, 2, 1]), ([2, 5, 3, 4], [0, 2, 1, 3]), ([2, 16, 9, 12], [0, 2, 3, 1]),
        ([2, 12, 16, 9], [0, 3, 1, 2]), ([3, 4, 5], [2, 0, 1]), ([40, 33], [1, 0]), ([2, 1, 3], [1, 2, 0]),
        // Large enough (> 256 KiB) to be split over threads: the tiled path and the row-copy path.
        ([1, 384, 200], [0, 2, 1]), ([2, 64, 8, 80], [0, 2, 1, 3]),
    ])
    func transposeMatchesTheIndexDefinition(shape: [Int], perm: [Int]) throws {
        let data = H.iota(shape)
        let output = try H.one("Transpose", [data], attributes: [("perm", .ints(perm))])
        #expect(output.shape == perm.map { shape[$0] })
        #expect(output.scalars(as: Float.self) == Self.referenceTranspose(data.scalars(as: Float.self), shape: shape, perm: perm))
    }

    @Test func transposeMovesEveryElementWidth() throws {
        let bytes = try Tensor(shape: [2, 3], scalars: (0..<6).map { Int8($0) })
        #expect(try H.one("Transpose", [bytes]).scalars(as: Int8.self) == [0, 3, 1, 4, 2, 5])
        let halves = try Tensor(shape: [2, 3], scalars: (0..<6).map { Float16(Float($0)) })
        #expect(try H.one("Transpose", [halves]).scalars(as: Float16.self) == [0, 3, 1, 4, 2, 5])
        let longs = try Tensor(shape: [2, 3], scalars: (0..<6).map { Int64($0) - 3 })
        #expect(try H.one("Transpose", [longs]).scalars(as: Int64.self) == [-3, 0, -2, 1, -1, 2])
        let flags = try Tensor(shape: [1, 2], scalars: [true, false])
        #expect(try H.one("Transpose", [flags]).scalars(as: Bool.self) == [true, false])
        // A permutation that only moves a unit axis keeps the storage.
        let data = H.iota([3, 1, 4])
        #expect(try H.one("Transpose", [data], attributes: [("perm", .ints([1, 0, 2]))]).sharesStorage(with: data))
    }

    @Test func transposeRejectsBadPermutations() throws {
        let data = H.iota([2, 3])
        #expect(throws: KernelError.self) { try H.one("Transpose", [data], attributes: [("perm", .ints([0, 0]))]) }
        #expect(throws: KernelError.self) { try H.one("Transpose", [data], attributes: [("perm", .ints([1, 0, 2]))]) }
        #expect(throws: KernelError.self) {
            try H.one("Transpose", [try [UInt8](repeating: 0, count: 3).withUnsafeBytes {
                try Tensor(dtype: .int4, shape: [2, 3], bytes: $0)
            }])
        }
    }

    // MARK: Tile / Expand

    @Test func tileRepeatsAlongEachAxis() throws {
        let data = H.floats([2, 2], [1, 2, 3, 4])
        #expect(try H.one("Tile", [data, H.int64s([1, 2])]) == H.floats([2, 4], [1, 2, 1, 2, 3, 4, 3, 4]))
        // numpy: np.tile([[1, 2], [3, 4]], (2, 3))
        #expect(try H.one("Tile", [data, H.int64s([2, 3])]) == H.floats([4, 6], [1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4,
                                                                              1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4]))
        #expect(try H.one("Tile", [data, H.int64s([2, 0])]).shape == [4, 0])
        #expect(throws: KernelError.self) { try H.one("Tile", [data, H.int64s([2])]) }
        #expect(throws: KernelError.self) { try H.one("Tile", [data, H.int64s([1, -1])]) }
    }

    @Test func expandBroadcastsBothWays() throws {
        let column = H.floats([3, 1], [1, 2, 3])
        let expanded = try H.one("Expand", [column, H.int64s([2, 1, 4])])
        #expect(expanded.shape == [2, 3, 4])
        #expect(expanded.scalars(as: Float.self) == Array(repeating: [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3] as [Float], count: 2).flatMap { $0 })
        #expect(try H.one("Expand", [column, H.int64s([1])]) == column)
        #expect(try H.one("Expand", [column, H.int64s([3, 0])]).shape == [3, 0])
        #expect(throws: KernelError.self) { try H.one("Expand", [column, H.int64s([2, 2])]) }
        #expect(throws: KernelError.self) { try H.one("Expand", [column, H.int64s([-1])]) }
    }
}
