#!/usr/bin/env python3
"""Make tests/fixtures/peft/<base>_lora_save/ and <base>_lora_save_tied/: an
HF PEFT LoRA adapter with modules_to_save (whole modules of the base trained
in full beside LoRA and saved in the adapter file) on a tiny base, with
PEFT's logits, loss, every trainable gradient and the merged model's logits.

    /work/.venv-ref/bin/python reference/make_modules_to_save_fixture.py [--fixtures tests/fixtures]

Pinned to reference/requirements-current.txt (torch 2.15.0, transformers
5.24.0, peft 0.21.2) as make_dora_fixture.py is; other versions are refused
unless given --skip-version-check.

For each base, get_peft_model(LoraConfig(r=4, lora_alpha=8,
target_modules=TARGETS[base], modules_to_save=SAVED[base])): the final layer
norm and the feed-forward output Linear of every layer (GPT-2's Conv1D, OPT's
torch Linear). Every lora_B is then set to N(0, 0.1^2) and every saved
module's parameter moved by N(0, 0.1^2), so that neither a no-op LoRA path
nor an untrained (or unsaved) module passes. <base>_lora_save_tied/ does the
same with modules_to_save=TIED[base], one side of the tied lm_head / token
embedding (both bases tie them): PEFT trains a copy of that side only, the
other keeps the original values. Writes:

  <dir>/adapter_config.json, adapter_model.safetensors   save_pretrained
  <dir>/reference.safetensors  input_ids, labels (B, T) i32; logits (B, T, V);
                               loss (); grad.<key> for every saved key (the
                               gradient of that lora_A, lora_B or saved
                               module's parameter); merged.logits (B, T, V)
                               after merge_and_unload
  <dir>/reference.json         versions, base, keys, target modules, modules_to_save,
                               nb_trainable_parameters (PEFT's trainable and all)
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import fixture_main  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402

B, T, VOCAB = 2, 8, 256
SEEDS = {"gpt2_tiny": 2521, "opt_tiny": 2531}
TARGETS = {"gpt2_tiny": ["c_attn"], "opt_tiny": ["q_proj", "v_proj"]}
# "decoder.final_layer_norm": OPT's last norm only ("final_layer_norm" would also pick each layer's).
SAVED = {"gpt2_tiny": ["ln_f", "mlp.c_proj"], "opt_tiny": ["decoder.final_layer_norm", "fc2"]}
TIED = {"gpt2_tiny": ["lm_head"], "opt_tiny": ["embed_tokens"]}  # the head on one base, the embedding on the other


def saved_key(param_name: str) -> str:
    """named_parameters() name -> get_peft_model_state_dict key: a saved
    module's copy under the module's own name, LoRA's without the adapter name."""
    return param_name.replace(".modules_to_save.default", "").replace(".default", "")


def perturb(name: str, p, g) -> None:
    """Each saved module's parameter moves by N(0, 0.1^2)."""
    if ".modules_to_save.default." in name:
        p.add_(0.1 * torch.randn(p.shape, generator=g))


def make_base(fixtures: str, base: str, got: dict) -> None:
    for suffix, saved in (("_lora_save", SAVED[base]), ("_lora_save_tied", TIED[base])):
        config = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS[base],
                            modules_to_save=saved)
        info = {"target_modules": sorted(TARGETS[base]), "modules_to_save": saved}
        fixture_main.lora_fixture(fixtures, base, got, base.split("_")[0] + suffix, SEEDS[base], config, perturb,
                                  saved_key, info, VOCAB, B, T)


if __name__ == "__main__":
    sys.exit(fixture_main.run(__doc__, SEEDS, make_base))
