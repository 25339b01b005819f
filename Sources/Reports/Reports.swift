// Reports: metrics that compare a candidate model with its reference (fidelity, accuracy, size, latency,
// integer share of the work) and their JSON/HTML renderings. Evaluation lives here because it needs the
// runtime and the quantization report, and nothing below may know about either.
