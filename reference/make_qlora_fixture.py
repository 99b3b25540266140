#!/usr/bin/env python3
"""Make tests/fixtures/peft/<case>_nf4/: HF PEFT LoRA on an NF4 base (QLoRA).

    python3 reference/make_qlora_fixture.py [--fixtures tests/fixtures]

transformers 4.46.3 (the pinned version) does not load a 4-bit model with
bitsandbytes 0.50 on the CPU (from_pretrained with
BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4") fails in
its bitsandbytes integration). So, as the issue allows, the base here is
the f32 model holding what bitsandbytes' Linear4bit computes with: every
Linear / Conv1D weight except the LM head goes through

    dequantize_4bit(*quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=True))

(a Conv1D weight is quantized transposed, as (out, in), the order HF stores a
Linear4bit weight in), with compute dtype f32 as Linear4bit's default; and the
embedding tables (the token table is the tied LM head) are rounded to bf16,
the dtype QLoRA keeps what it does not quantize in. On that base, the LoRA
adapter of tests/fixtures/peft/<case>/ (its adapter_config.json and its
initial parameters param.*) gives logits, loss and the adapter's gradients.

Writes reference.safetensors (input_ids, labels, logits, loss, grad.<name>),
nf4_weights.safetensors (bitsandbytes' own quantized tensors of each weight:
<module>.weight.packed, .absmax, .nested_absmax, .offset, as in
tests/fixtures/nf4/) and reference.json (versions, the adapter case, notes).
"""

import argparse
import json
import os

import bitsandbytes
import bitsandbytes.functional as F
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

CASES = [("gpt2_lora", "gpt2_tiny"), ("opt_lora", "opt_tiny")]


def nf4_round_trip(w, name, store):
    """bitsandbytes' dequantized NF4 weight; its quantized tensors go into store under name."""
    packed, state = F.quantize_4bit(w.contiguous(), blocksize=64, compress_statistics=True, quant_type="nf4")
    store[name + ".packed"] = packed.reshape(-1).contiguous()
    store[name + ".absmax"] = state.absmax.reshape(-1).contiguous()
    store[name + ".nested_absmax"] = state.state2.absmax.reshape(-1).contiguous()
    store[name + ".offset"] = state.offset.reshape(1).to(torch.float32).contiguous()
    return F.dequantize_4bit(packed, state).to(torch.float32)


def qlora_base(path):
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    quantized, store = [], {}
    for name, mod in model.named_modules():
        if name.endswith("lm_head"):
            continue
        if isinstance(mod, Conv1D):  # weight (in, out): quantized as (out, in)
            mod.weight.data = nf4_round_trip(mod.weight.data.t(), name + ".weight", store).t().contiguous()
            quantized.append(name)
        elif isinstance(mod, torch.nn.Linear):
            mod.weight.data = nf4_round_trip(mod.weight.data, name + ".weight", store)
            quantized.append(name)
        elif isinstance(mod, torch.nn.Embedding):
            mod.weight.data = mod.weight.data.to(torch.bfloat16).to(torch.float32)
    return model, quantized, store


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for case, base_dir in CASES:
        src = os.path.join(args.fixtures, "peft", case)
        ref = load_file(os.path.join(src, "reference.safetensors"))
        with open(os.path.join(src, "adapter_config.json")) as f:
            cfg = json.load(f)
        cfg["inference_mode"] = False
        config = LoraConfig(**{k: v for k, v in cfg.items() if k in LoraConfig.__dataclass_fields__})
        base, quantized, nf4_weights = qlora_base(os.path.join(args.fixtures, base_dir))
        model = get_peft_model(base, config)
        params = dict(model.named_parameters())
        trainable = sorted(n for n, p in params.items() if p.requires_grad)
        with torch.no_grad():
            for n in trainable:
                params[n].copy_(ref["param." + n])
        model.eval()
        ids, labels = ref["input_ids"].long(), ref["labels"].long()
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        tensors = {"input_ids": ref["input_ids"], "labels": ref["labels"],
                   "logits": out.logits.detach().contiguous(), "loss": out.loss.detach().reshape(1)}
        for n in trainable:
            tensors["grad." + n] = params[n].grad.contiguous()
        dst = os.path.join(args.fixtures, "peft", case.replace("_lora", "_qlora"))
        os.makedirs(dst, exist_ok=True)
        save_file(tensors, os.path.join(dst, "reference.safetensors"),
                  metadata={"format": "pt", "made_by": "make_qlora_fixture.py"})
        save_file(nf4_weights, os.path.join(dst, "nf4_weights.safetensors"),
                  metadata={"format": "pt", "made_by": "make_qlora_fixture.py"})
        meta = {
            "made_by": "reference/make_qlora_fixture.py",
            "adapter_case": case,
            "base_model_dir": base_dir,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__},
            "nf4_modules": quantized,
            "trainable_parameters": trainable,
            "notes": [
                "transformers 4.46.3 + bitsandbytes 0.50 refuse load_in_4bit on the CPU, so the base is the f32 "
                "model holding bitsandbytes' dequantize_4bit(quantize_4bit(W)) for every Linear/Conv1D weight but "
                "the LM head (Conv1D quantized as (out, in)), with embeddings rounded to bf16; this is what "
                "Linear4bit computes with at compute dtype f32.",
                "The adapter and its initial values are those of peft/" + case + " (lora_B randomised there).",
            ],
        }
        with open(os.path.join(dst, "reference.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
