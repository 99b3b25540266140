#!/usr/bin/env python3
"""PyTorch + HF transformers/PEFT side of the side-by-side benchmark.

Runs training steps (forward + backward + AdamW) and forward-only passes on a
randomly initialised model of a named shape, for full fine-tuning or a PEFT
method, and prints one JSON object: tokens/s for both, and this process's
peak RSS. bench/side_by_side.sh runs it next to `minipeft bench --json`
with the same shapes and thread count.

  python3 reference/hf_bench.py --model gpt2 --method lora --batch 4 --seq 64 --steps 5

--method dora is LoraConfig(use_dora=True), minipeft's `bench --method lora
--use-dora`; --method lora+save is LoRA with the final layer norm in
modules_to_save (`bench --method lora --modules-to-save ln_f`, or
final_layer_norm for OPT); --method lora+head is LoRA with the tied lm_head in
modules_to_save (PEFT trains an untied copy; `bench --method lora
--modules-to-save lm_head`); --method ia3 is IA3Config with PEFT's defaults
for the model type.
"""
import argparse
import json
import resource
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

# HF's default dropout (0.1), as minipeft's built-in configs of the same names.
CONFIGS = {
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config()),
    "gpt2-medium": lambda: GPT2LMHeadModel(GPT2Config(n_layer=24, n_head=16, n_embd=1024)),
    "opt-125m": lambda: OPTForCausalLM(OPTConfig(hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
                                                 num_attention_heads=12, max_position_embeddings=2048,
                                                 vocab_size=50272, word_embed_proj_dim=768)),
}


def saved_modules(model, method):
    """modules_to_save of --method lora+save (the final layer norm) and lora+head (the lm_head)."""
    if method == "lora+head":
        return ["lm_head"]
    if method == "lora+save":
        return ["ln_f" if isinstance(model, GPT2LMHeadModel) else "final_layer_norm"]
    return None


def peft_wrap(model, args):
    if args.method == "full":
        return model
    import peft
    gpt2 = isinstance(model, GPT2LMHeadModel)
    if args.method in ("lora", "dora", "lora+save", "lora+head"):  # dora: LoRA with use_dora (minipeft's --method lora --use-dora)
        targets = args.targets.split(",") if args.targets else (["c_attn"] if gpt2 else ["q_proj", "v_proj"])
        cfg = peft.LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=args.lora_dropout,
                              target_modules=targets, fan_in_fan_out=gpt2, task_type="CAUSAL_LM",
                              use_dora=args.method == "dora",
                              modules_to_save=saved_modules(model, args.method))
    elif args.method == "ia3":  # PEFT's default targets and feed-forward modules for the model type
        cfg = peft.IA3Config(task_type="CAUSAL_LM")
    elif args.method == "prompt":
        cfg = peft.PromptTuningConfig(num_virtual_tokens=args.virtual_tokens, task_type="CAUSAL_LM")
    elif args.method == "prefix":
        cfg = peft.PrefixTuningConfig(num_virtual_tokens=args.virtual_tokens, task_type="CAUSAL_LM")
    else:
        raise SystemExit(f"unknown method {args.method}")
    return peft.get_peft_model(model, cfg)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="gpt2", choices=sorted(CONFIGS))
    p.add_argument("--method", default="full", choices=["full", "lora", "dora", "lora+save", "lora+head", "ia3", "prompt",
                                                           "prefix"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--targets", default="")
    p.add_argument("--virtual-tokens", type=int, default=20)
    p.add_argument("--forward-only", action="store_true", help="skip the training step")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                   help="bf16: forward under torch.autocast('cpu', dtype=torch.bfloat16), f32 master weights")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = peft_wrap(CONFIGS[args.model](), args)
    model.train()
    vocab = 50257
    ids = torch.randint(0, vocab, (args.batch, args.seq))
    tokens = args.batch * args.seq
    result = {"framework": "pytorch", "torch": torch.__version__, "model": args.model, "method": args.method,
              "batch": args.batch, "seq": args.seq, "threads": args.threads, "precision": args.precision}
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    if not args.forward_only:
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        times = []
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            with autocast():
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
        result["train_step_s"] = sum(times) / len(times)
        result["train_tokens_per_s"] = tokens / result["train_step_s"]
        result["final_loss"] = float(loss.detach())

    with torch.no_grad():
        model.eval()
        times = []
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            with autocast():
                model(input_ids=ids)
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
    result["forward_s"] = sum(times) / len(times)
    result["forward_tokens_per_s"] = tokens / result["forward_s"]
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["trainable_params"] = sum(q.numel() for q in model.parameters() if q.requires_grad)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
