"""What the PEFT 0.21 fixture scripts share (make_combine_fixture.py,
make_ia3_fixture.py, make_dora_fixture.py, make_modules_to_save_fixture.py): --fixtures and
--skip-version-check, the check of torch, transformers and peft against the
pinned versions (requirements-current.txt), a deterministic single-threaded
torch before each base's fixture is made, one adapter's reference run, and
the writing of its reference files."""

import argparse
import json
import os
import shutil
import sys

import peft
import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel, OPTForCausalLM

PINNED = {"torch": "2.15.0", "transformers": "5.24.0", "peft": "0.21.2"}


def load_base(fixtures: str, base: str):
    """The tiny HF checkpoint fixtures/<base> in f32 eval mode, named as a sibling dir."""
    cls = GPT2LMHeadModel if base.startswith("gpt2") else OPTForCausalLM
    model = cls.from_pretrained(os.path.join(fixtures, base), attn_implementation="eager", dtype=torch.float32)
    model.eval()
    model.config._name_or_path = base  # adapter_config.json's base_model_name_or_path (a sibling dir)
    model.name_or_path = base
    return model


def sort_config_lists(path: str) -> None:
    """PEFT writes target_modules / feedforward_modules from a set, in hash
    order; sort them so that reruns are byte-identical."""
    with open(path) as f:
        cfg = json.load(f)
    for key in ("target_modules", "feedforward_modules"):
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key])
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))


def reference_run(pm, seed: int, vocab: int, batch: int, seq: int, saved_key=lambda name: name.replace(".default", "")):
    """One batch through the PEFT model pm (its adapter saved already):
    input_ids, labels (the first two of row 0 ignored), logits, loss,
    grad.<key> for every key of get_peft_model_state_dict (saved_key maps a
    trainable parameter's name to its key; PEFT must train exactly those),
    and merged.logits after merge_and_unload. Returns (tensors, keys)."""
    from peft.utils import get_peft_model_state_dict

    ids = torch.randint(3, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed + 1))
    labels = ids.clone()
    labels[0, :2] = -100  # ignored positions count too
    result = pm(input_ids=ids, labels=labels)
    result.loss.backward()
    ref = {"input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32),
           "logits": result.logits.detach().clone(), "loss": result.loss.detach().clone()}
    grads = {saved_key(n): p.grad for n, p in pm.named_parameters() if p.requires_grad}
    keys = sorted(get_peft_model_state_dict(pm).keys())
    assert sorted(grads) == keys, (sorted(grads), keys)
    for key in keys:
        ref["grad." + key] = grads[key].detach().clone()
    merged = pm.merge_and_unload()
    with torch.no_grad():
        ref["merged.logits"] = merged(input_ids=ids).logits.detach().clone()
    return ref, keys


def lora_fixture(fixtures: str, base: str, got: dict, name: str, seed: int, config, perturb, saved_key,
                 info: dict, vocab: int, batch: int, seq: int) -> None:
    """tests/fixtures/peft/<name>/ for a LoRA-family config (DoRA, modules_to_save):
    get_peft_model(config) on the tiny base (torch seeded with seed: lora_A's
    init), every lora_B set to N(0, 0.1^2) and perturb(param_name, p,
    generator) called on each other parameter (under no_grad, in order), then
    save_pretrained, reference_run and reference.json (info plus versions,
    base, the saved keys and get_nb_trainable_parameters)."""
    from peft import get_peft_model

    out = os.path.join(fixtures, "peft", name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.manual_seed(seed)  # lora_A's Kaiming init
    pm = get_peft_model(load_base(fixtures, base), config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if ".lora_B." in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                perturb(n, p, g)
    pm.eval()
    pm.save_pretrained(out)
    sort_config_lists(os.path.join(out, "adapter_config.json"))
    counts = list(pm.get_nb_trainable_parameters())  # (trainable, all), as print_trainable_parameters
    ref, keys = reference_run(pm, seed, vocab, batch, seq, saved_key)
    write_reference(out, ref, {"versions": got, "base": base, "keys": keys, "nb_trainable_parameters": counts, **info})


def write_reference(out: str, tensors: dict, info: dict) -> None:
    """The fixture's reference.safetensors (the tensors, contiguous) and reference.json (sorted keys)."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "reference.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")
    print("wrote", out)


def run(description: str, bases, make_base) -> int:
    """Calls make_base(fixtures_dir, base, versions) for each base; returns the exit code."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--skip-version-check", action="store_true",
                    help="run even if torch/transformers/peft differ from the pinned versions")
    args = ap.parse_args()
    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if got != PINNED and not args.skip_version_check:
        print(f"error: versions {got} differ from the pinned {PINNED} (pass --skip-version-check to go on)",
              file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for base in bases:
        make_base(args.fixtures, base, got)
    return 0
