extension IntegerFusionRewriter {
    mutating func fuseWeightOnlyMatMuls() {}
}
