#!/usr/bin/env bash
# Run a stored ablation (conf/experiment/NAME.yaml) and report it.
#   scripts/ablate.sh NAME [OVERRIDE...]    e.g. scripts/ablate.sh dropout_vs_bn hydra/launcher=joblib
# Re-running the same command finishes an interrupted sweep (done jobs are skipped).
# The report is written even when some jobs failed; the exit code then says so.
# The sweep goes to outputs/sweeps/NAME (the experiment's hydra.sweep.dir), or to
# the folder a hydra.sweep.dir=DIR override names; a relative DIR is taken from
# the repository root, where this script runs regbench. The report follows it.
set -uo pipefail
name=${1:?usage: scripts/ablate.sh NAME [OVERRIDE...]}
shift
cd "$(dirname "$0")/.."
regbench=regbench
[ -x .venv/bin/regbench ] && regbench=.venv/bin/regbench
sweep_dir="outputs/sweeps/$name"
for arg in "$@"; do   # the last one counts, as in Hydra
  case "$arg" in
    hydra.sweep.dir=*|+hydra.sweep.dir=*|++hydra.sweep.dir=*)
      sweep_dir=${arg#*hydra.sweep.dir=}
      case "$sweep_dir" in   # a value quoted for Hydra: 'my dir' or "my dir"
        \'*\') sweep_dir=${sweep_dir:1:${#sweep_dir}-2} ;;
        \"*\") sweep_dir=${sweep_dir:1:${#sweep_dir}-2} ;;
      esac ;;
  esac
done
$regbench train -m "+experiment=$name" "$@"
status=$?
[ "$status" -eq 130 ] && exit 130   # interrupted: run the same command again to finish
[ "$status" -eq 2 ] && exit 2       # refused before anything ran (the error says why): nothing to report
$regbench report "$sweep_dir" || status=$?
exit "$status"
