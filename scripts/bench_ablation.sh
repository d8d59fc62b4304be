#!/usr/bin/env bash
# The standard ablation, timed end to end, typed the natural way (one job per
# run, no trainer.replicas): regbench's default launcher trains the jobs that
# share shapes as one vectorized model.
#   big:    5 dropout rates x BatchNorm off/on x 5 seeds on MNIST-1D, 50 epochs (50 runs), plus its report
#   small:  2 dropout rates x BatchNorm off/on x 3 seeds, 20 epochs (12 runs), plus its report
#   standard: one DataLoader-loop process per run (scripts/standard_run.py), sequentially, no report
# Prints the wall times and the ratios. The machine is shared and noisy, so
# ROUNDS=R (default 3) interleaved rounds: each times the regbench command,
# then its share of the standard runs right after it, and gives the ratio of
# the two (the same window); every round is printed, and their median is
# the result. The standard way is the slow part: STANDARD_RUNS=N (default 12)
# times every (runs/N)-th of its runs once, split over the rounds, and
# extrapolates, saying so.
#   scripts/bench_ablation.sh     ROUNDS=1 STANDARD_RUNS=50 scripts/bench_ablation.sh     SKIP_STANDARD=1 scripts/bench_ablation.sh
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
"$py" -m regbench.kernels --build > /dev/null 2>&1 || true  # regbench's C++ ReLU + dropout, once per machine (not timed)
echo "$("$py" -m regbench.kernels)"
now() { date +%s.%N; }
calc() { "$py" -c "print(f'{$1:.2f}')"; }
median() { "$py" -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }

# one ablation: name, epochs, dropout list, seed list
ablation() {
  local name=$1 epochs=$2 dropouts=$3 seeds=$4
  local rounds=${ROUNDS:-3} n_runs i every t0 t1 fast runs=() chosen=()
  for d in ${dropouts//,/ }; do for bn in false true; do for s in ${seeds//,/ }; do runs+=("$d $bn $s"); done; done; done
  n_runs=${#runs[@]}
  local n=${STANDARD_RUNS:-12}
  [ "$n" -gt "$n_runs" ] && n=$n_runs
  every=$(( n_runs / n ))
  for (( i = 0; i < n_runs && ${#chosen[@]} < n; i += every )); do chosen+=("${runs[$i]}"); done
  local at_end=(report.at_end=true 'report.options=[--formats,png,-q]')  # one command: the sweep writes its report
  [ "${REPORT:-at_end}" = typed ] && at_end=(report.at_end=false)       # two: the sweep, then `regbench report`
  local r fasts=() ratios=() std_total=0 std_count=0
  for (( r = 0; r < rounds; r++ )); do
    rm -rf "${out:?}/$name"
    t0=$(now)
    # shellcheck disable=SC2086
    "$regbench" train -m model.dropout=$dropouts model.batchnorm=false,true seed=$seeds trainer.epochs=$epochs \
      ${EXTRA:-} "hydra.sweep.dir=$out/$name" "${at_end[@]}" > "$out/$name.log" 2>&1
    [ "${REPORT:-at_end}" = typed ] && "$regbench" report "$out/$name" --formats png -q
    [ -f "$out/$name/report/report.html" ] || { echo "$name: no report written" >&2; exit 1; }
    t1=$(now)
    fast=$(calc "$t1 - $t0")
    fasts+=("$fast")
    local line="$name: round $(( r + 1 ))/$rounds: regbench: $n_runs runs + report in ${fast} s ($(grep "^sweep " "$out/$name.log" | tail -1))"
    if [ -z "${SKIP_STANDARD:-}" ]; then  # this round's share of the standard runs, right after it (the same window)
      local t2 t3 k=0 mine=0 per
      t2=$(now)
      for (( i = r; i < ${#chosen[@]}; i += rounds )); do
        set -- ${chosen[$i]}
        "$py" scripts/standard_run.py --dropout "$1" --batchnorm "$2" --seed "$3" --epochs "$epochs" --out "$out/standard-$name"
        mine=$(( mine + 1 ))
      done
      t3=$(now)
      if [ "$mine" -gt 0 ]; then
        per=$(calc "($t3 - $t2) / $mine")
        std_total=$(calc "$std_total + $t3 - $t2"); std_count=$(( std_count + mine ))
        ratios+=("$(calc "$per * $n_runs / $fast")")
        line="$line; standard: $mine run$([ "$mine" -gt 1 ] && echo s), ${per} s each -> $(calc "$per * $n_runs") s for $n_runs; ratio ${ratios[-1]}x"
      fi
    fi
    echo "$line"
  done
  echo "$name: regbench: $n_runs runs + report in $(median "${fasts[@]}") s (median of $rounds rounds: ${fasts[*]}; best $(printf '%s\n' "${fasts[@]}" | sort -g | head -1) s)"
  if [ "${#ratios[@]}" -gt 0 ]; then
    local what="extrapolated from $std_count of its runs"
    [ "$std_count" -eq "$n_runs" ] && what="all its runs"
    echo "$name: standard: $(calc "$std_total * $n_runs / $std_count") s for $n_runs runs ($what, one process per run, DataLoader loop)"
    echo "$name: ratio: regbench is $(median "${ratios[@]}")x faster end to end (median of $rounds interleaved rounds: ${ratios[*]}; each round: the regbench command against the standard runs right after it)"
  fi
}

[ "${ONLY:-big}" != small ] && ablation big 50 0,0.1,0.2,0.3,0.5 0,1,2,3,4
[ "${ONLY:-small}" != big ] && ablation small 20 0,0.5 0,1,2
exit 0
