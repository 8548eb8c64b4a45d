#!/usr/bin/env bash
# Reproduces docs/results.md ("Results on real data"): the three studies with CPU budgets on the
# bundled all-MiniLM-L6-v2 and ../shared/data, their exports under docs/results/, and the STS-B
# reference runs (zero-shot, sentence-transformers' default recipe, the best TPE trial re-run with
# three seeds and scored on the full dev/test files), all written under docs/results/. Every step is resumable: run it again after a stop.
# Usage: bash scripts/real_results.sh [storage URL]   (default sqlite:///runs/results.db)
set -euo pipefail
cd "$(dirname "$0")/.."
STORAGE="${1:-sqlite:///$(pwd)/runs/results.db}"
WORKERS="${WORKERS:-2}"
mkdir -p runs docs/results
step() { echo "== $* ($(date -u +%H:%M:%S))" >&2; }
timed() { local start=$SECONDS; "$@"; echo "   wall time $((SECONDS - start)) s: $*" >&2; }

# the CPU grids, then the same grids with 3 seeds per cell under the seed and the disjoint protocol
# then the NLI-transfer grid and the two-model grid (MiniLM + mpnet)
for study in sts-cpu sts-grid-cpu senteval-grid-cpu \
             sts-grid-cpu-seed-r3 sts-grid-cpu-disjoint-r3 senteval-grid-cpu-seed-r3 senteval-grid-cpu-disjoint-r3 \
             nli-grid-cpu sts-grid-cpu-models sts-grid-cpu-decoder sts-lora-cpu; do
  step "optimize $study"
  timed python -m tuner optimize --study "$study" --storage "$STORAGE" --workers "$WORKERS"
  step "export $study"
  timed python -m tuner export --study "$study" --storage "$STORAGE" --out "docs/results/$study"
done

step "sts-cpu: which combinations were tried; the best trial re-run with 3 seeds on the full STS-B files"
timed python scripts/combination_counts.py --study sts-cpu --storage "$STORAGE" --out docs/results/sts-cpu/combinations.json
timed python scripts/rerun_best.py docs/results/sts-cpu --seeds 42,43,44

step "the repeated grids: gains under the seed and the disjoint protocol"
for grid in sts-grid-cpu senteval-grid-cpu; do
  timed python scripts/compare_protocols.py "docs/results/$grid-seed-r3" "docs/results/$grid-disjoint-r3" \
    --out "docs/results/$grid-protocols.json"
done

step "train/test overlap of every built-in under every protocol"
timed python scripts/overlap_table.py --out docs/results

step "STS-B references (full dev/test files): zero-shot, sentence-transformers' default recipe (3 seeds)"
timed bash scripts/stsb_reference.sh all

step "search efficiency: samplers, pruners, warm starts on the real objective (bench/README.md)"
timed python bench/hpo_efficiency.py --storage "$STORAGE" --n-trials 16 --eval-pairs 150 --train-pairs 128 --eval-every 2 \
  --seeds "${HPO_SEEDS:-0,1,2}"

step "decoder LLM (SmolLM2-135M): zero-shot readings, the LoRA study's before/after, LoRA vs full fine-tuning, RSS"
timed python scripts/decoder_zero_shot.py --out docs/results/smollm2-zero-shot.json --resume
timed python scripts/study_before_after.py --study sts-lora-cpu --storage "$STORAGE" --out docs/results/sts-lora-cpu/before_after
timed python scripts/rerun_best.py docs/results/sts-lora-cpu --seeds 42
for split in dev test; do
  timed python scripts/decoder_zero_shot.py --split "$split" --datasets stsb --variants last+prompteol --max-seq-length 64 \
    --out "docs/results/sts-lora-cpu/zero_shot_$split.json"
done
timed python bench/lora_vs_full.py --out bench/results/lora_vs_full.json
python bench/rss_trials.py --model smollm2-135m --trials 10 --pooling last --lora-r 8 --threads 1 --malloc-trim \
  --prompt 'This sentence : "{text}" means in one word:"' --train-pairs 32 --eval-pairs 32 > bench/results/rss_trials_smollm2_lora.jsonl

step "README and docs/*.md tables from the records above"
python scripts/readme_tables.py
