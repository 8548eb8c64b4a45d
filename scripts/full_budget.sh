#!/usr/bin/env bash
# Full-budget STS-B answer for all-MiniLM-L6-v2 (issue #23, docs/results.md "Full budget"):
#   1. the cheap search (studies/stsb-search.toml: 20 TPE trials, 1,200 pairs, 2 epochs, full dev/test);
#   2. confirm: its top 5 configurations x seeds 42,43,44 on all 5,749 training pairs, beside zero-shot
#      and sentence-transformers' STS-B example recipe, on the full dev/test files.
# Both studies live in docs/results/stsb-full/study.db (committed: a later session resumes from it).
# Each step is resumable: run the script again after an interruption. Wall/CPU time of each step goes
# to docs/results/stsb-full/time-<step>.txt (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results/stsb-full
STORAGE="sqlite:///$OUT/study.db"
mkdir -p "$OUT"
timed() { local name=$1; shift; /usr/bin/time -f "$name: wall %e s, user %U s, sys %S s, max RSS %M KB" -o "$OUT/time-$name.txt" "$@"; }
timed search python -m tuner optimize --study stsb-search --storage "$STORAGE" --no-artifacts --no-progress
timed confirm python -m tuner confirm --study stsb-search --storage "$STORAGE" --top 5 --seeds 42,43,44 \
    --out "$OUT/confirm" --json > "$OUT/confirm.json.tmp"
mv "$OUT/confirm.json.tmp" "$OUT/confirm-report.json"
python -m tuner export --study stsb-search --storage "$STORAGE" --out "$OUT/search"
