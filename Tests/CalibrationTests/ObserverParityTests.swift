import Testing
import Tensors
@testable import Calibration
@testable import QuantCore

/// Observers against PyTorch's observers and plain NumPy implementations of the search definitions, on
/// the fixture data (scripts/make_calibration_fixtures.py).
@Suite struct ObserverParityTests {
    static func data(_ name: String) throws -> ([Tensor], FixtureData.Dataset) {
        let fixture = try FixtureData.load()
        let dataset = try #require(fixture.datasets[name])
        let batches = try FixtureData.dataset(name)
        return (batches, dataset)
    }

    @Test(arguments: FixtureData.names)
    func generatorReproducesTheScriptsData(name: String) throws {
        let (batches, dataset) = try Self.data(name)
        #expect(Array(batches[0].scalars(as: Float.self).prefix(8)) == dataset.first.map { Float($0) })
        #expect(FixtureData.checksum(batches) == dataset.checksum)
    }

    /// (fixture key, scheme, observer) for the min/max family.
    static func minMaxCases() throws -> [(String, QuantScheme, any Observer)] {
        let int8Symmetric = QuantScheme(type: .int8, mapping: .symmetric)
        return [
            ("minmax_uint8_affine", .uint8Activations, MinMaxObserver()),
            ("minmax_int8_symmetric", int8Symmetric, MinMaxObserver()),
            ("minmax_int8_symmetric_narrow", QuantScheme(type: .int8, range: .narrow), MinMaxObserver()),
            ("minmax_uint8_affine_reduced", QuantScheme(type: .uint8, mapping: .asymmetric, reduceRange: true), MinMaxObserver()),
            ("minmax_uint8_symmetric", QuantScheme(type: .uint8, mapping: .symmetric), MinMaxObserver()),
            ("perchannel_axis0_int8_symmetric", QuantScheme(type: .int8, granularity: .perChannel(axis: 0)),
             MinMaxObserver(granularity: .perChannel(axis: 0))),
            ("perchannel_axis1_uint8_affine", QuantScheme(type: .uint8, granularity: .perChannel(axis: 1), mapping: .asymmetric),
             MinMaxObserver(granularity: .perChannel(axis: 1))),
            ("moving_average_0.01_uint8_affine", .uint8Activations, try MovingAverageMinMaxObserver(averagingConstant: 0.01)),
            ("moving_average_0.3_int8_symmetric", int8Symmetric, try MovingAverageMinMaxObserver(averagingConstant: 0.3)),
            ("moving_average_perchannel_axis1_0.1_int8_symmetric",
             QuantScheme(type: .int8, granularity: .perChannel(axis: 1)),
             try MovingAverageMinMaxObserver(averagingConstant: 0.1, granularity: .perChannel(axis: 1))),
        ]
    }

    @Test(arguments: FixtureData.names)
    func minMaxAndMovingAverageEqualPyTorch(name: String) throws {
        let (batches, dataset) = try Self.data(name)
        for (key, scheme, prototype) in try Self.minMaxCases() {
            var observer = prototype
            for batch in batches { try observer.observe(batch) }
            let torch = try #require(dataset.torch[key])
            let range = try observer.range(for: scheme)
            let params = try observer.parameters(for: scheme)
            #expect(range.minimum == torch.min.map { Float($0) }, "\(name) \(key) min")
            #expect(range.maximum == torch.max.map { Float($0) }, "\(name) \(key) max")
            #expect(params.scales == torch.scale.map { Float($0) }, "\(name) \(key) scale")
            #expect(params.zeroPoints == torch.zero_point, "\(name) \(key) zero point")
        }
    }

    static func histogram(_ search: HistogramObserver.Search, _ batches: [Tensor]) throws -> HistogramObserver {
        var observer = try HistogramObserver(search: search)
        for batch in batches { try observer.observe(batch) }
        return observer
    }

    @Test(arguments: FixtureData.names)
    func percentileIsWithinOneBinOfNumPy(name: String) throws {
        let (batches, dataset) = try Self.data(name)
        let reference = dataset.reference
        let observer = try Self.histogram(.percentile, batches)
        let symmetric = try observer.range(for: QuantScheme(type: .int8))
        let absBin = reference.absmax / 2048
        let t = Double(max(-symmetric.minimum[0], symmetric.maximum[0]))
        #expect(abs(t - reference.percentile_99_99_abs) <= absBin,
                "\(name): T = \(t), numpy \(reference.percentile_99_99_abs), bin \(absBin)")
        let twoSided = try observer.range(for: .uint8Activations)
        let bin = (reference.max - reference.min) / 2048
        #expect(abs(Double(twoSided.minimum[0]) - reference.percentile_0_01) <= bin, "\(name): low \(twoSided.minimum[0])")
        #expect(abs(Double(twoSided.maximum[0]) - reference.percentile_99_99) <= bin, "\(name): high \(twoSided.maximum[0])")
        // Another percentile of the same histogram.
        var p99 = try HistogramObserver(search: .percentile, percentile: 99)
        for batch in batches { try p99.observe(batch) }
        let r99 = try p99.range(for: QuantScheme(type: .int8))
        let t99 = Double(max(-r99.minimum[0], r99.maximum[0]))
        #expect(abs(t99 - reference.percentile_99_abs) <= absBin, "\(name): P99 \(t99), numpy \(reference.percentile_99_abs)")
    }

    @Test(arguments: FixtureData.names)
    func entropySearchEqualsNumPyOnTheSameHistogram(name: String) throws {
        let dataset = try #require(try FixtureData.load().datasets[name])
        let reference = dataset.reference
        let bins = HistogramSearch.entropyBins(dataset.histogram_abs, levels: 128)
        #expect(abs(bins - reference.entropy_symmetric_int8_bins) <= 1,
                "\(name): \(bins) bins, numpy \(reference.entropy_symmetric_int8_bins)")
        let window = HistogramSearch.entropyWindow(dataset.histogram_signed, levels: 256)
        #expect(abs(window.start - reference.entropy_asymmetric_uint8_window[0]) <= 1
                    && abs(window.end - reference.entropy_asymmetric_uint8_window[1]) <= 1,
                "\(name): window \(window), numpy \(reference.entropy_asymmetric_uint8_window)")
    }

    @Test(arguments: FixtureData.names)
    func entropyIsWithinOneBinOfNumPy(name: String) throws {
        let (batches, dataset) = try Self.data(name)
        let reference = dataset.reference
        let observer = try Self.histogram(.entropy, batches)
        let symmetric = try observer.range(for: QuantScheme(type: .int8))
        let threshold = Double(max(-symmetric.minimum[0], symmetric.maximum[0]))
        #expect(abs(threshold - reference.entropy_symmetric_int8) <= reference.absmax / 2048 * 1.0001,
                "\(name): T = \(threshold), numpy \(reference.entropy_symmetric_int8)")
        let asymmetric = try observer.range(for: .uint8Activations)
        let bin = (reference.max - reference.min) / 2048 * 1.0001
        #expect(abs(Double(asymmetric.minimum[0]) - reference.entropy_asymmetric_uint8[0]) <= bin,
                "\(name): low \(asymmetric.minimum[0]), numpy \(reference.entropy_asymmetric_uint8[0])")
        #expect(abs(Double(asymmetric.maximum[0]) - reference.entropy_asymmetric_uint8[1]) <= bin,
                "\(name): high \(asymmetric.maximum[0]), numpy \(reference.entropy_asymmetric_uint8[1])")
    }

    /// Mean squared error of fake-quantizing all batches with `params`.
    static func meanSquaredError(_ batches: [Tensor], _ params: QuantParams) throws -> Double {
        var sum = 0.0, count = 0
        for batch in batches {
            let x = batch.scalars(as: Float.self)
            let y = try batch.fakeQuantized(with: params).scalars(as: Float.self)
            for (a, b) in zip(x, y) { sum += Double(a - b) * Double(a - b) }
            count += x.count
        }
        return sum / Double(count)
    }

    @Test(arguments: FixtureData.names)
    func mseIsNoWorseThanPyTorchsHistogramObserver(name: String) throws {
        let (batches, dataset) = try Self.data(name)
        let observer = try Self.histogram(.mse, batches)
        for (key, scheme, torchMSE) in [("histogram_uint8_affine", QuantScheme.uint8Activations, dataset.reference.torch_histogram_uint8_mse),
                                        ("histogram_int8_symmetric", QuantScheme(type: .int8), dataset.reference.torch_histogram_int8_mse)] {
            let torch = try #require(dataset.torch[key])
            let theirs = try QuantParams(type: scheme.type, scales: [Float(torch.scale[0])], zeroPoints: [torch.zero_point[0]])
            let ours = try observer.parameters(for: scheme)
            let ourError = try Self.meanSquaredError(batches, ours)
            let theirError = try Self.meanSquaredError(batches, theirs)
            // Our fake-quant of PyTorch's parameters reproduces the script's measurement.
            #expect(abs(theirError - torchMSE) <= torchMSE * 1e-3)
            #expect(ourError <= theirError, "\(name) \(key): ours \(ourError) vs PyTorch \(theirError)")
            print("MSE \(name) \(key): ours \(ourError), PyTorch HistogramObserver \(theirError)")
        }
    }
}
