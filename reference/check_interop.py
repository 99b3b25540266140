#!/usr/bin/env python3
"""Interop check, both ways, for the formats minipeft WRITES.

For the base fixtures tests/fixtures/gpt2_tiny and tests/fixtures/opt_tiny:

  adapter  `minipeft train --method lora|prompt|prefix` writes <out>/final
           (also lora-wide: rsLoRA on every linear layer, --lr 1e-2; and
           lora-dora: --use-dora on every linear layer, --lr 1e-2; and
           lora-save: --modules-to-save with the final layer norm, --lr 1e-2);
           HF PEFT loads it with PeftModel.from_pretrained on the same base and
           its loss on the eval windows must equal `minipeft eval --adapter`.
  merge    `minipeft merge` of each LoRA adapter writes an HF model folder;
           AutoModelForCausalLM.from_pretrained loads it, its loss must equal
           `minipeft eval --model <merged>` and the unmerged adapter's loss, and
           its weights must equal HF PEFT's own merge_and_unload().
  full     `minipeft train --method full` writes <out>/final; transformers
           loads it with the same loss as `minipeft eval --model <final>`.
  saved    the other way: transformers' save_pretrained of the base, read by
           `minipeft eval --model`, gives transformers' loss.
  peft-*   the other way: HF PEFT's get_peft_model + save_pretrained writes an
           adapter (LoRA on the default targets and on "all-linear" with
           rsLoRA, DoRA on the default targets, LoRA with the final layer
           norm in modules_to_save, prompt, prefix, prefix
           with projection; LoRA B and every table random, so that it has
           an effect); `minipeft eval --adapter`
           must give HF PEFT's loss of the saved adapter.
  qlora    `minipeft train --method lora --base-dtype nf4` (every linear layer,
           rsLoRA, --lr 1e-2) writes an adapter; HF loads the base in 4-bit
           (BitsAndBytesConfig nf4, double quant, compute dtype f32) on the CPU
           and the adapter with PeftModel.from_pretrained: its loss must equal
           `minipeft eval --base-dtype nf4 --adapter`. minipeft keeps the
           embedding tables of an NF4 base in bf16 where HF keeps them in f32,
           so HF's tables are rounded to bf16 for that comparison (the row
           "HF embeddings f32" shows the difference, not checked). Where
           transformers refuses 4-bit on the CPU (4.46), HF's base is the f32
           model holding bitsandbytes' dequantized weights (make_qlora_fixture.py).
           The same adapter on the f32 base must equal HF PEFT on the f32 base,
           and `minipeft merge --base-dtype nf4` must load in transformers with
           the NF4 loss and the weights of HF's dequantized base + PEFT's merge.

What is compared is the mean cross-entropy (labels = input_ids, HF's shift)
over the windows `minipeft eval --fraction 1` uses: consecutive windows of
--seq tokens from the start of the file, --batch per batch, --batches batches,
the loss averaged over batches (train/data/dataset.cpp val_batches,
train/trainer.cpp evaluate). minipeft prints the loss with 4 decimals, so the
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

    python3 reference/check_interop.py [--minipeft build-main/cli/minipeft]

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
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, GPT2TokenizerFast
from transformers.pytorch_utils import Conv1D
from peft import LoraConfig, PeftModel, PrefixTuningConfig, PromptTuningConfig, get_peft_model
from peft.utils import get_peft_model_state_dict

import bitsandbytes
import bitsandbytes.functional as bnb_f
import peft
from make_qlora_fixture import qlora_base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4
# lora-wide: every linear layer of the blocks (GPT-2's Conv1D c_proj names both the attention and the MLP output).
WIDE_TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"], "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]}
# HF PEFT's own default LoRA targets for the two architectures.
PEFT_LORA_TARGETS = {"gpt2": ["c_attn"], "opt": ["q_proj", "v_proj"]}
# modules_to_save of the lora-save cases: the final layer norm.
SAVED_MODULES = {"gpt2": ["ln_f"], "opt": ["decoder.final_layer_norm"]}
PEFT_METHODS = ["lora", "lora-all-linear", "lora-dora", "lora-save", "prompt", "prefix", "prefix-proj"]
# transformers 5 renamed from_pretrained's torch_dtype= to dtype= (the old name warns).
F32 = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
QLORA_4BIT = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                  bnb_4bit_compute_dtype=torch.float32)


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

    def eval_loss(self, model, data, ev, adapter=None, base_dtype=None):
        args = ["eval", "--model", model, "--data", data, "--fraction", 1, "--batch", ev.batch, "--seq", ev.seq,
                "--batches", ev.batches]
        if adapter:
            args += ["--adapter", adapter]
        if base_dtype:
            args += ["--base-dtype", base_dtype]
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
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **F32)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    return model, bad


def adapter_keys_note(peft_model, adapter_dir):
    """None if the tensors PEFT holds are exactly the saved ones (it only warns about missing keys), else a note."""
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    held = get_peft_model_state_dict(peft_model)
    if set(saved) == set(held) and all(torch.equal(saved[k], held[k].cpu()) for k in saved):
        return None
    return f"adapter keys differ: saved {sorted(saved)} held {sorted(held)}"


def last_line(e):
    return str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__


def peft_config(method, arch):
    if method == "lora":
        return LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=PEFT_LORA_TARGETS[arch],
                          fan_in_fan_out=arch == "gpt2")
    if method == "lora-all-linear":
        return LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear", use_rslora=True,
                          fan_in_fan_out=arch == "gpt2")
    if method == "lora-dora":
        return LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=PEFT_LORA_TARGETS[arch],
                          fan_in_fan_out=arch == "gpt2", use_dora=True)
    if method == "lora-save":
        return LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=PEFT_LORA_TARGETS[arch],
                          fan_in_fan_out=arch == "gpt2", modules_to_save=SAVED_MODULES[arch])
    if method == "prompt":
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    if method == "prefix":
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    if method == "prefix-proj":
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=True,
                                  encoder_hidden_size=32)
    raise ValueError(method)


def write_peft_adapter(method, base_dir, out):
    """HF PEFT's save_pretrained of a fresh adapter; LoRA B, zero at PEFT's init, drawn at random, and
    the copies of modules_to_save moved."""
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, **F32),
                           peft_config(method, os.path.basename(base_dir).split("_")[0]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
            elif "modules_to_save" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out)


def round_embeddings_bf16(model):
    """The embedding tables (the token table is the tied LM head) as minipeft holds them for an NF4 base."""
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            m.weight.data = m.weight.data.to(torch.bfloat16).to(torch.float32)


def hf_qlora_base(path, bf16_embeddings=True):
    """HF's QLoRA base, as (model, note): transformers + bitsandbytes in 4-bit on the CPU, or where
    transformers refuses that (4.46 does), the f32 model holding bitsandbytes' dequantized NF4 weights
    with bf16 embeddings (make_qlora_fixture.py), the note saying why."""
    try:
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=BitsAndBytesConfig(**QLORA_4BIT),
                                                     device_map="cpu", **F32)
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        if not bf16_embeddings:
            return None, f"4-bit load refused: {last_line(e)}"
        return qlora_base(path)[0], f"HF base: f32 holding bnb's dequantized NF4 (4-bit load refused: {last_line(e)})"
    # bitsandbytes (0.48+) on a CPU with AVX512-BF16 repacks a Linear4bit weight at its first eval-mode
    # call and multiplies in bf16 whatever bnb_4bit_compute_dtype says; off, it dequantizes to the compute
    # dtype (f32) and calls F.linear, as on other CPUs and the GPU.
    for m in model.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
    if bf16_embeddings:
        round_embeddings_bf16(model)
    return model, "HF base: bnb Linear4bit" + (", embeddings rounded to bf16" if bf16_embeddings else ", embeddings f32")


def dequantized_f32(path):
    """An f32 copy of HF's QLoRA base: each Linear4bit's own NF4 weight dequantized, embeddings in bf16."""
    model4, _ = hf_qlora_base(path, bf16_embeddings=False)
    if model4 is None:
        return qlora_base(path)[0]  # 4-bit refused: that is HF's base here already
    model = AutoModelForCausalLM.from_pretrained(path, **F32)
    mods = dict(model.named_modules())
    for name, m in model4.named_modules():
        if type(m).__name__ == "Linear4bit":
            w = bnb_f.dequantize_4bit(m.weight.data, m.weight.quant_state).to(torch.float32)
            mods[name].weight.data = w.t().contiguous() if isinstance(mods[name], Conv1D) else w
    round_embeddings_bf16(model)
    return model


def verdict(ok):
    return "info" if ok is None else "pass" if ok else "FAIL"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minipeft", default=os.path.join(ROOT, "build-main/cli/minipeft"))
    ap.add_argument("--fixtures", nargs="+", default=["gpt2_tiny", "opt_tiny"])
    ap.add_argument("--methods", nargs="+", default=["lora", "prompt", "prefix", "lora-wide", "lora-dora", "lora-save"],
                    help="lora-wide: LoRA with rsLoRA on every linear layer and --lr 1e-2 (a larger effect); "
                         "lora-dora: DoRA (--use-dora) on every linear layer, --lr 1e-2; "
                         "lora-save: --modules-to-save the final layer norm, --lr 1e-2")
    ap.add_argument("--peft-methods", nargs="*", default=PEFT_METHODS,
                    help="adapters written by HF PEFT and read by minipeft")
    ap.add_argument("--no-qlora", action="store_true", help="skip the QLoRA cases")
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

    rows = []  # (case, ours, hf, diff, ok, note); ok None: shown, not checked

    def row(case, ours, hf, note="", extra_ok=True, checked=True):
        diff = abs(ours - hf)
        rows.append((case, ours, hf, diff, (diff <= TOL and extra_ok) if checked else None, note))

    def fail_row(case, e):
        rows.append((case, float("nan"), float("nan"), float("nan"), False, f"error: {last_line(e)}"))

    def effect_note(loss, base_loss):
        d = abs(loss - base_loss)
        return d, f"moves base loss by {d:.4f}"

    def adapter_row(case, ours, peft_model, adapter_dir, base_loss, notes=()):
        """ours against HF PEFT's loss of the adapter it loaded, whose tensors must be the saved ones."""
        notes = list(notes)
        keys = adapter_keys_note(peft_model, adapter_dir)
        if keys:
            notes.append(keys)
        d, n = effect_note(ours, base_loss)
        row(case, ours, hf_loss(peft_model, batches), "; ".join([n] + notes), not keys and d > 10 * TOL)

    train_common = ["--data", data, "--steps", args.steps, "--batch", args.batch, "--seq", args.seq,
                    "--val-fraction", 0.1, "--no-progress"]

    for fx in args.fixtures:
        base_dir = os.path.join(ROOT, "tests/fixtures", fx)
        arch = fx.split("_")[0]
        base_ours = mp.eval_loss(base_dir, data, ev)
        base_hf_model, bad = load_hf(base_dir)
        base_hf = hf_loss(base_hf_model, batches)
        row(f"{fx}/base", base_ours, base_hf, "no adapter" + (f"; load: {bad}" if bad else ""), not bad)
        try:  # a model folder written by this transformers version, read by minipeft
            saved = os.path.join(work, f"{fx}-hf-saved")
            base_hf_model.save_pretrained(saved)
            row(f"{fx}/base saved by HF", mp.eval_loss(saved, data, ev), base_hf, "save_pretrained, read by minipeft")
        except Exception as e:  # noqa: BLE001
            fail_row(f"{fx}/base saved by HF", e)

        for method in args.methods:
            case = f"{fx}/{method}"
            out = os.path.join(work, f"{fx}-{method}")
            extra = ["--virtual-tokens", 4] if method in ("prompt", "prefix") else []
            if method == "lora-wide":
                extra = ["--rslora", "--lr", 1e-2, "--lora-targets", *WIDE_TARGETS[arch]]
            if method == "lora-dora":
                extra = ["--use-dora", "--lr", 1e-2, "--lora-targets", *WIDE_TARGETS[arch]]
            if method == "lora-save":
                extra = ["--modules-to-save", ",".join(SAVED_MODULES[arch]), "--lr", 1e-2]
            try:
                mp("train", "--model", base_dir, "--method", method.split("-")[0], "--out", out, *train_common, *extra)
                final = os.path.join(out, "final")
                ours = mp.eval_loss(base_dir, data, ev, adapter=final)
                peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, **F32), final)
                adapter_row(case, ours, peft_model, final, base_ours)
            except Exception as e:  # noqa: BLE001 - report and go on
                fail_row(case, e)
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
                    fail_row(f"{fx}/{method}-merged", e)

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
            fail_row(case, e)

        # The other way: adapters written by HF PEFT's save_pretrained, read by minipeft.
        for method in args.peft_methods:
            case = f"{fx}/peft-{method}"
            out = os.path.join(work, f"{fx}-peft-{method}")
            try:
                write_peft_adapter(method, base_dir, out)
                ours = mp.eval_loss(base_dir, data, ev, adapter=out)
                peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, **F32), out)
                adapter_row(case, ours, peft_model, out, base_ours, ["written by HF PEFT"])
            except Exception as e:  # noqa: BLE001
                fail_row(case, e)

        if args.no_qlora:
            continue
        # QLoRA: an adapter trained on minipeft's NF4 base, in HF on bitsandbytes' 4-bit base.
        out = os.path.join(work, f"{fx}-qlora")
        final = os.path.join(out, "final")
        try:
            nf4_ours = mp.eval_loss(base_dir, data, ev, base_dtype="nf4")
            base4, note = hf_qlora_base(base_dir)
            row(f"{fx}/nf4-base", nf4_ours, hf_loss(base4, batches), note)
            mp("train", "--model", base_dir, "--method", "lora", "--base-dtype", "nf4", "--out", out, *train_common,
               "--rslora", "--lr", 1e-2, "--lora-targets", *WIDE_TARGETS[arch])
            ours = mp.eval_loss(base_dir, data, ev, adapter=final, base_dtype="nf4")
            adapter_row(f"{fx}/qlora", ours, PeftModel.from_pretrained(base4, final), final, nf4_ours, [note])
        except Exception as e:  # noqa: BLE001
            fail_row(f"{fx}/qlora", e)
            continue
        try:
            as_loaded, note = hf_qlora_base(base_dir, bf16_embeddings=False)
            if as_loaded is not None:
                hf = hf_loss(PeftModel.from_pretrained(as_loaded, final), batches)
                row(f"{fx}/qlora (HF embeddings f32)", ours, hf, note + "; shown, not checked", checked=False)
        except Exception as e:  # noqa: BLE001
            fail_row(f"{fx}/qlora (HF embeddings f32)", e)
        try:
            ours_f32 = mp.eval_loss(base_dir, data, ev, adapter=final)
            peft_f32 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, **F32), final)
            adapter_row(f"{fx}/qlora on f32 base", ours_f32, peft_f32, final, base_ours, ["both on the f32 base"])
        except Exception as e:  # noqa: BLE001
            fail_row(f"{fx}/qlora on f32 base", e)
        merged = os.path.join(work, f"{fx}-qlora-merged")
        try:
            mp("merge", "--model", base_dir, "--adapter", final, "--base-dtype", "nf4", "--out", merged)
            hf_m_model, bad = load_hf(merged)
            # HF PEFT's merge of the adapter into bitsandbytes' dequantized weights, weight by weight.
            ref = PeftModel.from_pretrained(dequantized_f32(base_dir), final).merge_and_unload().state_dict()
            got = hf_m_model.state_dict()
            wdiff = max(float((ref[k] - got[k]).abs().max()) for k in ref)
            notes = [f"vs ours on the NF4 base; max |W - W_peft_merge(deq NF4)| {wdiff:.1e}"]
            if bad:
                notes.append(f"load: {bad}")
            row(f"{fx}/qlora-merged (HF load)", ours, hf_loss(hf_m_model, batches), "; ".join(notes),
                not bad and wdiff <= 1e-5)
        except Exception as e:  # noqa: BLE001
            fail_row(f"{fx}/qlora-merged", e)

    print(f"eval windows: {len(batches)} batches of {ev.batch}x{ev.seq} tokens from the start of the data; "
          f"tolerance |diff| <= {TOL:g}")
    if args.markdown:
        print("| case | ours | HF | \\|diff\\| | result | note |")
        print("|---|---|---|---|---|---|")
        for c, o, h, d, ok, n in rows:
            n = n.replace("|", "\\|")
            print(f"| {c} | {o:.4f} | {h:.6f} | {d:.1e} | {verdict(ok)} | {n} |")
    else:
        w = max(len(r[0]) for r in rows)
        print(f"{'case':<{w}}  {'ours':>8}  {'HF':>10}  {'|diff|':>8}  result  note")
        for c, o, h, d, ok, n in rows:
            print(f"{c:<{w}}  {o:8.4f}  {h:10.6f}  {d:8.1e}  {verdict(ok):6}  {n}")
    checked = [r for r in rows if r[4] is not None]
    failures = sum(not r[4] for r in checked)
    print(f"{len(checked) - failures}/{len(checked)} passed ({len(rows) - len(checked)} rows shown, not checked); "
          f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
          f"bitsandbytes {bitsandbytes.__version__}")
    if tmp_ctx:
        tmp_ctx.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
