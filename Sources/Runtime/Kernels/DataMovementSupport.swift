import Foundation
import Tensors

// Shared machinery of the data-movement kernels (Concat, Split, Slice, Pad, Transpose, Tile, Expand,
// Gather…). They never look at element values, only at element bytes: one generic body per element
// width (1, 2, 4 or 8 bytes) is chosen once per call, so every dtype of that width shares a loop.

/// Bytes per element for a kernel that moves whole elements. Packed 4-bit tensors have no byte per
/// element, so they are rejected here (ops that only relabel a shape never call this).
func movableElementSize(_ dtype: DType, operator name: String) throws -> Int {
    guard dtype.bitWidth >= 8, dtype.bitWidth % 8 == 0 else {
        throw KernelError.unsupported("\(name) on packed \(dtype) tensors")
    }
    return dtype.bitWidth / 8
}

/// Largest output a kernel may allocate: the machine's physical memory. Sizes read from a model
/// (ConstantOfShape, Range, Expand, Tile) can ask for absurd amounts; failing with a typed error beats
/// an out-of-memory trap.
let maximumOutputBytes: Int = Int(clamping: ProcessInfo.processInfo.physicalMemory)

/// A zero-filled output tensor, with the size checked for overflow and against `maximumOutputBytes`.
func makeOutputTensor(_ dtype: DType, shape: [Int]) throws -> Tensor {
    let count = try Shape.elementCount(shape)
    guard let bytes = dtype.storageByteCount(elements: count) else {
        throw TensorError.elementCountOverflow(shape: shape)
    }
    guard bytes <= maximumOutputBytes else {
        throw KernelError.invalid(
            "output \(dtype) \(shape) would need \(bytes) bytes, more than this machine's memory")
    }
    return try Tensor(zeros: dtype, shape: shape)
}

/// Multiplies sizes read from a model, throwing instead of trapping on overflow.
func checkedProduct(_ values: some Sequence<Int>, what: String) throws -> Int {
    var product = 1
    for value in values {
        let (next, overflow) = product.multipliedReportingOverflow(by: value)
        guard !overflow else { throw KernelError.invalid("\(what) overflows Int") }
        product = next
    }
    return product
}

// MARK: - Strided copy

/// A copy of an n-dimensional block: element `index` goes from `source + Σ index·sourceStrides` to
/// `destination + Σ index·destinationStrides` (strides in elements, source strides may be 0 or
/// negative). Slice, Transpose, Tile, Expand and Pad are all one such copy.
struct StridedCopy {
    var shape: [Int]
    var sourceStrides: [Int]
    var destinationStrides: [Int]

    /// Drops unit dimensions and merges neighbours that are contiguous in both operands, so the inner
    /// loop runs as long as possible and a plain copy collapses to one dimension.
    init(shape: [Int], sourceStrides: [Int], destinationStrides: [Int]) {
        var dims: [Int] = []
        var src: [Int] = []
        var dst: [Int] = []
        for axis in shape.indices where shape[axis] != 1 {
            if let last = dims.indices.last,
               src[last] == sourceStrides[axis] &* shape[axis],
               dst[last] == destinationStrides[axis] &* shape[axis] {
                dims[last] &*= shape[axis]
                src[last] = sourceStrides[axis]
                dst[last] = destinationStrides[axis]
                continue
            }
            dims.append(shape[axis])
            src.append(sourceStrides[axis])
            dst.append(destinationStrides[axis])
        }
        self.shape = dims
        self.sourceStrides = src
        self.destinationStrides = dst
    }

    var elementCount: Int { shape.reduce(1, *) }

    /// True when the copy reads and writes one contiguous run from the start: the output is the input
    /// bytes unchanged, so a kernel can share storage instead of copying.
    var isIdentity: Bool {
        shape.isEmpty || (shape.count == 1 && sourceStrides[0] == 1 && destinationStrides[0] == 1)
    }

    /// Runs the copy between raw buffers. `sourceOffset`/`destinationOffset` are in elements.
    func run(
        elementSize: Int, source: UnsafeRawPointer, sourceOffset: Int = 0,
        destination: UnsafeMutableRawPointer, destinationOffset: Int = 0, threads: Int
    ) {
        if shape.contains(0) { return }
        // One specialised body per width; the switch runs once per copy.
        switch elementSize {
        case 1: run(UInt8.self, source: source, sourceOffset: sourceOffset,
                    destination: destination, destinationOffset: destinationOffset, threads: threads)
        case 2: run(UInt16.self, source: source, sourceOffset: sourceOffset,
                    destination: destination, destinationOffset: destinationOffset, threads: threads)
        case 4: run(UInt32.self, source: source, sourceOffset: sourceOffset,
                    destination: destination, destinationOffset: destinationOffset, threads: threads)
        default: run(UInt64.self, source: source, sourceOffset: sourceOffset,
                     destination: destination, destinationOffset: destinationOffset, threads: threads)
        }
    }

    private func run<E: FixedWidthInteger>(
        _: E.Type, source: UnsafeRawPointer, sourceOffset: Int,
        destination: UnsafeMutableRawPointer, destinationOffset: Int, threads: Int
    ) {
        let src = source.assumingMemoryBound(to: E.self) + sourceOffset
        let dst = destination.assumingMemoryBound(to: E.self) + destinationOffset
        guard let innerAxis = shape.indices.last else {
            dst.pointee = src.pointee
            return
        }
        let totalBytes = elementCount &* MemoryLayout<E>.size
        let threads = totalBytes >= parallelCopyThreshold ? threads : 1
        let innerCount = shape[innerAxis]
        let innerSource = sourceStrides[innerAxis]
        let innerDestination = destinationStrides[innerAxis]

        // A transpose: the destination's inner axis is strided in the source, and some outer axis is
        // the source's contiguous one. Copy square tiles so both sides stay in cache.
        if innerDestination == 1, innerSource != 1, innerCount >= 8,
           let tileAxis = shape.indices.dropLast().last(where: { sourceStrides[$0] == 1 && shape[$0] >= 8 }) {
            runTiled(src: src, dst: dst, tileAxis: tileAxis, threads: threads)
            return
        }

        let outer = OuterAxes(shape: shape, sourceStrides: sourceStrides,
                              destinationStrides: destinationStrides, excluding: [innerAxis])
        let rowBytes = innerCount &* MemoryLayout<E>.size
        Parallel.forRanges(outer.count, threads: threads, grain: max(1, (64 << 10) / max(rowBytes, 1))) { rows in
            var cursor = outer.cursor(at: rows.lowerBound)
            for _ in rows {
                let from = src + cursor.source
                let to = dst + cursor.destination
                if innerSource == 1 && innerDestination == 1 {
                    UnsafeMutableRawPointer(to).copyMemory(from: from, byteCount: rowBytes)
                } else if innerSource == 0 {
                    let value = from.pointee
                    for j in 0..<innerCount { to[j &* innerDestination] = value }
                } else if innerDestination == 1 {
                    for j in 0..<innerCount { to[j] = from[j &* innerSource] }
                } else {
                    for j in 0..<innerCount { to[j &* innerDestination] = from[j &* innerSource] }
                }
                outer.advance(&cursor)
            }
        }
    }

    /// Tiled copy over the plane (tileAxis, inner axis): the source is contiguous along `tileAxis`,
    /// the destination along the inner axis.
    private func runTiled<E: FixedWidthInteger>(
        src: UnsafePointer<E>, dst: UnsafeMutablePointer<E>, tileAxis: Int, threads: Int
    ) {
        let innerAxis = shape.count - 1
        let rows = shape[tileAxis], columns = shape[innerAxis]
        let rowStride = destinationStrides[tileAxis]      // destination step per tile-axis index
        let columnStride = sourceStrides[innerAxis]       // source step per inner index
        let tile = 32
        let rowTiles = (rows + tile - 1) / tile
        let outer = OuterAxes(shape: shape, sourceStrides: sourceStrides,
                              destinationStrides: destinationStrides, excluding: [tileAxis, innerAxis])
        Parallel.forRanges(outer.count &* rowTiles, threads: threads) { units in
            for unit in units {
                let cursor = outer.cursor(at: unit / rowTiles)
                let r0 = (unit % rowTiles) * tile
                let r1 = min(r0 + tile, rows)
                let from = src + cursor.source
                let to = dst + cursor.destination
                var c0 = 0
                while c0 < columns {
                    let c1 = min(c0 + tile, columns)
                    for r in r0..<r1 {
                        let line = to + r &* rowStride
                        let column = from + r
                        for c in c0..<c1 { line[c] = column[c &* columnStride] }
                    }
                    c0 = c1
                }
            }
        }
    }
}

/// Copies of at least this many bytes are spread over threads.
let parallelCopyThreshold = 1 << 18

/// The axes of a strided copy outside its inner loop, walked in row-major order as an odometer.
struct OuterAxes {
    let shape: [Int]
    let sourceStrides: [Int]
    let destinationStrides: [Int]
    let count: Int

    struct Cursor {
        var index: [Int]
        var source: Int
        var destination: Int
    }

    init(shape: [Int], sourceStrides: [Int], destinationStrides: [Int], excluding: Set<Int>) {
        let axes = shape.indices.filter { !excluding.contains($0) }
        self.shape = axes.map { shape[$0] }
        self.sourceStrides = axes.map { sourceStrides[$0] }
        self.destinationStrides = axes.map { destinationStrides[$0] }
        self.count = self.shape.reduce(1, *)
    }

    /// The cursor of the `linear`-th outer position.
    func cursor(at linear: Int) -> Cursor {
        var index = [Int](repeating: 0, count: shape.count)
        var rest = linear, source = 0, destination = 0
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
            source &+= index[axis] &* sourceStrides[axis]
            destination &+= index[axis] &* destinationStrides[axis]
        }
        return Cursor(index: index, source: source, destination: destination)
    }

    @inline(__always)
    func advance(_ cursor: inout Cursor) {
        var axis = shape.count - 1
        while axis >= 0 {
            cursor.index[axis] &+= 1
            cursor.source &+= sourceStrides[axis]
            cursor.destination &+= destinationStrides[axis]
            if cursor.index[axis] < shape[axis] { return }
            cursor.source &-= sourceStrides[axis] &* shape[axis]
            cursor.destination &-= destinationStrides[axis] &* shape[axis]
            cursor.index[axis] = 0
            axis -= 1
        }
    }
}

extension Tensor {
    /// Copies `plan` from this tensor into a new tensor of `shape` (dense, row-major).
    func stridedCopy(_ plan: StridedCopy, sourceOffset: Int = 0, into shape: [Int], threads: Int,
                     operator name: String) throws -> Tensor {
        let elementSize = try movableElementSize(dtype, operator: name)
        var output = try makeOutputTensor(dtype, shape: shape)
        withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                guard let from = source.baseAddress, let to = destination.baseAddress else { return }
                plan.run(elementSize: elementSize, source: from, sourceOffset: sourceOffset,
                         destination: to, threads: threads)
            }
        }
        return output
    }
}

/// Fills `count` elements at `destination` with the `elementSize`-byte pattern at `value`.
func fillElements(_ destination: UnsafeMutableRawPointer, count: Int, elementSize: Int, value: UnsafeRawPointer) {
    func fill<E: FixedWidthInteger>(_: E.Type) {
        let pattern = value.loadUnaligned(as: E.self)
        let typed = destination.assumingMemoryBound(to: E.self)
        for i in 0..<count { typed[i] = pattern }
    }
    switch elementSize {
    case 1: fill(UInt8.self)
    case 2: fill(UInt16.self)
    case 4: fill(UInt32.self)
    default: fill(UInt64.self)
    }
}
