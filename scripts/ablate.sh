#!/usr/bin/env bash
# Run a stored ablation (conf/experiment/NAME.yaml) and report it.
#   scripts/ablate.sh NAME [OVERRIDE...]    e.g. scripts/ablate.sh dropout_vs_bn hydra/launcher=joblib
# Re-running the same command finishes an interrupted sweep (done jobs are skipped).
# The report is written even when some jobs failed; the exit code then says so.
set -uo pipefail
name=${1:?usage: scripts/ablate.sh NAME [OVERRIDE...]}
shift
cd "$(dirname "$0")/.."
regbench=regbench
[ -x .venv/bin/regbench ] && regbench=.venv/bin/regbench
$regbench train -m "+experiment=$name" "$@"
status=$?
[ "$status" -eq 130 ] && exit 130   # interrupted: run the same command again to finish
$regbench report "outputs/sweeps/$name" || status=$?
exit "$status"
