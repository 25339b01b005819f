extension KernelRegistry {
    /// The fused integer operators `IntegerFusion` writes (domain `com.swiftquant`, version 1).
    mutating func registerIntegerFusionKernels() {
        let domain = IntegerFusion.domain, version = IntegerFusion.domainVersion
        register("QMatMul", domain: domain, since: version) { try FusedQMatMulKernel($0) }
    }
}
