#!/usr/bin/env bash
# Reproduces the README's "Results on real data": the three studies with CPU budgets on the
# bundled all-MiniLM-L6-v2 and ../shared/data, their exports under docs/results/, and the STS-B
# reference runs (zero-shot, sentence-transformers' default recipe, the best TPE trial re-run and
# scored on the full dev/test files). Every step is resumable: run it again after a stop.
# Usage: bash scripts/real_results.sh [storage URL]   (default sqlite:///runs/results.db)
set -euo pipefail
cd "$(dirname "$0")/.."
STORAGE="${1:-sqlite:///$(pwd)/runs/results.db}"
WORKERS="${WORKERS:-2}"
mkdir -p runs docs/results
step() { echo "== $* ($(date -u +%H:%M:%S))" >&2; }
timed() { local start=$SECONDS; "$@"; echo "   wall time $((SECONDS - start)) s: $*" >&2; }

for study in sts-cpu sts-grid-cpu senteval-grid-cpu; do
  step "optimize $study"
  timed python -m tuner optimize --study "$study" --storage "$STORAGE" --workers "$WORKERS"
  step "export $study"
  timed python -m tuner export --study "$study" --storage "$STORAGE" --out "docs/results/$study"
done

step "STS-B references (full dev/test files)"
timed python -m tuner evaluate --datasets stsb --split dev --json > runs/stsb-zero-shot-dev.json
timed python -m tuner evaluate --datasets stsb --split test --json > runs/stsb-zero-shot-test.json
# sentence-transformers' default recipe: CoSENT (scale 20), lr 2e-5, batch 32, 1 epoch, 10% warmup, mean pooling
timed python -m tuner finetune --model all-MiniLM-L6-v2 --train stsb --weights cosent=1 --taus cosent=20 \
  --pooling avg --lr 2e-5 --epochs 1 --batch-size 32 --warmup-ratio 0.1 --seed 42 --no-progress --json \
  > runs/stsb-st-default.json
# the best sts-cpu trial, re-run by the command its export wrote, scored on the full files
best=$(python -c "import json; print(' '.join(json.load(open('docs/results/sts-cpu/best_finetune.json'))['argv'][3:]))")
timed python -m tuner $best --no-progress --json > runs/stsb-best-trial.json
