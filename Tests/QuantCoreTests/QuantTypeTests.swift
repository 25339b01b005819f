import Testing
@testable import QuantCore

@Suite struct QuantTypeTests {
    @Test func namesRoundTrip() throws {
        for name in ["int8", "uint8", "int16", "uint16", "int4", "uint4", "int2", "uint2", "int3", "uint12",
                     "binary", "ternary", "log2", "log2_3", "fp16", "bf16", "fp8e4m3fn", "fp8e5m2"] {
            #expect(try QuantType(name: name).name == name)
        }
    }
}
