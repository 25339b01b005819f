import Foundation
import Testing
@testable import Quantization
import QuantCore

@Suite("Quantizer options")
struct QuantizerOptionsTests {
    @Test("mode defaults: int8 weights, int4 per group 32 for weight-only")
    func modeDefaults() {
        #expect(QuantizationOptions(mode: .static).resolvedWeightType == .int8)
        #expect(QuantizationOptions(mode: .static).resolvedGroupSize == nil)
        #expect(QuantizationOptions(mode: .weightOnly).resolvedWeightType == .int4)
        #expect(QuantizationOptions(mode: .weightOnly).resolvedGroupSize == 32)
        #expect(QuantizationOptions(mode: .weightOnly, groupSize: 128).resolvedGroupSize == 128)
    }

    @Test("plan JSON uses snake_case keys and defaults skip to false")
    func planDecoding() throws {
        let json = #"{"nodes": {"a": {"skip": true}, "b": {"weight_type": "int4", "activation_type": "int16"}}}"#
        let plan = try JSONDecoder().decode(QuantizationPlan.self, from: Data(json.utf8))
        #expect(plan.nodes["a"] == QuantizationPlan.NodeOverride(skip: true))
        #expect(plan.nodes["b"] == QuantizationPlan.NodeOverride(weightType: .int4, activationType: .int16))
    }
}
