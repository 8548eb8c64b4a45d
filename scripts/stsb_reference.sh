#!/usr/bin/env bash
# STS-B reference runs on the full dev/test files, each written as JSON under docs/results/stsb-reference/:
# zero-shot all-MiniLM-L6-v2 (its own mean pooling), and sentence-transformers' default recipe
# (CoSENT scale 20, lr 2e-5, batch 32, 1 epoch, 10% warmup, all 5,749 training pairs) with 3 seeds.
# Usage: bash scripts/stsb_reference.sh [zero-shot|default-recipe|all]
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/results/stsb-reference
mkdir -p "$out"
what="${1:-all}"
if [[ "$what" == zero-shot || "$what" == all ]]; then
  python -m tuner evaluate --model all-MiniLM-L6-v2 --datasets stsb --split dev --json > "$out/zero-shot-dev.json"
  python -m tuner evaluate --model all-MiniLM-L6-v2 --datasets stsb --split test --json > "$out/zero-shot-test.json"
fi
if [[ "$what" == default-recipe || "$what" == all ]]; then
  python -m tuner finetune --model all-MiniLM-L6-v2 --train stsb --weights cosent=1 --taus cosent=20 \
    --pooling avg --lr 2e-5 --epochs 1 --batch-size 32 --warmup-ratio 0.1 --seeds 42,43,44 --no-progress --json \
    > "$out/default-recipe.json"
fi
