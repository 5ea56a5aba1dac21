#!/usr/bin/env bash
# Prints plugin-load percentiles against the raw dlopen+dlsym+dlclose baseline measured in
# the same run, from package-benchmark's histogramPercentiles export in directory $1.
set -euo pipefail
dir=${1:?usage: load-ratios.sh DIR}
raw=$(ls "$dir"/*Baseline:_raw_dlopen*wallClock*.tsv)
ours=$(ls "$dir"/*Plugboard_load*wallClock*.tsv)
printf '| percentile | raw dlopen+dlsym+dlclose (µs) | Plugboard load (µs) | ratio |\n|---:|---:|---:|---:|\n'
for p in 50 90 95 99; do
  r=$(awk -F'\t' -v p="$p" '$1==p {print $2}' "$raw")
  o=$(awk -F'\t' -v p="$p" '$1==p {print $2}' "$ours")
  awk -v p="$p" -v r="$r" -v o="$o" 'BEGIN { printf "| p%s | %s | %s | %.2f× |\n", p, r, o, o / r }'
done
