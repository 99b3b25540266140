#!/usr/bin/env bash
# Regenerates docs/study.md, docs/study/results.json and docs/study/*.png from
# `minipeft` runs: full fine-tuning vs LoRA, prefix (with and without its MLP)
# and prompt tuning on three kinds of new task (steer, compose, new) at three
# base sizes, each base trained here from scratch on a mixture of skills behind
# an 8-token preamble, which prompt and prefix tuning's 8 virtual tokens take the
# place of (docs/study.md says what each phase measures).
#
#   scripts/make_study.sh [PHASE...]   phases: data base sweep adapt check serve assemble (default: all, in order)
#
# MINIPEFT names the binary (default build/cli/minipeft), STUDY_OUT the folder
# for the data and runs (default study-out; a phase skips a run whose output
# is already there, so delete the folder to start from scratch). JOBS runs up
# to that many commands at once (default 2), each with OMP_NUM_THREADS=1.
# Every number in docs/study.md is read from docs/study/results.json, which
# `assemble` writes from the JSON the commands below printed.
set -eu
MP=${MINIPEFT:-build/cli/minipeft}
OUT=${STUDY_OUT:-study-out}
JOBS=${JOBS:-2}
BASES=${BASES:-"S:4:96 M:4:160 L:6:224"}  # NAME:LAYERS:WIDTH, 4 heads each; L: as large as keeps the run within 60 min on 2 cores
BASE_STEPS=${BASE_STEPS:-1500}    # batch 64: the same schedule for every base
BASE_LR=${BASE_LR:-1e-3}          # peak at width BASE_LR_WIDTH, times BASE_LR_WIDTH / width (base_lr); BASE_STEPS / 10 of warmup, cosine to a tenth
BASE_LR_WIDTH=96
STEPS=${STEPS:-250}               # every adaptation run, batch 16
SIZES=${SIZES:-"32 256 2048"}     # training pairs per new task (scripts/study/data.py writes these)
TASKS=${TASKS:-"step twist jump"}
METHODS="full lora prefix prefix-mlp prompt"
SEEDS=${SEEDS:-"0 1 2"}           # the claim cells' seeds; the other cells run seed 0
# The LR sweep: every base (the check base: its methods), the steer task, 256 pairs, seed 0
SWEEP_TASK=step
SWEEP_PAIRS=256
# The no-preamble check: base N, S's shape trained the same way on the bare prompts (no preamble), so
# that prompt and prefix tuning's virtual tokens move the task 8 positions on (empty: no check).
CHECK_BASE=${CHECK_BASE-N:4:96}
CHECK_METHODS="full prompt"
SEQ=12                            # the longest pair: a word, ":", 4 letters, "=", 4 letters, the end (pre_ files: 8 more)
VTOKENS=8                         # prompt and prefix tuning: virtual tokens
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$OUT/runs"
[ -f "$OUT/started" ] || date +%s > "$OUT/started"
# The machine's 1-minute load average every 30 s while this script runs (the page reports it).
(while kill -0 $$ 2> /dev/null; do echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/load.txt"; sleep 30; done) &
disown

run() {  # run NAME ARGS...: minipeft ARGS, the command and its output kept in OUT/runs/NAME.{cmd,txt,err,time}
  local name=$1; shift
  [ -s "$OUT/runs/$name.txt" ] && return 0
  echo "minipeft $*" > "$OUT/runs/$name.cmd"
  echo "== minipeft $*" >&2
  /usr/bin/time -f "%e" -o "$OUT/runs/$name.time" nice -n "${NICE:-10}" "$MP" "$@" > "$OUT/runs/$name.tmp" 2> "$OUT/runs/$name.err"
  mv "$OUT/runs/$name.tmp" "$OUT/runs/$name.txt"
}

spawn() {  # spawn CMD...: in the background, at most JOBS at once
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  "$@" &
}

seq_of() {  # seq_of FILE: the tokens per row its pairs need
  case $1 in pre_*) echo $((SEQ + VTOKENS)) ;; *) echo $SEQ ;; esac
}

evaluate() {  # evaluate NAME TEST MODEL-OPTIONS...: loss and exact match on a held-out file, JSON in OUT/runs/NAME.txt
  local name=$1 test=$2; shift 2
  run "$name" eval "$@" --data "$OUT/data/$test.jsonl" --val-fraction 1 --batch 60 --seq "$(seq_of "$test")" --json
}

base_shape() {  # base_shape NAME: --layers L --width W --heads 4
  local b
  for b in $BASES $CHECK_BASE; do
    IFS=: read -r name layers width <<< "$b"
    [ "$name" = "$1" ] && { echo "--layers $layers --width $width --heads 4"; return; }
  done
  echo "unknown base $1" >&2; exit 2
}

base_names() {  # the bases' names, the largest (the longest to train) first, then the check base's
  local b
  for b in $(tr ' ' '\n' <<< "$BASES" | tac) $CHECK_BASE; do echo "${b%%:*}"; done
}

methods_of() {  # methods_of BASE: the methods run on it (the check base: CHECK_METHODS)
  if [ "$1" = "${CHECK_BASE%%:*}" ]; then echo "$CHECK_METHODS"; else echo "$METHODS"; fi
}

lr_of() {  # lr_of BASE METHOD: the LR the sweep chose for the method on that base
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' "$OUT/lrs.json" "$1" "$2"
}

method_args() {  # method_args METHOD LR: the method's options (the same at every base, task and size)
  case $1 in
    full) echo "--method full --lr $2" ;;
    lora) echo "--method lora --lora-r 8 --lora-alpha 16 --lora-targets c_attn,c_proj,c_fc --lr $2" ;;
    prefix) echo "--method prefix --virtual-tokens $VTOKENS --lr $2" ;;
    prefix-mlp) echo "--method prefix --virtual-tokens $VTOKENS --prefix-projection --lr $2" ;;
    prompt) echo "--method prompt --virtual-tokens $VTOKENS --lr $2" ;;
  esac
}

preamble_of() {  # preamble_of BASE METHOD: "pre_" where the run's files carry the preamble: every base but the
  # check's, every method but prompt and prefix tuning (their virtual tokens take the preamble's place)
  [ "$1" = "${CHECK_BASE%%:*}" ] && return 0
  case $2 in prefix* | prompt) ;; *) echo pre_ ;; esac
}

model_of() {  # model_of RUN METHOD BASE: the options that load the run's model (PEFT: the base + its adapter)
  if [ "$2" = full ]; then echo "--model $OUT/runs/$1/final"
  else echo "--model $OUT/runs/base-$3/final --adapter $OUT/runs/$1/final"; fi
}

adapt_one() {  # adapt_one BASE TASK METHOD N SEED LR [forget]: train on the task's first N pairs, then evaluate
  local base=$1 task=$2 method=$3 n=$4 seed=$5 lr=$6 forget=${7:-} name frac pre
  name="$base-$task-$method-$n-s$seed"
  pre=$(preamble_of "$base" "$method")
  [ -n "${SWEEPING:-}" ] && name="sweep-$name-lr$lr"
  frac=$(python3 -c "print(99.5 / ($n + 100))")  # the file is N pairs then 100 validation pairs: hold those out
  run "$name" train --model "$OUT/runs/base-$base/final" $(method_args "$method" "$lr") \
    --data "$OUT/data/$pre${task}_$n.jsonl" --val-fraction "$frac" --batch 16 --seq "$(seq_of "$pre$task")" --steps "$STEPS" \
    --warmup $((STEPS / 10)) --schedule cosine --seed "$seed" --out "$OUT/runs/$name" --no-progress
  evaluate "$name.task" "$pre${task}_test" $(model_of "$name" "$method" "$base")
  if [ -n "$forget" ]; then  # the base's skills after adapting: adapter on (full: the tuned model)
    evaluate "$name.skills" "${pre}base_test" $(model_of "$name" "$method" "$base")
    # LoRA off: the adapter loaded, the rows naming none (eval's mixed batch), so they run on the frozen base.
    # Prefix and prompt tuning add only virtual tokens: off, they are the base file, scored once (base_one).
    [ "$method" = lora ] && evaluate "$name.skills-off" "${pre}base_test" --model "$OUT/runs/base-$base/final" --adapter "$task=$OUT/runs/$name/final"
  fi
  return 0
}

phase_data() {
  [ -f "$OUT/data/meta.json" ] || python3 scripts/study/data.py "$OUT/data"
}

base_lr() {  # base_lr NAME: BASE_LR scaled as 1 / width, as muP scales Adam's LR for hidden weights (Yang et al. 2021)
  # (at one LR, 1e-3, a 6 x 224 base ended at 15x the held-out loss of a 4 x 160 one; at 5e-4 a 4 x 96 one lagged)
  local shape
  shape=$(base_shape "$1")
  awk -v lr="$BASE_LR" -v ref="$BASE_LR_WIDTH" -v w="$(cut -d' ' -f4 <<< "$shape")" 'BEGIN { printf "%.3g\n", lr * ref / w }'
}

base_one() {  # base_one NAME: train a base from scratch on the skills' mixture, then its scores before adapting
  local b=$1 pre t
  pre=$(preamble_of "$b" full)
  run "base-$b" train --model gpt2-tiny $(base_shape "$b") --tokenizer "$OUT/data/tokenizer" --method full \
    --data "$OUT/data/${pre}base_train.jsonl" --val-fraction 0.01 --batch 64 --seq "$(seq_of "${pre}base")" --steps "$BASE_STEPS" \
    --lr "$(base_lr "$b")" --warmup $((BASE_STEPS / 10)) --schedule cosine --eval-every $((BASE_STEPS / 6)) --seed 0 --out "$OUT/runs/base-$b" --no-progress
  evaluate "base-$b.skills" "${pre}base_test" --model "$OUT/runs/base-$b/final"
  for t in $(python3 -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["skills"]))' "$OUT/data/meta.json"); do
    evaluate "base-$b.$t" "${pre}base_test_$t" --model "$OUT/runs/base-$b/final"
  done
  for t in $TASKS; do evaluate "base-$b.$t" "$pre${t}_test" --model "$OUT/runs/base-$b/final"; done
}

phase_base() {
  local b
  for b in $(base_names); do spawn base_one "$b"; done
  wait
}

# Four to six LRs per method. Earlier runs chose LoRA's and prompt tuning's highest LR (1e-2, then 3 on
# base M) and prefix tuning's (3e-1 on base S): those grids go further up.
SWEEP_LRS_full="1e-4 3e-4 1e-3 3e-3"
SWEEP_LRS_lora="3e-4 1e-3 3e-3 1e-2 3e-2"
SWEEP_LRS_prefix="1e-2 3e-2 1e-1 3e-1 1"
SWEEP_LRS_prefix_mlp="3e-4 1e-3 3e-3 1e-2"
SWEEP_LRS_prompt="3e-2 1e-1 3e-1 1 3 10"
sweep_lrs() { local v="SWEEP_LRS_${1//-/_}"; echo "${!v}"; }

phase_sweep() {  # each method at its grid's LRs on every base and the steer task; per base, the lowest validation loss wins
  local b m lr grids=()
  for b in $(base_names); do
    for m in $(methods_of "$b"); do
      for lr in $(sweep_lrs "$m"); do SWEEPING=1 spawn adapt_one "$b" "$SWEEP_TASK" "$m" "$SWEEP_PAIRS" 0 "$lr"; done
      grids+=("$b:$m:$(sweep_lrs "$m" | tr ' ' ,)")
    done
  done
  wait
  python3 - "$OUT" "$SWEEP_TASK" "$SWEEP_PAIRS" "${grids[@]}" <<'PYEOF'
import json, sys
out, task, n, grids = sys.argv[1], sys.argv[2], sys.argv[3], [g.split(":") for g in sys.argv[4:]]  # BASE:METHOD:LR,LR,...
def val_loss(run):
    v = [json.loads(l).get("val_loss") for l in open(f"{out}/runs/{run}/log.jsonl")]
    return [x for x in v if x is not None][-1]
best = {}  # {base: {method: LR}}
for b, m, lrs in grids:
    best.setdefault(b, {})[m] = min(lrs.split(","), key=lambda lr: val_loss(f"sweep-{b}-{task}-{m}-{n}-s0-lr{lr}"))
json.dump(best, open(f"{out}/lrs.json", "w"))
print("LRs chosen:", best)
PYEOF
}

claim_cell() {  # claim_cell TASK N: the cells the claims rest on (3 seeds): every task at the largest N, steer at the smallest
  [ "$2" = "${SIZES##* }" ] || { [ "$1" = "$SWEEP_TASK" ] && [ "$2" = "${SIZES%% *}" ]; }
}

phase_adapt() {
  local b t m n s forget
  for s in $SEEDS; do
    for b in $BASES; do
      for t in $TASKS; do
        for n in $SIZES; do
          if [ "$s" != "${SEEDS%% *}" ] && ! claim_cell "$t" "$n"; then continue; fi
          forget=; [ "$n" = "${SIZES##* }" ] && forget=forget
          for m in $METHODS; do spawn adapt_one "${b%%:*}" "$t" "$m" "$n" "$s" "$(lr_of "${b%%:*}" "$m")" $forget; done
        done
      done
    done
  done
  wait
}

phase_check() {  # base N (no preamble): the steer task at the largest N, seed 0, at the LRs the sweep chose on N
  local m c=${CHECK_BASE%%:*}
  [ -n "$CHECK_BASE" ] || return 0
  for m in $CHECK_METHODS; do spawn adapt_one "$c" "$SWEEP_TASK" "$m" "${SIZES##* }" "${SEEDS%% *}" "$(lr_of "$c" "$m")"; done
  wait
}

phase_serve() {  # the three tasks' LoRA adapters (the largest base, N, seed 0) served together, rows mixed in one batch
  local b=${BASES##* } n=${SIZES##* } t adapters=()
  b=${b%%:*}
  for t in $TASKS; do adapters+=(--adapter "$t=$OUT/runs/$b-$t-lora-$n-s0/final"); done
  run serve-mixed generate --model "$OUT/runs/base-$b/final" "${adapters[@]}" --prompts "$OUT/data/pre_mixed_test.jsonl" \
    --max-new-tokens 7 --compare-switching
  evaluate serve-mixed-eval pre_mixed_test --model "$OUT/runs/base-$b/final" "${adapters[@]}"
  date +%s > "$OUT/finished"  # the last phase that runs anything: the page's wall time ends here
}

phase_assemble() {  # results.json from the runs, then the page and plots from results.json alone
  mkdir -p docs/study
  python3 scripts/study/collect.py "$OUT" docs/study/results.json "$BASES" "$BASE_STEPS" "$STEPS" "$SIZES" "$TASKS" "$METHODS" "$SEEDS" "$JOBS" "$VTOKENS" "$CHECK_BASE" "$BASE_LR" "$CHECK_METHODS" "$BASE_LR_WIDTH"
  python3 scripts/study/page.py docs
}

phases=${*:-data base sweep adapt check serve assemble}
for p in $phases; do
  case $p in
    data | base | sweep | adapt | check | serve | assemble) "phase_$p" ;;
    *) echo "unknown phase $p (data base sweep adapt check serve assemble)" >&2; exit 2 ;;
  esac
done
