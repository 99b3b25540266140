#!/usr/bin/env bash
# Regenerates docs/study.md and docs/study/*.png from `minipeft` runs: a study of
# full fine-tuning vs LoRA, prefix and prompt tuning on synthetic tasks a small
# base has demonstrably learned (docs/study.md says what each phase measures).
#
#   tools/make_study.sh [PHASE...]   phases: data base ceiling adapt second serve assemble (default: all, in order)
#
# MINIPEFT names the binary (default build/tools/minipeft), STUDY_OUT the
# folder for the data and runs (default study-out; the base model is cached
# there: `base` skips training when STUDY_OUT/base/final exists). JOBS runs up
# to that many adaptation runs at once (default 1; `serve` and `assemble` wait
# for the runs before them). Every number in
# docs/study.md is read from the JSON a command below wrote; the report names
# each command next to its numbers.
set -eu
MP=${MINIPEFT:-build/tools/minipeft}
OUT=${STUDY_OUT:-study-out}
JOBS=${JOBS:-1}
BASE_STEPS=${BASE_STEPS:-2500}   # the base: 4 layers x width 128, trained on reverse/copy
STEPS=${STEPS:-300}              # the fixed budget of every data-efficiency run
CEIL_STEPS=${CEIL_STEPS:-1000}   # the ceiling's larger budget
SIZES=${SIZES:-100 400 1600 6400}
BATCH=16
SEQ=16
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$OUT"

date +%s > "$OUT/started"

run() {  # run NAME ARGS...: minipeft ARGS, the command and its output kept in OUT/NAME.{cmd,txt,time}
  name=$1; shift
  echo "minipeft $*" > "$OUT/$name.cmd"
  echo "== minipeft $*" >&2
  /usr/bin/time -f "%e" -o "$OUT/$name.time" "$MP" "$@" > "$OUT/$name.txt" 2> "$OUT/$name.err"
}

spawn() {  # spawn CMD...: in the background, at most JOBS at once
  if [ "$JOBS" -le 1 ]; then "$@"; return; fi
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  "$@" &
}

# The adaptation settings by method, the same at every size and budget (not tuned per size):
# full: LR 5e-4; LoRA: r 16, alpha 32 on every linear layer, LR 5e-3; prefix and
# prompt tuning: 20 virtual tokens, LR 3e-2 (PEFT's examples use higher LRs for
# prompt methods); AdamW, 10% warmup, cosine to 10%, clip 1.0, batch 16.
method_args() {
  case $1 in
    full) echo "--method full --lr 5e-4" ;;
    lora) echo "--method lora --lora-r 16 --lora-alpha 32 --lora-targets c_attn,c_proj,c_fc --lr 5e-3" ;;
    prefix) echo "--method prefix --virtual-tokens 20 --lr 3e-2" ;;
    prompt) echo "--method prompt --virtual-tokens 20 --lr 3e-2" ;;
  esac
}

model_of() {  # the model and adapter options that evaluate run NAME trained with METHOD
  if [ "$2" = full ]; then echo "--model $OUT/$1/final"; else echo "--model $OUT/base/final --adapter $OUT/$1/final"; fi
}

evaluate() {  # evaluate NAME TEST MODEL-OPTIONS...: exact match on a held-out file, JSON in OUT/NAME.txt
  name=$1 test=$2; shift 2
  run "$name" eval "$@" --data "$OUT/data/$test.jsonl" --fraction 1 --batch 50 --seq $SEQ --json
}

adapt_one() {  # adapt_one NAME DATA N METHOD STEPS: train on DATA's first N pairs, then exact match on both tasks
  name=$1 data=$2 n=$3 method=$4 steps=$5
  # the data file is N training pairs then 100 validation pairs: hold out exactly those
  frac=$(python3 -c "print(99.5 / ($n + 100))")
  run "$name" train --model "$OUT/base/final" $(method_args "$method") --data "$OUT/data/$data.jsonl" \
    --val-fraction "$frac" --batch 16 --seq $SEQ --steps "$steps" --warmup $((steps / 10)) --schedule cosine \
    --seed 0 --out "$OUT/$name" --no-progress
  evaluate "$name.task" "${data%_*}_test" $(model_of "$name" "$method")
  evaluate "$name.base" base_test $(model_of "$name" "$method")
}

phase_data() {
  # The tasks, over single-letter tokens (" a" .. " z" are one GPT-2 token each), 3 to 6 letters:
  #   reverse: k d m q = -> q m d k      copy: k d m q = -> k d m q      (the base's tasks)
  #   shift: k d m q = -> l e n r        (Caesar +1: the task to adapt to)
  #   swap: k d m q r = -> d k q m r     (adjacent letters swapped: the second adapter's task)
  # Held-out sequences are drawn first and never appear in a training file.
  python3 - "$OUT/data" <<'PYEOF'
import json, os, random, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
L = "abcdefghijklmnopqrstuvwxyz"
def answer(task, s):
    if task == "reverse": return s[::-1]
    if task == "copy": return s
    if task == "shift": return [L[(L.index(x) + 1) % 26] for x in s]
    if task == "swap":
        c = list(s)
        for i in range(0, len(c) - 1, 2): c[i], c[i + 1] = c[i + 1], c[i]
        return c
def ex(task, s): return {"prompt": f"{task}: {' '.join(s)} =", "completion": " " + " ".join(answer(task, s))}
def write(name, rows):
    with open(f"{out}/{name}.jsonl", "w") as f:
        for r in rows: f.write(json.dumps(r) + "\n")
rng = random.Random(1234)
seen = set()
def fresh():
    while True:
        s = [rng.choice(L) for _ in range(rng.randint(3, 6))]
        if tuple(s) not in seen:
            seen.add(tuple(s))
            return s
test = [fresh() for _ in range(450)]
write("base_test", [ex(t, s) for s in test[:150] for t in ("reverse", "copy")])
write("shift_test", [ex("shift", s) for s in test[150:300]])
write("swap_test", [ex("swap", s) for s in test[300:450]])
# Training files: the base's 20,000 pairs (+ 400 held out for its validation loss);
# shift: the first N of one pool of 6,400, then the same 100 validation pairs.
write("base_train", [ex(rng.choice(("reverse", "copy")), fresh()) for _ in range(20400)])
pool = [ex("shift", fresh()) for _ in range(6400)]
val = [ex("shift", fresh()) for _ in range(100)]
for n in (100, 400, 1600, 6400): write(f"shift_{n}", pool[:n] + val)
write("swap_1600", [ex("swap", fresh()) for _ in range(1600)] + [ex("swap", fresh()) for _ in range(100)])
# The mixed-batch serving set: shift and swap rows interleaved, each naming its adapter.
rows = []
for a, b in zip(open(f"{out}/shift_test.jsonl"), open(f"{out}/swap_test.jsonl")):
    rows.append(dict(json.loads(a), adapter="shift"))
    rows.append(dict(json.loads(b), adapter="swap"))
write("mixed_test", rows)
print(f"wrote {out}")
PYEOF
}

phase_base() {
  if [ -f "$OUT/base/final/model.safetensors" ]; then echo "base: cached in $OUT/base/final" >&2; return; fi
  run base-train train --model gpt2-tiny --layers 4 --width 128 --heads 4 --method full \
    --data "$OUT/data/base_train.jsonl" --val-fraction 0.0196 --batch 32 --seq $SEQ --steps "$BASE_STEPS" \
    --lr 2e-3 --warmup 100 --schedule cosine --eval-every 500 --seed 0 --out "$OUT/base" --no-progress
  # the base on its own task and on the new ones, before any adapting
  evaluate base.base base_test --model "$OUT/base/final"
  evaluate base.shift shift_test --model "$OUT/base/final"
  evaluate base.swap swap_test --model "$OUT/base/final"
}

phase_ceiling() {  # full and LoRA with a larger budget on the largest set
  for m in full lora; do spawn adapt_one "ceil-$m" shift_6400 6400 "$m" "$CEIL_STEPS"; done
}

phase_adapt() {  # data efficiency: every method and size, the same step budget
  for n in $SIZES; do
    for m in full lora prefix prompt; do spawn adapt_one "adapt-$m-$n" "shift_$n" "$n" "$m" "$STEPS"; done
  done
}

phase_second() {  # a second LoRA adapter, for the swap task
  spawn adapt_one second-swap swap_1600 1600 lora "$STEPS"
}

phase_serve() {  # the shift and swap LoRA adapters served together, rows mixed in one batch
  wait
  run serve-mixed generate --model "$OUT/base/final" --adapter "shift=$OUT/adapt-lora-6400/final" \
    --adapter "swap=$OUT/second-swap/final" --prompts "$OUT/data/mixed_test.jsonl" --max-new-tokens 7 --compare-switching
  evaluate serve-mixed-eval mixed_test --adapter "shift=$OUT/adapt-lora-6400/final" \
    --adapter "swap=$OUT/second-swap/final" --model "$OUT/base/final"
}

phases=${*:-data base ceiling adapt second serve assemble}
for p in $phases; do
  case $p in
    data | base | ceiling | adapt | second | serve | assemble) "phase_$p" ;;
    *) echo "unknown phase $p (data base ceiling adapt second serve assemble)" >&2; exit 2 ;;
  esac
done
wait
date +%s > "$OUT/finished"
