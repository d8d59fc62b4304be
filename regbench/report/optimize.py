"""Non-grid sweeps (Optuna, random search, Hydra's ``interval()``): the optimization view.

A search samples settings instead of crossing levels, so most settings run
once, with values nobody typed (0.0034518...). A contrast between two random
trials is no effect of anything, and a "best vs runner-up" verdict between
two single runs has no interval: such a sweep is reported as what it is, an
optimization. The outcome against each parameter, the best value so far in the
order the trials started, and the top trials.

Pure functions, DataFrames in and out, like :mod:`regbench.report.stats`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .load import COMBINED_SEP, Study
from .stats import higher_is_better

MIN_TRIALS = 5  # fewer settings than this are compared as cells, whatever their values
ONE_RUN_SHARE = 0.6  # "most settings have one run each"
TOP_K = 10  # rows of the top-trials table
TYPED_DIGITS = 4  # a value with more significant digits was sampled, not typed into a grid


def search_params(study: Study) -> list[str]:
    """The config keys a sweep varied: the factors, with confounded ones split
    into their keys (a search's parameters change together in every trial)."""
    return [k for f in study.factors for k in f.split(COMBINED_SEP)]


def _numeric(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))


def _sampled(v) -> bool:
    """A number with more significant digits than a person types (0.0034518, 37.21...)."""
    return _numeric(v) and np.isfinite(v) and float(f"{float(v):.{TYPED_DIGITS}g}") != float(v)


def continuous(values: list) -> bool:
    """Values that look drawn from an interval: numbers, at least half of them
    with more than ``TYPED_DIGITS`` significant digits. A grid (0, 0.1, 0.3;
    1e-3, 3e-3) has round values however many there are."""
    nums = [v for v in values if _numeric(v)]
    return len(nums) == len(values) and len(nums) >= 2 and 2 * sum(map(_sampled, nums)) >= len(nums)


def is_search(study: Study) -> bool:
    """A non-grid sweep: at least ``MIN_TRIALS`` settings, most of them run
    once, and some parameter with sampled (continuous) values."""
    params = search_params(study)
    if not params:
        return False
    per_setting = study.runs.groupby("cell").size()
    if len(per_setting) < MIN_TRIALS or (per_setting == 1).mean() < ONE_RUN_SHARE:
        return False
    return any(continuous(study.runs[p].drop_duplicates().tolist()) for p in params)


def _job_number(job: str) -> tuple:
    """``sweep/12`` -> (12,): Hydra numbers a sweep's jobs in launch order; natural order otherwise."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", job) if t)


def trials(runs: pd.DataFrame, params: list[str], metric: str) -> pd.DataFrame:
    """One row per run in the order the trials started (``started_at`` from
    summary.json, then the job number): ``trial`` (1, 2, ...), the run's
    identity and status, its parameters, ``value`` (``best_<metric>``: at the
    epoch of lowest validation loss), ``best_so_far`` (the best value of the
    used trials up to this one; NaN before the first) and ``is_best``.

    ``runs``: :attr:`Analysis.runs` (study runs joined with their outcomes).
    """
    col = f"best_{metric}"
    started = pd.to_datetime(runs["started_at"], utc=True, errors="coerce") if "started_at" in runs else \
        pd.Series(pd.NaT, index=runs.index)
    order = sorted(runs.index, key=lambda i: (pd.isna(started[i]), started[i] if pd.notna(started[i]) else 0,
                                              _job_number(str(runs.at[i, "job"])), runs.at[i, "seed"]))
    keep = ["run", "job", "seed", "status", "used", "left_out", *params]
    keep += [c for c in (f"final_{metric}", "best_test_acc", "best_epoch") if c in runs and c != col]
    t = runs.loc[order, keep].reset_index(drop=True)
    t.insert(0, "trial", np.arange(1, len(t) + 1))
    t.insert(1, "started_at", started[order].reset_index(drop=True))
    value = runs.loc[order, col].astype(float).reset_index(drop=True) if col in runs else pd.Series(np.nan, t.index)
    t["value"] = value.where(t["used"].astype(bool) & np.isfinite(value))
    higher = higher_is_better(metric)
    t["best_so_far"] = t["value"].cummax() if higher else t["value"].cummin()
    best = top(t, metric, 1)
    t["is_best"] = t.index.isin(best.index)
    return t


def top(table: pd.DataFrame, metric: str, k: int = TOP_K) -> pd.DataFrame:
    """The ``k`` best used trials of :func:`trials`, best first (earliest first on ties)."""
    have = table[table["value"].notna()]
    return have.sort_values("value", ascending=not higher_is_better(metric), kind="stable").head(k)
