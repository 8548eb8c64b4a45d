#!/usr/bin/env bash
# Full-budget answer for all-MiniLM-L6-v2 on one STS set (issue #23, docs/results.md "Full budget"):
#   bash scripts/full_budget.sh stsb     # or: sickr
#   bash scripts/full_budget.sh stsb stsb-search-full   # another search study: docs/results/<study>/
#   1. the cheap search (studies/<set>-search.toml: 20 TPE trials, 1,200 pairs, 2 epochs, full dev/test);
#   2. confirm: its top 5 configurations x seeds 42,43,44 on the whole training file, beside zero-shot
#      and sentence-transformers' STS-B example recipe, on the full dev/test files.
# Both studies live in docs/results/<set>-full/study.db (committed: a later session resumes from it).
# Each step is resumable: run the script again after an interruption. Wall/CPU time of each step goes
# to docs/results/<set>-full/time-<step>.txt (GNU time); a resumed step appends a line.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:?usage: bash scripts/full_budget.sh stsb|sickr [STUDY]}
STUDY=${2:-$SET-search}
OUT="docs/results/${2:-$SET-full}"
STORAGE="sqlite:///$OUT/study.db"
mkdir -p "$OUT"
timed() { local name=$1; shift; /usr/bin/time -a -f "$name: wall %e s, user %U s, sys %S s, max RSS %M KB" -o "$OUT/time-$name.txt" "$@"; }
timed search python -m tuner optimize --study "$STUDY" --storage "$STORAGE" --no-artifacts --no-progress
python -m tuner export --study "$STUDY" --storage "$STORAGE" --out "$OUT/search"
timed confirm python -m tuner confirm --study "$STUDY" --storage "$STORAGE" --top 5 --seeds 42,43,44 \
    --out "$OUT/confirm" --json > "$OUT/confirm.json.tmp"
mv "$OUT/confirm.json.tmp" "$OUT/confirm-report.json"
