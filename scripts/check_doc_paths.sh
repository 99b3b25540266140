#!/usr/bin/env bash
# Every repository path a document names in backticks (`engine/cpu/matmul.cpp`,
# `train/data/`) must exist: the walkthrough, DESIGN.md and the README are
# maps of the tree, and a map that names a file the tree no longer has misleads.
#   scripts/check_doc_paths.sh [FILE.md ...]   (default: the maps; docs/benchmarks.md is a log and may name what is gone)
set -euo pipefail
cd "$(dirname "$0")/.."
docs=("$@")
((${#docs[@]})) || docs=(README.md docs/DESIGN.md docs/walkthrough.md docs/study.md)
missing=0
checked=0
for doc in "${docs[@]}"; do
  # `path` spans that look like a file or folder of the repository: a relative
  # path with a slash, ending in a source file's extension or a slash; not
  # build outputs, patterns or placeholders.
  while IFS=: read -r line path; do
    path=${path%%[:#(]*}  # path:line, path#anchor, path(...)
    checked=$((checked + 1))
    if [[ ! -e $path ]]; then
      echo "$doc:$line: \`$path\` does not exist"
      missing=$((missing + 1))
    fi
  done < <(grep -no '`[^` ]*`' "$doc" | sed 's/`//g' | grep -E ':[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]*(\.(cpp|h|cu|cuh|sh|py|md|json|txt|build|jsonl|safetensors)|/)$' \
             | grep -Ev ':(build[A-Za-z0-9_-]*|compare-out|study-out|out)/' || true)
done
echo "$checked paths checked, $missing missing"
((missing == 0))
