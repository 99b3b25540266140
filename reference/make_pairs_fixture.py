#!/usr/bin/env python3
"""Make the pairs parity fixture: HF transformers + HF PEFT on a batch of
prompt/completion pairs, right-padded, with attention_mask and labels -100.

For each case (an adapter already in tests/fixtures/peft/, on its tiny base):

  input_ids  = prompt + completion + eos, right-padded with the model's pad id
  labels     = -100 on the prompt and the padding, the ids elsewhere
  attention_mask = 1 on real tokens, 0 on padding

and records HF's loss (PeftModelForCausalLM(..., labels=...).loss: the mean
cross-entropy over every non-ignored shifted label of the batch) and the
gradients of the adapter's parameters. Writes tests/fixtures/pairs/<case>.safetensors
and tests/fixtures/pairs/reference.json. Float32, CPU, one thread: two runs
write identical bytes with the versions pinned in requirements.txt.

  /work/.venv-ref/bin/python reference/make_pairs_fixture.py
"""

from __future__ import annotations

import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import GPT2LMHeadModel, OPTForCausalLM  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
PINNED = {"torch": "2.15.0", "transformers": "4.46.3", "peft": "0.13.2"}

# (prompt length, completion length) per example: mixed, so every row but
# the longest is padded, and by different amounts.
LENGTHS = [(3, 2), (1, 5), (6, 1), (2, 4)]
CASES = {  # case -> (base folder, eos id, pad id)
    "gpt2_lora": ("gpt2_tiny", 255, 0),
    "opt_lora": ("opt_tiny", 2, 1),
    "gpt2_prompt_random": ("gpt2_tiny", 255, 0),
    "opt_prefix": ("opt_tiny", 2, 1),
}


def examples(seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for p, c in LENGTHS:
        ids = torch.randint(3, 255, (p + c,), generator=g).tolist()
        out.append((ids[:p], ids[p:]))
    return out


def pad_batch(pairs: list, eos: int, pad: int):
    """HF style: labels -100 on the prompt and the padding; right padding."""
    rows = [(p + c + [eos], [-100] * len(p) + c + [eos]) for p, c in pairs]
    T = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), T), pad)
    labels = torch.full((len(rows), T), -100)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, (i, l) in enumerate(rows):
        ids[b, : len(i)] = torch.tensor(i)
        labels[b, : len(l)] = torch.tensor(l)
        mask[b, : len(i)] = 1
    return ids, labels, mask


def main() -> int:
    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if got != PINNED and "--skip-version-check" not in sys.argv:
        print(f"versions {got} differ from the pinned {PINNED}", file=sys.stderr)
        return 1
    out_dir = os.path.join(FIXTURES, "pairs")
    os.makedirs(out_dir, exist_ok=True)
    info = {"versions": got, "lengths": LENGTHS, "cases": {}}
    for case, (base, eos, pad) in CASES.items():
        cls = GPT2LMHeadModel if base.startswith("gpt2") else OPTForCausalLM
        model = cls.from_pretrained(os.path.join(FIXTURES, base), attn_implementation="eager", torch_dtype=torch.float32)
        lora = case.endswith("lora")
        # PEFT refuses is_trainable for a loaded prompt adapter: its table is unfrozen by hand.
        pm = PeftModel.from_pretrained(model, os.path.join(FIXTURES, "peft", case), is_trainable=lora)
        if not lora:
            for p in pm.prompt_encoder.parameters():
                p.requires_grad_(True)
        pm.eval()
        pairs = examples(1400 + len(info["cases"]))
        ids, labels, mask = pad_batch(pairs, eos, pad)
        out = pm(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        ref = {
            "prompt_ids": torch.tensor(sum((p for p, _ in pairs), []), dtype=torch.int32),
            "completion_ids": torch.tensor(sum((c for _, c in pairs), []), dtype=torch.int32),
            "input_ids": ids.to(torch.int32),
            "labels": labels.to(torch.int32),
            "attention_mask": mask.to(torch.int32),
            "loss": out.loss.detach().reshape(1),
        }
        for n, p in pm.named_parameters():
            if p.requires_grad:
                ref["grad." + n] = p.grad.detach().clone()
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out_dir, case + ".safetensors"),
                  metadata={"format": "pt"})
        info["cases"][case] = {"base": base, "adapter": "peft/" + case, "eos_id": eos, "pad_id": pad,
                               "loss": float(out.loss.detach()), "grads": sorted(k for k in ref if k.startswith("grad."))}
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
