import Foundation
import GraphIR
import QuantCore
import Tensors

/// How the dynamic and weight-only modes store a weight: the code type, the codes used, the mapping, and
/// whether each block's clip is searched.
///
/// int2 has no ONNX type our stack reads or writes yet (ONNX INT2 needs opset 25; our tensors, ONNX codec
/// and runtime stop at opset 22), so int2 weights keep their 2-bit codes `[−2, 1]` (`[0, 3]` unsigned)
/// inside int4/uint4 containers: the values are int2 values, the file is int4-sized.
struct WeightFormat: Equatable {
    /// The stored type (int8, uint8, int4, uint4).
    let storage: QuantType
    /// The codes quantization produces, a sub-range of the stored type's.
    let codes: ClosedRange<Int32>
    let mapping: Mapping
    /// Try clips below the block's range and keep the one with the least squared error (4-bit and
    /// narrower codes, where rounding error dominates; 8-bit uses the plain range).
    let searchesClip: Bool
    /// The type the user asked for, for the report ("int2" stored in int4 says so).
    let requested: QuantType

    /// The format for `type` under `mapping`.
    ///
    /// Symmetric int8 uses the narrow range `[−127, 127]` (DESIGN.md §4); the other widths use all their
    /// codes, so a symmetric int4 block reaches −8 when its extreme is negative.
    ///
    /// - Throws: `QuantizationError.unsupportedOption` for types other than int8/uint8/int4/uint4/int2/uint2.
    init(_ type: QuantType, mapping: Mapping) throws {
        guard case .integer(let bits, let signed) = type.kind, [2, 4, 8].contains(bits) else {
            throw QuantizationError.unsupportedOption(
                "weight type \(type) is not supported here; use int8, uint8, int4, uint4, int2 or uint2")
        }
        requested = type
        self.mapping = mapping
        searchesClip = bits < 8
        switch bits {
        case 8: storage = signed ? .int8 : .uint8
        default: storage = signed ? .int4 : .uint4
        }
        let full = type.integerRange!
        codes = bits == 8 && signed && mapping == .symmetric ? (full.lowerBound + 1)...full.upperBound : full
    }

    /// The scheme whose scale/zero-point rule each block uses.
    var scheme: QuantScheme { QuantScheme(type: storage, mapping: mapping) }

    /// "int4", or "int2 (in int4)" when the codes are narrower than the container.
    var reportName: String {
        requested == storage ? storage.name : "\(requested.name) (in \(storage.name))"
    }
}

/// A weight quantized with one scale (and zero point) per block of consecutive elements along one axis.
struct BlockQuantizedWeight {
    /// Codes in the format's storage type, with the weight's shape.
    let quantized: QuantizedTensor
    /// Signal-to-quantization-noise ratio of the weight, `10·log10(Σw² / Σ(w − ŵ)²)`, in dB; nil when
    /// the reconstruction is exact.
    let sqnrDB: Double?

    var params: QuantParams { quantized.params }

    /// True when every zero point is 0 (a symmetric signed weight), so ONNX's default can stand in.
    var zeroPointsAreZero: Bool { params.zeroPoints.allSatisfy { $0 == 0 } }
}

enum WeightQuantization {
    /// Clip candidates tried by the search, as fractions of the block's range (1.0 is the range itself;
    /// above 1 lets a symmetric block use `qmax` for its positive extreme instead of clipping it).
    static let clipCandidates: [Float] = stride(from: 1.1, through: 0.5, by: -0.02).map { Float($0) }

    /// Quantizes `weights` (float32) with one parameter pair per block of `blockSize` elements along
    /// `axis`, separately for every index of the other axes (ONNX blocked quantization; the last block
    /// may be shorter). `blockSize` equal to the axis length gives one pair per index of the other axes:
    /// per-channel quantization with the channels on the other axes.
    ///
    /// Each block's scale and zero point follow `QuantParams.scaleAndZeroPoint` over the block's range
    /// `[min(lo, 0), max(hi, 0)]`; when the format searches clips, the range is scaled by each of
    /// `clipCandidates` and the candidate with the least `Σ (w − ŵ)²` is kept (ties keep the wider).
    ///
    /// - Throws: `QuantizationError.unsupportedNode` naming `node` and `name` when the weight is not
    ///   float32 or holds NaN or infinity.
    static func quantize(_ weights: Tensor, axis: Int, blockSize: Int, format: WeightFormat,
                         name: String, node: String) throws -> BlockQuantizedWeight {
        guard weights.dtype == .float32 else {
            throw QuantizationError.unsupportedNode(
                node: node, reason: "weight '\(name)' is \(weights.dtype); only float32 weights are quantized")
        }
        let finite = weights.withUnsafeBufferPointer(as: Float.self) { $0.allSatisfy(\.isFinite) }
        guard finite else {
            throw QuantizationError.unsupportedNode(node: node, reason: "weight '\(name)' holds NaN or infinite values")
        }
        let granularity = Granularity.perGroup(axis: axis, size: blockSize)
        let layout = try granularity.layout(for: weights.shape)
        let scheme = format.scheme
        var scales = [Float](repeating: 1, count: layout.parameterCount)
        var zeros = [Int32](repeating: 0, count: layout.parameterCount)
        var block = [Float](repeating: 0, count: min(blockSize, layout.axisLength))
        try weights.withUnsafeBufferPointer(as: Float.self) { w in
            try block.withUnsafeMutableBufferPointer { block in
                for o in 0..<layout.outer {
                    for g in 0..<layout.groupsAlongAxis {
                        let start = g * blockSize, end = min(start + blockSize, layout.axisLength)
                        for i in 0..<layout.inner {
                            for a in start..<end { block[a - start] = w[(o * layout.axisLength + a) * layout.inner + i] }
                            let parameter = (o * layout.groupsAlongAxis + g) * layout.inner + i
                            (scales[parameter], zeros[parameter]) = try blockParameters(
                                UnsafeBufferPointer(rebasing: block[0..<(end - start)]), scheme: scheme,
                                codes: format.codes, searches: format.searchesClip)
                        }
                    }
                }
            }
        }
        let params = try QuantParams(type: format.storage, granularity: granularity,
                                     parameterShape: layout.parameterShape, scales: scales, zeroPoints: zeros,
                                     codeRange: format.codes)
        let quantized = try weights.quantized(with: params)
        return BlockQuantizedWeight(quantized: quantized, sqnrDB: try sqnr(weights, quantized.dequantized()))
    }

    /// The scale and zero point of one block, searched over clips when `searches` is set.
    static func blockParameters(_ block: UnsafeBufferPointer<Float>, scheme: QuantScheme, codes: ClosedRange<Int32>,
                                searches: Bool) throws -> (Float, Int32) {
        var lo: Float = 0, hi: Float = 0
        for x in block {
            lo = min(lo, x)
            hi = max(hi, x)
        }
        let plain = try QuantParams.scaleAndZeroPoint(lo: lo, hi: hi, scheme: scheme, codes: codes)
        guard searches, lo < hi else { return plain }
        var best = plain
        var bestError = Float.infinity
        let qmin = Float(codes.lowerBound), qmax = Float(codes.upperBound)
        var fractions = clipCandidates
        if scheme.mapping == .symmetric && qmin < 0 {
            // The clips that map the extreme exactly onto qmin or onto qmax (the symmetric rule maps it
            // onto (qmax − qmin) / 2, between the two).
            let half = (qmax - qmin) / 2
            fractions += [half / -qmin, half / qmax]
        }
        for fraction in fractions {
            let candidate = try QuantParams.scaleAndZeroPoint(lo: lo * fraction, hi: hi * fraction, scheme: scheme,
                                                              codes: codes)
            let (s, z) = (candidate.0, Float(candidate.1))
            var error: Float = 0
            for x in block {
                let q = min(max(roundedToEven(x / s) + z, qmin), qmax)
                let d = x - (q - z) * s
                error += d * d
            }
            if error < bestError {
                bestError = error
                best = candidate
            }
        }
        return best
    }

    /// `v` rounded to the nearest integer, ties to even, for `|v| < 2²²`: `v + 1.5·2²³` lies where
    /// consecutive floats are 1 apart, so the addition itself rounds (nearest-even, and 1.5·2²³ is even),
    /// and subtracting the constant back is exact. Unlike `rounded(_:)` this compiles to two additions,
    /// so search loops vectorise. Larger `|v|` may come out one off, which the callers' clamp to a code
    /// range (at most ±2¹⁵) absorbs.
    @inline(__always)
    static func roundedToEven(_ v: Float) -> Float {
        let magic: Float = 12_582_912
        return (v + magic) - magic
    }

    /// `10·log10(Σ a² / Σ (a − b)²)` over two float32 tensors of equal size; nil when they are equal.
    static func sqnr(_ a: Tensor, _ b: Tensor) throws -> Double? {
        let x = a.scalars(as: Float.self), y = b.scalars(as: Float.self)
        var signal = 0.0, noise = 0.0
        for (u, v) in zip(x, y) {
            signal += Double(u) * Double(u)
            noise += (Double(u) - Double(v)) * (Double(u) - Double(v))
        }
        if noise == 0 { return nil }
        return 10 * log10(max(signal, .leastNormalMagnitude) / noise)
    }
}
