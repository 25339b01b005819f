extension IntegerFusionRewriter {
    mutating func fuseWeightOnlyMatMuls() {}
    mutating func fuseElementwise() {}
}
