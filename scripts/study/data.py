"""The study's data and its tokenizer (scripts/make_study.sh, phase `data`).

    python3 scripts/study/data.py OUT

writes OUT/tokenizer/ (vocab.json + merges.txt: GPT-2's 256 byte tokens, one
token per instruction word, " a".." z", " =" and <|endoftext|>) and OUT/*.jsonl:

  base_train      the base's mixture: each of SKILLS asked by its instruction word
  base_test_SKILL held-out sequences of one skill; base_test: all of them (the forgetting test)
  TASK_N          a new task's first N training pairs, then the same 100 validation pairs
  TASK_test       a new task's held-out pairs
  mixed_test      the three new tasks' test rows interleaved, each naming its adapter
  pre_NAME        NAME behind the preamble (PREAMBLE, below): every file has both forms

Held-out sequences are drawn first and never appear in a training file.
"""
import json
import os
import random
import sys

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIN_LEN, MAX_LEN = 3, 4


def shift(s, k):
    return [LETTERS[(LETTERS.index(x) + k) % 26] for x in s]


def swap(s):
    c = list(s)
    for i in range(0, len(c) - 1, 2):
        c[i], c[i + 1] = c[i + 1], c[i]
    return c


# The base's skills, each asked for by its own word.
SKILLS = {
    "copy": lambda s: list(s),
    "reverse": lambda s: s[::-1],
    "shift": lambda s: shift(s, 1),
    "swap": swap,
    "rotate": lambda s: s[1:] + s[:1],
}
# The new tasks, each asked by a word the base never saw: (kind, computation). Given
# a word it never saw, a base answers with some rearrangement of the letters (the
# study's table of the bases before adapting shows how often that is right), so
# the steer task is a skill that changes the letters: shift +1.
TASKS = {
    "step": ("steer", SKILLS["shift"]),                         # a skill the base has, under a new word
    "twist": ("compose", lambda s: shift(s[::-1], 1)),          # reverse, then shift +1
    "jump": ("new", lambda s: shift(s, 3)),                     # shift +3: a computation never trained
}
# Every file also behind a fixed preamble of 8 filler tokens (pre_NAME.jsonl). The bases are trained
# behind it; full FT and LoRA keep it, and prompt and prefix tuning's 8 virtual tokens take its place
# (they train on NAME.jsonl), so every method sees the task at the positions the base learned it at.
PREAMBLE = "." * 8
SIZES = (32, 256, 2048)   # training pairs per new task
VAL = 100                 # validation pairs per task (the LR choice)
BASE_TRAIN = 60000
BASE_TEST_PER_SKILL = 60
TASK_TEST = 200


def example(word, fn, s):
    return {"prompt": f"{word}: {' '.join(s)} =", "completion": " " + " ".join(fn(s))}


def bytes_to_unicode():  # GPT-2's printable stand-ins for bytes (models/tokenizer.cpp, byte_to_char)
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def bpe(word, ranks):  # the tokens of one pre-tokenized piece under merges `ranks`
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((parts[i], parts[i + 1]), None), i) for i in range(len(parts) - 1)]
        pairs = [p for p in pairs if p[0] is not None]
        if not pairs:
            break
        _, i = min(pairs)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def write_tokenizer(out):
    """Merges that make each piece the study uses one token: a merge of the first two
    tokens BPE leaves is added until every piece is one token."""
    b2u = bytes_to_unicode()
    space = b2u[ord(" ")]
    pieces = list(SKILLS) + list(TASKS) + [space + x for x in LETTERS] + [space + "="]
    ranks = {}
    while True:
        split = [p for p in pieces if len(bpe(p, ranks)) > 1]
        if not split:
            break
        for p in split:
            t = bpe(p, ranks)
            if len(t) > 1:
                ranks.setdefault((t[0], t[1]), len(ranks))
    vocab = {b2u[b]: b for b in range(256)}
    for a, b in sorted(ranks, key=ranks.get):
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    os.makedirs(f"{out}/tokenizer", exist_ok=True)
    with open(f"{out}/tokenizer/vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(f"{out}/tokenizer/merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in sorted(ranks, key=ranks.get):
            f.write(f"{a} {b}\n")
    return len(vocab)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    vocab = write_tokenizer(out)
    rng = random.Random(1234)
    seen = set()

    def fresh():
        while True:
            s = [rng.choice(LETTERS) for _ in range(rng.randint(MIN_LEN, MAX_LEN))]
            if tuple(s) not in seen:
                seen.add(tuple(s))
                return s

    def write(name, rows):
        for file, preamble in ((name, ""), ("pre_" + name, PREAMBLE)):
            with open(f"{out}/{file}.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps(dict(r, prompt=preamble + r["prompt"])) + "\n")

    # held out first: the base's test (also the forgetting test), then each task's
    base_test = {w: [example(w, fn, fresh()) for _ in range(BASE_TEST_PER_SKILL)] for w, fn in SKILLS.items()}
    for w, rows in base_test.items():
        write(f"base_test_{w}", rows)
    write("base_test", [r for rows in base_test.values() for r in rows])
    tests = {}
    for word, (_, fn) in TASKS.items():
        tests[word] = [example(word, fn, fresh()) for _ in range(TASK_TEST)]
        write(f"{word}_test", tests[word])
    words = list(SKILLS)
    write("base_train", [example(w, SKILLS[w], fresh()) for w in (rng.choice(words) for _ in range(BASE_TRAIN))])
    for word, (_, fn) in TASKS.items():
        pool = [example(word, fn, fresh()) for _ in range(SIZES[-1])]
        val = [example(word, fn, fresh()) for _ in range(VAL)]
        for n in SIZES:
            write(f"{word}_{n}", pool[:n] + val)
    rows = [dict(tests[w][i], adapter=w) for i in range(TASK_TEST) for w in TASKS]
    write("mixed_test", rows)
    meta = {"skills": list(SKILLS), "tasks": {w: k for w, (k, _) in TASKS.items()}, "sizes": list(SIZES), "val": VAL,
            "base_train": BASE_TRAIN, "base_test_per_skill": BASE_TEST_PER_SKILL, "task_test": TASK_TEST,
            "lengths": [MIN_LEN, MAX_LEN], "preamble": PREAMBLE, "vocab": vocab}
    with open(f"{out}/meta.json", "w") as f:
        json.dump(meta, f)
    print(f"wrote {out} (vocabulary of {vocab} tokens)")


if __name__ == "__main__":
    main()
