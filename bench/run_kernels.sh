#!/usr/bin/env bash
# Kernel micro-benchmarks (bench/bench_kernels.cpp) with the settings they
# need, then a summary against the yardsticks measured in the same run:
#   - each GEMM at a GPT-2 124M shape as a % of cblas_sgemm on that shape;
#   - each memory-bound kernel as a % of the parallel copy bandwidth
#     (the cache-sized copy for the small kernels, the 256 MiB copy for AdamW).
#
#   bench/run_kernels.sh [build dir] [extra Google Benchmark flags...]
#   bench/run_kernels.sh build-perf --benchmark_repetitions=3
#
# Build: meson setup build-perf && ninja -C build-perf bench/bench_kernels
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-perf}
shift $(( $# < 1 ? $# : 1 ))
threads=${THREADS:-2}
# Passive: idle OpenMP threads sleep instead of spinning through the cores
# OpenBLAS's threads need (see bench_kernels.cpp).
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=passive
json=${JSON_OUT:-$(mktemp)}  # JSON_OUT=file keeps Google Benchmark's JSON
[[ -n ${JSON_OUT:-} ]] || trap 'rm -f "$json"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg), threads $threads"
"$build/bench/bench_kernels" --benchmark_out="$json" --benchmark_out_format=json "$@"
python3 - "$json" <<'PY'
import json, sys, re
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type", "iteration") == "iteration"
        or b.get("aggregate_name") == "median"]
# With repetitions, keep the medians; otherwise the single runs.
if any(b.get("aggregate_name") == "median" for b in runs):
    runs = [b for b in runs if b.get("aggregate_name") == "median"]
def name(b): return re.sub(r"_median$", "", b["name"].replace("/real_time", ""))
res = {name(b): b for b in runs}
def val(n, key):
    b = res.get(n)
    return b.get(key) if b else None
print("\nGEMM at GPT-2 124M shapes, ours (engine matmul) vs cblas_sgemm on the same shape:")
for n, b in res.items():
    if not n.startswith("BM_matmul/") or not n.endswith("bf16:0"): continue
    args = n[len("BM_matmul/"):].rsplit("/bf16:0", 1)[0]
    ref = val("BM_cblas_sgemm/" + args + "/bf16:0", "GFLOP/s")
    ours = b["GFLOP/s"]
    print(f"  {args:34s} ours {ours:7.1f} GFLOP/s  BLAS {ref:7.1f}  {100 * ours / ref:5.1f}%")
small = val("BM_copy_bandwidth/786432", "GB/s")
big = val("BM_copy_bandwidth/67108864", "GB/s")
print(f"\ncopy bandwidth: {small:.1f} GB/s at 3 MiB (cache-sized), {big:.1f} GB/s at 256 MiB (main memory)")
print("memory-bound kernels, GB/s of bytes touched and % of the copy bandwidth at a similar size:")
for n, b in res.items():
    if "GB/s" not in b or n.startswith("BM_copy"): continue
    ref = big if ("adamw" in n or "softmax" in n or "cross_entropy" in n) else small
    which = "256 MiB" if ref is big else "3 MiB"
    print(f"  {n:40s} {b['GB/s']:7.1f} GB/s  {100 * b['GB/s'] / ref:5.1f}% of the {which} copy")
PY
