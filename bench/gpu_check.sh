#!/usr/bin/env bash
# The one-command GPU check: whoever is lent a GPU runs this first.
#
#   bench/gpu_check.sh            (from anywhere; about 10 minutes on one H100 with 16 cores)
#
# On a machine with an NVIDIA GPU it
#   1. builds with CUDA in build-gpu/ (reused if present; only the targets below),
#   2. runs the CUDA suite: every kernel against the CPU backend (cuda_backend),
#      the kernels' host maths (kernel_math), GPT-2 HF parity on the GPU (cuda_gpt2),
#   3. runs compute-sanitizer (memcheck) on the kernel tests, and the NCCL
#      communicator on one rank, alone (test_nccl) and through the trainer
#      (mpirun -np 1 --device cuda --zero 1: the same losses as one process;
#      bench says "communicator": "NCCL"),
#   4. trains gpt2-tiny on tinyshakespeare for 20 steps with `minipeft train`, on
#      the CPU and with --device cuda, for full fine-tuning, LoRA, prefix, prompt
#      tuning and QLoRA (LoRA on an NF4 base), and checks that every step's loss
#      agrees within 1e-4 relative (f32),
#   5. holds the planner for CUDA (`info --device cuda`, engine/meta/cuda_plan.cpp)
#      to the GPU: `minipeft bench --device cuda` on gpt2-tiny for full, LoRA on a
#      bf16 base, QLoRA, prefix, prompt and bf16 autocast, each tag's planned
#      peak and the allocator's planned reserved peak equal to the measured ones,
#      to the byte,
#   6. times GPT-2 124M training steps on the GPU with `minipeft bench --device
#      cuda` (random init and tokens, AdamW), B=8 T=1024, fp32 and bf16 autocast,
#      full fine-tuning and LoRA: tokens/s, MFU, and the device's ledger peak and
#      reserved bytes beside the planner's,
# and prints one summary table. Logs go to build-gpu/gpu_check/. Without a GPU
# it says so and exits 77 (a skip); otherwise it exits 1 if any step failed.
#
# MFU is bench's train_model_tflops (model FLOPs as llm.c and PaLM count them:
# cli/bench.cpp, model_flops_per_token) over the GPU's dense peak: for the fp32
# runs the FP32 (non-tensor-core) peak, as TF32 stays off (MP_CUDA_TF32 unset);
# for bf16 the BF16 tensor-core peak. The peaks are known for H100/H200 SXM;
# elsewhere set MP_PEAK_F32_TFLOPS and MP_PEAK_BF16_TFLOPS, or the MFU column
# says n/a.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "gpu_check: no NVIDIA GPU found (nvidia-smi lists none): nothing to check; exit 77 (skipped)"
  exit 77
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "gpu_check: $gpu found, but no nvcc (the CUDA toolkit) to build with"
  exit 1
fi

build="build-gpu"
logs=$build/gpu_check
start=$SECONDS
rows=()      # "step|result|seconds|detail"
failed=0

# run NAME LIMIT_S CMD...: runs CMD with a time limit, logs to $logs/NAME.log, adds a row.
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  local result=ok
  if [ $rc -eq 124 ]; then result="timed out (${limit} s)"; elif [ $rc -ne 0 ]; then result="FAILED (exit $rc)"; fi
  [ "$result" = ok ] || failed=1
  rows+=("$name|$result|$((SECONDS - t0))|$logs/$name.log")
  echo "gpu_check: $name: $result"
  return $rc
}

mkdir -p "$logs"
echo "gpu_check: $gpu; logs in $logs/"

if [ ! -f $build/build.ninja ]; then
  meson setup $build -Dcuda=enabled -Dbenchmarks=disabled >"$logs/setup.log" 2>&1 ||
    { echo "gpu_check: meson setup failed, see $logs/setup.log"; exit 1; }
fi
targets=(test_cuda_backend test_cuda_gpt2 test_kernel_math test_nccl minipeft)
if ! run build 300 meson compile -C $build "${targets[@]}"; then
  echo "gpu_check: the build failed; see $logs/build.log"
  exit 1
fi

run kernels 120 meson test -C $build --no-rebuild --print-errorlogs cuda_backend kernel_math
run gpt2_parity 120 meson test -C $build --no-rebuild --print-errorlogs cuda_gpt2
# memcheck: out-of-bounds and misaligned accesses, leaks of device memory. The
# 537 MB grid-stride case is left out (memcheck runs it ~100x slower).
if command -v compute-sanitizer >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  run memcheck 180 "$sanitizer" --tool memcheck --error-exitcode 1 $build/tests/cuda/test_cuda_backend \
    --test-case-exclude='*grid-stride*'
else
  rows+=("memcheck|not run: no compute-sanitizer|0|")
  failed=1
fi

run nccl 120 meson test -C $build --no-rebuild --print-errorlogs nccl
# The trainer's choice of communicator (parallel::world(device)): under mpirun
# on CUDA, NCCL, here over one rank, where ZeRO-1's all-gather of the
# parameters each step is a copy: the log's losses are those of one process.
if command -v mpirun >/dev/null 2>&1; then
  dp="train --no-progress --model gpt2-tiny --method full --device cuda --zero 1 --steps 3 --seq 32 --batch 2"
  dp+=" --data data/legal/licenses.txt"
  mpi="mpirun -np 1 --allow-run-as-root"
  run nccl_trainer 120 bash -c "rm -rf $logs/dp_one $logs/dp_nccl &&
    $build/cli/minipeft $dp --out $logs/dp_one && $mpi $build/cli/minipeft $dp --out $logs/dp_nccl &&
    cmp <(grep -o '\"loss\":[^,]*' $logs/dp_one/log.jsonl) <(grep -o '\"loss\":[^,]*' $logs/dp_nccl/log.jsonl) &&
    $mpi $build/cli/minipeft bench --model gpt2-tiny --method full --device cuda --zero 1 --seq 32 --batch 2 --json |
      grep '\"communicator\": *\"NCCL\"'"
else
  rows+=("nccl_trainer|not run: no mpirun|0|")
  failed=1
fi

minipeft=$build/cli/minipeft

# json_number FILE KEY: the first number after "KEY": in a one-line JSON file.
json_number() { grep -o "\"$2\":[-0-9.e+]*" "$1" | head -n 1 | cut -d: -f2; }
json_mib() { awk -v b="$(json_number "$1" "$2")" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# same_losses A B: every step's "loss" in two log.jsonl files agrees within 1e-4 relative.
same_losses() {
  paste -d' ' <(grep -o '"loss":[-0-9.e+]*' "$1" | cut -d: -f2) <(grep -o '"loss":[-0-9.e+]*' "$2" | cut -d: -f2) |
    awk 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d; a = $1 < 0 ? -$1 : $1;
         if (d > 1e-4 * a) { bad = 1; printf "step %d: %s against %s\n", NR, $1, $2 } n++ }
         END { if (n != 20) { print n " steps, not 20"; bad = 1 } exit bad }'
}
export -f same_losses  # run's timeout starts it in a new bash

# 20 training steps of gpt2-tiny on tinyshakespeare, the CPU's against the GPU's.
for method in full lora prefix prompt qlora; do
  args=(--model gpt2-tiny --data data/tinyshakespeare/input.txt --steps 20 --batch 4 --seq 64 --no-progress)
  if [ $method = qlora ]; then args+=(--method lora --base-dtype nf4); else args+=(--method $method); fi
  rm -rf "$logs/train_${method}_cpu" "$logs/train_${method}_cuda"
  run "train_${method}_cpu" 300 "$minipeft" train "${args[@]}" --device cpu --out "$logs/train_${method}_cpu" &&
    run "train_${method}_cuda" 120 "$minipeft" train "${args[@]}" --device cuda --out "$logs/train_${method}_cuda" &&
    run "losses_${method}" 10 bash -c 'same_losses "$0" "$1"' "$logs/train_${method}_cpu/log.jsonl" \
      "$logs/train_${method}_cuda/log.jsonl"
done

# same_plan JSON: bench's planned peaks (each tag's, and the allocator's reserved
# bytes) equal the measured ones, to the byte.
same_plan() {
  diff <(grep -o '"planned_tag_peak_bytes":{[^}]*}' "$1" | grep -o '"[a-z]*":[0-9]*' | sort) \
    <(grep -o '"peak_bytes":{[^}]*}' "$1" | grep -o '"[a-z]*":[0-9]*' | grep -v '"total"' | sort) &&
    [ "$(json_number "$1" planned_reserved_peak_bytes)" = "$(json_number "$1" peak_reserved_bytes)" ] ||
    { echo "planned reserved $(json_number "$1" planned_reserved_peak_bytes), measured $(json_number "$1" peak_reserved_bytes)"; return 1; }
}
export -f same_plan json_number

for variant in "full" "lora --base-dtype bf16" "lora --base-dtype nf4" "prefix" "prompt" "lora --precision bf16"; do
  name="plan_$(echo "$variant" | tr -s ' -' '_')"
  run "$name" 120 "$minipeft" bench --model gpt2-tiny --batch 4 --seq 64 --steps 2 --device cuda --json \
    --method $variant &&
    run "${name}_eq" 10 bash -c 'same_plan "$0"' "$logs/$name.log"
done

# Peak dense TFLOP/s of this GPU for the MFU column.
peak_f32=${MP_PEAK_F32_TFLOPS:-}
peak_bf16=${MP_PEAK_BF16_TFLOPS:-}
case "$gpu" in
  *H100*SXM* | *H100\ 80GB* | *H200*) peak_f32=${peak_f32:-66.9} peak_bf16=${peak_bf16:-989.4} ;;
esac

bench_rows=()  # "method precision|tokens/s|TFLOP/s|MFU|peak MiB|planned MiB|reserved MiB|planned MiB"
for method in full lora; do
  for precision in f32 bf16; do
    name="bench_${method}_${precision}"
    json=$logs/$name.log  # run logs stdout there: bench's one JSON line
    if run "$name" 300 "$minipeft" bench --model gpt2 --method $method --batch 8 --seq 1024 --steps 5 \
        --device cuda --precision $precision --json; then
      tps=$(json_number "$json" train_tokens_per_s)
      tflops=$(json_number "$json" train_model_tflops)
      peak_mib=$(awk -v b="$(grep -o '"peak_bytes":{[^}]*}' "$json" | grep -o '"total":[0-9]*' | cut -d: -f2)" \
        'BEGIN { printf "%.1f", b / 1048576 }')
      planned_mib=$(json_mib "$json" planned_peak_bytes)
      reserved_mib="$(json_mib "$json" peak_reserved_bytes)|$(json_mib "$json" planned_reserved_peak_bytes)"
      peak=$([ $precision = bf16 ] && echo "$peak_bf16" || echo "$peak_f32")
      mfu=n/a
      [ -n "$peak" ] && mfu=$(awk -v a="$tflops" -v p="$peak" 'BEGIN { printf "%.1f%%", 100 * a / p }')
      bench_rows+=("$method $precision|$tps|$tflops|$mfu|$peak_mib|$planned_mib|$reserved_mib")
    else
      bench_rows+=("$method $precision|-|-|-|-|-|-|-")
    fi
  done
done

echo
echo "== gpu_check summary: $gpu, $((SECONDS - start)) s =="
printf '%-18s %-26s %6s  %s\n' step result seconds log
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d <<<"$r"
  printf '%-18s %-26s %6s  %s\n' "$a" "$b" "$c" "$d"
done
echo
echo "GPT-2 124M training step, B=8 T=1024, AdamW (peaks: fp32 ${peak_f32:-?}, bf16 ${peak_bf16:-?} TFLOP/s)"
printf '%-12s %12s %14s %8s %10s %12s %13s %12s\n' run tokens/s "model TFLOP/s" MFU "peak MiB" "planned MiB" \
  "reserved MiB" "planned MiB"
for r in "${bench_rows[@]}"; do
  IFS='|' read -r a b c d e f g h <<<"$r"
  printf '%-12s %12s %14s %8s %10s %12s %13s %12s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h"
done
exit $failed
