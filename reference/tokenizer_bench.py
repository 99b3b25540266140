"""Encode throughput of GPT-2's BPE in tiktoken and HF tokenizers, single thread.

Compare with bench/tokenizer_bench.cpp (minipeft's tokenizer). Both read
data/gpt2-tokenizer (nothing is downloaded) and report the best of several
runs in MB/s (10^6 bytes of UTF-8 input per second).

    python3 reference/tokenizer_bench.py [text_file]

Also checks that the two produce the same ids, and writes them to
/tmp/tokenizer_bench_ids.json when --dump is given, to compare with minipeft.
"""
import argparse
import json
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tiktoken  # noqa: E402
from transformers import GPT2TokenizerFast  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(REPO, "data", "gpt2-tokenizer")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    """OpenAI's byte -> printable character table (see models/tokenizer.cpp)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def load_tiktoken():
    """tiktoken's gpt2 encoding built from the local files (get_encoding needs the network).

    tiktoken ranks byte strings; for GPT-2 a token's rank is its id, so the
    ranks come straight from encoder.json with each key mapped back to bytes.
    """
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    with open(os.path.join(TOKENIZER_DIR, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    ranks = {bytes(char_to_byte[c] for c in token): i for token, i in encoder.items() if token != "<|endoftext|>"}
    return tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


def load_hf():
    return GPT2TokenizerFast(vocab_file=os.path.join(TOKENIZER_DIR, "encoder.json"),
                             merges_file=os.path.join(TOKENIZER_DIR, "vocab.bpe"))


def best_time(fn, runs):
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("text", nargs="?", default=os.path.join(REPO, "data", "tinyshakespeare", "input.txt"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dump", action="store_true")
    args = parser.parse_args()

    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    nbytes = len(text.encode("utf-8"))

    tik = load_tiktoken()
    hf = load_hf().backend_tokenizer  # the Rust tokenizer, without the Python wrapper's overhead
    candidates = {
        "tiktoken encode_ordinary": lambda: tik.encode_ordinary(text),
        "tiktoken encode (allowed_special=all)": lambda: tik.encode(text, allowed_special="all"),
        "HF tokenizers (Rust) encode": lambda: hf.encode(text, add_special_tokens=False).ids,
    }
    results = {}
    for name, fn in candidates.items():
        seconds, ids = best_time(fn, args.runs)
        results[name] = ids
        print(f"{name:40s} {nbytes} bytes -> {len(ids)} tokens, best {seconds * 1e3:.1f} ms, "
              f"{nbytes / seconds / 1e6:.1f} MB/s")
    first = next(iter(results.values()))
    print("all produce the same ids:", all(ids == first for ids in results.values()))
    if args.dump:
        with open("/tmp/tokenizer_bench_ids.json", "w") as f:
            json.dump(first, f)


if __name__ == "__main__":
    main()
