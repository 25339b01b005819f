extension KernelRegistry {
    /// The fused integer operators `IntegerFusion` writes (domain `com.swiftquant`, version 1).
    mutating func registerIntegerFusionKernels() {
        let domain = IntegerFusion.domain, version = IntegerFusion.domainVersion
        register("QMatMul", domain: domain, since: version) { try FusedQMatMulKernel($0) }
        register("QConv", domain: domain, since: version) { try FusedQConvKernel($0) }
        register("QConvTranspose", domain: domain, since: version) { try FusedQConvTransposeKernel($0) }
        register("DynamicQMatMul", domain: domain, since: version) { try FusedDynamicQMatMulKernel($0) }
        register("QuantizeRows", domain: domain, since: version) { try FusedQuantizeRowsKernel($0) }
        register("RowScaledQMatMul", domain: domain, since: version) { try FusedRowScaledQMatMulKernel($0) }
        register("DequantizeGather", domain: domain, since: version) { try FusedDequantizeGatherKernel($0) }
        register("QAdd", domain: domain, since: version) { try FusedQBinaryKernel($0, operation: .add) }
        register("QMul", domain: domain, since: version) { try FusedQBinaryKernel($0, operation: .multiply) }
        register("QConcat", domain: domain, since: version) { try FusedQConcatKernel($0) }
        register("QGlobalAveragePool", domain: domain, since: version) { try FusedQGlobalAveragePoolKernel($0) }
        register("QLookup", domain: domain, since: version) { try FusedQLookupKernel($0) }
        register("WeightOnlyMatMul", domain: domain, since: version) { try FusedWeightOnlyMatMulKernel($0) }
        register("Quantize", domain: domain, since: version) { try FusedQuantizeKernel($0) }
        register("Dequantize", domain: domain, since: version) { try FusedDequantizeKernel($0) }
        register("Requantize", domain: domain, since: version) { try FusedRequantizeKernel($0) }
        register("MaskedSoftmax", domain: domain, since: version) { try FusedMaskedSoftmaxKernel($0) }
        register("Attention", domain: domain, since: version) { try FusedAttentionKernel($0) }
        register("AddLayerNormalization", domain: domain, since: version) { try FusedAddLayerNormKernel($0) }
    }
}
