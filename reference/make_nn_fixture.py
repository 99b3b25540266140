#!/usr/bin/env python3
"""Make tests/fixtures/nn/tiny.safetensors with the reference safetensors library.

tests/nn/test_safetensors.cpp reads it and checks every value below, so the
C++ reader is tested against files the Python library writes, not only
against its own writer. Every value is exactly representable in its dtype.

    python3 reference/make_nn_fixture.py [--out tests/fixtures/nn/tiny.safetensors]
"""

import argparse

import numpy as np
import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/nn/tiny.safetensors")
    args = ap.parse_args()

    tensors = {
        # (2, 3): -1, -0.5, 0, 0.5, 1, 1.5
        "f32": torch.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1.0),
        "bf16": torch.tensor([1.0, -2.5, 3.140625, 0.0078125], dtype=torch.bfloat16),
        # 65504 = largest half, 2^-14 = smallest normal, 2^-24 = smallest subnormal, then inf, -inf, nan
        "f16": torch.from_numpy(
            np.array([1.0, -2.5, 65504.0, 2.0**-14, 2.0**-24, 0.0, np.inf, -np.inf, np.nan], dtype=np.float16)),
        "f64": torch.from_numpy(np.array([[0.1, -1e300]], dtype=np.float64)),
        "i32": torch.from_numpy(np.array([[1, -2], [3, 2147483647]], dtype=np.int32)),
        "i64": torch.from_numpy(np.array([0, -5, 2147483647, -2147483648], dtype=np.int64)),
        "i64_big": torch.from_numpy(np.array([2**40], dtype=np.int64)),
        "scalar": torch.tensor(7.0, dtype=torch.float32),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
        "h.0.attn.c_attn.weight": torch.from_numpy(np.arange(4, dtype=np.float32).reshape(2, 2)),
    }
    save_file(tensors, args.out, metadata={"format": "pt", "made_by": "make_nn_fixture.py"})


if __name__ == "__main__":
    main()
