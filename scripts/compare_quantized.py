#!/usr/bin/env python3
"""Fidelity of quantized models against their float model, in SwiftQuant's runtime and in ONNX Runtime.

For each candidate: onnx.checker (full check), then per output the mean and worst row cosine to the float
model's output — in our runtime (`swiftquant run`, batches of 128 rows) and in ONNX Runtime (default and
basic graph optimisations) — and the largest absolute difference between our output and ONNX Runtime's.
Candidates whose file name starts with `ort` (models written by ONNX Runtime's own tools) are only run
in ONNX Runtime.

    python3 scripts/compare_quantized.py FLOAT.onnx EVAL.npz ROWS CANDIDATE.onnx... \
        [--swiftquant .build/release/swiftquant]

ONNX Runtime's default optimisations fuse a blocked DequantizeLinear + MatMul into MatMulNBits, which on
x86 quantizes the activations to int8 (session option `session.qdq_matmulnbits_accuracy_level`, default
4); the basic level runs the graph as written.
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

BATCH = 128


def ours(binary, path, data, rows, workdir):
    outputs = {}
    feeds, results = os.path.join(workdir, "in.npz"), os.path.join(workdir, "out.npz")
    for start in range(0, rows, BATCH):
        np.savez(feeds, **{k: v[start:start + BATCH] for k, v in data.items()})
        subprocess.run([binary, "run", path, "--input", feeds, "--output", results], check=True, capture_output=True)
        for name, value in np.load(results).items():
            outputs.setdefault(name, []).append(value)
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def onnxruntime(path, data, rows, basic=False):
    options = ort.SessionOptions()
    if basic:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    runs = [session.run(names, {k: v[s:s + BATCH] for k, v in data.items()}) for s in range(0, rows, BATCH)]
    return {name: np.concatenate([run[i] for run in runs]) for i, name in enumerate(names)}


def cosines(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("reference")
    parser.add_argument("data")
    parser.add_argument("rows", type=int)
    parser.add_argument("candidates", nargs="+")
    parser.add_argument("--swiftquant", default=".build/release/swiftquant")
    args = parser.parse_args()
    ort.set_default_logger_severity(3)
    data = {k: v[:args.rows] for k, v in np.load(args.data).items()}
    rows = min(len(v) for v in data.values())
    with tempfile.TemporaryDirectory() as workdir:
        float_ours = ours(args.swiftquant, args.reference, data, rows, workdir)
        float_ort = onnxruntime(args.reference, data, rows)
        for name in float_ort:
            print(f"float model: ours vs ONNX Runtime max abs {np.abs(float_ours[name] - float_ort[name]).max():.3g}")
        for candidate in args.candidates:
            foreign = os.path.basename(candidate).startswith("ort")
            checked = "n/a"
            if not foreign:
                try:
                    onnx.checker.check_model(candidate, full_check=True)
                    checked = "ok"
                except Exception as error:  # the checker's own exception types vary by version
                    checked = "FAILED: " + str(error)[:200]
            got = None if foreign else ours(args.swiftquant, candidate, data, rows, workdir)
            runtime, basic = onnxruntime(candidate, data, rows), onnxruntime(candidate, data, rows, basic=True)
            size = os.path.getsize(candidate) / os.path.getsize(args.reference)
            for name in float_ort:
                line = f"{os.path.basename(candidate)} [{name}] size {size:.3f} of float, checker {checked}; "
                if got is not None:
                    c = cosines(float_ours[name], got[name])
                    line += f"ours: cosine mean {c.mean():.5f} worst {c.min():.5f}; "
                    line += (f"ours vs ONNX Runtime max abs {np.abs(got[name] - runtime[name]).max():.3g} "
                             f"(basic optimisations {np.abs(got[name] - basic[name]).max():.3g}); ")
                c, cb = cosines(float_ort[name], runtime[name]), cosines(float_ort[name], basic[name])
                line += (f"ONNX Runtime: cosine mean {c.mean():.5f} worst {c.min():.5f} "
                         f"(basic optimisations {cb.mean():.5f} / {cb.min():.5f})")
                print(line, flush=True)


if __name__ == "__main__":
    main()
