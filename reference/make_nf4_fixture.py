#!/usr/bin/env python3
"""Make tests/fixtures/nf4/ with bitsandbytes' NF4 quantization on the CPU.

tests/engine/test_nf4.cpp quantizes the same matrices with the engine and
checks its bytes against these: the packed 4-bit codes and the 8-bit
quantized absmax equal exactly, the nested absmax, the offset and the code
tables equal exactly, and the dequantized values within 1e-6.

    python3 reference/make_nf4_fixture.py [--out tests/fixtures/nf4]

Every matrix goes through

    packed, state = bitsandbytes.functional.quantize_4bit(
        w, quant_type="nf4", blocksize=64, compress_statistics=True)
    bitsandbytes.functional.dequantize_4bit(packed, state)

and is stored as `<case>.input` (bf16 values, so that the file stays small;
quantized from their exact f32 widening), `<case>.packed` (U8, two codes per
byte, the first in the high nibble), `<case>.absmax` (U8, one per block of
64), `<case>.nested_absmax` (F32, one per group of 256 blocks),
`<case>.offset` (F32, the mean absmax subtracted before the nested
quantization), `<case>.dequantized` (F32); `nf4_code` (16) and
`dynamic_code` (256, the table the absmax is quantized with, as
bitsandbytes' CPU kernel leaves it: its first entry set to -1).
"""

import argparse
import json
import os

import bitsandbytes
import bitsandbytes.functional as F
import torch
from safetensors.torch import save_file

# (name, shape, why)
CASES = [
    ("small_odd", (5, 7), "35 values: one partial block, an odd count (the last byte's low nibble is padding)"),
    ("rows", (48, 64), "48 full blocks, row 0 all zero (absmax 0), rows scaled from 1e-3 to 10"),
    ("many_blocks", (129, 129), "16641 values: 261 blocks, so two groups of 256 in the nested quantization, "
                                "the last block holding 1 value"),
]


def make_matrix(shape, generator):
    w = torch.randn(shape, generator=generator, dtype=torch.float32)
    # Rows of different scales, so that the absmax of the blocks (and the
    # nested quantization of them) spans decades.
    scales = torch.logspace(-3, 1, shape[0], dtype=torch.float32)
    w = w * scales.view(-1, 1)
    if shape == (48, 64):
        w[0] = 0
    return w.to(torch.bfloat16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/nf4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    generator = torch.Generator().manual_seed(1234)
    tensors, cases = {}, []
    dynamic_code = None
    for name, shape, why in CASES:
        w16 = make_matrix(shape, generator)
        w = w16.to(torch.float32)
        packed, state = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
        deq = F.dequantize_4bit(packed, state)
        assert state.state2.blocksize == 256 and state.blocksize == 64
        tensors[f"{name}.input"] = w16.contiguous()
        tensors[f"{name}.packed"] = packed.reshape(-1).contiguous()
        tensors[f"{name}.absmax"] = state.absmax.reshape(-1).contiguous()
        tensors[f"{name}.nested_absmax"] = state.state2.absmax.reshape(-1).contiguous()
        tensors[f"{name}.offset"] = state.offset.reshape(1).to(torch.float32).contiguous()
        tensors[f"{name}.dequantized"] = deq.reshape(shape).to(torch.float32).contiguous()
        code2 = state.state2.code.to(torch.float32).contiguous()
        if dynamic_code is None:
            dynamic_code = code2.clone()
        assert torch.equal(dynamic_code, code2)
        tensors["nf4_code"] = state.code.to(torch.float32).contiguous()
        cases.append({"name": name, "shape": list(shape), "why": why,
                      "blocks": int(state.absmax.numel()), "groups": int(state.state2.absmax.numel())})
    tensors["dynamic_code"] = dynamic_code

    save_file(tensors, os.path.join(args.out, "nf4.safetensors"),
              metadata={"format": "pt", "made_by": "make_nf4_fixture.py"})
    meta = {
        "made_by": "reference/make_nf4_fixture.py",
        "call": "bitsandbytes.functional.quantize_4bit(w, quant_type='nf4', blocksize=64, "
                "compress_statistics=True); dequantize_4bit(packed, state)",
        "versions": {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__},
        "device": "cpu",
        "cases": cases,
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                    for k, v in sorted(tensors.items())},
    }
    with open(os.path.join(args.out, "nf4.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
