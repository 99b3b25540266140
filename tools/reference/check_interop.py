#!/usr/bin/env python3
"""Interop check, both ways, for the formats minipeft WRITES.

For the base fixtures tests/fixtures/gpt2_tiny and tests/fixtures/opt_tiny:

  adapter  `minipeft train --method lora|prompt|prefix` writes <out>/final
           (also lora-wide: rsLoRA on every linear layer, --lr 1e-2);
           HF PEFT loads it with PeftModel.from_pretrained on the same base and
           its loss on the eval windows must equal `minipeft eval --adapter`.
  merge    `minipeft merge` of each LoRA adapter writes an HF model folder;
           AutoModelForCausalLM.from_pretrained loads it, its loss must equal
           `minipeft eval --model <merged>` and the unmerged adapter's loss, and
           its weights must equal HF PEFT's own merge_and_unload().
  full     `minipeft train --method full` writes <out>/final; transformers
           loads it with the same loss as `minipeft eval --model <final>`.

What is compared is the mean cross-entropy (labels = input_ids, HF's shift)
over the windows `minipeft eval --fraction 1` uses: consecutive windows of
--seq tokens from the start of the file, --batch per batch, --batches batches,
the loss averaged over batches (tools/dataset.cpp val_batches,
tools/trainer.cpp evaluate). minipeft prints the loss with 4 decimals, so the
tolerance is 1e-4 absolute (5e-5 rounding + float32 noise).

Every adapter/fine-tune is also required to move the loss away from the base
model's by more than 10x the tolerance, so that a silently ignored adapter
(HF PEFT only warns about missing keys) cannot pass. HF loads are also checked
key by key: the adapter tensors PEFT holds after loading must be the saved
ones, and from_pretrained must report no missing or unexpected keys.

The fixture vocabulary is 256 ids, so the data is a generated text whose GPT-2
BPE ids are all single bytes (< 256): letter, digit, punctuation repeated, so
that every pre-token is one character and no merge applies. The ids are taken
from `minipeft tokenize` and cross-checked with HF's GPT2TokenizerFast.

    python3 tools/reference/check_interop.py [--minipeft build-main/tools/minipeft]

Exits 1 on any failure. CPU only, float32; about a minute.
"""
import argparse
import inspect
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GPT2TokenizerFast
from peft import PeftModel
from peft.utils import get_peft_model_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = 1e-4
# lora-wide: every linear layer of the blocks (GPT-2's Conv1D c_proj names both the attention and the MLP output).
WIDE_TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"], "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]}


def make_data(path, triples=400, seed=0):
    r = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    digits = "0123456789"
    punct = "!#$%&()*+,-./:;<=>?@[]^_{|}~"
    text = "".join(r.choice(letters) + r.choice(digits) + r.choice(punct) for _ in range(triples))
    with open(path, "w") as f:
        f.write(text)
    return text


class Runner:
    def __init__(self, exe, verbose):
        self.exe = exe
        self.verbose = verbose

    def __call__(self, *args):
        cmd = [self.exe, *map(str, args)]
        if self.verbose:
            print("$", " ".join(cmd), flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p.stdout

    def eval_loss(self, model, data, ev, adapter=None):
        args = ["eval", "--model", model, "--data", data, "--fraction", 1, "--batch", ev.batch, "--seq", ev.seq,
                "--batches", ev.batches]
        if adapter:
            args += ["--adapter", adapter]
        out = self(*args)
        m = re.search(r"loss (\S+)", out)
        if not m:
            raise RuntimeError(f"no loss in eval output: {out!r}")
        return float(m.group(1))


def gpt2_tokenizer():
    """HF's GPT-2 BPE over data/gpt2-tokenizer, on transformers 4.x and 5.x."""
    vocab = os.path.join(ROOT, "data/gpt2-tokenizer/encoder.json")
    merges = os.path.join(ROOT, "data/gpt2-tokenizer/vocab.bpe")
    if "vocab_file" in inspect.signature(GPT2TokenizerFast.__init__).parameters:  # transformers 4.x
        tok = GPT2TokenizerFast(vocab_file=vocab, merges_file=merges)
    else:  # transformers 5: GPT2TokenizerFast is GPT2Tokenizer(vocab, merges) and ignores vocab_file=
        tok = GPT2TokenizerFast(vocab=vocab, merges=merges)
    if len(tok) != 50257:
        sys.exit(f"HF's GPT-2 tokenizer has {len(tok)} tokens, not 50257: its files were not read")
    return tok


def eval_windows(ids, ev):
    """The batches `minipeft eval --fraction 1` evaluates (TokenDataset::val_batches with split 0)."""
    batches, starts = [], []
    s = 0
    while s + ev.seq <= len(ids) and len(batches) < ev.batches:
        starts.append(s)
        if len(starts) == ev.batch:
            batches.append(starts)
            starts = []
        s += ev.seq
    if starts and len(batches) < ev.batches:
        batches.append(starts)
    return [torch.tensor([ids[a:a + ev.seq] for a in b], dtype=torch.long) for b in batches]


@torch.no_grad()
def hf_loss(model, batches):
    model.eval()
    return sum(float(model(input_ids=x, labels=x).loss) for x in batches) / len(batches)


def load_hf(path):
    model, info = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    return model, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minipeft", default=os.path.join(ROOT, "build-main/tools/minipeft"))
    ap.add_argument("--fixtures", nargs="+", default=["gpt2_tiny", "opt_tiny"])
    ap.add_argument("--methods", nargs="+", default=["lora", "prompt", "prefix", "lora-wide"],
                    help="lora-wide: LoRA with rsLoRA on every linear layer and --lr 1e-2 (a larger effect)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one, removed)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)

    mp = Runner(args.minipeft, args.verbose)
    ev = argparse.Namespace(seq=args.seq, batch=args.batch, batches=args.batches)
    tmp_ctx = None
    if args.keep:
        work = os.path.abspath(args.keep)
        os.makedirs(work, exist_ok=True)
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="mp-interop-")
        work = tmp_ctx.name

    data = os.path.join(work, "bytes.txt")
    text = make_data(data)
    ids = json.loads(mp("tokenize", "--text", text))
    tok = gpt2_tokenizer()
    if tok(text)["input_ids"] != ids:
        sys.exit("minipeft tokenize and HF GPT2TokenizerFast disagree on the data file")
    if max(ids) >= 256:
        sys.exit(f"data has token id {max(ids)} >= the fixtures' vocabulary of 256")
    batches = eval_windows(ids, ev)

    rows = []  # (case, ours, hf, diff, ok, note)

    def row(case, ours, hf, note="", extra_ok=True):
        diff = abs(ours - hf)
        ok = diff <= TOL and extra_ok
        rows.append((case, ours, hf, diff, ok, note))

    def fail_row(case, note):
        rows.append((case, float("nan"), float("nan"), float("nan"), False, note))

    def effect_note(loss, base_loss):
        d = abs(loss - base_loss)
        return d, f"moves base loss by {d:.4f}"

    train_common = ["--data", data, "--steps", args.steps, "--batch", args.batch, "--seq", args.seq,
                    "--val-fraction", 0.1, "--no-progress"]

    for fx in args.fixtures:
        base_dir = os.path.join(ROOT, "tests/fixtures", fx)
        base_ours = mp.eval_loss(base_dir, data, ev)
        base_hf_model, bad = load_hf(base_dir)
        base_hf = hf_loss(base_hf_model, batches)
        row(f"{fx}/base", base_ours, base_hf, "no adapter" + (f"; load: {bad}" if bad else ""), not bad)

        for method in args.methods:
            case = f"{fx}/{method}"
            out = os.path.join(work, f"{fx}-{method}")
            extra = ["--virtual-tokens", 4] if method in ("prompt", "prefix") else []
            if method == "lora-wide":
                extra = ["--rslora", "--lr", 1e-2, "--lora-targets", *WIDE_TARGETS[fx.split("_")[0]]]
            try:
                mp("train", "--model", base_dir, "--method", method.split("-")[0], "--out", out, *train_common, *extra)
                final = os.path.join(out, "final")
                ours = mp.eval_loss(base_dir, data, ev, adapter=final)
                base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
                peft_model = PeftModel.from_pretrained(base, final)
                # The tensors PEFT holds must be exactly the saved ones (it only warns about missing keys).
                saved = load_file(os.path.join(final, "adapter_model.safetensors"))
                held = get_peft_model_state_dict(peft_model)
                notes = []
                keys_ok = set(saved) == set(held) and all(torch.equal(saved[k], held[k].cpu()) for k in saved)
                if not keys_ok:
                    notes.append(f"adapter keys differ: saved {sorted(saved)} held {sorted(held)}")
                hf = hf_loss(peft_model, batches)
                d, n = effect_note(ours, base_ours)
                notes.append(n)
                row(case, ours, hf, "; ".join(notes), keys_ok and d > 10 * TOL)
            except Exception as e:  # noqa: BLE001 - report and go on
                fail_row(case, f"error: {str(e).strip().splitlines()[-1][:200]}")
                continue

            if method.startswith("lora"):
                merged = os.path.join(work, f"{fx}-{method}-merged")
                try:
                    mp("merge", "--model", base_dir, "--adapter", final, "--out", merged)
                    ours_m = mp.eval_loss(merged, data, ev)
                    hf_m_model, bad = load_hf(merged)
                    hf_m = hf_loss(hf_m_model, batches)
                    # HF PEFT's own merge of the same adapter, weight by weight.
                    ref = peft_model.merge_and_unload().state_dict()
                    got = hf_m_model.state_dict()
                    wdiff = max(float((ref[k] - got[k]).abs().max()) for k in ref)
                    notes = [f"max |W - W_peft_merge| {wdiff:.1e}"]
                    if bad:
                        notes.append(f"load: {bad}")
                    row(f"{fx}/{method}-merged (HF load)", ours_m, hf_m, "; ".join(notes), not bad and wdiff <= 1e-5)
                    row(f"{fx}/{method}-merged vs unmerged", ours_m, ours, "ours merged vs ours adapter")
                except Exception as e:  # noqa: BLE001
                    fail_row(f"{fx}/{method}-merged", f"error: {str(e).strip().splitlines()[-1][:200]}")

        case = f"{fx}/full"
        out = os.path.join(work, f"{fx}-full")
        try:
            mp("train", "--model", base_dir, "--method", "full", "--out", out, *train_common)
            final = os.path.join(out, "final")
            ours = mp.eval_loss(final, data, ev)
            model, bad = load_hf(final)
            hf = hf_loss(model, batches)
            d, n = effect_note(ours, base_ours)
            notes = [n] + ([f"load: {bad}"] if bad else [])
            row(case, ours, hf, "; ".join(notes), not bad and d > 10 * TOL)
        except Exception as e:  # noqa: BLE001
            fail_row(case, f"error: {str(e).strip().splitlines()[-1][:200]}")

    print(f"eval windows: {len(batches)} batches of {ev.batch}x{ev.seq} tokens from the start of the data; "
          f"tolerance |diff| <= {TOL:g}")
    if args.markdown:
        print("| case | ours | HF | \\|diff\\| | result | note |")
        print("|---|---|---|---|---|---|")
        for c, o, h, d, ok, n in rows:
            n = n.replace("|", "\\|")
            print(f"| {c} | {o:.4f} | {h:.6f} | {d:.1e} | {'pass' if ok else 'FAIL'} | {n} |")
    else:
        w = max(len(r[0]) for r in rows)
        print(f"{'case':<{w}}  {'ours':>8}  {'HF':>10}  {'|diff|':>8}  result  note")
        for c, o, h, d, ok, n in rows:
            print(f"{c:<{w}}  {o:8.4f}  {h:10.6f}  {d:8.1e}  {'pass' if ok else 'FAIL':6}  {n}")
    failures = sum(not r[4] for r in rows)
    print(f"{len(rows) - failures}/{len(rows)} passed")
    if tmp_ctx:
        tmp_ctx.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
