#!/usr/bin/env bash
# The standard ablation, timed end to end, typed the natural way (one job per
# run, no trainer.replicas): regbench's default launcher trains the jobs that
# share shapes as one vectorized model.
#   big:    5 dropout rates x BatchNorm off/on x 5 seeds on MNIST-1D, 50 epochs (50 runs), plus its report
#   small:  2 dropout rates x BatchNorm off/on x 3 seeds, 20 epochs (12 runs), plus its report
#   standard: one DataLoader-loop process per run (scripts/standard_run.py), sequentially, no report
# Prints the wall times and the ratios. The standard way is the slow part:
# STANDARD_RUNS=N (default 10) times every (runs/N)-th of its runs and
# extrapolates, saying so.
#   scripts/bench_ablation.sh     STANDARD_RUNS=50 scripts/bench_ablation.sh     SKIP_STANDARD=1 scripts/bench_ablation.sh
#   ONLY=small scripts/bench_ablation.sh     EXTRA='hydra/launcher=joblib hydra.launcher.n_jobs=2' scripts/bench_ablation.sh
# The report: written by the sweep as its jobs end (report.at_end=true, one
# command); REPORT=typed times the two commands instead (`regbench train -m
# ...`, then `regbench report`), the same report.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python; regbench=regbench
[ -x .venv/bin/python ] && py=.venv/bin/python && regbench=.venv/bin/regbench
out=${OUT:-outputs/bench_ablation}
rm -rf "$out" && mkdir -p "$out"
"$py" -c "import sys; sys.path.insert(0, 'scripts'); from bench import config; from regbench.data import build_dataset; build_dataset(config(['data=mnist1d']).data)"  # cache MNIST-1D (not timed)
now() { date +%s.%N; }
calc() { "$py" -c "print(f'{$1:.2f}')"; }

# one ablation: name, epochs, dropout list, seed list
ablation() {
  local name=$1 epochs=$2 dropouts=$3 seeds=$4
  local t0 t1 fast n_runs
  n_runs=$(( $(echo "$dropouts" | tr ',' '\n' | wc -l) * 2 * $(echo "$seeds" | tr ',' '\n' | wc -l) ))
  t0=$(now)
  # shellcheck disable=SC2086
  local at_end=(report.at_end=true 'report.options=[--formats,png,-q]')  # one command: the sweep writes its report
  [ "${REPORT:-at_end}" = typed ] && at_end=(report.at_end=false)       # two: the sweep, then `regbench report`
  "$regbench" train -m model.dropout=$dropouts model.batchnorm=false,true seed=$seeds trainer.epochs=$epochs \
    ${EXTRA:-} "hydra.sweep.dir=$out/$name" "${at_end[@]}" > "$out/$name.log" 2>&1
  [ "${REPORT:-at_end}" = typed ] && "$regbench" report "$out/$name" --formats png -q
  [ -f "$out/$name/report/report.html" ] || { echo "$name: no report written" >&2; exit 1; }
  t1=$(now)
  fast=$(calc "$t1 - $t0")
  echo "$name: regbench: $n_runs runs + report in ${fast} s ($(grep "^sweep " "$out/$name.log" | tail -1))"
  if [ -z "${SKIP_STANDARD:-}" ]; then
    local n=${STANDARD_RUNS:-10} i=0 done_runs=0 every t2 t3 slow measured
    [ "$n" -gt "$n_runs" ] && n=$n_runs
    every=$(( n_runs / n ))
    t2=$(now)
    for d in ${dropouts//,/ }; do for bn in false true; do for s in ${seeds//,/ }; do
      if [ $(( i % every )) -eq 0 ] && [ $done_runs -lt "$n" ]; then
        "$py" scripts/standard_run.py --dropout "$d" --batchnorm $bn --seed "$s" --epochs "$epochs" --out "$out/standard-$name"
        done_runs=$(( done_runs + 1 ))
      fi
      i=$(( i + 1 ))
    done; done; done
    t3=$(now)
    measured=$(calc "$t3 - $t2")
    slow=$(calc "($t3 - $t2) * $n_runs / $done_runs")
    if [ "$done_runs" -eq "$n_runs" ]; then
      echo "$name: standard: $n_runs runs in ${slow} s (one process per run, DataLoader loop)"
    else
      echo "$name: standard: $done_runs of $n_runs runs in ${measured} s -> ${slow} s for $n_runs, extrapolated (one process per run, DataLoader loop)"
    fi
    echo "$name: ratio: regbench is $(calc "$slow / $fast")x faster end to end"
  fi
}

[ "${ONLY:-big}" != small ] && ablation big 50 0,0.1,0.2,0.3,0.5 0,1,2,3,4
[ "${ONLY:-small}" != big ] && ablation small 20 0,0.5 0,1,2
exit 0
