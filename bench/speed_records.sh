#!/usr/bin/env bash
# The speed rows of bench/README.md, each written to the committed record the row cites
# (bench/results/*.jsonl: one JSON object per line, the environment included). One thread per run,
# so another job on the other core disturbs the ratios least; each script interleaves tuner and the
# reference in one process and reports medians, so the ratios hold on a shared machine even where
# the absolute rates do not.
#   bash bench/speed_records.sh            # about 15 minutes on this 2-core machine
set -euo pipefail
cd "$(dirname "$0")/.."
R=bench/results
run() { local out=$1; shift; echo "== $out: $*" >&2; python "$@" > "$R/$out.jsonl"; }
run train_throughput_b32_t1            bench/train_throughput.py --threads 1 --st-fused
run train_throughput_epoch_prefix_t1   bench/train_throughput.py --threads 1 --epoch-prefix
run encode_throughput_b64_t1           bench/encode_throughput.py --threads 1
run trial_overhead_gc_freeze           bench/trial_overhead.py --threads 1 --trials 4 --gc-freeze
