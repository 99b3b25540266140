#!/usr/bin/env bash
# README.md shows examples/train_lora.cpp after the comment that names it;
# the two must be the same text (the example is built and run by meson test,
# the README's copy would otherwise drift from it).
set -euo pipefail
cd "$(dirname "$0")/.."
file=examples/train_lora.cpp
shown=$(awk -v marker="<!-- $file -->" '
  $0 == marker { found = 1; next }
  found && /^```cpp$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }' README.md)
if ! diff <(printf '%s\n' "$shown") "$file"; then
  echo "README.md's copy of $file differs from the file (diff above: README < > file)"
  exit 1
fi
echo "README.md shows $file as it is"
