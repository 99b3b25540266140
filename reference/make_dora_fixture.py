#!/usr/bin/env python3
"""Make tests/fixtures/peft/<base>_dora/: an HF PEFT DoRA adapter
(LoraConfig(use_dora=True): LoRA plus a trained magnitude per output
channel) on a tiny base, with PEFT's logits, loss, every trainable gradient
and the merged model's logits.

    /work/.venv-ref/bin/python reference/make_dora_fixture.py [--fixtures tests/fixtures]

Pinned to reference/requirements-current.txt (torch 2.15.0, transformers
5.24.0, peft 0.21.2) as make_ia3_fixture.py is; other versions are refused
unless given --skip-version-check.

For each base, get_peft_model(LoraConfig(use_dora=True, r=4, lora_alpha=8,
target_modules=TARGETS[base])): GPT-2's Conv1D layers (fan_in_fan_out) and
OPT's torch Linears. Every lora_B is then set to N(0, 0.1^2) and every
lora_magnitude_vector to m * (1 + N(0, 0.2^2)), so that neither a no-op
LoRA path nor an untrained magnitude (m = ||W0 + s B A||) passes. Writes:

  <dir>/adapter_config.json, adapter_model.safetensors   save_pretrained
  <dir>/reference.safetensors  input_ids, labels (B, T) i32; logits (B, T, V);
                               loss (); grad.<key> for every saved key (the
                               gradient of that lora_A, lora_B or magnitude);
                               merged.logits (B, T, V) after merge_and_unload
  <dir>/reference.json         versions, base, keys, target modules
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import fixture_main  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402

B, T, VOCAB = 2, 8, 256
SEEDS = {"gpt2_tiny": 2501, "opt_tiny": 2511}
TARGETS = {"gpt2_tiny": ["c_attn", "c_proj"], "opt_tiny": ["q_proj", "v_proj", "fc1"]}


def saved_key(param_name: str) -> str:
    """named_parameters() name -> get_peft_model_state_dict key: no adapter
    name, and the magnitude without ".weight" (PEFT keeps its old format)."""
    key = param_name.replace(".default", "")
    return key[: -len(".weight")] if key.endswith("lora_magnitude_vector.weight") else key


def perturb(name: str, p, g) -> None:
    """Each magnitude m becomes m * (1 + N(0, 0.2^2))."""
    if ".lora_magnitude_vector." in name:
        p.mul_(1.0 + 0.2 * torch.randn(p.shape, generator=g))


def make_base(fixtures: str, base: str, got: dict) -> None:
    config = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, use_dora=True,
                        target_modules=TARGETS[base])
    fixture_main.lora_fixture(fixtures, base, got, base.split("_")[0] + "_dora", SEEDS[base], config, perturb,
                              saved_key, {"target_modules": sorted(TARGETS[base])}, VOCAB, B, T)


if __name__ == "__main__":
    sys.exit(fixture_main.run(__doc__, SEEDS, make_base))
