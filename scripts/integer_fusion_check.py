#!/usr/bin/env python3
"""Outputs of a quantized model three ways: SwiftQuant with integer fusion, SwiftQuant running every node
as written (--no-integer-fusion), and ONNX Runtime. Prints, per output, the largest absolute difference
and the cosine similarity of each pair. A report, not a gate.

    python3 scripts/integer_fusion_check.py --swiftquant .build/release/swiftquant \
        --model /tmp/minilm-qdq.onnx --data ../shared/models/minilm-l6/minilm-eval.npz --rows 8
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def compare(name, a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
    return f"{name}: max |diff| {np.max(np.abs(a - b)):.6g}, cosine {cosine:.6f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swiftquant", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    data = np.load(args.data)
    feeds = {i.name: data[i.name][: args.rows] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    theirs = dict(zip(names, session.run(None, feeds)))
    with tempfile.TemporaryDirectory() as folder:
        inputs = os.path.join(folder, "in.npz")
        np.savez(inputs, **feeds)
        ours = {}
        for label, extra in [("fused", []), ("unfused", ["--no-integer-fusion"])]:
            output = os.path.join(folder, f"{label}.npz")
            subprocess.run([args.swiftquant, "run", args.model, "--input", inputs, "--output", output,
                            "--threads", str(args.threads)] + extra, check=True)
            ours[label] = dict(np.load(output))
    print(f"{os.path.basename(args.model)}, {args.rows} rows")
    for name in names:
        print(f"  {name} {list(theirs[name].shape)}")
        print("    " + compare("fused vs unfused     ", ours["fused"][name], ours["unfused"][name]))
        print("    " + compare("fused vs onnxruntime ", ours["fused"][name], theirs[name]))
        print("    " + compare("unfused vs onnxruntime", ours["unfused"][name], theirs[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
