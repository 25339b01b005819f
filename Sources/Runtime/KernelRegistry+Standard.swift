extension KernelRegistry {
    /// Every built-in kernel. Each operator family registers itself from its own file.
    public static let standard: KernelRegistry = {
        var registry = KernelRegistry()
        registry.registerConstantKernels()
        registry.registerRoundingKernels()
        registry.registerElementwiseFamilyKernels()
        registry.registerShapeKernels()
        registry.registerDataMovementKernels()
        registry.registerGatherKernels()
        registry.registerControlFlowKernels()
        registry.registerRecurrentKernels()
        registry.registerMatMulKernels()
        registry.registerGemmKernels()
        registry.registerConvKernels()
        registry.registerConvTransposeKernels()
        registry.registerBatchNormKernels()
        registry.registerPoolingKernels()
        registry.registerResizeKernels()
        registry.registerCastKernels()
        registry.registerQuantizationKernels()
        registry.registerQLinearKernels()
        registry.registerIntegerFusionKernels()
        return registry
    }()
}
