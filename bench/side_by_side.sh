#!/usr/bin/env bash
# Side-by-side benchmark: minipeft vs PyTorch (+ HF PEFT) on the same model
# shape, batch, sequence length and thread count, in one run, alternating
# the two programs so that machine noise hits both alike. Prints each
# program's JSON and the ratios.
#
#   bench/side_by_side.sh [model] [batch] [seq] [steps] [methods...]
#   bench/side_by_side.sh gpt2 4 64 5 full lora prompt prefix
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

for method in "${methods[@]}"; do
  ours=$("$build"/cli/minipeft bench --model "$model" --method "$method" --batch "$batch" --seq "$seq" \
         --steps "$steps" --json)
  theirs=$(python3 reference/hf_bench.py --model "$model" --method "$method" --batch "$batch" \
           --seq "$seq" --steps "$steps" --threads "$threads")
  echo "minipeft: $ours"
  echo "pytorch:  $theirs"
  python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"  {a['method']:7s} train tokens/s  ours {a['train_tokens_per_s']:9.1f}  pytorch {b['train_tokens_per_s']:9.1f}"
      f"  ratio {a['train_tokens_per_s'] / b['train_tokens_per_s']:.2f}x")
print(f"  {a['method']:7s} fwd tokens/s    ours {a['forward_tokens_per_s']:9.1f}  pytorch {b['forward_tokens_per_s']:9.1f}"
      f"  ratio {a['forward_tokens_per_s'] / b['forward_tokens_per_s']:.2f}x")
print(f"  {a['method']:7s} peak RSS MiB    ours {a['peak_rss_bytes'] / 2**20:9.1f}  pytorch {b['peak_rss_bytes'] / 2**20:9.1f}"
      f"  ratio {a['peak_rss_bytes'] / b['peak_rss_bytes']:.2f}x")
PY
done
