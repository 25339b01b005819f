#!/usr/bin/env python3
"""Checks that ONNX models are valid and that ONNX Runtime loads and runs them.

For every .onnx file given, or found (recursively) in a folder given:
  1. onnx.checker.check_model(model, full_check=True) — the schema checks plus ONNX shape inference;
  2. an ONNX Runtime session (CPU) is created and run once.
The inputs come from NAME.npz beside NAME.onnx when it exists (one array per input, named as the input);
otherwise they are made from the declared shapes, with symbolic or unknown dimensions set to 1:
float inputs get seeded normal noise, integer inputs zeros (valid token ids, positions and segment ids for
any table) except inputs whose name contains "mask", which get ones, and bool inputs False.

Exits non-zero, listing every model that failed and why. A folder without models is only a warning (CI
points this at the folder the tests fill through SWIFTQUANT_ORACLE_DIR).

    python3 scripts/check_onnx_models.py DIR_OR_FILE...     # needs onnx, onnxruntime, numpy
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime


def collect(paths):
    models, missing = [], []
    for path in paths:
        if os.path.isdir(path):
            for root, _, files in os.walk(path):
                models += [os.path.join(root, name) for name in files if name.endswith(".onnx")]
        elif os.path.isfile(path):
            models.append(path)
        else:
            missing.append(path)
    return sorted(models), missing


def made_up_input(node_arg, generator):
    """An array of the declared type and shape (symbolic dims -> 1)."""
    shape = [dim if isinstance(dim, int) and dim >= 0 else 1 for dim in (node_arg.shape or [])]
    kind = node_arg.type
    if kind in ("tensor(float)", "tensor(double)", "tensor(float16)", "tensor(bfloat16)"):
        dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}.get(kind)
        if dtype is None:
            raise ValueError(f"input '{node_arg.name}': cannot make data of type {kind}")
        return generator.standard_normal(shape).astype(dtype)
    if kind == "tensor(bool)":
        return np.zeros(shape, dtype=bool)
    integer_types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
                     "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
                     "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64}
    if kind in integer_types:
        fill = 1 if "mask" in node_arg.name.lower() else 0
        return np.full(shape, fill, dtype=integer_types[kind])
    raise ValueError(f"input '{node_arg.name}': cannot make data of type {kind}")


def feeds_for(path, session, generator):
    beside = os.path.splitext(path)[0] + ".npz"
    arrays = dict(np.load(beside)) if os.path.exists(beside) else {}
    feeds = {}
    for node_arg in session.get_inputs():
        feeds[node_arg.name] = arrays[node_arg.name] if node_arg.name in arrays else made_up_input(node_arg, generator)
    return feeds


def check(path):
    """None when the model passes, otherwise the reason it fails."""
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
    except Exception as error:  # the checker raises several exception types
        return f"onnx.checker: {error}"
    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as error:
        return f"ONNX Runtime could not load it: {error}"
    try:
        outputs = session.run(None, feeds_for(path, session, np.random.default_rng(0)))
    except Exception as error:
        return f"ONNX Runtime could not run it: {error}"
    for node_arg, value in zip(session.get_outputs(), outputs):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            print(f"  warning: {path}: output '{node_arg.name}' holds NaN or Inf", file=sys.stderr)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help=".onnx files or folders holding them")
    args = parser.parse_args()
    onnxruntime.set_default_logger_severity(3)

    models, missing = collect(args.paths)
    failures = [(path, "no such file or folder") for path in missing]
    if not models:
        print(f"warning: no .onnx models in {', '.join(args.paths)}", file=sys.stderr)
    for path in models:
        reason = check(path)
        print(f"{'ok    ' if reason is None else 'FAILED'} {path}")
        if reason is not None:
            failures.append((path, reason))
    print(f"{len(models) - sum(1 for path, _ in failures if path in models)} of {len(models)} models pass")
    if failures:
        print("failures:", file=sys.stderr)
        for path, reason in failures:
            print(f"  {path}: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
