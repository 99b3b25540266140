#!/usr/bin/env python3
"""Make tests/fixtures/peft/combine_<base>/: HF PEFT's add_weighted_adapter
(LoRA composition) on three LoRA adapters of a tiny base.

    /work/.venv-ref/bin/python reference/make_combine_fixture.py [--fixtures tests/fixtures]

The composition the issue asks for is PEFT 0.21's, so this script is pinned
to reference/requirements-current.txt (torch 2.15.0, transformers 5.24.0,
peft 0.21.2), not to requirements.txt; it refuses other versions unless
given --skip-version-check.

For each base (gpt2_tiny, opt_tiny) three LoRA adapters are made with
get_peft_model / add_adapter (Kaiming A from torch.manual_seed, every lora_B
~ N(0, 0.1^2) so the composition is not zero):

  a  r 4, lora_alpha 8,  two targets        (scaling 2)
  b  r 4, lora_alpha 16, other two targets  (scaling 4; shares one with a)
  c  r 2, lora_alpha 4,  one target         (scaling 2)

and each saved with save_pretrained to <dir>/<name>/. Then, for each case
of CASES, add_weighted_adapter(adapters, weights, case, combination_type,
svd_rank) and, with that adapter active, the logits of one batch. Writes:

  <dir>/reference.safetensors  input_ids (B, T) i32; <case>.logits (B, T, V);
                               <case>.<key> for every key of the combined
                               adapter's get_peft_model_state_dict
  <dir>/reference.json         versions, the cases, each combined adapter's
                               r, lora_alpha and target_modules
"""

import os
import shutil
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import fixture_main  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402

B, T, VOCAB = 2, 8, 256

# base -> {adapter: (r, lora_alpha, target_modules, seed)}
ADAPTERS = {
    "gpt2_tiny": {
        "a": (4, 8, ["c_attn", "c_proj"], 2501),
        "b": (4, 16, ["c_attn", "c_fc"], 2502),
        "c": (2, 4, ["c_attn"], 2503),
    },
    "opt_tiny": {
        "a": (4, 8, ["q_proj", "v_proj"], 2511),
        "b": (4, 16, ["q_proj", "fc1"], 2512),
        "c": (2, 4, ["v_proj"], 2513),
    },
}
# case -> (adapters, weights, combination_type, svd_rank); a negative weight
# checks the sign handling of linear.
CASES = {
    "linear": (["a", "b"], [0.7, -0.3], "linear", None),
    "cat": (["a", "b", "c"], [0.7, 0.3, 0.5], "cat", None),
    "svd": (["a", "b", "c"], [0.7, 0.3, 0.5], "svd", None),
    "svd_rank6": (["a", "c"], [1.0, -0.5], "svd", 6),
}


def add_lora(pm, model, name: str, spec):
    r, alpha, targets, seed = spec
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    if pm is None:
        pm = get_peft_model(model, config, adapter_name=name)
    else:
        pm.add_adapter(name, config)
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if f"lora_B.{name}." in n:
                p.normal_(0.0, 0.1, generator=g)
    return pm


def make_base(fixtures: str, base: str, got: dict) -> None:
    out = os.path.join(fixtures, "peft", "combine_" + base)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    pm = None
    model = fixture_main.load_base(fixtures, base)
    for name, spec in ADAPTERS[base].items():
        pm = add_lora(pm, model, name, spec)
    pm.eval()
    with tempfile.TemporaryDirectory() as tmp:
        pm.save_pretrained(tmp, selected_adapters=list(ADAPTERS[base]))
        for name in ADAPTERS[base]:
            src = os.path.join(tmp, name) if name != "default" else tmp
            shutil.copytree(src, os.path.join(out, name))
            fixture_main.sort_config_lists(os.path.join(out, name, "adapter_config.json"))
    ids = torch.randint(3, VOCAB, (B, T), generator=torch.Generator().manual_seed(2520))
    ref = {"input_ids": ids.to(torch.int32)}
    info = {"versions": got, "base": base,
            "adapters": {n: {"r": s[0], "lora_alpha": s[1], "target_modules": s[2]} for n, s in ADAPTERS[base].items()},
            "cases": {}}
    for case, (adapters, weights, kind, svd_rank) in CASES.items():
        pm.add_weighted_adapter(adapters, weights, case, combination_type=kind, svd_rank=svd_rank)
        pm.set_adapter(case)
        with torch.no_grad():
            ref[case + ".logits"] = pm(input_ids=ids).logits.detach().clone()
        for key, t in get_peft_model_state_dict(pm, adapter_name=case).items():
            ref[case + "." + key] = t.detach().clone()
        c = pm.peft_config[case]
        info["cases"][case] = {"adapters": adapters, "weights": weights, "combination_type": kind,
                               "svd_rank": svd_rank, "r": c.r, "lora_alpha": c.lora_alpha,
                               "target_modules": sorted(c.target_modules)}
    fixture_main.write_reference(out, ref, info)


if __name__ == "__main__":
    sys.exit(fixture_main.run(__doc__, ADAPTERS, make_base))
