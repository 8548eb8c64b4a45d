#!/usr/bin/env bash
# Full-budget answer for all-MiniLM-L6-v2 on one STS set (issue #23, docs/results.md "Full budget"):
#   bash scripts/full_budget.sh stsb     # or: sickr
#   bash scripts/full_budget.sh stsb stsb-search-full   # another search study: docs/results/<study>/
#   1. the cheap search (studies/<set>-search.toml: 20 TPE trials, 1,200 pairs, 2 epochs, full dev/test);
#   2. confirm: its top 5 configurations x seeds 42,43,44 on the whole training file, beside zero-shot
#      and sentence-transformers' STS-B example recipe, on the full dev/test files.
# Both studies live in docs/results/<set>-full/study.db (committed: a later session resumes from it).
# With another search study, the recipe is not trained again: its confirm runs beside zero-shot only, and
# its best configuration (by confirmed dev) is compared, paired over seeds x test items, with the recipe
# and the cheap search's best as docs/results/<set>-full/ confirmed them (scripts/cross_confirm.py).
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
BASELINES=zero-shot,st-example
[ -n "${2:-}" ] && BASELINES=zero-shot
timed confirm python -m tuner confirm --study "$STUDY" --storage "$STORAGE" --top 5 --seeds 42,43,44 \
    --baselines "$BASELINES" --out "$OUT/confirm" --json > "$OUT/confirm.json.tmp"
mv "$OUT/confirm.json.tmp" "$OUT/confirm-report.json"
if [ -n "${2:-}" ]; then
    first() { python -c "import json, sys; print(json.load(open(sys.argv[1]))['configs'][0]['label'])" "$1"; }
    CHEAP="sqlite:///docs/results/$SET-full/study.db"
    python scripts/cross_confirm.py --dataset "$SET" \
        --a "$STORAGE" "$STUDY-confirm" "$(first "$OUT/confirm-report.json")" \
        --b "$CHEAP" "$SET-search-confirm" st-example \
        --b "$CHEAP" "$SET-search-confirm" "$(first "docs/results/$SET-full/confirm-report.json")" \
        --out "$OUT/versus-recipe"
fi
