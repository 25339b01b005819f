extension KernelRegistry {
    mutating func registerRecurrentKernels() {}
}
