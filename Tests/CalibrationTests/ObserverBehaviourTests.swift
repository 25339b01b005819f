import Foundation
import PropertyBased
import Testing
import Tensors
@testable import Calibration
@testable import QuantCore

/// Merging, degenerate data, the calibrator and the low-bit weight rules.
@Suite struct ObserverBehaviourTests {
    static func tensor(_ values: [Float], shape: [Int]? = nil) throws -> Tensor {
        try Tensor(shape: shape ?? [values.count], scalars: values)
    }

    static func random(_ count: Int, seed: UInt64, scale: Double, offset: Double = 0) -> [Float] {
        var g = FixtureGenerator(seed: seed)
        return (0..<count).map { _ in Float(g.gaussian() * scale + offset) }
    }

    // MARK: Merge

    @Test func mergingEqualsObservingInSequence() async {
        await propertyCheck(count: 25, input: Gen.int(in: 0...100_000), Gen.int(in: 1...600), Gen.int(in: 1...600)) { seed, n, m in
            do {
                // Two batches with different spreads and offsets, so the second one grows the histogram.
                let a = try Self.tensor(Self.random(n * 4, seed: UInt64(seed), scale: 1, offset: 0.5), shape: [n, 4])
                let b = try Self.tensor(Self.random(m * 4, seed: UInt64(seed) + 1, scale: Double(seed % 50 + 1), offset: -2), shape: [m, 4])
                func check<O: Observer & Equatable>(_ make: () throws -> O, _ scheme: QuantScheme) throws {
                    var sequential = try make()
                    try sequential.observe(a)
                    try sequential.observe(b)
                    var left = try make(), right = try make()
                    try left.observe(a)
                    try right.observe(b)
                    try left.merge(right)
                    #expect(left == sequential, "\(O.self)")
                    #expect(try left.parameters(for: scheme) == sequential.parameters(for: scheme))
                    // Merging into an empty observer, and merging an empty one, change nothing.
                    var empty = try make()
                    try empty.merge(sequential)
                    #expect(empty == sequential)
                    try sequential.merge(try make())
                    #expect(empty == sequential)
                }
                try check({ MinMaxObserver() }, .uint8Activations)
                try check({ MinMaxObserver(granularity: .perChannel(axis: 1)) },
                          QuantScheme(type: .int8, granularity: .perChannel(axis: 1)))
                for search in HistogramObserver.Search.allCases {
                    try check({ try HistogramObserver(search: search, bins: 256) }, .uint8Activations)
                    try check({ try HistogramObserver(search: search, bins: 256) }, QuantScheme(type: .int8))
                }
                try check({ try HistogramObserver(search: .percentile, bins: 128, granularity: .perChannel(axis: 1)) },
                          QuantScheme(type: .int8, granularity: .perChannel(axis: 1)))
                try check({ try LowBitWeightObserver(granularity: .perChannel(axis: 1)) },
                          QuantScheme(type: .ternary, granularity: .perChannel(axis: 1)))
            } catch {
                Issue.record("\(error)")
            }
        }
    }

    @Test func histogramKeepsEveryCountAsTheRangeGrows() throws {
        var observer = try HistogramObserver(search: .percentile, bins: 64)
        var expected = 0
        for k in 0..<40 {
            // Each batch reaches further out than the last (and once, far below zero).
            let values = Self.random(500, seed: UInt64(k), scale: pow(1.3, Double(k)), offset: k == 20 ? -1e4 : 0)
            try observer.observe(Self.tensor(values))
            expected += values.count
            let histogram = observer.histograms[0]
            #expect(histogram.total == UInt64(expected))
            #expect(histogram.counts.reduce(0, +) == UInt64(expected))
        }
    }

    @Test func movingAverageMergeIsTheBatchWeightedMean() throws {
        var a = try MovingAverageMinMaxObserver(averagingConstant: 0.5)
        var b = try MovingAverageMinMaxObserver(averagingConstant: 0.5)
        try a.observe(Self.tensor([-1, 1]))
        try b.observe(Self.tensor([-4, 2]))
        try b.observe(Self.tensor([-2, 4]))  // b: min −4 + 0.5·(−2 + 4) = −3, max 2 + 0.5·2 = 3
        #expect(b.minimum == [-3] && b.maximum == [3])
        try a.merge(b)
        #expect(a.minimum == [Float((1 * -1.0 + 2 * -3.0) / 3)])
        #expect(a.maximum == [Float((1 * 1.0 + 2 * 3.0) / 3)])
        #expect(throws: CalibrationError.self) { try a.merge(try MovingAverageMinMaxObserver(averagingConstant: 0.1)) }
    }

    // MARK: Degenerate data

    static func allObservers() throws -> [any Observer] {
        [MinMaxObserver(), try MovingAverageMinMaxObserver(), try HistogramObserver(search: .entropy),
         try HistogramObserver(search: .percentile), try HistogramObserver(search: .mse), try LowBitWeightObserver()]
    }

    static let schemes: [QuantScheme] = [.uint8Activations, QuantScheme(type: .int8), .int8Weights(),
                                         QuantScheme(type: .int4, mapping: .asymmetric)]

    /// Every observer and scheme gives a finite, positive scale and maps 0 exactly.
    static func checkValid(_ values: [Float], expectRange: ClosedRange<Float>?, label: String) throws {
        for prototype in try allObservers() {
            var observer = prototype
            try observer.observe(tensor(values))
            for scheme in schemes {
                let params = try observer.parameters(for: scheme)
                for s in params.scales { #expect(s.isFinite && s > 0, "\(label) \(type(of: observer)) \(scheme.type)") }
                #expect(params.fakeQuantize(0) == 0)
                if let expectRange, !(observer is LowBitWeightObserver) {
                    let range = try observer.range(for: scheme)
                    #expect(range.minimum[0] >= expectRange.lowerBound && range.maximum[0] <= expectRange.upperBound,
                            "\(label) \(type(of: observer)) \(scheme.type): \(range)")
                }
            }
        }
    }

    @Test func degenerateDataHasDocumentedOutcomes() throws {
        // All zero: range [0, 0], the minimum scale.
        try Self.checkValid([Float](repeating: 0, count: 100), expectRange: 0...0, label: "zeros")
        var zeros = MinMaxObserver()
        try zeros.observe(Self.tensor([0, 0, 0]))
        #expect(try zeros.parameters(for: .uint8Activations).scales == [Float.ulpOfOne])
        // All constant and a single value: the range is that value (widened to include 0 for the scale).
        try Self.checkValid([Float](repeating: 2.5, count: 100), expectRange: 0...2.5, label: "constant")
        try Self.checkValid([-7], expectRange: -7...0, label: "single")
        var constant = MinMaxObserver()
        try constant.observe(Self.tensor([2.5, 2.5]))
        let params = try constant.parameters(for: .uint8Activations)
        #expect(params.scales == [Float(2.5) / 255] && params.fakeQuantize(2.5) == 2.5)
        // Empty: nothing observed, range [0, 0].
        try Self.checkValid([], expectRange: 0...0, label: "empty")
        // NaN and ±Inf are skipped and counted.
        let dirty: [Float] = [1, .nan, -3, .infinity, -.infinity, .nan, 2]
        try Self.checkValid(dirty, expectRange: -3...2, label: "nan/inf")
        for prototype in try Self.allObservers() {
            var observer = prototype
            try observer.observe(Self.tensor(dirty))
            #expect(observer.statistics == {
                var s = ObservationStatistics(); s.batches = 1; s.finite = 3; s.nan = 2; s.infinite = 2; return s
            }())
        }
        // Only NaN: like empty.
        try Self.checkValid([.nan, .nan], expectRange: 0...0, label: "all NaN")
    }

    @Test func badInputIsATypedError() throws {
        var perChannel = MinMaxObserver(granularity: .perChannel(axis: 1))
        try perChannel.observe(Tensor(zeros: .float32, shape: [2, 3]))
        #expect(throws: CalibrationError.self) { try perChannel.observe(Tensor(zeros: .float32, shape: [2, 4])) }
        #expect(throws: CalibrationError.self) { try perChannel.parameters(for: .uint8Activations) }
        var fresh = MinMaxObserver()
        #expect(throws: CalibrationError.self) { try fresh.observe(Tensor(zeros: .int32, shape: [2])) }
        #expect(throws: CalibrationError.self) { try MinMaxObserver(granularity: .perChannel(axis: 0)).range(for: QuantScheme(type: .int8, granularity: .perChannel(axis: 0))) }
        #expect(throws: CalibrationError.self) { try MovingAverageMinMaxObserver(averagingConstant: 0) }
        #expect(throws: CalibrationError.self) { try HistogramObserver(search: .percentile, percentile: 101) }
        #expect(throws: CalibrationError.self) { try HistogramObserver(search: .mse, bins: 1) }
        var histogram = try HistogramObserver(search: .entropy)
        try histogram.observe(Self.tensor([1, 2, 3]))
        #expect(throws: CalibrationError.self) { try histogram.parameters(for: QuantScheme(type: .float8e4m3fn)) }
        #expect(throws: CalibrationError.self) { try histogram.parameters(for: QuantScheme(type: .int16)) }
        var perGroup = MinMaxObserver(granularity: .perGroup(axis: 0, size: 2))
        #expect(throws: QuantError.self) { try perGroup.observe(Self.tensor([1, 2])) }
    }

    // MARK: Low-bit weight rules

    @Test func lowBitObserverMatchesTheExactRules() throws {
        let weights = try Self.tensor(Self.random(4 * 300, seed: 9, scale: 0.2, offset: 0.01), shape: [4, 300])
        let granularity = Granularity.perChannel(axis: 0)
        var observer = try LowBitWeightObserver(granularity: granularity)
        // Streamed in two halves along a non-channel axis is the same as one tensor for these statistics.
        let values = weights.scalars(as: Float.self)
        let first = try Tensor(shape: [4, 150], scalars: (0..<4).flatMap { values[($0 * 300)..<($0 * 300 + 150)] })
        let second = try Tensor(shape: [4, 150], scalars: (0..<4).flatMap { values[($0 * 300 + 150)..<($0 * 300 + 300)] })
        try observer.observe(first)
        try observer.observe(second)
        let binary = try observer.parameters(for: QuantScheme(type: .binary, granularity: granularity))
        let exactBinary = try WeightRangeRules.binary(weights, granularity: granularity)
        for (a, b) in zip(binary.scales, exactBinary.scales) { #expect(abs(a - b) <= b * 1e-6) }
        let ternary = try observer.parameters(for: QuantScheme(type: .ternary, granularity: granularity))
        let exactTernary = try WeightRangeRules.ternary(weights, granularity: granularity)
        for c in 0..<4 {
            #expect(abs(ternary.ternaryThresholds![c] - exactTernary.ternaryThresholds![c]) <= exactTernary.ternaryThresholds![c] * 1e-6)
            // Within one internal histogram bin of max|w| / 2048.
            let maxAbs = (0..<300).map { abs(values[c * 300 + $0]) }.max()!
            #expect(abs(ternary.scales[c] - exactTernary.scales[c]) <= maxAbs / 2048, "channel \(c)")
        }
        let log2 = try observer.parameters(for: QuantScheme(type: .log2, granularity: granularity))
        #expect(log2.scales == (try WeightRangeRules.log2(weights, granularity: granularity)).scales)
    }

    @Test func weightRangeRulesByHand() throws {
        let w = try Self.tensor([0.1, -0.3, 0.5, -0.1, 0.0, 0.2], shape: [2, 3])
        // Binary per row: mean |w| = 0.3 and 0.1.
        let binary = try WeightRangeRules.binary(w, granularity: .perChannel(axis: 0))
        #expect(abs(binary.scales[0] - 0.3) < 1e-7 && abs(binary.scales[1] - 0.1) < 1e-7)
        // Ternary per tensor: mean |w| = 1.2 / 6 = 0.2, Δ = 0.14, |w| > Δ: 0.3, 0.5, 0.2 → α = 1/3.
        let ternary = try WeightRangeRules.ternary(w, granularity: .perTensor)
        #expect(abs(ternary.ternaryThresholds![0] - 0.14) < 1e-6)
        #expect(abs(ternary.scales[0] - 1.0 / 3) < 1e-6)
        let q = try w.fakeQuantized(with: ternary).scalars(as: Float.self)
        let a = ternary.scales[0]
        #expect(q == [0, -a, a, 0, 0, a])
        // Log2: max|w| = 0.5 → s = 0.5; 0.3 → 2^round(log2 0.6) · 0.5 = 0.25; 0.1 → 0.125.
        let log2 = try WeightRangeRules.log2(w, granularity: .perTensor)
        #expect(log2.scales == [0.5])
        #expect(try w.fakeQuantized(with: log2).scalars(as: Float.self) == [0.125, -0.25, 0.5, -0.125, 0, 0.25])
    }

    // MARK: Calibrator

    @Test func calibratorStreamsNamedTensorsAndWritesJSON() throws {
        var calibrator = try Calibrator(
            configuration: CalibrationConfiguration(method: .percentile),
            overrides: ["weight": QuantScheme(type: .int8, granularity: .perChannel(axis: 0), range: .narrow)])
        for k in 0..<5 {
            let activation = try Self.tensor(Self.random(1000, seed: UInt64(k), scale: 2, offset: 1))
            let weight = try Self.tensor(Self.random(30, seed: 100 + UInt64(k), scale: 0.1), shape: [3, 10])
            try calibrator.observe([("act", activation), ("weight", weight)])
        }
        let results = try calibrator.results()
        #expect(results.tensors.map(\.name) == ["act", "weight"])
        let weight = try #require(results["weight"])
        #expect(weight.params.scales.count == 3 && weight.params.codeRange == -127...127)
        let json = try results.json()
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains("\"zero_point\"") && text.contains("\"scale\""))
        let object = try JSONSerialization.jsonObject(with: json) as! [String: Any]
        let tensors = object["tensors"] as! [String: [String: Any]]
        #expect(tensors["act"]?["scale"] is NSNumber)  // per-tensor: a number
        #expect((tensors["weight"]?["scale"] as? [Any])?.count == 3)  // per-channel: an array
        // A JSON object has no order; decoding sorts by name ("act" < "weight" keeps this one equal).
        #expect(try JSONDecoder().decode(CalibrationResults.self, from: json) == results)
        // Errors name the tensor.
        do {
            try calibrator.observe("weight", Tensor(zeros: .float32, shape: [4, 10]))
            Issue.record("a changed channel count must fail")
        } catch {
            #expect("\(error)".contains("tensor 'weight'"))
        }
    }

    @Test func calibratorsMerge() throws {
        let configuration = CalibrationConfiguration(method: .entropy, scheme: QuantScheme(type: .int8))
        var whole = try Calibrator(configuration: configuration)
        var left = try Calibrator(configuration: configuration), right = try Calibrator(configuration: configuration)
        for k in 0..<4 {
            let t = try Self.tensor(Self.random(2000, seed: UInt64(k), scale: Double(k + 1)))
            try whole.observe("x", t)
            if k < 2 { try left.observe("x", t) } else { try right.observe("x", t) }
        }
        try right.observe("y", Self.tensor([1, 2, 3]))
        try whole.observe("y", Self.tensor([1, 2, 3]))
        try left.merge(right)
        #expect(try left.results() == whole.results())
    }

    @Test func everyMethodProducesValidParameters() throws {
        let data = try Self.tensor(Self.random(5000, seed: 3, scale: 1.5, offset: 0.3))
        for method in CalibrationMethod.allCases {
            for scheme in Self.schemes {
                var calibrator = try Calibrator(configuration: CalibrationConfiguration(method: method, scheme: scheme))
                try calibrator.observe("x", data)
                let result = try #require(try calibrator.results()["x"])
                #expect(result.params.scales[0].isFinite && result.params.scales[0] > 0)
                #expect(result.range.minimum[0] >= -6 && result.range.maximum[0] <= 7, "\(method) \(scheme.type)")
            }
        }
    }

    // MARK: Memory (a benchmark, not a timed test)

    /// `SWIFTQUANT_BENCH=1 swift test --filter histogramObserverMemory`: 1,000 batches of a 1M-element
    /// tensor through a histogram observer; prints the peak-RSS growth (getrusage ru_maxrss).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SWIFTQUANT_BENCH"] == "1"))
    func histogramObserverMemory() throws {
        let count = 1 << 20
        var batch = try Tensor(shape: [count], scalars: Self.random(count, seed: 42, scale: 1))
        let base = batch.scalars(as: Float.self)
        var observer = try HistogramObserver(search: .entropy)
        func peakKilobytes() -> Int {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return usage.ru_maxrss
        }
        /// VmRSS of /proc/self/status, in MB (0 where there is no /proc).
        func residentMegabytes() -> Double {
            guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                  let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
            return kilobytes / 1024
        }
        let before = peakKilobytes()
        print("resident before the loop: \(residentMegabytes()) MB")
        let start = Date()
        for k in 0..<1000 {
            // A slowly widening range, so the histogram keeps growing.
            let factor = Float(1 + Double(k) * 0.002)
            batch.withUnsafeMutableBufferPointer(as: Float.self) { x in
                for i in 0..<count { x[i] = base[i] * factor }
            }
            try observer.observe(batch)
        }
        let params = try observer.parameters(for: QuantScheme(type: .int8))
        let growth = Double(peakKilobytes() - before) / 1024
        let state = observer.histograms.reduce(0) { $0 + $1.counts.count * MemoryLayout<UInt64>.size }
        print("histogram observer: 1000 × 1M elements, peak RSS \(Double(before) / 1024) MB before the loop, "
              + "\(Double(peakKilobytes()) / 1024) MB after (growth \(growth) MB; resident now \(residentMegabytes()) MB); "
              + "histogram state \(state / 1024) KiB; \(Date().timeIntervalSince(start)) s (debug build); scale \(params.scales[0])")
        #expect(observer.statistics.finite == 1000 * count)
        #expect(growth < 50)
    }
}
