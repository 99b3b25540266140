#!/usr/bin/env bash
# Fuzzes every reader of a user's file (tests/fuzz/): builds the fuzz targets
# in build-fuzz (clang with -Dfuzz=enabled: libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer; only the targets and the libraries they use) and
# runs each for SECONDS (default 8) from its corpus in tests/fuzz/corpus/<target>/.
# A crash, a hang (30 s on one input), a leak or a sanitizer report fails the
# run; the input that did it is left in build-fuzz/findings/. New inputs the
# fuzzer finds go to a temporary folder, not into the repository's corpus.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 fuzz_pairs
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-8}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(ls tests/fuzz/corpus)
fi

scripts/setup.sh fuzz
if [ ! -f build-fuzz/build.ninja ]; then
  # -O1, as libFuzzer's documentation builds, and line tables only (-g1):
  # quicker to compile than -O2 -g, and a report still names file:line. At
  # -O1 clang runs no loop vectorizer, so it would warn at every `omp simd`.
  CXX=clang++ meson setup build-fuzz -Dfuzz=enabled -Doptimization=1 -Ddebug=false -Dcpp_args='-g1 -Wno-pass-failed' \
    -Dcuda=disabled -Dbenchmarks=disabled -Dmpi=disabled
fi
ninja -C build-fuzz "${targets[@]/#/tests/fuzz/}"

findings=build-fuzz/findings
mkdir -p "$findings"
export MP_DATA=$PWD/data MP_FIXTURES=$PWD/tests/fixtures
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
failed=()
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  log=$findings/$t.log
  if build-fuzz/tests/fuzz/"$t" "$work" tests/fuzz/corpus/"$t" -max_total_time="$seconds" -timeout=30 \
      -rss_limit_mb=4096 -artifact_prefix="$findings/$t-" -print_final_stats=1 >"$log" 2>&1; then
    # The last status line: "#<inputs run> ... cov: <edges> ft: <features> corp: ..."
    echo "$t: $(grep -E '^#[0-9]+' "$log" | tail -1)"
  else
    failed+=("$t")
    echo "$t: FAILED (the log: $log)"
    tail -n 40 "$log"
  fi
  rm -rf "$work"
done
if ((${#failed[@]})); then
  echo "fuzz: findings in ${failed[*]}; the inputs are in $findings/" >&2
  exit 1
fi
