#!/usr/bin/env bash
# Every fusion method vs the unimodal baselines on AV-Digits and the three synthetic interaction regimes.
# Writes benchmarks/results/compare_<name>.txt (the printed table) and .csv (summary).
#   bash benchmarks/compare_all.sh [SEEDS]     (NAMES="..." to run a subset of the configs)
set -euo pipefail
seeds="${1:-3}"
for name in ${NAMES:-av_digits_concat interactions_redundancy interactions_uniqueness interactions_synergy}; do
  out="runs/compare_${name}"
  polymodal compare "configs/${name}.yaml" --fusions all --seeds "$seeds" --out "$out" \
    | tee "benchmarks/results/compare_${name}.txt"
  cp "$out/summary.csv" "benchmarks/results/compare_${name}.csv"
done
