#!/usr/bin/env bash
# all-mpnet-base-v2 on STS-B at full budget (issue #23, docs/results.md "Full budget"): MiniLM's
# best configuration from the STS-B search (studies/stsb-search.toml) and sentence-transformers'
# STS-B example recipe, both trained from all-mpnet-base-v2 on all 5,749 training pairs with seeds
# 42, 43, 44, beside mpnet's zero-shot row; full dev/test files. The study
# (stsb-search-confirm-with-all-mpnet-base-v2) lives beside the search in
# docs/results/stsb-full/study.db, so an interrupted run resumes: run the script again.
#   bash scripts/full_budget_mpnet.sh            # CPU: about 8.5 CPU-hours (measured: ~29 min per trial-15 cell, ~140 per recipe cell)
#   bash scripts/full_budget_mpnet.sh cuda       # a GPU: minutes
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cpu}
OUT=docs/results/stsb-full
STORAGE="sqlite:///$OUT/study.db"
/usr/bin/time -a -f "confirm-mpnet ($DEVICE): wall %e s, user %U s, sys %S s, max RSS %M KB" -o "$OUT/time-confirm-mpnet.txt" \
    python -m tuner confirm --study stsb-search --storage "$STORAGE" --top 1 --seeds 42,43,44 \
    --model all-mpnet-base-v2 --device "$DEVICE" --out "$OUT/confirm-mpnet"
