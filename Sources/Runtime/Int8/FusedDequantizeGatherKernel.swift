import GraphIR
import Tensors

/// `com.swiftquant::DequantizeGather`: `Gather(DequantizeLinear(table, scale, zero_point), indices)` along
/// axis 0 for a constant quantized table — an embedding lookup in a quantized model.
///
/// Only the gathered rows are dequantized, each element as DequantizeLinear computes it,
/// `y = Float(q − z[p]) · s[p]` in float32 with `p` the element's parameter index, so the output equals the
/// unfused pair bit for bit while a run touches `indices.count` rows instead of the whole table.
///
/// Inputs: 0 `table` (int8/uint8/int4/uint4 constant, rank ≥ 1), 1 `scale` (float32 constant), 2
/// `zero_point` (optional constant of the table's type), 3 `indices` (int32/int64; negative values count
/// from the end). Attributes: `axis` and `block_size`, DequantizeLinear's (per tensor, per axis along any
/// axis, or blocked along any axis).
struct FusedDequantizeGatherKernel: Kernel {
    let table: Tensor
    let rows: Int
    /// Elements per table row (the product of the dimensions after the first).
    let rowLength: Int
    let scales: [Float]
    let zeroPoints: [Int32]
    let parameters: RowParameterIndex

    init(_ context: KernelBuildContext) throws {
        guard let table = context.constant(0) else { throw KernelError.invalid("table (input 0) must be a constant") }
        try self.init(table: table, scale: try context.constantInput(1, "scale"),
                      zeroPoint: try context.constantInput(2, "zero_point"), axis: try context.int("axis", default: 1),
                      blockSize: try context.int("block_size", default: 0))
    }

    /// Checks the table and its parameters as DequantizeLinear-21 would, once.
    init(table: Tensor, scale: Tensor?, zeroPoint: Tensor?, axis: Int, blockSize: Int) throws {
        let tableTypes: Set<DType> = [.int8, .uint8, .int4, .uint4]
        guard tableTypes.contains(table.dtype), table.rank >= 1 else {
            throw KernelError.invalid("table must be int8, uint8, int4 or uint4 of rank >= 1, got \(table.dtype) \(table.shape)")
        }
        guard let scale, scale.dtype == .float32 else { throw KernelError.invalid("scale must be a float32 constant") }
        let layout = try QuantizationParameterLayout(dataShape: table.shape, parameterShape: scale.shape, axis: axis,
                                                     blockSize: blockSize, allowPerAxis: true)
        if let zeroPoint {
            guard zeroPoint.dtype == table.dtype else {
                throw KernelError.invalidInput(index: 2, reason: "zero point of \(zeroPoint.dtype) must have the table's type \(table.dtype)")
            }
            try layout.validateZeroPoint(zeroPoint, scale: scale, index: 2)
            zeroPoints = zeroPoint.dtype == .int4 || zeroPoint.dtype == .uint4
                ? try zeroPoint.unpackedInt4().map { Int32($0) } : try zeroPoint.quantizedIntegerValues(input: 2)
        } else {
            zeroPoints = [Int32](repeating: 0, count: layout.parameterCount)
        }
        self.table = table
        rows = table.shape[0]
        rowLength = try Shape.elementCount(Array(table.shape.dropFirst()))
        scales = scale.scalars(as: Float.self)
        parameters = RowParameterIndex(layout: layout, axis: Shape.normalizedAxis(axis, rank: table.rank) ?? 0,
                                       rows: rows, rowLength: rowLength)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let indices = try required(inputs, 3)
        let positions = try normalizedIndices(indices, inputIndex: 3, extent: rows, axis: 0)
        let output = try context.output(.float32, shape: indices.shape + Array(table.shape.dropFirst()))
        guard !positions.isEmpty, rowLength > 0 else { return [output.tensor] }
        let y = output.pointer(as: Float.self)
        let length = rowLength, dtype = table.dtype
        let threads = positions.count * length >= 1 << 16 ? context.threadCount : 1
        table.withUnsafeBytes { raw in
            scales.withUnsafeBufferPointer { scales in
                zeroPoints.withUnsafeBufferPointer { zeros in
                    parameters.columns.withUnsafeBufferPointer { columns in
                        parameters.runs.withUnsafeBufferPointer { runs in
                            positions.withUnsafeBufferPointer { positions in
                                let rowsOut = RowDequantizer(scales: scales.baseAddress!, zeros: zeros.baseAddress!,
                                                             runs: parameters.runs.isEmpty ? nil : runs,
                                                             columns: columns.baseAddress!, rowLength: length)
                                Parallel.forRanges(positions.count, threads: threads, grain: max(1, 8192 / length)) { range in
                                    rowsOut.dequantize(raw.baseAddress!, dtype: dtype, positions: positions, range: range,
                                                       parameters: parameters, into: y)
                                }
                            }
                        }
                    }
                }
            }
        }
        return [output.tensor]
    }

    /// The reference twin: the reference DequantizeLinear of the whole table, then the reference Gather.
    func runReference(_ inputs: [Tensor?], axis: Int, blockSize: Int) throws -> Tensor {
        let node = Node(opType: "DequantizeLinear", inputs: ["x", "s", "z"], outputs: ["y"],
                        attributes: ["axis": .int(axis), "block_size": .int(blockSize)])
        let context = KernelBuildContext(node: node, opsetVersion: 21, constantInputs: [],
                                         compileSubgraph: { _, _ in throw KernelError.unsupported("subgraphs") })
        let single = ExecutionContext(threadCount: 1)
        let dequantized = try DequantizeLinearKernel(context, version: 21).run(Array(inputs.prefix(3)), context: single)[0]
        return try GatherKernel(axis: 0).run([dequantized, try required(inputs, 3)], context: single)[0]
    }
}

/// Where the quantization parameter of table element `e` of row `r` sits:
/// `(r / rowDivisor) · rowStride + columns[e]`. Every DequantizeLinear layout has this form for rows along
/// axis 0: per tensor (0), per axis 0 (`r`), per another axis (a function of `e`), blocked along axis 0
/// (`(r / block) · rowLength + e`), blocked along another axis (`r · parameters per row + f(e)`).
struct RowParameterIndex: Sendable {
    /// Consecutive elements of a row sharing one parameter: elements `start ..< end` use `column`.
    struct Run: Sendable {
        let start: Int
        let end: Int
        let column: Int
    }

    let rowDivisor: Int
    let rowStride: Int
    /// Per element of a row.
    let columns: [Int32]
    /// The row cut into runs of one parameter, when they are long enough to loop over (per tensor, per
    /// axis 0, blocks along the row); empty otherwise.
    let runs: [Run]

    init(layout: QuantizationParameterLayout, axis: Int, rows: Int, rowLength: Int) {
        switch layout.granularity {
        case .perTensor:
            (rowDivisor, rowStride) = (1, 0)
            columns = [Int32](repeating: 0, count: rowLength)
        case .perAxis where axis == 0:
            (rowDivisor, rowStride) = (1, 1)
            columns = [Int32](repeating: 0, count: rowLength)
        case .perAxis:
            (rowDivisor, rowStride) = (1, 0)
            columns = (0..<rowLength).map { Int32(truncatingIfNeeded: ($0 / layout.inner) % layout.axisLength) }
        case .blocked where axis == 0:
            (rowDivisor, rowStride) = (layout.blockSize, rowLength)
            columns = (0..<rowLength).map { Int32(truncatingIfNeeded: $0) }
        case .blocked:
            (rowDivisor, rowStride) = (1, layout.parameterCount / max(rows, 1))
            // Element e of row 0 lies in outer slice e / (axisLength · inner) of the layout.
            let slice = layout.axisLength * layout.inner
            columns = (0..<rowLength).map { e in
                let outer = e / slice, along = (e / layout.inner) % layout.axisLength, inner = e % layout.inner
                return Int32(truncatingIfNeeded: (outer * layout.blockCount + along / layout.blockSize) * layout.inner + inner)
            }
        }
        var runs: [Run] = []
        if rowLength > 0 {
            var start = 0
            for e in 1...rowLength where e == rowLength || columns[e] != columns[start] {
                runs.append(Run(start: start, end: e, column: Int(columns[start])))
                start = e
            }
        }
        // Runs shorter than a vector's width are slower than the per-element lookup.
        self.runs = !runs.isEmpty && rowLength >= 8 * runs.count ? runs : []
    }

    @inline(__always) func rowBase(_ row: Int) -> Int { row / rowDivisor &* rowStride }
}

/// The element loops of `DequantizeGather`: one table row at a time, 4-bit rows unpacked first.
struct RowDequantizer {
    let scales: UnsafePointer<Float>
    let zeros: UnsafePointer<Int32>
    /// Runs of one parameter, or nil to look each element's parameter up in `columns`.
    let runs: UnsafeBufferPointer<RowParameterIndex.Run>?
    let columns: UnsafePointer<Int32>
    let rowLength: Int

    func dequantize(_ table: UnsafeRawPointer, dtype: DType, positions: UnsafeBufferPointer<Int>, range: Range<Int>,
                    parameters: RowParameterIndex, into y: UnsafeMutablePointer<Float>) {
        let length = rowLength
        switch dtype {
        case .int8:
            let codes = table.assumingMemoryBound(to: Int8.self)
            for p in range {
                let row = positions[p]
                dequantizeRow(codes + row &* length, base: parameters.rowBase(row), into: y + p &* length)
            }
        case .uint8:
            let codes = table.assumingMemoryBound(to: UInt8.self)
            for p in range {
                let row = positions[p]
                dequantizeRow(codes + row &* length, base: parameters.rowBase(row), into: y + p &* length)
            }
        default:
            let signed = dtype == .int4
            let bytes = table.assumingMemoryBound(to: UInt8.self)
            let unpacked = UnsafeMutablePointer<Int8>.allocate(capacity: length)
            defer { unpacked.deallocate() }
            for p in range {
                let row = positions[p]
                Self.unpackNibbles(bytes, first: row &* length, count: length, signed: signed, into: unpacked)
                dequantizeRow(UnsafePointer(unpacked), base: parameters.rowBase(row), into: y + p &* length)
            }
        }
    }

    /// `y[e] = Float(q[e] − z) · s`, DequantizeLinear's float32 arithmetic (the difference is exact).
    @inline(__always)
    func dequantizeRow<Code: FixedWidthInteger>(_ q: UnsafePointer<Code>, base: Int, into y: UnsafeMutablePointer<Float>) {
        let s = scales + base, z = zeros + base
        if let runs {
            for run in runs {
                let scale = s[run.column], zero = z[run.column]
                for e in run.start..<run.end { y[e] = Float(Int32(truncatingIfNeeded: q[e]) &- zero) * scale }
            }
        } else {
            for e in 0..<rowLength {
                let p = Int(columns[e])
                y[e] = Float(Int32(truncatingIfNeeded: q[e]) &- z[p]) * s[p]
            }
        }
    }

    /// Elements `first ..< first + count` of packed 4-bit data (element i in byte i / 2, low nibble first),
    /// sign-extended for int4.
    static func unpackNibbles(_ bytes: UnsafePointer<UInt8>, first: Int, count: Int, signed: Bool,
                              into values: UnsafeMutablePointer<Int8>) {
        var i = 0
        if first & 1 == 1, count > 0 {
            values[0] = nibble(bytes[first >> 1] & 0xF0, signed: signed)
            i = 1
        }
        // Whole bytes: two elements each, the low nibble first.
        let pairs = bytes + ((first &+ i) >> 1)
        let pairCount = (count - i) / 2
        let out = values + i
        for b in 0..<pairCount {
            let byte = pairs[b]
            out[2 &* b] = nibble(byte << 4, signed: signed)
            out[2 &* b &+ 1] = nibble(byte & 0xF0, signed: signed)
        }
        i += 2 * pairCount
        if i < count { values[i] = nibble(bytes[(first &+ i) >> 1] << 4, signed: signed) }
    }

    /// A nibble held in the top half of a byte: an arithmetic shift sign-extends it, a logical one does not.
    @inline(__always)
    static func nibble(_ high: UInt8, signed: Bool) -> Int8 {
        signed ? Int8(bitPattern: high) >> 4 : Int8(bitPattern: high >> 4)
    }
}
