#!/usr/bin/env bash
# Side-by-side benchmark: minipeft vs PyTorch (+ HF PEFT) on the same model
# shape, batch, sequence length and thread count, in one run, alternating
# the two programs so that machine noise hits both alike, ROUNDS times (2).
# Each precision in PRECISIONS ("f32 bf16") runs: f32 against PyTorch f32,
# bf16 (`--precision bf16`) against torch.autocast("cpu", bfloat16). Prints
# each program's JSON, the ratios, the machine's GEMM peak (f32 and bf16,
# measured by minipeft in the same run) and the fraction of it each step's
# GEMMs reach.
#
#   bench/side_by_side.sh [model] [batch] [seq] [steps] [methods...]
#   PRECISIONS="f32 bf16" bench/side_by_side.sh gpt2 4 64 5 full lora dora lora+save lora+head ia3 prompt prefix
#
# Needs a built tree (BUILD=dir, default build-perf if it exists, else build) and, for the PyTorch side,
# `pip install -r reference/requirements.txt`.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-gpt2}; batch=${2:-4}; seq=${3:-64}; steps=${4:-5}
shift $(( $# < 4 ? $# : 4 ))
methods=("$@"); ((${#methods[@]})) || methods=(full lora)
threads=${THREADS:-2}
build=${BUILD:-$( [[ -x build-perf/cli/minipeft ]] && echo build-perf || echo build )}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), threads $threads, minipeft from $build"
# Passive for both programs (PyTorch's bundled libgomp reads it too): with the
# default, each OpenMP region's idle thread spins after it and, on a busy
# 2-core machine, steals the core the main thread needs next (minipeft's
# GPT-2 B=4 T=64 step: ~7 s default vs ~3 s passive at load ~5).
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

python=${PYTHON:-python3}
grep -o 'avx512_bf16\|amx_bf16\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/cpu flags: /'; echo
for round in $(seq "${ROUNDS:-2}"); do
for precision in ${PRECISIONS:-f32 bf16}; do
for method in "${methods[@]}"; do
  ours_method=(--method "$method")
  [[ $method == dora ]] && ours_method=(--method lora --use-dora)  # hf_bench.py's dora: LoRA with use_dora
  if [[ $method == lora+save ]]; then  # hf_bench.py's lora+save: the final layer norm trained in full beside LoRA
    ours_method=(--method lora --modules-to-save "$([[ $model == opt* ]] && echo final_layer_norm || echo ln_f)")
  fi
  [[ $method == lora+head ]] && ours_method=(--method lora --modules-to-save lm_head)  # an untied copy of the head
  ours=$("$build"/cli/minipeft bench --model "$model" "${ours_method[@]}" --batch "$batch" --seq "$seq" \
         --steps "$steps" --precision "$precision" --json)
  theirs=$("$python" reference/hf_bench.py --model "$model" --method "$method" --batch "$batch" \
           --seq "$seq" --steps "$steps" --threads "$threads" --precision "$precision")
  echo "minipeft: $ours"
  echo "pytorch:  $theirs"
  python3 - "$ours" "$theirs" "$round" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
tag = f"round {sys.argv[3]} {a['precision']:4s} {b['method']:7s}"
print(f"  {tag} gemm peak GFLOP/s f32 {a['gemm_peak_gflops']['f32']:.0f} bf16 {a['gemm_peak_gflops']['bf16']:.0f}"
      f" ({a['gemm']['f32']}; {a['gemm']['bf16']}); the step's GEMMs {a['train_gemm_gflops']:.0f} GFLOP/s,"
      f" {a['train_fraction_of_gemm_peak']:.2f} of the peak")
print(f"  {tag} train tokens/s  ours {a['train_tokens_per_s']:9.1f}  pytorch {b['train_tokens_per_s']:9.1f}"
      f"  ratio {a['train_tokens_per_s'] / b['train_tokens_per_s']:.2f}x")
print(f"  {tag} fwd tokens/s    ours {a['forward_tokens_per_s']:9.1f}  pytorch {b['forward_tokens_per_s']:9.1f}"
      f"  ratio {a['forward_tokens_per_s'] / b['forward_tokens_per_s']:.2f}x")
print(f"  {tag} peak RSS MiB    ours {a['peak_rss_bytes'] / 2**20:9.1f}  pytorch {b['peak_rss_bytes'] / 2**20:9.1f}"
      f"  ratio {a['peak_rss_bytes'] / b['peak_rss_bytes']:.2f}x")
PY
done
done
done
