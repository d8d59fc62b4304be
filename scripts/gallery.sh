#!/usr/bin/env bash
# Reproduce docs/gallery/ from a fresh clone: the five stored ablations
# (conf/experiment/) on MNIST-1D, 5 seeds per setting, each with its report;
# the reports' Markdown and PNG figures are copied to docs/gallery/<name>/.
#   scripts/gallery.sh                 # all five (several minutes on 2 cores)
#   scripts/gallery.sh dropout_vs_bn   # just one
set -euo pipefail
cd "$(dirname "$0")/.."
regbench=regbench
[ -x .venv/bin/regbench ] && regbench=.venv/bin/regbench
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(dropout_rate dropout_vs_bn bn_dropout_position label_noise_dropout train_size_dropout)
for name in "${names[@]}"; do
  start=$(date +%s)
  rm -rf "outputs/sweeps/$name" && mkdir -p outputs/sweeps   # the gallery is made from scratch
  "$regbench" train -m "+experiment=$name" > "outputs/sweeps/$name.log" 2>&1 \
    || { tail -5 "outputs/sweeps/$name.log"; exit 1; }
  grep "^sweep " "outputs/sweeps/$name.log" | tail -1
  "$regbench" report "outputs/sweeps/$name" --formats png -q
  rm -rf "docs/gallery/$name" && mkdir -p "docs/gallery/$name"
  cp "outputs/sweeps/$name/report/report.md" "outputs/sweeps/$name/report/cells.csv" "outputs/sweeps/$name/report/effects.csv" "docs/gallery/$name/"
  cp -r "outputs/sweeps/$name/report/figures" "docs/gallery/$name/figures"
  echo "$name: $(( $(date +%s) - start )) s"
done
