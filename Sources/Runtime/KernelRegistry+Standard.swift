extension KernelRegistry {
    /// Every built-in kernel. Each operator family registers itself from its own file.
    public static let standard: KernelRegistry = {
        var registry = KernelRegistry()
        registry.registerConstantKernels()
        registry.registerCastKernels()
        return registry
    }()
}
