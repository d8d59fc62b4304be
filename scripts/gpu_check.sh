#!/usr/bin/env bash
# The CUDA checks, for a machine with a GPU (nothing here runs without one):
#   1. the CUDA tests (tests/test_cuda.py, marked `cuda`, skipped elsewhere):
#      a run, resume, fused jobs equal to the job alone, and no host sync inside
#      a training epoch (torch.cuda.set_sync_debug_mode("error"));
#   2. throughput: standard DataLoader loop vs single run vs replicas vs fused
#      group, one process, best of interleaved rounds (scripts/bench.py);
#   3. a 500-run fused sweep on MNIST-1D (5 dropout rates x BN off/on x 50
#      seeds, 20 epochs) plus its report, timed.
# Prints the GPU's name first. PY=python3 scripts/gpu_check.sh to pick the
# interpreter; OUT=dir for the sweep (default outputs/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-python}
[ -z "${PY:-}" ] && [ -x .venv/bin/python ] && py=.venv/bin/python
out=${OUT:-outputs/gpu_check}
"$py" - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check.sh: torch sees no CUDA GPU here"
print(f"gpu: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
echo "== 1. CUDA tests"
"$py" -m pytest -q -p no:xdist -m cuda tests/test_cuda.py
echo "== 2. throughput (s per seed-epoch; ratios measured in one process)"
"$py" scripts/bench.py --device cuda --only mnist1d --replicas 25 100 --fused 100 --epochs 3
echo "== 3. a 500-run fused sweep + report"
rm -rf "$out" && mkdir -p "$out"
t0=$(date +%s.%N)
"$py" -m regbench train -m model.dropout=0,0.1,0.2,0.3,0.5 model.batchnorm=false,true 'seed=range(0,50)' \
  trainer.epochs=20 device=cuda "hydra.sweep.dir=$out/sweep" > "$out/sweep.log" 2>&1 || { tail -20 "$out/sweep.log"; exit 1; }
t1=$(date +%s.%N)
"$py" -m regbench report "$out/sweep" --formats png -q
t2=$(date +%s.%N)
grep "vectorized group" "$out/sweep.log" | head -1
grep "^sweep " "$out/sweep.log" | tail -1
"$py" -c "print(f'500 runs x 20 epochs: train {$t1 - $t0:.1f} s, report {$t2 - $t1:.1f} s, total {$t2 - $t0:.1f} s')"
