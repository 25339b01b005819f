import Foundation
import Testing
import Tensors
import _TestSupport
@testable import QuantCore

/// FP16 / BF16 / FP8 conversions against ml_dtypes, numpy and ONNX (fixtures written by
/// scripts/make_calibration_fixtures.py). NaN outputs are compared as "a NaN of the same sign": IEEE leaves
/// payloads open, and both sides are mapped to one canonical NaN per sign before comparing.
@Suite struct FloatFormatsTests {
    struct Fixture: Decodable {
        struct Sixteen: Decodable {
            let chunk: Int
            let fp16_decode: [String], bf16_decode: [String]
            let fp16_encode: [String], bf16_encode: [String]
            let fp16_encode_count: Int, bf16_encode_count: Int
        }
        struct Eight: Decodable {
            let decode: [UInt32]
            let inputs: [UInt32]
            let nonsaturating: String
            let saturating: String
        }
        let fp16_bf16: Sixteen
        let fp8: [String: Eight]
    }

    static func load() throws -> Fixture {
        let url = TestSupport.fixtures.appendingPathComponent("calibration/float_formats.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    static func fnv1a(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Little-endian bytes of `values`, hashed in chunks of `chunk` values.
    static func chunkHashes<T: FixedWidthInteger>(_ values: [T], chunk: Int) -> [String] {
        stride(from: 0, to: values.count, by: chunk).map { start in
            var bytes: [UInt8] = []
            for v in values[start..<min(start + chunk, values.count)] {
                withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
            }
            return fnv1a(bytes)
        }
    }

    static func canonical32(_ bits: UInt32) -> UInt32 {
        Float(bitPattern: bits).isNaN ? (bits & 0x8000_0000) | 0x7FC0_0000 : bits
    }

    static func canonical16(_ bits: UInt16, exponentMask: UInt16, quiet: UInt16) -> UInt16 {
        let mantissaMask = ~(exponentMask | 0x8000)
        return bits & exponentMask == exponentMask && bits & mantissaMask != 0 ? (bits & 0x8000) | quiet : bits
    }

    /// The float32 inputs the script builds around every 16-bit pattern (see `encode_inputs_16`).
    static func encodeInputs16(bf16: Bool) -> [UInt32] {
        let lows: [UInt32] = bf16 ? [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
                                  : [0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x1FFF]
        var inputs: [UInt32] = []
        inputs.reserveCapacity(65536 * 6 + 8192)
        for p in UInt32(0)..<65536 {
            let base = bf16 ? p << 16 : ((p & 0x8000) << 16) | (((p & 0x7FFF) << 13) + 0x3800_0000)
            for low in lows { inputs.append(base | low) }
        }
        if !bf16 {
            let tiny = (0..<4096).map { Float(Double($0) * 0x1p-25).bitPattern }
            inputs += tiny + tiny.map { $0 | 0x8000_0000 }
        }
        return inputs
    }

    @Test func float16AndBFloat16DecodeEveryPattern() throws {
        let f = try Self.load().fp16_bf16
        let fp16 = (0...65535).map { Self.canonical32(FloatFormats.float16Value(UInt16($0)).bitPattern) }
        let bf16 = (0...65535).map { Self.canonical32(FloatFormats.bfloat16Value(UInt16($0)).bitPattern) }
        #expect(Self.chunkHashes(fp16, chunk: f.chunk) == f.fp16_decode)
        #expect(Self.chunkHashes(bf16, chunk: f.chunk) == f.bf16_decode)
    }

    @Test func float16EncodesAroundEveryPattern() throws {
        let f = try Self.load().fp16_bf16
        let inputs = Self.encodeInputs16(bf16: false)
        #expect(inputs.count == f.fp16_encode_count)
        let out = inputs.map {
            Self.canonical16(FloatFormats.float16Bits(Float(bitPattern: $0)), exponentMask: 0x7C00, quiet: 0x7E00)
        }
        let hashes = Self.chunkHashes(out, chunk: f.chunk)
        #expect(hashes.count == f.fp16_encode.count)
        for (i, (mine, theirs)) in zip(hashes, f.fp16_encode).enumerated() where mine != theirs {
            Issue.record("FP16 encoding differs from numpy in inputs \(i * f.chunk)..<\((i + 1) * f.chunk)")
        }
    }

    @Test func bfloat16EncodesAroundEveryPattern() throws {
        let f = try Self.load().fp16_bf16
        let inputs = Self.encodeInputs16(bf16: true)
        #expect(inputs.count == f.bf16_encode_count)
        let ours = inputs.map {
            Self.canonical16(FloatFormats.bfloat16Bits(Float(bitPattern: $0)), exponentMask: 0x7F80, quiet: 0x7FC0)
        }
        // Tensors.BFloat16(Float) rounds the same way (it keeps NaN payloads, which canonicalising hides).
        let tensors = inputs.map {
            Self.canonical16(BFloat16(Float(bitPattern: $0)).bitPattern, exponentMask: 0x7F80, quiet: 0x7FC0)
        }
        for (name, out) in [("QuantCore", ours), ("Tensors.BFloat16", tensors)] {
            let hashes = Self.chunkHashes(out, chunk: f.chunk)
            #expect(hashes.count == f.bf16_encode.count)
            for (i, (mine, theirs)) in zip(hashes, f.bf16_encode).enumerated() where mine != theirs {
                Issue.record("\(name) BF16 encoding differs from ml_dtypes in inputs \(i * f.chunk)..<\((i + 1) * f.chunk)")
            }
        }
        // NaN input always gives ml_dtypes' canonical quiet NaN with the input's sign.
        #expect(FloatFormats.bfloat16Bits(Float(bitPattern: 0xFFA0_0000)) == 0xFFC0)
    }

    static func canonical8(_ bits: UInt8, e4m3fn: Bool) -> UInt8 {
        if e4m3fn { return bits & 0x7F == 0x7F ? (bits & 0x80) | 0x7F : bits }
        return bits & 0x7F > 0x7C ? (bits & 0x80) | 0x7E : bits
    }

    static func bytes(hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return result
    }

    @Test(arguments: ["e4m3fn", "e5m2"])
    func float8MatchesMLDtypesAndONNX(format: String) throws {
        let f = try #require(try Self.load().fp8[format])
        let e4m3fn = format == "e4m3fn"
        // Decoding all 256 patterns.
        for bits in 0...255 {
            let value = e4m3fn ? FloatFormats.e4m3fnValue(UInt8(bits)) : FloatFormats.e5m2Value(UInt8(bits))
            #expect(Self.canonical32(value.bitPattern) == f.decode[bits], "decode of \(bits)")
        }
        // Encoding, with and without saturation (NaN, ±Inf, overflow, ties, subnormals).
        for (saturate, expectedHex) in [(false, f.nonsaturating), (true, f.saturating)] {
            let expected = Self.bytes(hex: expectedHex)
            #expect(expected.count == f.inputs.count)
            var mismatches = 0
            for (input, want) in zip(f.inputs, expected) {
                let x = Float(bitPattern: input)
                let got = e4m3fn ? FloatFormats.e4m3fnBits(x, saturate: saturate) : FloatFormats.e5m2Bits(x, saturate: saturate)
                if Self.canonical8(got, e4m3fn: e4m3fn) != want {
                    mismatches += 1
                    if mismatches <= 5 {
                        Issue.record("\(format) saturate=\(saturate): \(x) (0x\(String(input, radix: 16))) → 0x\(String(got, radix: 16)), expected 0x\(String(want, radix: 16))")
                    }
                }
            }
            #expect(mismatches == 0)
        }
    }

    @Test func float8StorageStructsUseTheConversions() {
        #expect(Float8E4M3FN(Float(1000)).floatValue == 448)
        #expect(Float8E4M3FN(Float(1000), saturating: false).floatValue.isNaN)
        #expect(Float8E5M2(Float.infinity).floatValue == 57344)
        #expect(Float8E5M2(Float.infinity, saturating: false).floatValue == .infinity)
        #expect(Float8E4M3FN(Float(0.1)).floatValue == 0.1015625)  // 13/128, the nearest E4M3FN value
    }
}
