#!/usr/bin/env python3
"""Writes the small .npy/.npz fixtures of Tests/Fixtures/npy with numpy itself.

The Swift tests (Tests/TensorsTests/NPYTests.swift, NPZTests.swift) hard-code the same values, so
this script is the independent source of the files they read. Re-run it only to regenerate:

    python3 scripts/make_npy_fixtures.py
"""
import io
import os
import zipfile

import numpy as np
from numpy.lib import format as npformat

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "npy")


def save(name, array):
    np.save(os.path.join(OUT, name), array, allow_pickle=False)


def main():
    os.makedirs(OUT, exist_ok=True)
    grid = (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(2, 3)

    # One little-endian, C-order file per dtype: the Swift writer must reproduce these bytes exactly.
    save("float32_2x3.npy", grid)
    save("float64.npy", np.array([1.5, -2.25, 1e300, -0.0], dtype=np.float64))
    save("float16.npy", np.array([1.0, -2.5, 65504.0, 6e-8], dtype=np.float16))
    save("int8.npy", np.array([-128, -1, 0, 127], dtype=np.int8))
    save("uint8.npy", np.array([0, 1, 254, 255], dtype=np.uint8))
    save("int16.npy", np.array([-32768, -2, 3, 32767], dtype=np.int16))
    save("uint16.npy", np.array([0, 2, 65535], dtype=np.uint16))
    save("int32.npy", np.array([[-2147483648, 7], [65536, 2147483647]], dtype=np.int32))
    save("uint32.npy", np.array([0, 4294967295], dtype=np.uint32))
    save("int64.npy", np.array([-(2**63), -1, 2**40, 2**63 - 1], dtype=np.int64))
    save("uint64.npy", np.array([0, 2**64 - 1], dtype=np.uint64))
    save("bool.npy", np.array([[True, False, True], [False, False, True]]))
    save("scalar_float32.npy", np.array(3.5, dtype=np.float32))
    save("empty_float32_0x3.npy", np.zeros((0, 3), dtype=np.float32))

    # Big-endian data, swapped on read.
    save("big_endian_float64.npy", np.array([1.5, -2.25, 1e300, -0.0], dtype=">f8"))
    save("big_endian_int32.npy", np.array([1, -2, 65536], dtype=">i4"))
    save("big_endian_uint16.npy", np.array([1, 258, 65535], dtype=">u2"))

    # Fortran order: the Swift reader returns the same logical arrays in row-major order.
    save("fortran_float32_2x3x4.npy", np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4)))
    save("fortran_big_endian_int16_3x2.npy", np.asfortranarray(np.array([[1, 2], [3, 4], [5, -6]], dtype=">i2")))

    # Format versions 2.0 and 3.0 (numpy only picks them for huge or non-Latin-1 headers).
    for version in [(2, 0), (3, 0)]:
        with open(os.path.join(OUT, f"version{version[0]}_int64.npy"), "wb") as f:
            npformat.write_array(f, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64), version=version)

    # dtypes the reader must refuse with a clear error.
    save("unicode.npy", np.array(["ab", "c"]))
    save("complex64.npy", np.array([1 + 2j], dtype=np.complex64))

    # Archives: stored (np.savez) and deflated (np.savez_compressed).
    arrays = dict(
        weights=grid,
        ids=np.array([101, 2023, 102], dtype=np.int64),
        mask=np.array([True, True, False]),
        scalar=np.array(7, dtype=np.int32),
    )
    np.savez(os.path.join(OUT, "savez.npz"), **arrays)
    np.savez_compressed(os.path.join(OUT, "savez_compressed.npz"), **arrays)


if __name__ == "__main__":
    main()
