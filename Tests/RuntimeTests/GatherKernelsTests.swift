import GraphIR
import Runtime
import Tensors
import Testing

@Suite struct GatherKernelsTests {
    typealias H = ShapeKernelHarness

    @Test func gatherMatchesTheSpecExamples() throws {
        let data = H.floats([3, 2], [1.0, 1.2, 2.3, 3.4, 4.5, 5.7])
        let rows = try H.one("Gather", [data, try Tensor(shape: [2, 2], scalars: [Int64(0), 1, 1, 2])])
        #expect(rows == H.floats([2, 2, 2], [1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7]))
        let square = H.floats([3, 3], [1.0, 1.2, 1.9, 2.3, 3.4, 3.9, 4.5, 5.7, 5.9])
        let columns = try H.one("Gather", [square, try Tensor(shape: [1, 2], scalars: [Int32(0), 2])],
                                attributes: [("axis", .int(1))])
        #expect(columns == H.floats([3, 1, 2], [1.0, 1.9, 2.3, 3.9, 4.5, 5.9]))
    }

    @Test func gatherAcceptsNegativeIndicesAndAxes() throws {
        // numpy: np.take(np.arange(24).reshape(2, 3, 4), [[2, -1], [0, 1]], axis=2)
        let data = try Tensor(shape: [2, 3, 4], scalars: (0..<24).map { Int64($0) })
        let output = try H.one("Gather", [data, try Tensor(shape: [2, 2], scalars: [Int64(2), -1, 0, 1])],
                               attributes: [("axis", .int(-1))])
        #expect(output.shape == [2, 3, 2, 2])
        #expect(output.scalars(as: Int64.self) == [2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9,
                                                   14, 15, 12, 13, 18, 19, 16, 17, 22, 23, 20, 21])
        let scalarIndex = try H.one("Gather", [H.floats([3, 2], [1, 2, 3, 4, 5, 6]), Tensor(scalar: Int64(-1))])
        #expect(scalarIndex == H.floats([2], [5, 6]))
        let flags = try H.one("Gather", [try Tensor(shape: [3], scalars: [true, false, true]), H.int64s([1, 1, 0])])
        #expect(flags.scalars(as: Bool.self) == [false, false, true])
    }

    @Test func gatherRejectsOutOfRangeIndicesAndBadTypes() throws {
        let data = H.floats([3, 2], [1, 2, 3, 4, 5, 6])
        let high = #expect(throws: KernelError.self) { try H.one("Gather", [data, H.int64s([0, 3])]) }
        #expect(high?.description.contains("index 3 at position 1 is out of range") == true)
        #expect(throws: KernelError.self) { try H.one("Gather", [data, H.int64s([-4])]) }
        #expect(throws: KernelError.self) { try H.one("Gather", [data, H.floats([1], [0])]) }
        #expect(throws: KernelError.self) { try H.one("Gather", [data, H.int64s([0])], attributes: [("axis", .int(2))]) }
        #expect(throws: KernelError.self) { try H.one("Gather", [Tensor(scalar: Float(1)), H.int64s([0])]) }
    }

    @Test func gatherElementsMatchesTakeAlongAxis() throws {
        let pairs = try Tensor(shape: [2, 2], scalars: [Int32(1), 2, 3, 4])
        let first = try H.one("GatherElements", [pairs, H.int64s([0, 0, 1, 0]).reshaped([2, 2])], attributes: [("axis", .int(1))])
        #expect(first.scalars(as: Int32.self) == [1, 1, 4, 3])
        let square = H.floats([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9])
        // numpy: np.take_along_axis(a, [[1, 2, 0], [2, 0, 0]], 0)
        let byRow = try H.one("GatherElements", [square, H.int64s([1, 2, 0, 2, 0, 0]).reshaped([2, 3])])
        #expect(byRow == H.floats([2, 3], [4, 8, 3, 7, 2, 3]))
        // numpy: np.take_along_axis(a, [[-1, 0], [1, -3], [2, 2]], 1)
        let byColumn = try H.one("GatherElements", [square, try Tensor(shape: [3, 2], scalars: [Int32(-1), 0, 1, -3, 2, 2])],
                                 attributes: [("axis", .int(-1))])
        #expect(byColumn == H.floats([3, 2], [3, 1, 5, 4, 9, 9]))
    }

    @Test func gatherElementsRejectsBadIndices() throws {
        let square = H.floats([2, 2], [1, 2, 3, 4])
        #expect(throws: KernelError.self) { try H.one("GatherElements", [square, H.int64s([0, 2]).reshaped([1, 2])]) }
        #expect(throws: KernelError.self) { try H.one("GatherElements", [square, H.int64s([0, 1])]) }
        #expect(throws: KernelError.self) {
            try H.one("GatherElements", [square, H.int64s([0, 0, 0]).reshaped([1, 3])])
        }
    }
}
