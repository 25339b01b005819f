import Foundation
import Tensors
import _TestSupport

/// The deterministic data of scripts/make_calibration_fixtures.py (`Generator`, `DATASETS`), regenerated
/// bit for bit: only IEEE +, −, ×, ÷ and sqrt are used, in the same order as the script.
struct FixtureGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func nextU64() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func uniform() -> Double { Double(nextU64() >> 11) * 0x1p-53 }

    static func log(_ x: Double) -> Double {
        var m = x.significand  // in [1, 2), as the script's frexp · 2
        var e = Int(x.exponent)
        if m > 1.4142135623730951 {
            m *= 0.5
            e += 1
        }
        let t = (m - 1.0) / (m + 1.0)
        let t2 = t * t
        var total = 0.0
        var power = t
        for k in 0..<20 {
            total += power / Double(2 * k + 1)
            power *= t2
        }
        return 2.0 * total + Double(e) * 0.6931471805599453
    }

    mutating func gaussian() -> Double {
        while true {
            let u = 2.0 * uniform() - 1.0
            let v = 2.0 * uniform() - 1.0
            let s = u * u + v * v
            if s > 0 && s < 1 { return u * (-2.0 * FixtureGenerator.log(s) / s).squareRoot() }
        }
    }

    mutating func laplacian() -> Double {
        let u = uniform() - 0.5
        let magnitude = -FixtureGenerator.log(1.0 - 2.0 * abs(u))
        return u >= 0 ? magnitude : -magnitude
    }
}

enum FixtureData {
    static let batchShape = [8, 64, 32]
    static let batches = 4
    static let names = ["gaussian", "laplacian", "outliers", "relu_outliers"]

    /// The batches of dataset `name` as float32 tensors of `batchShape`.
    static func dataset(_ name: String) throws -> [Tensor] {
        let seeds: [String: UInt64] = ["gaussian": 1, "laplacian": 2, "outliers": 3, "relu_outliers": 4]
        var g = FixtureGenerator(seed: seeds[name]!)
        let count = batchShape.reduce(1, *)
        func draw() -> Double {
            switch name {
            case "gaussian": return 1.5 * g.gaussian() + 0.25
            case "laplacian": return 0.75 * g.laplacian() - 0.125
            case "outliers":
                let x = g.gaussian()
                return x * (g.uniform() < 0.002 ? 24.0 : 1.0)
            default:
                let x = max(g.gaussian(), 0.0)
                return x * (g.uniform() < 0.002 ? 16.0 : 1.0)
            }
        }
        return try (0..<batches).map { _ in
            try Tensor(shape: batchShape, scalars: (0..<count).map { _ in Float(draw()) })
        }
    }

    static func checksum(_ batches: [Tensor]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for batch in batches {
            batch.withUnsafeBytes { bytes in
                for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
            }
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    struct TorchResult: Decodable {
        let min: [Double], max: [Double], scale: [Double], zero_point: [Int32]
    }

    struct Reference: Decodable {
        let min: Double, max: Double, absmax: Double
        let percentile_99_99_abs: Double, percentile_0_01: Double, percentile_99_99: Double, percentile_99_abs: Double
        let entropy_symmetric_int8: Double
        let entropy_symmetric_int8_bins: Int
        let entropy_asymmetric_uint8: [Double]
        let entropy_asymmetric_uint8_window: [Int]
        let torch_histogram_uint8_mse: Double
        let torch_histogram_int8_mse: Double

        enum CodingKeys: String, CodingKey {
            case min, max, absmax
            case percentile_99_99_abs = "percentile_99.99_abs", percentile_0_01 = "percentile_0.01"
            case percentile_99_99 = "percentile_99.99", percentile_99_abs = "percentile_99_abs"
            case entropy_symmetric_int8, entropy_symmetric_int8_bins, entropy_asymmetric_uint8
            case entropy_asymmetric_uint8_window, torch_histogram_uint8_mse, torch_histogram_int8_mse
        }
    }

    struct Dataset: Decodable {
        let checksum: String
        let first: [Double]
        let torch: [String: TorchResult]
        let reference: Reference
        let histogram_abs: [Double]
        let histogram_signed: [Double]
    }

    struct Fixture: Decodable {
        let batch_shape: [Int]
        let batches: Int
        let datasets: [String: Dataset]
    }

    static func load() throws -> Fixture {
        let url = TestSupport.fixtures.appendingPathComponent("calibration/observers.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }
}
