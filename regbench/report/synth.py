"""Synthetic run records, written with the real :mod:`regbench.records` writers.

For tests, the report benchmark and a look at the figures without training.
The curves are made up but shaped like the real thing: more dropout fits
slower and overfits less; BatchNorm converges faster.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from regbench.records import BASE_COLUMNS, COMPLETED, DIVERGED, MetricsWriter, write_summary

BASE_CONFIG: dict[str, Any] = {
    "data.name": "mnist1d",
    "data.label_noise": 0.0,
    "model.widths": [100, 100],
    "model.order": ["linear", "bn", "act", "dropout"],
    "model.dropout": 0.0,
    "model.batchnorm": False,
    "optim.lr": 0.001,
    "trainer.epochs": 10,
    "seed": 0,
    "device": "cpu",
}


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"model.dropout": 0.3}`` -> ``{"model": {"dropout": 0.3}}`` (for .hydra/config.yaml)."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def curves(dropout: float, batchnorm: bool, seed: int, epochs: int, diverge_at: int | None = None,
           diagnostics: bool = True, label_noise: float = 0.0) -> list[dict]:
    """Metric rows (epoch 0..epochs) of one made-up run; ``diagnostics``: the
    columns of regbench.diagnostics; ``label_noise`` > 0: noisy_* columns."""
    rng = np.random.default_rng(seed * 1000 + int(dropout * 100) + 7 * batchnorm)
    rate = 0.25 * (1.8 if batchnorm else 1.0) * (1 - 0.6 * dropout)  # per epoch
    onset = 3 / rate  # overfitting starts later when fitting is slower
    rows, time_s, step = [], 0.0, 0
    for epoch in range(epochs + 1):
        fit_loss = 2.3 * math.exp(-rate * epoch) + 0.05 + 0.5 * dropout
        overfit = 0.03 * (1 - dropout) ** 2 * max(0.0, epoch - onset)
        val_loss = fit_loss + 0.15 * (1 - math.exp(-rate * epoch)) + overfit + rng.normal(0, 0.02)
        to_acc = lambda loss: float(np.clip(1.0 - 0.39 * loss, 0.0, 1.0))  # noqa: E731  2.3 nats ~ chance
        fit_acc, val_acc = to_acc(fit_loss), to_acc(val_loss - 0.5 * overfit)
        if diverge_at is not None and epoch >= diverge_at:
            fit_loss = val_loss = math.nan
            fit_acc = val_acc = 0.1
        if epoch:
            step += 40
            time_s += 0.05 * (1.3 if batchnorm else 1.0) * (1 + 0.05 * rng.random())
        row = {
            "seed": seed,
            "epoch": epoch,
            "step": step,
            "time_s": time_s,
            "lr": 0.001,
            "train_loss": fit_loss + 0.3 * dropout if epoch else None,
            "train_acc": fit_acc - 0.1 * dropout if epoch else None,
            "fit_loss": fit_loss,
            "fit_acc": fit_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": None,
            "test_acc": None,
            "gap_loss": val_loss - fit_loss,
            "gap_acc": fit_acc - val_acc,
            "grad_norm": 1.5 * math.exp(-rate * epoch) + 0.1,
        }
        if diagnostics:
            row.update(_diagnostics(dropout, batchnorm, epoch, rate, rng))
        if label_noise > 0:
            # Corrupted examples: first predicted as their true class, then memorized.
            memorized = (1 - dropout) ** 2 / (1 + math.exp(-(epoch - 1.5 * onset) / 2))
            learned = 1 - math.exp(-rate * epoch)
            row["noisy_fit_acc"] = 0.1 + 0.85 * memorized + rng.normal(0, 0.01)
            row["noisy_clean_acc"] = 0.1 + 0.6 * learned * (1 - memorized) + rng.normal(0, 0.01)
        rows.append(row)
    return rows


def _diagnostics(dropout: float, batchnorm: bool, epoch: int, rate: float, rng) -> dict:
    """Per-layer diagnostics of a [linear, bn, act, dropout] MLP with two hidden blocks."""
    settled = 1 - math.exp(-rate * epoch)
    row = {}
    for i, layer in enumerate(("hidden0", "hidden1")):
        if batchnorm:
            # Epoch 0: the running variance is still its initial 1, far from the input's.
            # Dropout of hidden0 feeds hidden1's BN (through its linear): only there a shift.
            row[f"bn_var_shift/{layer}"] = (3.0 if epoch == 0 else 1 + 0.02 + 0.7 * i * dropout * settled) \
                + rng.normal(0, 0.01)
            median, spread = 0.1 * settled, 1.0 + 0.1 * settled  # BN holds the pre-activation steady
        else:
            median, spread = -0.4 * (i + 1) * settled, 0.5 + 0.25 * (i + 1) * (1 - dropout) * epoch ** 0.7
        row[f"preact_p15/{layer}"] = median - 0.9 * spread + rng.normal(0, 0.02)
        row[f"preact_p50/{layer}"] = median + rng.normal(0, 0.02)
        row[f"preact_p85/{layer}"] = median + 1.1 * spread + rng.normal(0, 0.02)
        row[f"dead_frac/{layer}"] = max(0.0, (0.01 if batchnorm else 0.08 * (i + 1)) * settled + rng.normal(0, 0.003))
        row[f"weight_norm/{layer}"] = 5.8 + (1.6 if batchnorm else 1.0) * (1 - 0.5 * dropout) * epoch ** 0.5
    row["weight_norm/head"] = 1.8 + 0.6 * epoch ** 0.5
    return row


def write_job(
    job_dir: str | os.PathLike,
    config: dict[str, Any],
    rows: Iterable[dict],
    status: str = COMPLETED,
    seeds: list[int] | None = None,
    seed_status: dict[str, str] | None = None,
    columns: list[str] | None = None,
    summary: bool = True,
    error: str | None = None,
) -> Path:
    """One job folder as train writes it: .hydra/config.yaml, metrics.csv, summary.json."""
    job = Path(job_dir)
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(unflatten(config)))
    rows = list(rows)
    if columns is None:
        extra = [k for r in rows for k in r if k not in BASE_COLUMNS]
        columns = list(BASE_COLUMNS) + list(dict.fromkeys(extra))
    with MetricsWriter(job / "metrics.csv", columns) as writer:
        for row in rows:
            writer.write(row)
    if summary:
        seeds = seeds if seeds is not None else [config.get("seed", 0)]
        write_summary(
            job,
            {
                "status": status,
                "config": config,
                "overrides": [],
                "seeds": seeds,
                **({"seed_status": seed_status} if seed_status else {}),
                "epochs_completed": max((r["epoch"] for r in rows), default=0),
                "wall_time_s": max((r["time_s"] for r in rows), default=0.0),
                "device": "cpu",
                "torch_version": "0",
                "regbench_version": "0",
                "error": error,
                "data": {"name": config.get("data.name", "mnist1d"), "n_train": 4000, "n_val": 1000, "n_test": 0,
                         "n_features": 40, "n_classes": 10},
                "n_params": 15000,
            },
        )
    return job


def write_sweep(
    root: str | os.PathLike,
    dropouts: Iterable[float] = (0.0, 0.1, 0.3, 0.5),
    batchnorms: Iterable[bool] = (False, True),
    seeds: Iterable[int] = (0, 1, 2),
    epochs: int = 10,
    diverged: Iterable[tuple[float, bool, int]] = (),
    diagnostics: bool = True,
    label_noise: float = 0.0,
) -> Path:
    """A dropout x batchnorm x seed grid, one job per run, as a Hydra multirun."""
    root = Path(root)
    diverged = set(diverged)
    job = 0
    for p in dropouts:
        for bn in batchnorms:
            for s in seeds:
                config = {**BASE_CONFIG, "model.dropout": p, "model.batchnorm": bn, "seed": s, "trainer.epochs": epochs,
                          "data.label_noise": label_noise}
                bad = (p, bn, s) in diverged
                rows = curves(p, bn, s, epochs, diverge_at=epochs // 2 if bad else None, diagnostics=diagnostics,
                              label_noise=label_noise)
                write_job(root / str(job), config, rows, status=DIVERGED if bad else COMPLETED)
                job += 1
    return root
