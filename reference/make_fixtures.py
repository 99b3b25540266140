#!/usr/bin/env python3
"""Make minipeft's parity fixtures with HF transformers + HF PEFT.

Writes, under --out (normally tests/fixtures):

  gpt2_tiny/, opt_tiny/, opt_tiny_postln/
      config.json, model.safetensors   (HF save_pretrained, safetensors)
      reference.safetensors            (logits, loss, grads, AdamW losses, masked batch)
      reference.json                   (hyperparameters, versions, generation, notes)
  peft/<case>/
      adapter_config.json, adapter_model.safetensors  (HF PEFT save_pretrained)
      reference.safetensors            (logits, loss, grads of trainable params, AdamW losses)
      reference.json                   (config, name mapping, trainable_line, notes)
  tokenizer_cases.json                 (list of {"text", "ids"}: GPT-2 BPE)
  tokenizer_cases.meta.json            (how they were made, cross-checks)
  README.md                            (what is here; generated)

Everything is float32, on the CPU, single-threaded and seeded: two runs write
byte-identical files (with the versions pinned in requirements.txt).
Nothing is downloaded: models are built from configs, the tokenizer is read
from data/gpt2-tokenizer/.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import sys
import tempfile
import warnings

# PEFT keeps target_modules in a set: fix str hashing so set order (and so
# adapter_config.json) is the same on every run.
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

# Never reach for the HF hub: everything here is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

import peft  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from peft import (  # noqa: E402
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    PromptTuningInit,
    get_peft_model,
    get_peft_model_state_dict,
)
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
    OPTConfig,
    OPTForCausalLM,
)

transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(REPO, "data", "gpt2-tokenizer")

# The pair this script was run with; other versions may change the bytes.
PINNED = {"torch": "2.15.0", "transformers": "4.46.3", "peft": "0.13.2"}

VOCAB = 256  # tiny vocabulary: ids 0..255 (GPT-2's single-byte tokens)
B, T = 2, 8
INIT_STD = 0.1  # larger than HF's 0.02 so attention is not near-uniform
ADAMW = {
    "lr": 1e-3,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.01,
    "steps": 10,
    "amsgrad": False,
    "foreach": False,
    "maximize": False,
}


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
    }


# --------------------------------------------------------------------------
# small helpers


def _dumps(obj, indent: int = 0) -> str:
    """JSON with 2-space indents, but short lists and lists of numbers on one line."""
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [pad + json.dumps(k, ensure_ascii=False) + ": " + _dumps(v, indent + 1) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            one = "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
            if len(one) <= 100 or not any(isinstance(v, str) for v in obj):
                return one
        return "[\n" + ",\n".join(pad + _dumps(v, indent + 1) for v in obj) + "\n" + end + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(_dumps(obj))
        f.write("\n")
    os.replace(tmp, path)


def save_tensors(path: str, tensors: dict) -> None:
    out = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(out, path, metadata={"format": "pt"})


def describe(tensors: dict) -> dict:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in tensors.items()}


def saved_keys(path: str) -> list:
    with safe_open(path, framework="pt") as f:
        return sorted(f.keys())


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) input ids in [0, VOCAB) and the labels passed to HF."""
    g = torch.Generator().manual_seed(20240601)
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    # id 1 is OPT's pad_token_id = embed_tokens.padding_idx: put one in on
    # purpose (see notes: torch gives no embedding-lookup grad to that row).
    ids[1, 3] = 1
    labels = ids.clone()
    labels[0, 2] = -100
    labels[1, 5] = -100
    return ids, labels


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Make LayerNorm weights/biases and every bias non-trivial."""
    g = torch.Generator().manual_seed(seed)
    ln_params = set()
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            ln_params.add(id(m.weight))
            if m.bias is not None:
                ln_params.add(id(m.bias))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if id(p) in ln_params and name.endswith("weight"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif id(p) in ln_params:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def grads_of(model: torch.nn.Module, trainable_only: bool) -> dict:
    out = {}
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        assert p.grad is not None, name
        out["grad." + name] = p.grad.detach().clone()
    return out


def adamw_losses(model: torch.nn.Module, ids, labels) -> torch.Tensor:
    """Loss before each of ADAMW['steps'] AdamW updates, on one batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params,
        lr=ADAMW["lr"],
        betas=tuple(ADAMW["betas"]),
        eps=ADAMW["eps"],
        weight_decay=ADAMW["weight_decay"],
        amsgrad=False,
        foreach=False,
        maximize=False,
    )
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=labels).loss
        losses.append(loss.detach().clone())
        loss.backward()
        opt.step()
    return torch.stack(losses)


# --------------------------------------------------------------------------
# base models


def make_gpt2() -> GPT2LMHeadModel:
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        initializer_range=INIT_STD,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
        attn_implementation="eager",
    )
    torch.manual_seed(1001)
    model = GPT2LMHeadModel(cfg)
    perturb(model, 2001)
    return model


def make_opt(postln: bool) -> OPTForCausalLM:
    cfg = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        ffn_dim=256,
        num_attention_heads=4,
        max_position_embeddings=64,
        do_layer_norm_before=not postln,
        word_embed_proj_dim=32 if postln else 64,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        layerdrop=0.0,
        init_std=INIT_STD,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        attn_implementation="eager",
    )
    torch.manual_seed(1003 if postln else 1002)
    model = OPTForCausalLM(cfg)
    perturb(model, 2003 if postln else 2002)
    return model


def masked_batch(kind: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(3, T): row 0 full, row 1 left-padded by 3, row 2 right-padded by 3."""
    pad = 0 if kind == "gpt2" else 1
    g = torch.Generator().manual_seed(20240602)
    ids = torch.randint(3, VOCAB, (3, T), generator=g)
    mask = torch.ones(3, T, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, T - 3 :] = 0
    ids[mask == 0] = pad
    return ids, mask, pad


def hf_position_ids(kind: str, mask: torch.Tensor) -> torch.Tensor:
    if kind == "gpt2":
        # GPT2Model.forward: arange(past, past+T) whatever the mask says.
        return torch.arange(mask.shape[1]).unsqueeze(0).expand(mask.shape[0], -1).clone()
    # OPTLearnedPositionalEmbedding.forward (offset 2 added on lookup).
    return (torch.cumsum(mask, dim=1) * mask - 1).long()


def check_masked(kind: str, model, m_ids, m_logits) -> dict:
    """Real positions of padded rows against unpadded forwards (max abs diff)."""
    out = {}
    with torch.no_grad():
        full = model(input_ids=m_ids[0:1]).logits
        out["row0_vs_unmasked_forward"] = float((full - m_logits[0:1]).abs().max())
        real = m_ids[1:2, 3:]
        if kind == "gpt2":
            # same positions as the padded forward: 3..7
            alone = model(input_ids=real, position_ids=torch.arange(3, T)[None]).logits
            shifted = model(input_ids=real).logits
            out["row1_real_vs_forward_with_position_ids_3_to_7"] = float((alone - m_logits[1:2, 3:]).abs().max())
            out["row1_real_vs_plain_forward_positions_0_to_4 (differs: GPT-2 forward ignores the mask)"] = float(
                (shifted - m_logits[1:2, 3:]).abs().max())
        else:
            alone = model(input_ids=real).logits
            out["row1_real_vs_plain_forward (same: OPT positions come from the mask)"] = float(
                (alone - m_logits[1:2, 3:]).abs().max())
        alone = model(input_ids=m_ids[2:3, : T - 3]).logits
        out["row2_real_vs_plain_forward"] = float((alone - m_logits[2:3, : T - 3]).abs().max())
    return out


GEN_MARGIN = 0.02


def pick_prompt(model, pad_id: int):
    """First seeded 5-token prompt whose greedy run has no near-tie.

    A top-2 logit margin under GEN_MARGIN could flip under float rounding in
    another implementation; such prompts are skipped.
    """
    g = torch.Generator().manual_seed(20240603)
    for attempt in range(100):
        prompt = torch.randint(3, VOCAB, (1, 5), generator=g)
        with torch.no_grad():
            gen = model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=12,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad_id,
                eos_token_id=None,
            )
        assert gen.shape[1] == prompt.shape[1] + 12
        margin = check_greedy(model, gen, prompt.shape[1])
        if margin >= GEN_MARGIN:
            return prompt, gen, margin, attempt
    raise RuntimeError("no prompt without near-ties")


def check_greedy(model, out_ids: torch.Tensor, prompt_len: int) -> float:
    """Every generated id is the no-cache argmax; returns the smallest top-2 margin."""
    with torch.no_grad():
        logits = model(input_ids=out_ids).logits[0]
    margin = float("inf")
    for t in range(prompt_len, out_ids.shape[1]):
        row = logits[t - 1]
        top2 = torch.topk(row, 2)
        assert int(top2.indices[0]) == int(out_ids[0, t]), "generate() disagrees with no-cache argmax"
        margin = min(margin, float(top2.values[0] - top2.values[1]))
    return margin


def step_reference(model: torch.nn.Module, ids, labels, trainable_only: bool) -> dict:
    """One forward and backward on (ids, labels): logits, loss and gradients;
    then the losses of AdamW steps run on a copy made before them."""
    train_copy = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    ref = {"logits": out.logits.detach().clone(), "loss": out.loss.detach().reshape(1).clone()}
    ref.update(grads_of(model, trainable_only=trainable_only))
    ref["adamw_losses"] = adamw_losses(train_copy, ids, labels)
    return ref


def base_fixture(out_dir: str, name: str, kind: str, model, notes: list) -> None:
    mdir = os.path.join(out_dir, name)
    os.makedirs(mdir, exist_ok=True)
    model.eval()
    model.save_pretrained(mdir, safe_serialization=True)
    keys = saved_keys(os.path.join(mdir, "model.safetensors"))
    param_names = [n for n, _ in model.named_parameters()]

    ids, labels = fixed_batch()
    ref = {"input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32)}

    gen_copy = copy.deepcopy(model)
    ref.update(step_reference(model, ids, labels, trainable_only=False))

    m_ids, m_mask, pad = masked_batch(kind)
    with torch.no_grad():
        m_logits = gen_copy(input_ids=m_ids, attention_mask=m_mask).logits
    ref["masked_input_ids"] = m_ids.to(torch.int32)
    ref["masked_attention_mask"] = m_mask.to(torch.int32)
    ref["masked_position_ids"] = hf_position_ids(kind, m_mask).to(torch.int32)
    ref["masked_logits"] = m_logits.detach().clone()
    masked_checks = check_masked(kind, gen_copy, m_ids, m_logits)

    pad_id = 0 if kind == "gpt2" else 1
    prompt, gen, margin, attempt = pick_prompt(gen_copy, pad_id)

    ref_path = os.path.join(mdir, "reference.safetensors")
    save_tensors(ref_path, ref)

    valid = int((labels[:, 1:] != -100).sum())
    info = {
        "model": name,
        "model_type": model.config.model_type,
        "attn_implementation": model.config._attn_implementation,
        "versions": versions(),
        "B": B,
        "T": T,
        "vocab_size": VOCAB,
        "init": {
            "weights": f"HF _init_weights with initializer_range/init_std={INIT_STD}, torch.manual_seed before construction",
            "perturbation": "LayerNorm weight += 0.1*N(0,1); LayerNorm bias and every other bias += 0.05*N(0,1)",
        },
        "loss": {
            "definition": "HF causal-LM loss: mean cross-entropy of logits[:, :-1] against labels[:, 1:], "
            "ignore_index=-100 (so labels[:, 0] is never used)",
            "labels_passed": "labels = input_ids with labels[0,2] = labels[1,5] = -100",
            "num_valid_targets": valid,
        },
        "adamw": dict(
            ADAMW,
            note="torch.optim.AdamW over all named_parameters (weight decay on every parameter, biases and "
            "LayerNorm included; decoupled: p *= 1 - lr*wd before the Adam update). adamw_losses[i] is the "
            "loss of a forward on the parameters after i updates, recorded before update i+1.",
        ),
        "generate": {
            "weights": "original (untrained) weights, the ones in model.safetensors",
            "prompt_ids": prompt[0].tolist(),
            "output_ids": gen[0].tolist(),
            "new_ids": gen[0, prompt.shape[1] :].tolist(),
            "call": "model.generate(input_ids=prompt, attention_mask=ones, max_new_tokens=12, do_sample=False, "
            f"num_beams=1, pad_token_id={pad_id}, eos_token_id=None)",
            "eos": "disabled (eos_token_id=None): exactly 12 new tokens",
            "prompt_choice": f"candidate {attempt} of 5-token prompts drawn from torch.Generator seed 20240603 "
            f"(randint(3, {VOCAB})): the first whose every greedy step has a top-2 logit margin >= {GEN_MARGIN}",
            "checked": "each new id equals argmax of a no-cache forward over the output; "
            f"smallest top-2 logit margin = {margin:.6f}",
        },
        "masked": {
            "rows": "row 0 unpadded, row 1 left-padded (positions 0..2 masked), row 2 right-padded (positions 5..7 masked)",
            "pad_id": pad,
            "call": "model(input_ids=masked_input_ids, attention_mask=masked_attention_mask)",
            "position_ids": (
                "GPT-2 forward() ignores the mask for positions: position_ids = arange(T) for every row, "
                "so a left-padded row's first real token sits at position 3 (generate() differs: its "
                "prepare_inputs_for_generation derives positions from the mask)"
                if kind == "gpt2"
                else "OPT derives positions from the mask: pos = cumsum(mask)*mask - 1 (pads get -1), "
                "then looks up embed_positions.weight[pos + 2] (offset 2; pads read row 1). "
                "masked_position_ids stores pos (before the +2 offset)"
            ),
            "compare": "only positions with attention_mask == 1 are meaningful; logits at padded query positions "
            "are whatever HF's eager attention gives for a (nearly) fully-masked row",
            "checks": masked_checks,
        },
        "saved_keys": keys,
        "named_parameters": param_names,
        "tensors": describe(ref),
        "notes": notes,
    }
    write_json(os.path.join(mdir, "reference.json"), info)


def make_base_models(out_dir: str) -> None:
    gpt2 = make_gpt2()
    base_fixture(
        out_dir,
        "gpt2_tiny",
        "gpt2",
        gpt2,
        [
            "lm_head.weight is tied to transformer.wte.weight: save_pretrained drops it, and named_parameters() "
            "lists the shared tensor once as transformer.wte.weight, so grad.transformer.wte.weight holds the sum "
            "of the embedding-lookup and lm_head gradients.",
            "The causal-mask buffers (attn.bias, attn.masked_bias) are not saved.",
            "Conv1D weights are stored (in_features, out_features): y = x @ W + b.",
            "activation_function gelu_new: the tanh approximation 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))).",
            "Attention: eager implementation (attn_implementation='eager'), scores scaled by 1/sqrt(head_dim).",
            f"bos_token_id = eos_token_id = {VOCAB - 1} in config.json (the real GPT-2's 50256 is outside this vocabulary).",
            "input_ids contains id 1 at [1,3] (meaningful only for OPT; harmless here).",
        ],
    )
    opt = make_opt(postln=False)
    base_fixture(
        out_dir,
        "opt_tiny",
        "opt",
        opt,
        [
            "lm_head.weight is tied to model.decoder.embed_tokens.weight: save_pretrained drops it; "
            "grad.model.decoder.embed_tokens.weight is the sum of both uses.",
            "embed_tokens has padding_idx = pad_token_id = 1: HF init zeroes that row, and torch's embedding "
            "backward gives it no gradient from the lookup. input_ids[1,3] = 1 on purpose, so row 1 of "
            "grad.model.decoder.embed_tokens.weight holds only the lm_head contribution.",
            "embed_positions.weight has max_position_embeddings + 2 = 66 rows; HF looks up row pos + 2.",
            "activation_function relu; attention: eager, q_proj output scaled by 1/sqrt(head_dim) before q.k.",
            "Pre-LN (do_layer_norm_before=True): final_layer_norm present; word_embed_proj_dim = hidden_size so "
            "no project_in/project_out.",
            "input_ids are random in [3, 256) apart from that 1: no BOS (HF's OPT tokenizer would prepend </s> = 2).",
        ],
    )
    opt2 = make_opt(postln=True)
    base_fixture(
        out_dir,
        "opt_tiny_postln",
        "opt",
        opt2,
        [
            "Post-LN (do_layer_norm_before=False), like opt-350m: LayerNorm after each residual add, and no "
            "final_layer_norm module at all.",
            "word_embed_proj_dim = 32 != hidden_size = 64: embed_tokens is (256, 32); project_in (64x32, no bias) "
            "maps embeddings up before positions are added; project_out (32x64, no bias) maps the last hidden "
            "state down before the tied lm_head (256, 32).",
            "lm_head.weight is tied to model.decoder.embed_tokens.weight and not saved.",
            "embed_tokens has padding_idx = 1 (see opt_tiny notes); input_ids[1,3] = 1 on purpose.",
        ],
    )


# --------------------------------------------------------------------------
# PEFT


def load_base(out_dir: str, base: str):
    path = os.path.join(out_dir, base)
    cls = GPT2LMHeadModel if base.startswith("gpt2") else OPTForCausalLM
    model = cls.from_pretrained(path, attn_implementation="eager", torch_dtype=torch.float32)
    model.eval()
    # recorded as adapter_config.json's base_model_name_or_path (a sibling dir)
    model.config._name_or_path = base
    model.name_or_path = base
    return model


def randomise_lora_b(model, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.1, generator=g)
                names.append(name)
    return names


def trainable_line(model) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        model.print_trainable_parameters()
    return buf.getvalue().rstrip("\n")


def peft_case(out_dir: str, name: str, base: str, config, seed: int, notes: list, tok_dir: str | None = None) -> None:
    cdir = os.path.join(out_dir, "peft", name)
    os.makedirs(cdir, exist_ok=True)
    model = load_base(out_dir, base)
    torch.manual_seed(seed)
    pm = get_peft_model(model, config)
    pm.eval()
    is_lora = config.peft_type.value == "LORA"
    extra = {}
    if is_lora:
        extra["lora_B_randomised"] = "every lora_B ~ N(0, 0.1^2) (torch.Generator seed %d) after get_peft_model, " \
            "before everything else; the saved adapter holds these values" % (seed + 1)
        randomise_lora_b(pm, seed + 1)
        extra["modules_with_lora"] = sorted(
            n for n, m in pm.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})
        )
        extra["scaling"] = sorted({float(m.scaling["default"]) for _, m in pm.named_modules()
                                   if hasattr(m, "scaling") and isinstance(m.scaling, dict) and "default" in m.scaling})

    if tok_dir is not None:
        # saved config names the repo's copy, not the temporary dir used here
        pm.peft_config["default"].tokenizer_name_or_path = "data/gpt2-tokenizer"

    line = trainable_line(pm)
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]

    ids, labels = fixed_batch()
    ref = {"input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32)}
    for n, p in trainable:
        ref["param." + n] = p.detach().clone()

    ref.update(step_reference(pm, ids, labels, trainable_only=True))

    nvt = getattr(config, "num_virtual_tokens", None)
    if config.peft_type.value == "PROMPT_TUNING":
        ref["peft_labels"] = torch.cat([torch.full((B, nvt), -100), labels], dim=1).to(torch.int32)

    # save the adapter (PEFT also writes a README.md model card: dropped)
    if isinstance(getattr(pm.peft_config["default"], "target_modules", None), (set, list)):
        pm.peft_config["default"].target_modules = sorted(pm.peft_config["default"].target_modules)
    pm.save_pretrained(cdir, safe_serialization=True, save_embedding_layers=False)
    readme = os.path.join(cdir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    adapter_path = os.path.join(cdir, "adapter_model.safetensors")
    akeys = saved_keys(adapter_path)

    # name mapping: named_parameters() name -> saved adapter key
    mapping = {}
    if is_lora:
        for n, _ in trainable:
            k = n.replace(".default", "")
            mapping[n] = k if k in akeys else None
    else:
        for n, _ in trainable:
            mapping[n] = "prompt_embeddings" if n.endswith("embedding.weight") else None

    # reload check: a fresh base + PeftModel.from_pretrained gives the same logits
    fresh = load_base(out_dir, base)
    loaded = PeftModel.from_pretrained(fresh, cdir)
    loaded.eval()
    with torch.no_grad():
        re_logits = loaded(input_ids=ids).logits
    reload_diff = float((re_logits - ref["logits"]).abs().max())
    assert reload_diff < 1e-4, (name, reload_diff)

    save_tensors(os.path.join(cdir, "reference.safetensors"), ref)

    cfg_dict = json.load(open(os.path.join(cdir, "adapter_config.json")))
    info = {
        "case": name,
        "base_model_dir": base,
        "base_model_path_from_here": "../../" + base,
        "peft_type": config.peft_type.value,
        "versions": versions(),
        "B": B,
        "T": T,
        "seed": seed,
        "config": cfg_dict,
        "trainable_line": line,
        "trainable_parameters": {n: list(p.shape) for n, p in trainable},
        "named_parameter_to_adapter_key": mapping,
        "adapter_keys": {k: v for k, v in describe(dict(safe_open_all(adapter_path))).items()},
        "logits_shape": list(ref["logits"].shape),
        "loss": {
            "labels_passed": "the base fixture's labels (labels[0,2] = labels[1,5] = -100)",
        },
        "adamw": dict(ADAMW, note="torch.optim.AdamW over the trainable parameters only; adamw_losses[i] is "
                      "the loss after i updates, recorded before update i+1"),
        "reload_check": "PeftModel.from_pretrained(fresh base, this dir) reproduces 'logits' within "
        f"{reload_diff:.3g} (max abs)",
        "tensors": describe(ref),
        "notes": notes,
    }
    info.update(extra)
    if config.peft_type.value == "PROMPT_TUNING":
        info["loss"]["peft_labels"] = (
            "PEFT prepends num_virtual_tokens labels of -100 (stored as peft_labels, shape (B, nvt+T)); HF then "
            "shifts. So the last virtual position's logits predict labels[:, 0], which IS counted: "
            f"{int((ref['peft_labels'][:, 1:] != -100).sum())} targets vs "
            f"{int((labels[:, 1:] != -100).sum())} for the base model"
        )
    if config.peft_type.value == "PREFIX_TUNING":
        info["loss"]["labels"] = "unchanged (no virtual positions in the output): same targets as the base model"
    write_json(os.path.join(cdir, "reference.json"), info)


def safe_open_all(path: str):
    with safe_open(path, framework="pt") as f:
        for k in sorted(f.keys()):
            yield k, f.get_tensor(k)


def make_tokenizer_dir(tmp: str) -> str:
    d = os.path.join(tmp, "gpt2-tokenizer-hf")
    tok = GPT2TokenizerFast(
        vocab_file=os.path.join(TOKENIZER_DIR, "encoder.json"),
        merges_file=os.path.join(TOKENIZER_DIR, "vocab.bpe"),
    )
    tok.save_pretrained(d)
    return d


PROMPT_NOTES = [
    "Prompt tuning: PEFT prepends the num_virtual_tokens prompt embeddings to word_embeddings(input_ids) and "
    "calls the base model with inputs_embeds, so logits are (B, num_virtual_tokens + T, V): the first "
    "num_virtual_tokens rows are the virtual positions. Positions: the base model numbers the whole "
    "(nvt + T) sequence from 0 (the virtual tokens take positions 0..nvt-1; real tokens start at nvt).",
    "Trainable: prompt_encoder.default.embedding.weight (nvt, n_embd). Saved as 'prompt_embeddings' "
    "(the same matrix). The word embedding is shared with the base model and frozen.",
    "param.<name> holds each trainable parameter's initial value (also in the adapter file).",
]
PREFIX_NOTES = [
    "Prefix tuning: PEFT passes past_key_values built from the prefix and input_ids unchanged; logits are "
    "(B, T, V) (no virtual rows).",
    "Layout: P = (nvt, num_layers*2*n_embd) -> view (B, nvt, num_layers*2, n_head, head_dim) -> permute "
    "(2,0,3,1,4) -> split into chunks of 2: layer l uses key = chunk[l][0] (B, H, nvt, hd) and value = "
    "chunk[l][1]; i.e. column ((l*2 + kv)*n_head + h)*head_dim + d of row p.",
    "Positions: with a cache of length nvt, HF numbers the real tokens nvt..nvt+T-1 (GPT-2: "
    "arange(past_length, past_length+T); OPT: cumsum over an all-ones mask of length nvt+T, cut to the last T). "
    "Every query attends to all nvt prefix keys plus the causal real keys.",
    "param.<name> holds each trainable parameter's initial value.",
]
LORA_NOTES = [
    "LoRA: h = W0 x + b + scaling * B(A(x)), scaling = lora_alpha/r (or lora_alpha/sqrt(r) with use_rslora). "
    "lora_A.weight is (r, in_features), lora_B.weight is (out_features, r) (nn.Linear layout), also for "
    "GPT-2's Conv1D layers; with fan_in_fan_out=True PEFT transposes only the merged delta (B@A)^T.",
    "named_parameters() names carry the adapter name ('.lora_A.default.weight'); saved keys drop it "
    "('.lora_A.weight'). Both start with 'base_model.model.'.",
    "lora_A is PEFT's default init (kaiming_uniform a=sqrt(5)) under torch.manual_seed(seed) before get_peft_model; "
    "lora_B is randomised afterwards (PEFT would zero it) so grads of A and the logits are non-trivial.",
    "param.<name> holds each trainable parameter's initial value (same as the saved adapter).",
]


def make_peft(out_dir: str, tmp: str) -> None:
    tok_dir = make_tokenizer_dir(tmp)

    peft_case(out_dir, "gpt2_lora", "gpt2_tiny",
              LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["c_attn"],
                         fan_in_fan_out=True, lora_dropout=0.0, bias="none"),
              3001, LORA_NOTES)
    peft_case(out_dir, "gpt2_lora_rslora_loraonly", "gpt2_tiny",
              LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, use_rslora=True, bias="lora_only",
                         target_modules=["c_attn", "c_proj"], fan_in_fan_out=True, lora_dropout=0.0),
              3002, LORA_NOTES + [
                  "target_modules 'c_proj' matches both attn.c_proj and mlp.c_proj (suffix match); see "
                  "modules_with_lora.",
                  "bias='lora_only': the bias of every LoRA-wrapped layer is trainable (named "
                  "'...<layer>.base_layer.bias'; grads and param.* are stored) and all other biases stay frozen. "
                  "BUT PEFT 0.13.2 does NOT save those biases: get_peft_model_state_dict looks for "
                  "'<layer>.bias' while the key is '<layer>.base_layer.bias' (known PEFT bug, "
                  "huggingface/peft issue #3306, still present in 0.19.x). So adapter_model.safetensors holds only "
                  "lora_A/lora_B, and named_parameter_to_adapter_key maps the biases to null. Here the biases are "
                  "untrained, so the saved adapter still reproduces 'logits'; a trained bias would be lost.",
              ])
    peft_case(out_dir, "opt_lora", "opt_tiny",
              LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                         lora_dropout=0.0, bias="none"),
              3003, LORA_NOTES)
    peft_case(out_dir, "gpt2_prompt_random", "gpt2_tiny",
              PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5,
                                 prompt_tuning_init=PromptTuningInit.RANDOM),
              3004, PROMPT_NOTES + ["RANDOM init: torch.nn.Embedding's default N(0, 1), under "
                                    "torch.manual_seed(seed) before get_peft_model."])

    # TEXT init: the tiny vocabulary has only ids < 256 (GPT-2's single-byte tokens),
    # so the init text must tokenize into those only.
    text = "[*]"
    tok = GPT2TokenizerFast.from_pretrained(tok_dir)
    text_ids = tok(text)["input_ids"]
    assert all(i < VOCAB for i in text_ids), text_ids
    nvt = 5
    reps = text_ids * math.ceil(nvt / len(text_ids))
    init_ids = reps[:nvt]
    peft_case(out_dir, "gpt2_prompt_text", "gpt2_tiny",
              PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=nvt,
                                 prompt_tuning_init=PromptTuningInit.TEXT,
                                 prompt_tuning_init_text=text, tokenizer_name_or_path=tok_dir),
              3005, PROMPT_NOTES + [
                  f"TEXT init with prompt_tuning_init_text={text!r}: GPT-2 BPE ids {text_ids} (all < {VOCAB}; "
                  "'Classify the licence' would give ids 9487, 1958, 262, 17098, outside the tiny vocabulary). "
                  f"PEFT repeats the ids ceil(nvt/len) times and truncates to nvt: {init_ids}; the prompt "
                  "embedding is a copy of those rows of transformer.wte.weight.",
                  "tokenizer_name_or_path: the fixture was made with a temporary HF tokenizer dir built from "
                  "data/gpt2-tokenizer (encoder.json as vocab.json, vocab.bpe as merges.txt); the saved "
                  "adapter_config.json names 'data/gpt2-tokenizer' instead of that temporary path. The tokenizer "
                  "is only used at init time (not when loading the adapter).",
              ], tok_dir=tok_dir)
    # record the init ids in the json too
    j = os.path.join(out_dir, "peft", "gpt2_prompt_text", "reference.json")
    info = json.load(open(j))
    info["init_text"] = text
    info["init_text_ids"] = text_ids
    info["init_ids_used"] = init_ids
    write_json(j, info)

    peft_case(out_dir, "opt_prompt_random", "opt_tiny",
              PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5,
                                 prompt_tuning_init=PromptTuningInit.RANDOM),
              3006, PROMPT_NOTES + [
                  "OPT: the prompt embeddings enter as inputs_embeds (dim word_embed_proj_dim = 64 here); "
                  "positions come from an all-ones mask of length nvt+T: 0..nvt+T-1 (+2 offset on lookup)."])
    peft_case(out_dir, "gpt2_prefix", "gpt2_tiny",
              PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=False),
              3007, PREFIX_NOTES + ["prefix_projection=False: trainable prompt_encoder.default.embedding.weight "
                                    "(nvt, num_layers*2*n_embd), N(0,1) init; saved as 'prompt_embeddings'."])
    peft_case(out_dir, "gpt2_prefix_proj", "gpt2_tiny",
              PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=True,
                                 encoder_hidden_size=32),
              3008, PREFIX_NOTES + [
                  "prefix_projection=True: trainable embedding (nvt, n_embd) -> Linear(n_embd, 32) -> tanh -> "
                  "Linear(32, num_layers*2*n_embd). The saved adapter holds ONLY 'prompt_embeddings' = the MLP's "
                  "output for the nvt tokens (nvt, num_layers*2*n_embd); the MLP weights are not saved. "
                  "PeftModel.from_pretrained loads it in inference mode as a plain prefix table. The MLP's "
                  "initial weights are in reference.safetensors as param.<name>."])
    peft_case(out_dir, "opt_prefix", "opt_tiny",
              PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=False),
              3009, PREFIX_NOTES)


# --------------------------------------------------------------------------
# tokenizer cases


def tokenizer_texts() -> list:
    shakespeare = open(os.path.join(REPO, "data", "tinyshakespeare", "input.txt"), encoding="utf-8").read()
    licences = open(os.path.join(REPO, "data", "legal", "licenses.txt"), encoding="utf-8").read()
    # first speech of the corpus and a paragraph of the Apache licence, verbatim
    shake_par = shakespeare[: shakespeare.index("\n\n", 1500) + 2]
    start = licences.index('      "License" shall mean')
    lic_par = licences[start : licences.index("\n\n", start) + 2]
    return [
        "",
        " ",
        "Hello, world!",
        "hello world",
        "I'm here, you're there, he's gone, we've won, they'd go, it'll do.",
        "don't DON'T Don't",
        "they'LL they'Ve THEY'RE I'M",
        "a   b",
        "\t\n  x",
        "trailing spaces   ",
        "   leading spaces",
        "\n\n\nnewlines\n\n",
        "123456789 3.14 1,000,000 -42 0x1F 2024-06-01",
        "café naïve résumé Zürich",
        "日本語のテキスト",
        "Здравствуй, мир! Привет.",
        "مرحبا بالعالم",
        "٠١٢٣٤٥٦٧٨٩ and ۱۲۳ and ०१२",
        "👍🏽 🎉",
        "👨‍👩‍👧‍👦 family, 🇫🇷 flag",
        "def f(x):\n    return x**2  # sq",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "line1\r\nline2\r\n",
        "e\u0301 n\u0303 a\u0308\u0304 combining marks",
        "Mixed: English, Ελληνικά, 中文, עברית, हिन्दी, 한국어.",
        "!!! ??? ... --- ;;; :: ((( ))) [[ ]] {{ }}",
        "<|endoftext|> is plain text here",
        "x" * 80,
        "  ".join(["word"] * 10),
        "http://www.apache.org/licenses/LICENSE-2.0",
        "Mr. O'Neil's rock'n'roll isn't 'quoted' \"twice\"",
        "tab\tseparated\tvalues\t",
        "\u00a0non-breaking\u00a0space and\u2009thin space",
        "zero\u200bwidth\u200djoiner",
        "ALL CAPS SENTENCE WITH NUMBERS 42",
        "snake_case camelCase PascalCase kebab-case",
        "$100.00 €50 £20 ¥1000 ₹500",
        "The quick brown fox jumps over the lazy dog.",
        shake_par,
        lic_par,
    ]


def tiktoken_gpt2():
    """tiktoken's 'gpt2' encoding, loaded offline from data/gpt2-tokenizer.

    get_encoding('gpt2') downloads the files; instead use tiktoken's own gpt2
    definition (pattern, special token, file hashes) with the local copies.
    """
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext import openai_public

    try:
        enc = tiktoken.get_encoding("gpt2")
        return enc, "tiktoken.get_encoding('gpt2') (cached)"
    except Exception:
        pass
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(TOKENIZER_DIR, "vocab.bpe"),
        encoder_json_file=os.path.join(TOKENIZER_DIR, "encoder.json"),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    )
    enc = tiktoken.Encoding(
        name="gpt2-local",
        pat_str=openai_public.r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )
    return enc, ("tiktoken " + tiktoken.__version__ + ": get_encoding('gpt2') needs the network, so the "
                 "Encoding was built from tiktoken_ext.openai_public's gpt2 definition (r50k_pat_str, "
                 "<|endoftext|> = 50256, the official file hashes, checked) with data/gpt2-tokenizer's files")


def make_tokenizer_cases(out_dir: str) -> None:
    tok = GPT2TokenizerFast(
        vocab_file=os.path.join(TOKENIZER_DIR, "encoder.json"),
        merges_file=os.path.join(TOKENIZER_DIR, "vocab.bpe"),
    )
    texts = tokenizer_texts()
    cases = []
    mismatches = []
    try:
        enc, how = tiktoken_gpt2()
    except Exception as e:  # pragma: no cover - depends on the machine
        enc, how = None, f"tiktoken unavailable, not cross-checked: {e!r}"
    for text in texts:
        ids = tok(text)["input_ids"]  # add_special_tokens default: GPT-2 adds nothing
        assert tok.decode(ids) == text, repr(text)
        if enc is not None:
            # HF maps '<|endoftext|>' in the text to 50256 (an added special
            # token); tiktoken does the same only when allowed to.
            tt = enc.encode(text, allowed_special="all")
            if tt != ids:
                mismatches.append(text)
        cases.append({"text": text, "ids": ids})
    assert not mismatches, mismatches
    write_json(os.path.join(out_dir, "tokenizer_cases.json"), cases)
    meta = {
        "file": "tokenizer_cases.json: a list of {text, ids}",
        "tokenizer": "transformers.GPT2TokenizerFast(vocab_file=data/gpt2-tokenizer/encoder.json, "
        "merges_file=data/gpt2-tokenizer/vocab.bpe), called as tok(text)['input_ids']",
        "special_tokens": "add_special_tokens default: GPT-2 adds no BOS/EOS. '<|endoftext|>' inside a text "
        "IS mapped to 50256 by HF's tokenizer (it is an added special token), see the case "
        "'<|endoftext|> is plain text here' (ids start with 50256); tiktoken was called as "
        "encode(text, allowed_special='all') to match (encode_ordinary would split it into 7 text tokens).",
        "decode": "tok.decode(ids) == text for every case (byte-level BPE round-trips)",
        "cross_check": how,
        "cross_check_result": "identical ids for all %d cases" % len(cases) if enc is not None else "skipped",
        "opt_convention": "HF's OPT tokenizer is the same GPT-2 BPE but prepends </s> = id 2 (its bos_token) to "
        "every encoded text: OPT ids = [2] + ids.",
        "num_cases": len(cases),
        "versions": versions(),
    }
    write_json(os.path.join(out_dir, "tokenizer_cases.meta.json"), meta)


FIXTURES_README = """\
# tests/fixtures

Generated by `reference/make_fixtures.py` (HF transformers + HF PEFT);
do not edit by hand. Regenerate with

    pip install -r reference/requirements.txt
    python3 reference/make_fixtures.py --out tests/fixtures

- `gpt2_tiny/`, `opt_tiny/`, `opt_tiny_postln/`: `config.json` +
  `model.safetensors` (HF names; tied lm_head not saved),
  `reference.safetensors` (input_ids, labels, logits, loss, grad.<param>,
  adamw_losses, masked_*), `reference.json` (hyperparameters, generation,
  notes, the shape and dtype of every stored tensor).
- `peft/<case>/`: HF PEFT adapter (`adapter_config.json`,
  `adapter_model.safetensors`) for the base model named in
  `reference.json`, plus `reference.safetensors` (logits, loss,
  grad.<trainable param>, param.<trainable param>, adamw_losses).
- `tokenizer_cases.json`: GPT-2 BPE cases; `tokenizer_cases.meta.json`
  says how they were made.

Other folders here (such as `nn/`) are made by the other scripts in
`reference/`; see that folder's README.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures", help="output folder (default: tests/fixtures)")
    ap.add_argument("--skip-version-check", action="store_true",
                    help="run even if torch/transformers/peft differ from the pinned versions")
    args = ap.parse_args()

    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
           "peft": peft.__version__}
    if got != PINNED:
        msg = f"versions {got} differ from the pinned {PINNED}: fixtures may differ in their last bits"
        if not args.skip_version_check:
            print("error: " + msg + " (pass --skip-version-check to go on)", file=sys.stderr)
            return 1
        print("warning: " + msg, file=sys.stderr)

    out_dir = args.out
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        make_base_models(out_dir)
        make_peft(out_dir, tmp)
    make_tokenizer_cases(out_dir)
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(FIXTURES_README)
    print(f"fixtures written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
