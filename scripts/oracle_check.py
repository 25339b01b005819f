#!/usr/bin/env python3
"""ONNX Runtime as the oracle for SwiftQuant's FP32 runtime.

Runs each model with `swiftquant run` and with onnxruntime on the same inputs and compares every output
(max abs error against a per-case tolerance). Prints one line per case and a closing
`N passed, N failed` line; exits non-zero when any case fails or cannot run.

    python3 scripts/oracle_check.py --swiftquant .build/release/swiftquant [--shared ../shared/models]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "models")


def cases(shared):
    """(name, model path, inputs dict, tolerance) for every model we check."""
    yield ("mixed-cnn", os.path.join(FIXTURES, "mixed-cnn.onnx"),
           dict(np.load(os.path.join(FIXTURES, "mixed-cnn-input.npz"))), 1e-4)
    yield ("mixed-cnn-constants", os.path.join(FIXTURES, "mixed-cnn-constants.onnx"),
           dict(np.load(os.path.join(FIXTURES, "mixed-cnn-input.npz"))), 1e-4)
    yield ("recurrent", os.path.join(FIXTURES, "recurrent.onnx"),
           dict(np.load(os.path.join(FIXTURES, "recurrent-input.npz"))), 1e-4)
    minilm = os.path.join(shared, "minilm-l6")
    if os.path.isdir(minilm):
        data = np.load(os.path.join(minilm, "minilm-eval.npz"))
        yield ("minilm-l6 (64 eval rows)", os.path.join(minilm, "minilm-l6.onnx"),
               {k: data[k][:64] for k in data.files}, 1e-4)
    else:
        print(f"note: {minilm} not found; MiniLM case skipped", file=sys.stderr)


def run_case(binary, name, model, inputs, tolerance, workdir):
    in_path = os.path.join(workdir, "in.npz")
    out_path = os.path.join(workdir, "out.npz")
    np.savez(in_path, **inputs)
    if os.path.exists(out_path):
        os.remove(out_path)
    result = subprocess.run([binary, "run", model, "--input", in_path, "--output", out_path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return False, f"swiftquant run failed: {result.stderr.strip()[:400]}"
    ours = np.load(out_path)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = session.run(names, inputs)
    worst = 0.0
    for output_name, reference in zip(names, expected):
        if output_name not in ours.files:
            return False, f"output {output_name} missing from swiftquant's result"
        got = ours[output_name]
        if got.shape != reference.shape:
            return False, f"{output_name}: shape {got.shape} vs onnxruntime {reference.shape}"
        error = float(np.max(np.abs(got.astype(np.float64) - reference.astype(np.float64)))) if got.size else 0.0
        if not np.isfinite(error):
            return False, f"{output_name}: non-finite difference"
        worst = max(worst, error)
    return worst <= tolerance, f"max abs error {worst:.3g} (tolerance {tolerance:g})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swiftquant", required=True, help="path to the swiftquant executable")
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "models"))
    args = parser.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as workdir:
        for name, model, inputs, tolerance in cases(args.shared):
            ok, detail = run_case(args.swiftquant, name, model, inputs, tolerance, workdir)
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
            passed += ok
            failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
