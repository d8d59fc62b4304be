#!/usr/bin/env python
"""One MNIST-1D run "the standard way": an argparse script with the
pytorch/examples DataLoader loop (scripts/bench.py:standard), writing its
per-epoch evaluation to a CSV. The baseline of scripts/bench_ablation.sh."""

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

from bench import config, standard  # noqa: E402
from regbench.data import build_dataset  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--dropout", type=float, default=0.0)
p.add_argument("--batchnorm", choices=["false", "true"], default="false")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=50)
p.add_argument("--out", type=Path, required=True)
a = p.parse_args()
cfg = config(["data=mnist1d", f"model.dropout={a.dropout}", f"model.batchnorm={a.batchnorm}"])
data = build_dataset(cfg.data, "cpu")
a.out.mkdir(parents=True, exist_ok=True)
with open(a.out / f"dropout={a.dropout},batchnorm={a.batchnorm},seed={a.seed}.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["epoch", "fit_loss", "fit_acc", "val_loss", "val_acc", "test_loss", "test_acc"])
    standard(cfg, data, torch.device("cpu"), a.epochs, a.seed,
             on_epoch=lambda e, r: w.writerow([e, *r["fit"], *r["val"], *r["test"]]))
