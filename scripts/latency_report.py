#!/usr/bin/env python3
"""Latency of a model in SwiftQuant's runtime next to ONNX Runtime's, same machine, same run.

Runs `swiftquant bench --json` and an onnxruntime session (sequential execution, intra-op threads =
--threads) on the same rows, and prints the medians and their ratio. `--baseline LABEL=MODEL` (repeatable)
also times other models in ONNX Runtime in the same run, e.g. the FP32 original and ORT's own
quantize_dynamic model, and prints our time as a ratio of each. A report, not a gate.

    python3 scripts/latency_report.py --swiftquant .build/release/swiftquant \
        --model ../shared/models/minilm-l6/minilm-l6.onnx --data ../shared/models/minilm-l6/minilm-eval.npz \
        --rows 1 --threads 1 2

    python3 scripts/latency_report.py --swiftquant .build/release/swiftquant --model static.onnx \
        --data minilm-eval.npz --baseline fp32=minilm-l6.onnx --baseline ort-dynamic=ort-dynamic.onnx
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort


def ort_median_ms(model, feeds, threads, warmup, iterations):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, feeds)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, feeds)
        samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swiftquant", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--baseline", action="append", default=[], metavar="LABEL=MODEL",
                        help="another model to time in ONNX Runtime on the same inputs")
    args = parser.parse_args()

    data = np.load(args.data)
    names = [i.name for i in ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).get_inputs()]
    feeds = {k: data[k][: args.rows] for k in names}
    shape = next(iter(feeds.values())).shape
    with tempfile.TemporaryDirectory() as folder:
        inputs = os.path.join(folder, "in.npz")
        np.savez(inputs, **feeds)
        print(f"{os.path.basename(args.model)}, input shape {list(shape)}, medians of {args.iterations} runs")
        for threads in args.threads:
            result = subprocess.run(
                [args.swiftquant, "bench", args.model, "--input", inputs, "--threads", str(threads),
                 "--warmup", str(args.warmup), "--iterations", str(args.iterations), "--json"],
                capture_output=True, text=True, check=True)
            ours = json.loads(result.stdout)["median_ms"]
            theirs = ort_median_ms(args.model, feeds, threads, args.warmup, args.iterations)
            print(f"  {threads} thread(s): swiftquant {ours:8.3f} ms   onnxruntime {theirs:8.3f} ms   "
                  f"ratio {ours / theirs:5.2f}x")
            for entry in args.baseline:
                label, _, path = entry.partition("=")
                baseline = ort_median_ms(path, feeds, threads, args.warmup, args.iterations)
                print(f"      onnxruntime {label:<14} {baseline:8.3f} ms   swiftquant / it {ours / baseline:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
