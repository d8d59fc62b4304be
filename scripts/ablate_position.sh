#!/usr/bin/env bash
# Stored ablation conf/experiment/bn_dropout_position.yaml (its header states the question): sweep + report.
# Extra overrides pass through, e.g. hydra/launcher=joblib hydra.launcher.n_jobs=2
exec "$(dirname "$0")/ablate.sh" bn_dropout_position "$@"
