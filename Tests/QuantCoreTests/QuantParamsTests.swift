import Testing
import Tensors
@testable import QuantCore

/// The shared scale / zero-point math (DESIGN.md §4), degenerate ranges and bad input.
@Suite struct QuantParamsTests {
    @Test func symmetricInt8WeightsUseMaxAbsOver127() throws {
        let params = try QuantParams(scheme: .int8Weights(), minimum: -2.54, maximum: 1.0)
        #expect(params.scales == [Float(2.54) / 127])
        #expect(params.zeroPoints == [0])
        #expect(params.codeRange == -127...127)
        // −max|w| lands exactly on −127.
        #expect(params.quantize(-2.54) == -127)
    }

    @Test func asymmetricUint8FollowsTheAffineFormula() throws {
        // s = (6 − (−2)) / 255, z = round(0 − (−2) / s) = round(63.75) = 64.
        let params = try QuantParams(scheme: .uint8Activations, minimum: -2, maximum: 6)
        #expect(params.scales == [Float(8) / 255])
        #expect(params.zeroPoints == [64])
        #expect(params.fakeQuantize(0) == 0)
    }

    @Test func rangesAreWidenedToIncludeZero() throws {
        let positive = try QuantParams(scheme: .uint8Activations, minimum: 3, maximum: 5)
        #expect(positive.scales == [Float(5) / 255] && positive.zeroPoints == [0])
        let negative = try QuantParams(scheme: .uint8Activations, minimum: -5, maximum: -3)
        #expect(negative.scales == [Float(5) / 255] && negative.zeroPoints == [255])
    }

    @Test func symmetricUnsignedUsesTheMidCode() throws {
        let full = try QuantParams(scheme: QuantScheme(type: .uint8, mapping: .symmetric), minimum: -1, maximum: 2)
        #expect(full.zeroPoints == [128] && full.scales == [Float(2) / 127.5])
        let narrow = try QuantParams(scheme: QuantScheme(type: .uint8, mapping: .symmetric, range: .narrow),
                                     minimum: -1, maximum: 2)
        #expect(narrow.zeroPoints == [128] && narrow.scales == [Float(2) / 127] && narrow.codeRange == 1...255)
    }

    @Test func reduceRangeDropsOneBit() throws {
        let signed = try QuantScheme(type: .int8, reduceRange: true).codeRange()
        let unsigned = try QuantScheme(type: .uint8, mapping: .asymmetric, reduceRange: true).codeRange()
        #expect(signed == -64...63 && unsigned == 0...127)
        let int4 = try QuantScheme(type: .int4, range: .narrow, reduceRange: true).codeRange()
        #expect(int4 == -3...3)
    }

    @Test func degenerateRangesGiveTheMinimumScale() throws {
        for scheme in [QuantScheme.uint8Activations, .int8Weights(), QuantScheme(type: .int4, mapping: .asymmetric)] {
            let params = try QuantParams(scheme: scheme, minimum: 0, maximum: 0)
            #expect(params.scales == [Float.ulpOfOne])
            #expect(params.fakeQuantize(0) == 0)
        }
        // A constant tensor: the range widens to [0, c] and c is reproduced within half a step.
        let constant = try QuantParams(scheme: .uint8Activations, minimum: 0.3, maximum: 0.3)
        #expect(abs(constant.fakeQuantize(0.3) - 0.3) <= constant.scales[0] / 2)
        // The widest finite range does not overflow to an infinite scale.
        let huge = try QuantParams(scheme: .uint8Activations, minimum: -.greatestFiniteMagnitude, maximum: .greatestFiniteMagnitude)
        #expect(huge.scales[0].isFinite && huge.scales[0] > 0)
    }

    @Test func floatAndLog2Scales() throws {
        let fp8 = try QuantParams(scheme: QuantScheme(type: .float8e4m3fn), minimum: -896, maximum: 100)
        #expect(fp8.scales == [2])
        let e5m2 = try QuantParams(scheme: QuantScheme(type: .float8e5m2), minimum: -1, maximum: 57344)
        #expect(e5m2.scales == [1])
        let fp16 = try QuantParams(scheme: QuantScheme(type: .float16), minimum: -3, maximum: 70000)
        #expect(fp16.scales == [Float(70000) / 65504])
        #expect(try QuantParams(scheme: QuantScheme(type: .bfloat16), minimum: -3, maximum: 7).scales == [1])
        // 2^round(log2 5.9): log2 5.9 ≈ 2.56 → 8; log2 5.5 ≈ 2.46 → 4.
        #expect(try QuantParams(scheme: QuantScheme(type: .log2), minimum: -5.9, maximum: 1).scales == [8])
        #expect(try QuantParams(scheme: QuantScheme(type: .log2), minimum: -5.5, maximum: 1).scales == [4])
    }

    @Test func saturationClipsTheWidenedRange() throws {
        let range = try QuantRange.perTensor(minimum: -10, maximum: 3).applying(.threshold(4))
        #expect(range.minimum == [-4] && range.maximum == [3])
        let positive = try QuantRange.perTensor(minimum: 5, maximum: 10).applying(.threshold(3))
        #expect(positive.minimum == [0] && positive.maximum == [3])
        #expect(try QuantRange.perTensor(minimum: -1, maximum: 1).applying(.none).maximum == [1])
    }

    @Test func badInputIsATypedErrorThatSaysWhatIsAllowed() throws {
        func message(_ body: () throws -> Void) -> String {
            do { try body() } catch { return "\(error)" }
            return "no error"
        }
        #expect(message { _ = try QuantType.integer(bits: 0, signed: true) }.contains("allowed widths are 1…16"))
        #expect(message { _ = try QuantType.integer(bits: 17, signed: false) }.contains("1…16"))
        #expect(message { _ = try QuantType(name: "int17") }.contains("1…16"))
        #expect(message { _ = try QuantType(name: "float7") }.contains("int<N>/uint<N>"))
        #expect(message { _ = try QuantType.log2(bits: 9) }.contains("2…8"))
        #expect(message { try QuantScheme(type: .float8e4m3fn, mapping: .asymmetric).validate() }.contains("no zero point"))
        #expect(message { _ = try QuantParams(type: .float8e4m3fn, scales: [1], zeroPoints: [3]) }.contains("every zero point must be 0"))
        #expect(message { _ = try Granularity.perGroup(axis: 0, size: 4).layout(for: [16]) }.contains("rank ≥ 2"))
        #expect(message { _ = try Granularity.perGroup(axis: 1, size: 0).layout(for: [2, 16]) }.contains("at least 1"))
        #expect(message { _ = try Granularity.perChannel(axis: 3).layout(for: [2, 16]) }.contains("allowed axes are -2…1"))
        #expect(message { try QuantScheme(type: try .integer(bits: 1, signed: true), reduceRange: true).validate() }.contains("at least 2 bits"))
        #expect(message { try QuantScheme(type: try .integer(bits: 1, signed: false), mapping: .asymmetric, range: .narrow).validate() }.contains("single code"))
        #expect(message { _ = try QuantParams(scheme: QuantScheme(type: .binary), minimum: -1, maximum: 1) }.contains("mean |w|"))
        #expect(message { try QuantScheme(type: .ternary, range: .narrow).validate() }.contains("int<N>/uint<N> types only"))
        #expect(message { _ = try QuantParams(type: .int8, scales: [0]) }.contains("finite and > 0"))
        #expect(message { _ = try QuantParams(type: .int8, scales: [.nan]) }.contains("finite and > 0"))
        #expect(message { _ = try QuantParams(type: .uint8, scales: [1], zeroPoints: [300]) }.contains("outside the code range"))
        #expect(message { _ = try QuantRange.perTensor(minimum: .nan, maximum: 1) }.contains("finite"))
        #expect(message { _ = try QuantRange.perTensor(minimum: 2, maximum: 1) }.contains("minimum ≤ maximum"))
        // Parameters that do not fit the tensor.
        let perChannel = try QuantParams(type: .int8, granularity: .perChannel(axis: 0), parameterShape: [3], scales: [1, 1, 1])
        #expect(message { _ = try Tensor(zeros: .float32, shape: [4, 2]).quantized(with: perChannel) }.contains("do not fit"))
        #expect(message { _ = try Tensor(zeros: .int32, shape: [3]).quantized(with: perChannel) }.contains("dtype int32"))
    }

    @Test func paramsRoundTripThroughJSONAndValidateOnDecode() throws {
        let params = try QuantParams(scheme: QuantScheme(type: .int4, granularity: .perGroup(axis: 1, size: 2),
                                                         mapping: .asymmetric),
                                     range: QuantRange(minimum: [-1, -2, 0, -0.5], maximum: [1, 3, 2, 0.25],
                                                       parameterShape: [2, 2]))
        let data = try JSONEncoder().encode(params)
        #expect(try JSONDecoder().decode(QuantParams.self, from: data) == params)
        let broken = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\"scales\":[", with: "\"scales\":[0,")
        #expect(throws: QuantError.self) { try JSONDecoder().decode(QuantParams.self, from: Data(broken.utf8)) }
    }

    @Test func storageTypesAndPacking() throws {
        let x = try Tensor(shape: [5], scalars: [Float(-2), -1, 0, 1, 1.4])
        let int2 = try QuantParams(type: .int2, scales: [1])
        let q = try x.quantized(with: int2)
        // Codes −2, −1, 0, 1, 1 as two-bit fields, first in the low bits: 10 11 00 01 | 01.
        #expect(q.storage.dtype == .uint8 && q.storage.shape == [2] && q.shape == [5])
        #expect(q.storage.withUnsafeBytes { Array($0) } == [0b01_00_11_10, 0b01])
        #expect(try q.dequantized().scalars(as: Float.self) == [-2, -1, 0, 1, 1])
        let int4 = try x.quantized(with: QuantParams(type: .int4, scales: [0.5]))
        #expect(int4.storage.dtype == .int4 && int4.storage.withUnsafeBytes { Array($0) } == [0xEC, 0x20, 0x03])
        let uint12 = try QuantType(name: "uint12")
        #expect(QuantType.int8.storageDType == .int8 && uint12.storageDType == .uint16)
        #expect(QuantType.ternary.storageDType == .int8 && QuantType.float8e5m2.storageDType == .float8e5m2)
    }
}

import Foundation
