@testable import Runtime
import Testing
import _CKernels

/// `sq_im2col_packed` (every SGEMM level) against its reference twin: the Swift `im2col` followed by
/// `sq_sgemm_pack_b`. Both only copy input values or write zeros, so they must agree bit for bit.
@Suite struct PackedIm2colTests {
    struct Geometry: CustomStringConvertible, Sendable {
        var channels: Int
        var spatial: [Int]
        var kernel: [Int]
        var strides: [Int]? = nil
        var dilations: [Int]? = nil
        var pads: [Int]? = nil
        /// Output rows (flattened (od, oh)) to write; nil for all.
        var rows: Range<Int>? = nil
        var description: String {
            "C\(channels) in\(spatial) k\(kernel) s\(strides ?? []) d\(dilations ?? []) p\(pads ?? []) rows \(rows.map { "\($0)" } ?? "all")"
        }
    }

    static let geometries: [Geometry] = [
        // "Same" 3×3 (one masked load per panel), with more than one K block of 256 rows.
        Geometry(channels: 40, spatial: [7, 7], kernel: [3, 3], pads: [1, 1, 1, 1]),
        Geometry(channels: 3, spatial: [10, 11], kernel: [3, 3], pads: [1, 1, 1, 1], rows: 2..<7),
        Geometry(channels: 4, spatial: [9, 21], kernel: [3, 3], dilations: [2, 2], pads: [2, 2, 2, 2]),
        // Row by row: stride 2 (two loads, even lanes), stride 3 (gathers), uneven pads, narrow rows.
        Geometry(channels: 3, spatial: [17, 17], kernel: [7, 7], strides: [2, 2], pads: [3, 3, 3, 3], rows: 2..<6),
        Geometry(channels: 2, spatial: [20, 41], kernel: [3, 3], strides: [2, 2], dilations: [2, 2], pads: [2, 2, 2, 2]),
        Geometry(channels: 2, spatial: [20, 23], kernel: [3, 3], strides: [3, 3], pads: [1, 1, 1, 1], rows: 1..<5),
        Geometry(channels: 5, spatial: [12, 7], kernel: [2, 3], dilations: [1, 2], pads: [0, 2, 1, 0]),
        Geometry(channels: 1, spatial: [4, 4], kernel: [5, 5], pads: [3, 3, 3, 3]),
        Geometry(channels: 2, spatial: [5, 41], kernel: [1, 1], strides: [1, 2]),
        // 1-D and 3-D (depth slices, a tap entirely in the depth padding).
        Geometry(channels: 3, spatial: [30], kernel: [4], strides: [2], pads: [2, 1]),
        Geometry(channels: 2, spatial: [3, 6, 9], kernel: [2, 3, 3], pads: [1, 1, 1, 0, 1, 1], rows: 3..<11),
    ]

    @Test(arguments: geometries)
    func packedPatchesEqualIm2colThenPack(_ spec: Geometry) throws {
        let rank = spec.spatial.count
        let window = WindowAttributes(kernelShape: spec.kernel, strides: spec.strides, dilations: spec.dilations,
                                      pads: spec.pads)
        let problem = try ConvProblem(x: [1, spec.channels] + spec.spatial, w: [1, spec.channels] + spec.kernel,
                                      bias: nil, group: 1, window: window)
        let totalRows = problem.axes[0].output * problem.axes[1].output
        let rows = spec.rows ?? 0..<totalRows
        let width = problem.axes[2].output
        let columns = rows.count * width, depth = spec.channels * problem.kernelSize
        #expect(rank == spec.kernel.count)
        // Distinct nonzero inputs, so a value from the wrong place or a missed zero shows.
        let x = (0..<(spec.channels * problem.inputSpatial)).map { Float($0 + 1) }
        var col = [Float](repeating: .nan, count: depth * columns)
        var expected = [Float](repeating: .nan, count: sq_sgemm_packed_b_count(columns, depth))
        x.withUnsafeBufferPointer { xs in
            col.withUnsafeMutableBufferPointer { problem.im2col(x: xs.baseAddress!, channels: spec.channels, rows: rows, into: $0.baseAddress!) }
        }
        col.withUnsafeBufferPointer { c in
            expected.withUnsafeMutableBufferPointer { sq_sgemm_pack_b(0, columns, depth, c.baseAddress!, columns, $0.baseAddress!) }
        }
        var geometry = problem.windowGeometry
        #expect(sq_im2col_packed_count(spec.channels, &geometry, rows.lowerBound, rows.upperBound) == expected.count)
        for level in SGEMM.Level.available {
            var packed = [Float](repeating: .nan, count: expected.count)
            x.withUnsafeBufferPointer { xs in
                packed.withUnsafeMutableBufferPointer {
                    sq_im2col_packed(level.rawValue, xs.baseAddress!, spec.channels, &geometry, rows.lowerBound,
                                     rows.upperBound, $0.baseAddress!)
                }
            }
            let mismatches = zip(packed, expected).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(mismatches == 0, "level \(level): \(mismatches) of \(expected.count) floats differ")
        }
    }
}
