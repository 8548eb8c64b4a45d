#!/usr/bin/env bash
# Does the answer transfer between STS-B and SICK-R? (issue #23, docs/results.md "Full budget")
# Run after `bash scripts/full_budget.sh stsb` and `... sickr`. Each search's answer (its top
# configuration by search dev, as `confirm --top 1` takes it) is trained and scored on the other
# dataset at full budget (seeds 42, 43, 44; all training pairs; full dev/test files), beside that
# dataset's zero-shot row, then compared, paired over seeds x test items, with the other dataset's
# own confirmed answer and with the recipe there (st-example; scripts/cross_confirm.py, Holm over the
# two). The confirm studies (<search>-confirm-on-<set>)
# live beside their searches, so an interrupted run resumes: run the script again.
#   bash scripts/full_budget_cross.sh        # CPU: about 30 CPU-minutes (6 cells)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results/cross-confirm
mkdir -p "$OUT"
STSB="sqlite:///docs/results/stsb-full/study.db"
SICKR="sqlite:///docs/results/sickr-full/study.db"
timed() { local name=$1; shift; /usr/bin/time -a -f "$name: wall %e s, user %U s, sys %S s, max RSS %M KB" -o "$OUT/time-$name.txt" "$@"; }
top1() {  # the label `confirm --top 1` gives the search's answer in the search's own confirm study
    python -c "import json, sys; r = json.load(open(sys.argv[1])); print(max(r['configs'], key=lambda c: c['parent_dev'])['label'])" "$1"
}
timed stsb-on-sickr python -m tuner confirm --study stsb-search --storage "$STSB" --top 1 --seeds 42,43,44 \
    --on sickr --baselines zero-shot --out "$OUT/stsb-search-on-sickr"
timed sickr-on-stsb python -m tuner confirm --study sickr-search --storage "$SICKR" --top 1 --seeds 42,43,44 \
    --on stsb --baselines zero-shot --out "$OUT/sickr-search-on-stsb"
STSB_TOP=$(top1 docs/results/stsb-full/confirm-report.json)
SICKR_TOP=$(top1 docs/results/sickr-full/confirm-report.json)
python scripts/cross_confirm.py --dataset sickr \
    --a "$STSB" stsb-search-confirm-on-sickr "$STSB_TOP" \
    --b "$SICKR" sickr-search-confirm "$SICKR_TOP" --b "$SICKR" sickr-search-confirm st-example \
    --out "$OUT/stsb-answer-on-sickr"
python scripts/cross_confirm.py --dataset stsb \
    --a "$SICKR" sickr-search-confirm-on-stsb "$SICKR_TOP" \
    --b "$STSB" stsb-search-confirm "$STSB_TOP" --b "$STSB" stsb-search-confirm st-example \
    --out "$OUT/sickr-answer-on-stsb"
