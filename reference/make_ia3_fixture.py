#!/usr/bin/env python3
"""Make tests/fixtures/peft/<base>_ia3/: an HF PEFT IA3 adapter (T-Few's
learned scaling vectors) on a tiny base, with PEFT's logits, loss, every
trainable gradient and the merged model's logits.

    /work/.venv-ref/bin/python reference/make_ia3_fixture.py [--fixtures tests/fixtures]

Pinned to reference/requirements-current.txt (torch 2.15.0, transformers
5.24.0, peft 0.21.2) as make_combine_fixture.py is; other versions are
refused unless given --skip-version-check.

For each base (gpt2_tiny, opt_tiny) get_peft_model(IA3Config()) with PEFT's
default target_modules / feedforward_modules for the model type
(TRANSFORMERS_MODELS_TO_IA3_*_MAPPING: gpt2 c_attn + mlp.c_proj, feedforward
mlp.c_proj; opt q_proj, k_proj, fc2, feedforward fc2). Every ia3_l vector is
then set to 1 + N(0, 0.2^2), so a fresh adapter (all ones, a no-op) would
fail the test. Writes:

  <dir>/adapter_config.json, adapter_model.safetensors   save_pretrained
  <dir>/reference.safetensors  input_ids, labels (B, T) i32; logits (B, T, V);
                               loss (); grad.<key> for every saved key (the
                               gradient of that ia3_l); merged.logits (B, T, V)
                               after merge_and_unload
  <dir>/reference.json         versions, base, target/feedforward modules
"""

import json
import os
import shutil
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import fixture_main  # noqa: E402
import torch  # noqa: E402
from peft import IA3Config, get_peft_model  # noqa: E402

B, T, VOCAB = 2, 8, 256
SEEDS = {"gpt2_tiny": 2601, "opt_tiny": 2611}


def make_base(fixtures: str, base: str, got: dict) -> None:
    out = os.path.join(fixtures, "peft", base.split("_")[0] + "_ia3")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    seed = SEEDS[base]
    pm = get_peft_model(fixture_main.load_base(fixtures, base), IA3Config(task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if ".ia3_l." in n:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
    pm.eval()
    pm.save_pretrained(out)
    fixture_main.sort_config_lists(os.path.join(out, "adapter_config.json"))
    ref, keys = fixture_main.reference_run(pm, seed, VOCAB, B, T)
    info = {"versions": got, "base": base, "keys": keys}
    with open(os.path.join(out, "adapter_config.json")) as f:
        cfg = json.load(f)
    info["target_modules"] = sorted(cfg["target_modules"])
    info["feedforward_modules"] = sorted(cfg["feedforward_modules"])
    fixture_main.write_reference(out, ref, info)


if __name__ == "__main__":
    sys.exit(fixture_main.run(__doc__, SEEDS, make_base))
