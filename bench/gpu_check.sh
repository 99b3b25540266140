#!/usr/bin/env bash
# The one-command GPU check: whoever is lent a GPU runs this first.
#
#   bench/gpu_check.sh            (from anywhere; about 6 minutes on one H200 with 16 cores)
#
# On a machine with an NVIDIA GPU it
#   1. builds with CUDA in build-gpu/ (reused if present; only the targets below),
#   2. runs the CUDA suite: every kernel against the CPU backend (cuda_backend),
#      the kernels' host maths (kernel_math), GPT-2 HF parity on the GPU (cuda_gpt2),
#   3. runs compute-sanitizer (memcheck) on the kernel tests, and the NCCL
#      communicator on one rank, alone (test_nccl) and through the trainer
#      (mpirun -np 1 --device cuda --zero 1: the same losses as one process;
#      bench says "communicator": "NCCL"),
#   4. times GPT-2 124M training steps on the GPU (bench/bench_step: random init,
#      random tokens, AdamW), B=8 T=1024, fp32 and bf16 autocast, full fine-tuning
#      and LoRA: tokens/s and MFU,
# and prints one summary table. Logs go to build-gpu/gpu_check/. Without a GPU
# it says so and exits 77 (a skip); otherwise it exits 1 if any step failed.
#
# MFU is the model TFLOP/s bench_step reports (its header says which FLOPs are
# counted) over the GPU's dense peak: for the fp32 runs the FP32 (non-tensor-core)
# peak, as TF32 stays off (MP_CUDA_TF32 unset); for bf16 the BF16 tensor-core peak.
# The peaks are known for H100/H200 SXM; elsewhere set MP_PEAK_F32_TFLOPS and
# MP_PEAK_BF16_TFLOPS, or the MFU column says n/a.
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
targets=(test_cuda_backend test_cuda_gpt2 test_kernel_math bench_step test_nccl minipeft)
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

# Peak dense TFLOP/s of this GPU for the MFU column.
peak_f32=${MP_PEAK_F32_TFLOPS:-}
peak_bf16=${MP_PEAK_BF16_TFLOPS:-}
case "$gpu" in
  *H100*SXM* | *H100\ 80GB* | *H200*) peak_f32=${peak_f32:-66.9} peak_bf16=${peak_bf16:-989.4} ;;
esac

bench_rows=()  # "method precision|tokens/s|TFLOP/s|MFU"
for method in full lora; do
  for precision in f32 bf16; do
    name="bench_${method}_${precision}"
    if run "$name" 150 $build/bench/bench_step gpt2 $method 8 1024 5 cuda $precision; then
      # "train    wall min   0.512 s  median ... (  16000.0 tokens/s at the min, 12.34 model TFLOP/s) ..."
      line=$(grep '^train ' "$logs/$name.log")
      tps=$(sed -E 's/.*\( *([0-9.]+) tokens\/s.*/\1/' <<<"$line")
      tflops=$(sed -E 's/.*, ([0-9.]+) model TFLOP\/s.*/\1/' <<<"$line")
      peak=$([ $precision = bf16 ] && echo "$peak_bf16" || echo "$peak_f32")
      mfu=n/a
      [ -n "$peak" ] && mfu=$(awk -v a="$tflops" -v p="$peak" 'BEGIN { printf "%.1f%%", 100 * a / p }')
      bench_rows+=("$method $precision|$tps|$tflops|$mfu")
    else
      bench_rows+=("$method $precision|-|-|-")
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
printf '%-12s %12s %14s %8s\n' run tokens/s "model TFLOP/s" MFU
for r in "${bench_rows[@]}"; do
  IFS='|' read -r a b c d <<<"$r"
  printf '%-12s %12s %14s %8s\n' "$a" "$b" "$c" "$d"
done
exit $failed
