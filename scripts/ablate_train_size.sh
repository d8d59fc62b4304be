#!/usr/bin/env bash
# Stored ablation conf/experiment/train_size_dropout.yaml (its header states the question): sweep + report.
# Extra overrides pass through, e.g. hydra/launcher=joblib hydra.launcher.n_jobs=2
exec "$(dirname "$0")/ablate.sh" train_size_dropout "$@"
