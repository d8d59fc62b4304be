#!/usr/bin/env bash
# The 50-run ablation, timed end to end: 5 dropout rates x BatchNorm off/on x 5
# seeds on MNIST-1D, 50 epochs each, plus its report.
#   regbench:  10 jobs x 5 vectorized seeds (trainer.replicas=5), 2 joblib workers, then `regbench report`
#   standard:  one DataLoader-loop process per run (scripts/standard_run.py), sequentially, no report
# Prints both wall times and their ratio. The standard way is the slow part (about
# 45 s a run here): STANDARD_RUNS=N times every (50/N)-th of its runs and
# extrapolates to 50, saying so.
#   scripts/bench_ablation.sh     STANDARD_RUNS=10 scripts/bench_ablation.sh     SKIP_STANDARD=1 scripts/bench_ablation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=python; regbench=regbench
[ -x .venv/bin/python ] && py=.venv/bin/python && regbench=.venv/bin/regbench
out=${OUT:-outputs/bench_ablation}
rm -rf "$out" && mkdir -p "$out"
"$py" -c "import sys; sys.path.insert(0, 'scripts'); from bench import config; from regbench.data import build_dataset; build_dataset(config(['data=mnist1d']).data)"  # cache MNIST-1D (not timed)
now() { date +%s.%N; }
calc() { "$py" -c "print(f'{$1:.2f}')"; }

t0=$(now)
"$regbench" train -m model.dropout=0,0.1,0.2,0.3,0.5 model.batchnorm=false,true trainer.replicas=5 \
  hydra/launcher=joblib hydra.launcher.n_jobs=2 "hydra.sweep.dir=$out/regbench" > "$out/regbench.log" 2>&1
"$regbench" report "$out/regbench" --formats png -q
t1=$(now)
fast=$(calc "$t1 - $t0")
echo "regbench: 50 runs + report in ${fast} s ($(tail -1 "$out/regbench.log"))"

if [ -z "${SKIP_STANDARD:-}" ]; then
  n=${STANDARD_RUNS:-50}
  every=$(( 50 / n ))
  i=0; done_runs=0
  t2=$(now)
  for d in 0 0.1 0.2 0.3 0.5; do for bn in false true; do for s in 0 1 2 3 4; do
    if [ $(( i % every )) -eq 0 ] && [ $done_runs -lt "$n" ]; then
      "$py" scripts/standard_run.py --dropout $d --batchnorm $bn --seed $s --epochs 50 --out "$out/standard"
      done_runs=$(( done_runs + 1 ))
    fi
    i=$(( i + 1 ))
  done; done; done
  t3=$(now)
  measured=$(calc "$t3 - $t2")
  slow=$(calc "($t3 - $t2) * 50 / $done_runs")
  if [ "$done_runs" -eq 50 ]; then
    echo "standard: 50 runs in ${slow} s (one process per run, DataLoader loop)"
  else
    echo "standard: $done_runs of 50 runs in ${measured} s -> ${slow} s for 50, extrapolated (one process per run, DataLoader loop)"
  fi
  echo "ratio: regbench is $(calc "$slow / $fast")x faster end to end"
fi
