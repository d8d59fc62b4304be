"""Statistics over the tidy tables: pure functions, DataFrames in, DataFrames out.

Every headline number is a distribution over seeds: mean, std, n and a 95%
Student-t confidence interval of the mean. Non-finite values (a diverged
run's NaN/inf) never enter a mean. Times, epochs and the rise of validation
loss are never negative: their t interval is cut at 0 (which costs it no
coverage: the mean is not below 0 either). A percentile bootstrap, used before, covered the
mean in about 75% of cases at 3 seeds and 85% at 5 (its interval is within
the seeds' range), while it was called a 95% interval.

Effects are paired by seed and read as a family: every contrast of one
outcome (main effects, interactions, simple effects) gets a two-sided paired
t-test and, over the family, Bonferroni's adjustment and the simultaneous
(Bonferroni) interval of the same test: a contrast is resolved exactly when
that interval excludes 0. "Resolved" is said of the adjusted reading only.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
# Student's t through the two functions scipy.stats.t itself calls (its _ppf and
# _sf): importing scipy.stats costs about 0.6 s more than scipy.special, a sixth
# of a small report. tests/test_report_stats.py checks the values are scipy.stats'.
from scipy.special import stdtr, stdtrit

from ..records import plural
from .load import (
    COMBINED_SEP,
    DUPLICATE,
    GAP,
    UNFINISHED,
    Study,
    cell_labels,
    finite,
    fmt_bounds,
    fmt_diff,
    fmt_value,
    incomplete,
    is_combined,
    missing_text,
    setting_text,
    short_names,
)

LEVEL = 0.95  # confidence level of every interval in the report


def alpha_of(level: float) -> float:
    """The family-wise error rate of intervals at ``level``: 0.05 for 0.95, not
    1 - 0.95 = 0.050000000000000044, below which a p_adj of exactly 0.05 (0.025
    x 2) fell: "resolved" beside a printed p_adj = 0.050."""
    return round(1 - level, 12)


ALPHA = alpha_of(LEVEL)  # family-wise error rate of the effects
STATS = ("mean", "std", "n", "ci_lo", "ci_hi")
TARGET_COLUMNS = ("epochs_to_target", "seconds_to_target")  # NaN = never reached: censored, not missing
# Accuracies that measure something unwanted: the share of corrupted training
# labels the model reproduces (memorization).
LOWER_IS_BETTER_ACC = ("noisy_fit_acc",)
EFFECT_COLUMNS = ["outcome", "kind", "factor", "contrast", "at", "estimate", "ci_lo", "ci_hi", "n", "std", "p",
                  "p_adj", "ci_lo_adj", "ci_hi_adj", "resolved", "family", "family_size", "scope"]
SEED_COLUMNS = ["outcome", "kind", "factor", "contrast", "at", "seed", "value"]


def higher_is_better(metric: str) -> bool:
    """Accuracies go up; losses, gaps, times and everything else go down.

    Takes a metrics.csv column (``val_acc``) or an outcome (``best_val_acc``,
    ``final_gap_acc``): a gap is better small even when it is one of accuracies.
    """
    base = metric.removeprefix("best_").removeprefix("final_")
    return base.endswith("acc") and not base.startswith("gap") and base not in LOWER_IS_BETTER_ACC


def positive_column(col: str) -> bool:
    """Times, epoch counts and the rise of validation loss after its minimum:
    never below 0, so their intervals must not be (a t interval gave the epoch
    of lowest val loss as 2.8 ± 5.1)."""
    return col.endswith("time_s") or col in TARGET_COLUMNS or col in ("best_epoch", "val_loss_rise")


def t_ppf(q, dof):
    """``scipy.stats.t.ppf(q, dof)`` for 0 < q < 1; NaN where dof is not > 0."""
    return stdtrit(dof, q)


def t_sf(x, dof):
    """``scipy.stats.t.sf(x, dof)``; NaN where dof is not > 0 or x is NaN."""
    return stdtr(dof, np.negative(x))


def _t_half_width(std, n, level: float = LEVEL):
    """Half-width of the Student-t interval of a mean; NaN where n < 2."""
    n = np.asarray(n, dtype=float)
    dof = np.where(n > 1, n - 1, np.nan)
    return t_ppf(0.5 + level / 2, dof) * np.asarray(std, dtype=float) / np.sqrt(np.where(n > 0, n, np.nan))


# Per-seed values that agree to within the records' float32 rounding leave no
# spread to estimate the noise from, so no test: as R's t.test refuses
# "essentially constant" data. The usual case is two seeds whose contrasts of
# accuracies coincide at the metric's steps of 1/N (one validation example);
# the t-test would give them p = 0 and an interval of zero width.
CONSTANT_RTOL = 10 * float(np.finfo(np.float32).eps)


def essentially_constant(values: Iterable[float], scale: float = 0.0) -> bool:
    """Two or more finite ``values`` whose spread is within float32 rounding
    of ``scale`` (the magnitude of the numbers they were computed from) or of
    their own magnitude."""
    x = np.asarray(list(values), dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return False
    size = max(float(scale) if finite(scale) else 0.0, float(np.abs(x).max()))
    return float(x.max() - x.min()) <= CONSTANT_RTOL * size


def summarize(values: Iterable[float], level: float = LEVEL) -> dict[str, float]:
    """mean, std (ddof=1), n, ci_lo, ci_hi of the finite values.

    >>> summarize([0.1, 0.2, 0.3])["ci_hi"]  # 0.2 + t(0.975, 2) * 0.1 / sqrt(3)
    0.448...
    """
    x = np.asarray(list(values), dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(_t_half_width(std, n, level))
    return {"mean": mean, "std": std, "n": n, "ci_lo": mean - half, "ci_hi": mean + half}


def aggregate(df: pd.DataFrame, by: list[str], columns: list[str], level: float = LEVEL,
              positive: Iterable[str] = ()) -> pd.DataFrame:
    """Per group of ``by``: ``<col>_mean, _std, _n, _ci_lo, _ci_hi`` for each column.

    One vectorized groupby for all groups (no per-group Python), so it scales
    to thousands of run x epoch groups. Columns in ``positive`` (never below
    0) have their interval's lower end cut at 0: "2.8 ± 5.1" epochs read
    [0, 7.9].
    """
    values = df[columns].astype(float)
    values = values.where(np.isfinite(values))
    keys = [df[b] for b in by]
    g = values.groupby(keys, sort=False)
    mean, std, n = g.mean(), g.std(ddof=1), g.count()
    half = pd.DataFrame(_t_half_width(std, n, level), index=mean.index, columns=columns)
    out = {}
    for c in columns:
        out[f"{c}_mean"], out[f"{c}_std"], out[f"{c}_n"] = mean[c], std[c], n[c]
        out[f"{c}_ci_lo"], out[f"{c}_ci_hi"] = mean[c] - half[c], mean[c] + half[c]
    for c in (c for c in positive if c in columns):
        out[f"{c}_ci_lo"] = out[f"{c}_ci_lo"].clip(lower=0.0)
    return pd.DataFrame(out, index=mean.index)


def censored_median(values: Iterable[float]) -> float:
    """Median of times to an event where NaN means "never": those count as
    later than any observed one. NaN when half or more never got there (the
    median is then not defined by the data)."""
    x = np.asarray(list(values), dtype=float)
    if not len(x):
        return math.nan
    med = float(np.median(np.where(np.isnan(x), np.inf, x)))
    return med if math.isfinite(med) else math.nan


# ---------------------------------------------------------------- per run


def best_rows(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per run (index), the row of its *best* epoch: the epoch of lowest
    finite validation loss, the earliest on ties. The trainer's summary.json
    ``best`` is the same epoch; choosing it on validation loss alone keeps the
    test set out of the choice. Runs without a finite val_loss are absent."""
    if "val_loss" not in epochs:
        return pd.DataFrame(columns=epochs.columns).set_index("run")
    ep = epochs[np.isfinite(epochs["val_loss"].astype(float))]
    return ep.sort_values(["run", "val_loss", "epoch"], kind="stable").drop_duplicates("run").set_index("run")


def run_outcomes(epochs: pd.DataFrame, metric: str = "val_acc", target: float | None = None) -> pd.DataFrame:
    """One row per run: the numbers a cell is judged by.

    ``best_<col>`` is the value of ``<col>`` at the run's epoch of lowest
    validation loss (``best_epoch``, see :func:`best_rows`), never the maximum
    over epochs: a maximum picks each run's luckiest epoch after the fact, on
    the very data it reports (the test set, with ``--metric test_acc``).
    ``final_<col>`` is the value at the last epoch. For ``metric``, val_acc
    and val_loss: both; final fit and gap values; ``val_loss_rise`` (final
    minus lowest validation loss: how much it overfits afterwards); and
    ``epochs_to_target`` / ``seconds_to_target``: the first epoch, and its
    training time, at which ``metric`` reaches ``target`` (NaN: never), a
    convergence speed that selects nothing.
    """
    ep = epochs.sort_values(["run", "epoch"], kind="stable")
    g = ep.groupby("run", sort=False)
    last = g.tail(1).set_index("run")
    out = pd.DataFrame(index=last.index)
    out["final_epoch"] = last["epoch"]
    if "time_s" in ep:
        out["final_time_s"] = last["time_s"]
    best = best_rows(ep).reindex(out.index)
    # test_acc beside val_acc: the cell chosen as best on validation data has a
    # validation value biased upward; its test value at the same epoch is not.
    for col in dict.fromkeys([metric, "val_acc", "val_loss", "test_acc"]):
        if col in ep and (col != "test_acc" or ep[col].notna().any()):
            out[f"best_{col}"] = best[col].astype(float)
            out[f"final_{col}"] = last[col]
    for col in ("fit_acc", "fit_loss", "gap_loss", "gap_acc"):
        if col in ep:
            out[f"final_{col}"] = last[col]
    if "val_loss" in ep:
        out["best_epoch"] = best["epoch"].astype(float)
        out["val_loss_rise"] = out["final_val_loss"] - out["best_val_loss"]
    if target is not None:
        hit = ep[ep[metric] >= target] if higher_is_better(metric) else ep[ep[metric] <= target]
        first = hit.drop_duplicates("run").set_index("run")  # ep is sorted by epoch
        out["epochs_to_target"] = first["epoch"].reindex(out.index)
        if "time_s" in ep:
            out["seconds_to_target"] = first["time_s"].reindex(out.index)
    return out


# ---------------------------------------------------------------- per cell


def outcome_columns(outcomes: pd.DataFrame) -> list[str]:
    return [c for c in outcomes.columns if c not in ("final_epoch",)]


def lacking_values(runs: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Per used run, the outcome columns it has no finite value for although
    other used runs do (``best_val_acc, final_gap_loss``; empty if none): a
    NaN at its best epoch, or an older record without a column. Such a run
    silently lowers that column's n; this names it. Times to target are
    censored (NaN: never reached), not lacking, and are not checked."""
    used = runs[runs["used"]] if "used" in runs else runs
    cols = [c for c in columns if c.startswith(("best_", "final_")) and c in runs]
    values = used[cols].astype(float)
    ok = np.isfinite(values)
    cols = [c for c in cols if ok[c].any()]
    lack = pd.Series("", index=runs.index, dtype=object)
    if not cols:
        return lack
    names = np.array(cols, dtype=object)
    missing = ~ok[cols].to_numpy()
    lack.loc[used.index] = [", ".join(names[m]) for m in missing]
    return lack


def cell_table(
    runs: pd.DataFrame,
    factors: list[str],
    levels: dict[str, list],
    columns: list[str],
    level: float = LEVEL,
) -> pd.DataFrame:
    """One row per cell: counts by status, honesty flags, and statistics of
    ``columns`` over the cell's used runs (``runs`` has a boolean ``used``).

    When the factors form a grid, combinations without any run are added as
    rows flagged ``missing``. Flags say, in words, what a reader must know
    before trusting the row: fewer seeds than other cells, runs left out, a
    used run without a value (``<col>_n`` below ``n_used``), training that
    stopped while still improving, times from jobs that trained different
    numbers of seeds together.

    Times to target are censored (a run that never reached the target has no
    time, not an unknown one): ``n_reached`` of ``n_used`` and the median
    (``<col>_median``, NaN when half or more never reached it) are the
    numbers to read (``<col>_n`` = runs that reached it; no mean: it would be
    over the runs that reached it only). Time columns (``final_time_s``) are one value per job
    (seeds trained together share one clock): their ``_n`` counts jobs, and
    the intervals of times, epochs and the rise of validation loss are t
    intervals cut at 0 (the epoch of lowest validation loss's also at the
    cell's last epoch trained).
    """
    keys = runs.drop_duplicates("cell").set_index("cell")[factors]
    counts = pd.crosstab(runs["cell"], runs["status"])
    used = runs[runs["used"]]
    table = keys.join(counts.add_prefix("n_"))
    table.insert(len(factors), "n_runs", runs.groupby("cell").size())
    table.insert(len(factors) + 1, "n_used", used.groupby("cell").size().reindex(table.index).fillna(0).astype(int))
    table["n_truncated"] = runs.groupby("cell")["truncated"].sum()
    table["n_unfinished"] = (runs["left_out"] == UNFINISHED).groupby(runs["cell"]).sum()
    table["n_missing_epochs"] = (runs["left_out"] == GAP).groupby(runs["cell"]).sum()
    table["n_duplicate"] = (runs["left_out"] == DUPLICATE).groupby(runs["cell"]).sum()
    times = [c for c in columns if c.endswith("time_s")]
    # Times to target are censored (NaN: never reached): a median and k/n reached
    # describe them (below); a mean over the runs that got there would not.
    targets = [c for c in columns if c in TARGET_COLUMNS]
    per_run = [c for c in columns if c not in times and c not in targets]
    if len(used):
        positive = [c for c in per_run if positive_column(c)]
        table = table.join(aggregate(used, ["cell"], per_run, level, positive=positive))
        if times:
            # One clock per job: seeds trained together are one measurement of time.
            job = used["job"] if "job" in used else pd.Series(used.index, index=used.index)  # no job: each run its own
            per_job = used[times].astype(float).groupby([used["cell"], job]).mean().reset_index(level=1, drop=True)
            table = table.join(aggregate(per_job.reset_index(), ["cell"], times, level, positive=times))
            table["n_jobs"] = job.groupby(used["cell"]).nunique().reindex(table.index).fillna(0).astype(int)
        if "best_epoch_ci_hi" in table and "epochs" in used:
            # nor after the last epoch trained: 14.7 [13.2, 16.1] of 15 epochs
            last = used.groupby("cell")["epochs"].max().astype(float).reindex(table.index)
            table["best_epoch_ci_hi"] = table["best_epoch_ci_hi"].where(last.isna(), table["best_epoch_ci_hi"].clip(upper=last))
    for c in (c for c in TARGET_COLUMNS if c in used):
        table[f"{c}_n"] = used.groupby("cell")[c].count().reindex(table.index).fillna(0).astype(int)
        table[f"{c}_median"] = used.groupby("cell")[c].apply(censored_median).reindex(table.index)
    if "epochs_to_target" in used:
        table["n_reached"] = used.groupby("cell")["epochs_to_target"].count().reindex(table.index).fillna(0).astype(int)
    if {"best_epoch", "final_epoch"} <= set(used.columns):
        has_best = used["best_epoch"].notna()
        at_last = has_best & (used["best_epoch"] == used["final_epoch"])
        table["n_best_at_last"] = at_last.groupby(used["cell"]).sum().reindex(table.index).fillna(0).astype(int)
        n_best = has_best.groupby(used["cell"]).sum().reindex(table.index).fillna(0)
        # Most runs still had their lowest validation loss at the last epoch:
        # the cell was stopped while improving, its numbers are not converged.
        table["still_improving"] = (2 * table["n_best_at_last"] > n_best) & (n_best > 0)
        # Lowest validation loss at epoch 0: the run never improved on its initialization.
        at_start = has_best & (used["best_epoch"] == 0)
        table["n_best_at_start"] = at_start.groupby(used["cell"]).sum().reindex(table.index).fillna(0).astype(int)
        table["never_learned"] = (2 * table["n_best_at_start"] > n_best) & (n_best > 0)
    if "seeds_together" in used:
        table["seeds_together"] = used.groupby("cell")["seeds_together"].apply(
            lambda v: ", ".join(str(int(x)) for x in sorted(set(v.dropna())))).reindex(table.index).fillna("")

    missing = _missing_cells(keys, factors, levels)
    if len(missing):
        missing.index = cell_labels(missing, factors)
        missing["n_runs"] = missing["n_used"] = 0
        table = pd.concat([table, missing])
    # The config keys behind a combined factor, per cell (empty for a missing one).
    parts = [k for f in factors if is_combined(f) for k in f.split(COMBINED_SEP) if k in runs]
    if parts:
        table = table.join(runs.drop_duplicates("cell").set_index("cell")[parts])
        table = table[factors + parts + [c for c in table.columns if c not in factors and c not in parts]]
    count_cols = [c for c in table.columns if c.startswith("n_") and not c.endswith("_n")]
    table[count_cols] = table[count_cols].fillna(0).astype(int)
    for flag in ("still_improving", "never_learned"):
        if flag in table:
            table[flag] = table[flag].fillna(False).astype(bool)
    if "seeds_together" in table:
        table["seeds_together"] = table["seeds_together"].fillna("")
    lacking = runs["lacking"] if "lacking" in runs else lacking_values(runs, columns)
    table["caveats"] = _flags(table, runs.assign(lacking=lacking))
    table.index.name = "cell"
    return table


def _missing_cells(keys: pd.DataFrame, factors: list[str], levels: dict[str, list]) -> pd.DataFrame:
    """Grid combinations without a run, if the cells look like a grid.

    Runs compared across unrelated folders rarely form a grid; only when at
    least half of the combinations exist is an absent one called missing.
    """
    if len(factors) < 2:
        return pd.DataFrame(columns=factors)
    grid = list(itertools.product(*(levels[f] for f in factors)))
    have = {tuple(r) for r in keys[factors].itertuples(index=False)}
    if len(have) * 2 < len(grid):
        return pd.DataFrame(columns=factors)
    return pd.DataFrame([g for g in grid if g not in have], columns=factors)


def _flags(table: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    most = table["n_used"].max()
    left_out = runs[~runs["used"]].groupby("cell")
    left = {cell: g for cell, g in left_out}
    unknown = runs[incomplete(runs)].groupby("cell").size().to_dict()
    # The same seed twice in a cell: copies of one run, or runs that differ in
    # something the config does not record. Either way not independent.
    # load_study leaves such runs out as duplicates; this catches a runs table
    # built some other way.
    seeds = runs[runs["used"]].groupby(["cell", "seed"]).size()
    repeated = seeds[seeds > 1].reset_index().groupby("cell")["seed"].apply(list).to_dict()
    lacks = runs[runs["used"] & (runs["lacking"] != "")] if "lacking" in runs else runs.iloc[:0]
    lacking = {cell: g for cell, g in lacks.groupby("cell")}
    flags = {}
    for cell, row in table.iterrows():  # one line per cell, not per run
        f = []
        if row["n_runs"] == 0:
            f.append("missing: no runs")
        elif row["n_used"] == 0:
            f.append("no usable run")
        elif row["n_used"] < most:
            f.append(f"fewer seeds ({row['n_used']} of {most})")
        if cell in left:
            for why, g in left[cell].groupby("left_out"):
                if why == UNFINISHED:
                    where = ", ".join(_stopped(r) for _, r in g.iterrows())
                elif why == GAP:
                    where = ", ".join(f"seed {r['seed']}: {missing_text(r.get('missing_epochs') or '?')}"
                                      for _, r in g.iterrows())
                elif why == DUPLICATE:
                    where = ", ".join(f"seed {r['seed']}: {r['run']} duplicates {r.get('duplicate_of') or '?'}"
                                      for _, r in g.iterrows())
                else:
                    where = f"seed {', '.join(map(str, g['seed']))}"
                f.append(f"{left_out_count(len(g), why)} left out ({where})")
        if cell in unknown:
            f.append(f"{unknown[cell]} of unknown status (no summary.json) averaged in")
        if cell in repeated:
            f.append(f"seed {', '.join(map(str, repeated[cell]))} in more than one run")
        if row.get("n_truncated", 0):
            f.append(f"{row['n_truncated']} truncated metrics file")
        if cell in lacking:
            # Grouped by the runs that lack them: an older record lacks several columns at once.
            who: dict[str, list[str]] = {}
            for _, r in lacking[cell].iterrows():
                for c in r["lacking"].split(", "):
                    who.setdefault(c, []).append(f"seed {r['seed']}: {r['run']}")
            groups: dict[tuple, list[str]] = {}
            for c, w in who.items():
                groups.setdefault(tuple(w), []).append(c)
            for w, cs in groups.items():
                n = row.get(f"{cs[0]}_n", math.nan)
                of = f": n = {int(n)} of {row['n_used']}" if finite(n) else ""
                f.append(f"{', '.join(cs)} missing in {len(w)} used run{'s' if len(w) > 1 else ''} "
                         f"({', '.join(w)}){of}")
        if row.get("n_best_at_start", 0):
            f.append(f"did not learn: lowest val loss at epoch 0 (the untrained model) in {row['n_best_at_start']} of "
                     f"{row['n_used']} runs")
        if row.get("still_improving", False):
            f.append(f"still improving: lowest val loss at the last epoch in {row['n_best_at_last']} of "
                     f"{row['n_used']} runs (train longer)")
        if "," in str(row.get("seeds_together", "")):
            f.append(f"times mix jobs that trained {row['seeds_together'].replace(', ', ' and ')} seeds together "
                     "(per-seed times of a vectorized job are not those of a solo run)")
        flags[cell] = "; ".join(f)
    return pd.Series(flags)


def left_out_count(n: int, why: str) -> str:
    """``2 diverged``, ``3 unfinished``, ``1 with missing epochs``, ``2 duplicates``."""
    if why == GAP:
        return f"{n} with {why}"
    if why == DUPLICATE:
        return f"{n} {why}" + ("s" if n != 1 else "")
    return f"{n} {why}"


def _stopped(run: pd.Series) -> str:
    """``seed 1 stopped at epoch 96 of 300`` (the planned epochs where recorded);
    ``seed 1 at epoch 96 of 300 (still running)`` while its job's summary says running."""
    if run.get("status") == "running":
        planned = run.get("planned_epochs")
        of = "" if planned is None or pd.isna(planned) else f" of {planned}"
        return f"seed {run['seed']} at epoch {run['epochs']}{of} (still running, or its process died)"
    text = f"seed {run['seed']} stopped at epoch {run['epochs']}"
    planned = run.get("planned_epochs")
    return text if planned is None or pd.isna(planned) else f"{text} of {planned}"


def epoch_curves(epochs: pd.DataFrame, columns: list[str], level: float = LEVEL) -> pd.DataFrame:
    """Per (cell, epoch): mean/std/n/CI of ``columns`` across seeds."""
    return aggregate(epochs, ["cell", "epoch"], columns, level)


def auto_target(cells: pd.DataFrame, metric: str) -> float | None:
    """A target that every cell reaches on average: the weakest cell's mean
    value at the epoch of lowest validation loss, rounded to 0.01 towards
    easier (a run's curve reaches its value at that epoch, so a cell whose
    mean is above the target has runs that reach it). None when nothing is
    known or there is one cell to compare (a single run); :func:`analyze`
    also drops it where an untrained model (epoch 0) already reaches it."""
    col = f"best_{metric}_mean"
    if col not in cells or len(cells[col].dropna()) < 2:  # one cell: its own value, rounded, compares with nothing
        return None
    if higher_is_better(metric):
        return math.floor(cells[col].min() * 100) / 100
    return math.ceil(cells[col].max() * 100) / 100


# ---------------------------------------------------------------- effects


def t_test_p(mean, std, n) -> float:
    """Two-sided p of a one-sample t-test of mean 0 (as ``scipy.stats.ttest_1samp``);
    NaN where n < 2 or std is NaN (the effects and comparisons set it so where
    the seeds show no spread: :func:`essentially_constant`). A std of exactly 0
    gives p = 0 unless the mean is 0, as scipy does."""
    if not (finite(mean) and n is not None and n >= 2 and finite(std)):
        return math.nan  # one seed, or no spread to test with (essentially_constant)
    if not std > 0:
        return 1.0 if mean == 0 else 0.0
    t = mean / (std / math.sqrt(n))
    return float(2 * t_sf(abs(t), n - 1))


def bonferroni(p: Iterable[float]) -> np.ndarray:
    """Bonferroni-adjusted p-values of one family: min(1, m p) over the m
    finite entries; NaN entries (no test) are not in the family and stay NaN.

    The single-step adjustment, not Holm's step-down one: Holm's can resolve a
    contrast whose simultaneous interval still holds 0, and then a report would
    print "resolved" next to an interval that says the sign is unknown. With
    Bonferroni, p_adj < 1 - level exactly when the interval of
    :func:`simultaneous_half_width` excludes 0 (tests/test_report_inference.py).
    """
    p = np.asarray(list(p), dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    out[ok] = np.minimum(1.0, ok.sum() * p[ok])
    return out


def simultaneous_half_width(std, n, family_size: int, level: float = LEVEL):
    """Bonferroni-width t half-width: the interval of each of ``family_size``
    contrasts at level 1 - (1 - level) / family_size, so all hold together
    with probability >= ``level``."""
    if family_size < 1:
        return np.full(np.shape(n), np.nan)
    return _t_half_width(std, n, 1 - (1 - level) / family_size)


def paired_effects(
    runs: pd.DataFrame,
    factors: list[str],
    levels: dict[str, list],
    value: str,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Main, two-way interaction and simple effects on ``value``, paired by
    seed (unadjusted; :func:`adjust` reads them as a family). See
    :func:`contrasts`."""
    return contrasts(runs, factors, levels, value, level)[0]


def contrasts(
    runs: pd.DataFrame,
    factors: list[str],
    levels: dict[str, list],
    value: str,
    level: float = LEVEL,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Main, two-way interaction and simple effects on ``value``, paired by seed.

    For each factor, each level is compared with the first (reference)
    level: the main effect is the difference averaged over all settings of
    the other factors. The interaction of A (a0 -> a) and B (b0 -> b) is a
    difference of differences, ``(y[a,b] - y[a0,b]) - (y[a,b0] - y[a0,b0])``:
    how much B changes the effect of A. A simple effect is the effect of A at
    one level of B (``at``), averaged over any further factors. Each contrast
    is computed per seed, so seed-to-seed variation shared by all cells
    cancels; a seed enters only if it has a value in every cell the contrast
    needs, and the interval is Student-t over those seeds. ``runs`` must hold
    only used runs.

    A cell without any value (never ran, nothing usable) does not void a
    contrast: it is averaged over the settings of the other factors at which
    every cell it needs exists (the complete sub-grid), and ``scope`` says
    which ("at batchnorm=false only"); empty when over all settings.

    Returns (effects, per_seed). effects: one row per contrast: kind, factor,
    contrast, at, estimate, ci_lo, ci_hi, n (seeds), std, scope, with
    ``estimate`` NaN when no seed covers the contrast. per_seed: kind,
    factor, contrast, at, seed, value (the contrast of each seed).
    """
    cols = ["kind", "factor", "contrast", "at", "estimate", "ci_lo", "ci_hi", "n", "std", "scope"]
    if not factors or runs.empty:
        return pd.DataFrame(columns=cols), pd.DataFrame(columns=[c for c in SEED_COLUMNS if c != "outcome"])
    vals = runs[value].astype(float).where(np.isfinite(runs[value].astype(float)))
    wide = runs.assign(_v=vals).pivot_table(index="seed", columns="cell", values="_v", aggfunc="mean", dropna=False)
    keys = runs.drop_duplicates("cell").set_index("cell")[factors]
    short = short_names(factors)

    selected: dict[frozenset, pd.DataFrame] = {}  # contrasts share their terms: select each block once

    def select(fixed: dict) -> pd.DataFrame:
        """Seeds x every setting of the other factors (grid order), at the
        ``fixed`` levels; an all-NaN column where that cell has no value."""
        key = frozenset(fixed.items())
        if key not in selected:
            selected[key] = _select(fixed)
        return selected[key]

    def _select(fixed: dict) -> pd.DataFrame:
        mask = np.ones(len(keys), dtype=bool)
        for f, v in fixed.items():
            mask &= (keys[f] == v).to_numpy()
        rest = [f for f in factors if f not in fixed]
        sub = keys[mask]
        block = wide.reindex(columns=sub.index)
        block.columns = ["|".join(map(repr, r)) for r in sub[rest].itertuples(index=False)]
        grid = ["|".join(map(repr, g)) for g in itertools.product(*(levels[f] for f in rest))]
        return block.reindex(columns=grid)

    def settings(rest: list[str]) -> list[str]:
        return [", ".join(setting_text(f, v, short[f]) for f, v in zip(rest, g))
                for g in itertools.product(*(levels[f] for f in rest))]

    rows, seed_rows = [], []

    def add(kind: str, factor: str, contrast: str, at: str, terms: list[tuple[int, dict]]) -> None:
        """One contrast: the signed sum of ``terms`` (sign, fixed levels), per seed."""
        blocks = [select(fixed) for _, fixed in terms]
        present = np.logical_and.reduce([b.notna().any(axis=0).to_numpy() for b in blocks])
        diff = sum(sign * b.to_numpy() for (sign, _), b in zip(terms, blocks))
        rest = [f for f in factors if f not in terms[0][1]]
        names = settings(rest)
        scope = ""
        if present.any() and not present.all():
            kept = [n for n, p in zip(names, present) if p]
            scope = (f"at {' and '.join(kept)} only" if len(kept) <= 2
                     else f"over {len(kept)} of {len(names)} settings of the other factors")
            scope += " (complete sub-grid: a cell it needs has no usable run)"
        per_seed = pd.Series(diff[:, present].mean(axis=1) if present.any() else np.nan, index=wide.index).dropna()
        effect = _effect(per_seed, level)
        terms_values = np.concatenate([b.to_numpy().ravel() for b in blocks])
        scale = float(np.nanmax(np.abs(terms_values))) if np.isfinite(terms_values).any() else 0.0
        if essentially_constant(per_seed, scale):  # no spread: no interval, no test
            effect.update(std=math.nan, ci_lo=math.nan, ci_hi=math.nan)
        rows.append({"kind": kind, "factor": factor, "contrast": contrast, "at": at, **effect, "scope": scope})
        seed_rows.extend({"kind": kind, "factor": factor, "contrast": contrast, "at": at, "seed": sd, "value": v}
                         for sd, v in per_seed.items())

    def change(f: str, a, b) -> str:
        """``dropout: 0 → 0.5``; a combined factor: ``dropout=0, epochs=2 → dropout=0.3, epochs=5``."""
        return f"{a} → {b}" if is_combined(f) else f"{short[f]}: {fmt_value(a)} → {fmt_value(b)}"

    for f in factors:
        ref = levels[f][0]
        for lv in levels[f][1:]:
            add("main", f, change(f, ref, lv), "", [(1, {f: lv}), (-1, {f: ref})])
    for f, h in itertools.combinations(factors, 2):
        rf, rh = levels[f][0], levels[h][0]
        for a in levels[f][1:]:
            for b in levels[h][1:]:
                add("interaction", f"{f} × {h}", f"({change(f, rf, a)}) × ({change(h, rh, b)})", "",
                    [(1, {f: a, h: b}), (-1, {f: rf, h: b}), (-1, {f: a, h: rh}), (1, {f: rf, h: rh})])
    for f, h in itertools.permutations(factors, 2):
        ref = levels[f][0]
        for hv in levels[h]:
            for lv in levels[f][1:]:
                add("simple", f, change(f, ref, lv), setting_text(h, hv, short[h]),
                    [(1, {f: lv, h: hv}), (-1, {f: ref, h: hv})])
    seeds = pd.DataFrame(seed_rows, columns=[c for c in SEED_COLUMNS if c != "outcome"])
    out = pd.DataFrame(rows, columns=cols)
    # A main effect measured at one setting of the other factor only (a cell it needs has no usable run) is
    # that setting's simple effect, the same per-seed values: counted twice in the family (a wider correction)
    # and reported twice as two findings. The simple effect goes; the main effect says where it was measured.
    once = {(r["factor"], r["contrast"], r["scope"][3:].split(" only")[0]) for _, r in out[out["kind"] == "main"].iterrows()
            if r["scope"].startswith("at ") and " and " not in r["scope"].split(" only")[0]}
    twice = out.apply(lambda r: r["kind"] == "simple" and (r["factor"], r["contrast"], r["at"]) in once, axis=1)
    if len(out) and twice.any():
        out = out[~twice].reset_index(drop=True)
        drop = seeds.apply(lambda r: r["kind"] == "simple" and (r["factor"], r["contrast"], r["at"]) in once, axis=1)
        seeds = seeds[~drop].reset_index(drop=True) if len(seeds) else seeds
    return out, seeds


def _effect(per_seed: pd.Series, level: float) -> dict:
    s = summarize(per_seed, level)
    return {"estimate": s["mean"], "ci_lo": s["ci_lo"], "ci_hi": s["ci_hi"], "n": s["n"], "std": s["std"]}


def adjust(effects: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Read ``effects`` family by family (a family: every contrast of one
    ``outcome``, main + interaction + simple): ``p`` (two-sided paired t),
    ``p_adj`` (Bonferroni over the family), ``ci_lo_adj``/``ci_hi_adj``
    (simultaneous Bonferroni t intervals over the same family),
    ``resolved`` (``p_adj`` < 1 - level, which is the interval excluding 0),
    ``family`` (the outcome) and ``family_size`` (contrasts with a test:
    n >= 2). The raw ``ci_lo``, ``ci_hi`` are kept.
    """
    out = effects.copy()
    if "outcome" not in out:
        out["outcome"] = ""
    out["p"] = [t_test_p(m, s, n) for m, s, n in zip(out["estimate"], out["std"], out["n"])]
    out["p_adj"] = np.nan
    out["ci_lo_adj"] = np.nan
    out["ci_hi_adj"] = np.nan
    out["family"] = out["outcome"]
    out["family_size"] = 0
    for _, idx in out.groupby("outcome", sort=False).groups.items():
        fam = out.loc[idx]
        m = int(np.isfinite(fam["p"]).sum())
        out.loc[idx, "family_size"] = m
        out.loc[idx, "p_adj"] = bonferroni(fam["p"])
        half = simultaneous_half_width(fam["std"].astype(float), fam["n"].astype(float), m, level)
        out.loc[idx, "ci_lo_adj"] = fam["estimate"] - half
        out.loc[idx, "ci_hi_adj"] = fam["estimate"] + half
    out["resolved"] = (out["p_adj"] < alpha_of(level)).fillna(False).astype(bool)
    out["family_size"] = out["family_size"].astype(int)
    if "scope" not in out:
        out["scope"] = ""
    return out[EFFECT_COLUMNS]


# ---------------------------------------------------------------- best vs runner-up


def prob_improvement(x: Iterable[float], y: Iterable[float], higher: bool = True) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs of the finite values (rliable's
    probability of improvement of X over Y); "better" is lower when not
    ``higher``. NaN when either is empty."""
    x = np.asarray(list(x), dtype=float)
    y = np.asarray(list(y), dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not len(x) or not len(y):
        return math.nan
    d = x[:, None] - y[None, :]
    if not higher:
        d = -d
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def compare(x: pd.Series, y: pd.Series, higher: bool = True, level: float = LEVEL) -> dict:
    """X against Y, both indexed by seed: estimate (mean X - Y), ci_lo, ci_hi,
    n, paired, p, prob_improvement, resolved (the interval excludes 0 on the
    side where X is better).

    Paired over the seeds both have (at least 2); otherwise Welch's unequal
    variance t interval over all runs (each side at least 2); otherwise no
    interval, and the estimate is the one shared seed's difference (paired)
    or, with no shared seed, the difference of the means (not paired): never
    means over different seeds called paired. ``n``: shared seeds when
    paired, else runs of both sides.
    """
    x = x.astype(float)[np.isfinite(x.astype(float))]
    y = y.astype(float)[np.isfinite(y.astype(float))]
    shared = x.index.intersection(y.index)
    out = {"n_x": len(x), "n_y": len(y), "prob_improvement": prob_improvement(x, y, higher)}
    if len(shared) >= 2:
        d = summarize(x[shared] - y[shared], level)
        scale = float(max(np.abs(x[shared]).max(), np.abs(y[shared]).max()))
        if essentially_constant(x[shared] - y[shared], scale):  # no spread: no interval, no test
            d.update(std=math.nan, ci_lo=math.nan, ci_hi=math.nan)
        out.update(estimate=d["mean"], ci_lo=d["ci_lo"], ci_hi=d["ci_hi"], n=len(shared), paired=True,
                   p=t_test_p(d["mean"], d["std"], d["n"]))
    elif len(x) >= 2 and len(y) >= 2:
        vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        est = float(x.mean() - y.mean())
        se = math.sqrt(vx + vy)
        if essentially_constant(x) and essentially_constant(y) or not se > 0:  # no spread: no interval, no test
            out.update(estimate=est, ci_lo=math.nan, ci_hi=math.nan, n=len(x) + len(y), paired=False, p=math.nan)
        else:
            dof = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
            half = float(t_ppf(0.5 + level / 2, dof)) * se
            p = float(2 * t_sf(abs(est) / se, dof))
            out.update(estimate=est, ci_lo=est - half, ci_hi=est + half, n=len(x) + len(y), paired=False, p=p)
    elif len(shared):  # 1 shared seed, and a side with 1 run: that seed's difference, as the effects read it
        out.update(estimate=float((x[shared] - y[shared]).mean()), ci_lo=math.nan, ci_hi=math.nan, n=len(shared),
                   paired=True, p=math.nan)
    else:  # no shared seed, and a side with fewer than 2 runs: the difference of the means, no interval
        est = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
        out.update(estimate=est, ci_lo=math.nan, ci_hi=math.nan, n=len(x) + len(y), paired=False, p=math.nan)
    lo, hi = out["ci_lo"], out["ci_hi"]
    out["resolved"] = bool(finite(lo) and (lo > 0 if higher else hi < 0))
    return out


def behind_bounds(estimate: float, lo: float, hi: float, column: str) -> str:
    """The interval of ``|estimate|`` where the best cell trails its runner-up
    (the text states the size of the gap): the interval negated where the
    estimate is negative (an accuracy), as it is where positive (a loss)."""
    return fmt_bounds(-hi, -lo, column) if estimate < 0 else fmt_bounds(lo, hi, column)


def best_vs_runner_up(runs: pd.DataFrame, ranked: pd.DataFrame, column: str, level: float = LEVEL,
                      cells: int | None = None) -> dict:
    """The top two cells of ``ranked`` compared on their own runs' ``column``
    (see :func:`compare`); {} with fewer than two ranked cells.

    The best cell is picked after seeing all k cells, so the comparison is
    read as one of the k - 1 comparisons of the best with the others: its
    interval is simultaneous over them (Bonferroni width, as for effects)
    and ``resolved`` comes from it; with two cells there is nothing to adjust.
    k is ``cells``, every cell with runs (default: the ranked ones): a cell
    whose runs all diverged was seen too, and leaving it out of k made the
    family smaller (no correction at all with one such cell of three).
    Where the best cell ranks first on its mean but trails on the seeds it
    shares with the runner-up (cells with different seeds), the text says so;
    where the best cell lost runs to divergence, the text says that its
    values are over the runs that did not diverge.

    Keys: best, runner_up, estimate (best - runner-up), ci_lo, ci_hi (the
    adjusted interval, the one the text shows), ci_lo_raw, ci_hi_raw (plain
    95%), p, p_adj (Bonferroni), family_size (k - 1), n (shared seeds when
    paired, else runs of both), n_best, n_runner_up, paired,
    prob_improvement, resolved, text.
    """
    if len(ranked) < 2:
        return {}
    best, second = ranked.index[0], ranked.index[1]
    used = runs[runs["used"]]
    x = used[used["cell"] == best].set_index("seed")[column]
    y = used[used["cell"] == second].set_index("seed")[column]
    higher = higher_is_better(column)
    m = max(len(ranked), cells or 0) - 1
    raw = compare(x, y, higher, level)
    adj = compare(x, y, higher, 1 - (1 - level) / m)
    d = {"best": best, "runner_up": second, "estimate": raw["estimate"], "ci_lo": adj["ci_lo"], "ci_hi": adj["ci_hi"],
         "ci_lo_raw": raw["ci_lo"], "ci_hi_raw": raw["ci_hi"], "p": raw["p"],
         "p_adj": min(1.0, raw["p"] * m) if finite(raw["p"]) else math.nan, "family_size": m, "n": raw["n"],
         "n_best": raw["n_x"], "n_runner_up": raw["n_y"], "paired": raw["paired"],
         "prob_improvement": raw["prob_improvement"], "resolved": adj["resolved"]}
    # every run of one cell against every run of the other, not the seed-paired differences the interval uses
    wins = (f"is better in {raw['prob_improvement']:.0%} of the {plural(raw['n_x'] * raw['n_y'], 'run pair')}, each of its runs against "
            "each of the other's (the probability of improvement)")
    behind = bool(finite(raw["estimate"]) and (raw["estimate"] < 0 if higher else raw["estimate"] > 0))
    d["behind"] = behind  # render.answer words it the same way
    if behind:  # first on its mean over its own seeds, behind on the seeds the two share
        lead = (f"Best vs runner-up: {best} ranks first on its mean, but on the seeds it shares with {second} it "
                f"trails by {fmt_diff(abs(raw['estimate']), column).lstrip('+')}")
    else:
        lead = f"Best vs runner-up: {best} leads {second} by {fmt_diff(raw['estimate'], column)}"
    lost = runs[(runs["cell"] == best) & (runs["status"] == "diverged")] if "status" in runs else runs.iloc[:0]
    diverged = ""
    if len(lost):
        n_best = int((runs["cell"] == best).sum())
        diverged = f" {best}'s values are over its runs that did not diverge: {len(lost)} of {n_best} diverged."

    def bounds(lo: float, hi: float) -> str:  # the interval of the difference the text states (its size where behind)
        return behind_bounds(raw["estimate"], lo, hi, column) if behind else fmt_bounds(lo, hi, column)
    if not finite(adj["ci_lo"]):
        if min(raw["n_x"], raw["n_y"]) < 2:
            how = "1 seed: no interval"
        elif raw["paired"]:  # compare: essentially_constant
            how = f"the {raw['n']} shared seeds give the same difference: no spread, no interval"
        else:
            how = "not paired, and each cell's runs give the same value: no spread, no interval"
        d["text"] = f"{lead} ({how}) and {wins}: the ranking of these two is not resolved.{diverged}"
        return d
    how = (f"paired over {raw['n']} shared seeds" if raw["paired"]
           else f"Welch, not paired: no 2 shared seeds, {raw['n_x']} and {raw['n_y']} runs")
    simultaneous = (f"{level:.0%} simultaneous over the {m} comparisons of the best cell with the others, as it was "
                    "picked after seeing them" if m > 1 else f"{level:.0%} CI")
    reading = "the ranking is resolved" if adj["resolved"] else "the ranking of these two is not resolved"
    d["text"] = (f"{lead} {bounds(adj['ci_lo'], adj['ci_hi'])} ({simultaneous}; {how}) and {wins}: "
                 f"{reading}.{diverged}")
    return d


def scope_where(row: pd.Series) -> str:
    """Where an effect measured on part of the grid was measured (``at lr=0.05 only``), without the
    table's reason in brackets; "" for the whole grid."""
    return str(row.get("scope") or "").split(" (")[0]


def _spread(rows: pd.DataFrame, outcome: str) -> str:
    """The estimates of contrasts not resolved, so that the answer never reads
    as "no effect": ``estimates from -10.4 pp to +1.2 pp`` (or the one)."""
    est = rows["estimate"].dropna()
    if est.empty:
        return "not estimable"
    # estimated but never tested (1 shared seed, no spread): "not resolved" of those read as tested
    untested = int((rows["estimate"].notna() & rows["p"].isna()).sum()) if "p" in rows else 0
    note = f"; {untested} of {len(est)} not tested" if untested else ""
    lacking = len(rows) - len(est)  # no seed shared by their cells: "estimate -7.7 pp" hid them, and which level it was
    if lacking:
        note += f"; {lacking} of {len(rows)} not estimable (no seed shared by their cells)"
    if len(est) == 1:
        which = rows.loc[est.index[0], "contrast"] if lacking and "contrast" in rows else ""
        return f"estimate {fmt_diff(est.iloc[0], outcome)}{f' ({which})' if which else ''}{note}"
    return f"estimates from {fmt_diff(est.min(), outcome)} to {fmt_diff(est.max(), outcome)}{note}"


def headline(effects: pd.DataFrame, outcome: str, factors: list[str], brief: bool = False) -> str:
    """One line answering "what did each factor do" on ``outcome``, adjusted
    reading only: ``batchnorm: +5.0 pp [+3.6, +6.3], resolved after
    Bonferroni correction; dropout: no level resolved after Bonferroni
    correction (estimates from -10.4 pp to +1.2 pp)`` (simultaneous intervals);
    a factor not resolved keeps its estimate, never just "no effect".
    Resolved interactions are added. ``brief`` (for factors with many
    levels): per factor, how many levels are resolved, with the smallest and
    largest resolved effect, and how many interactions are."""
    if effects.empty or not factors:
        return ""
    eff = effects[effects["outcome"] == outcome]
    short = short_names(factors)

    def one(r: pd.Series, name: str | None = None) -> str:
        text = f"{fmt_diff(r['estimate'], outcome)} {fmt_bounds(r['ci_lo_adj'], r['ci_hi_adj'], outcome)}".strip()
        scope = scope_where(r)  # measured on part of the grid only: where, as the table says
        text += f" (measured {scope})" if scope else ""
        return f"{name} {text}" if name else text

    parts = []
    for f in factors:
        rows = eff[(eff["kind"] == "main") & (eff["factor"] == f)]
        res = rows[rows["resolved"]]
        level = lambda r: r["contrast"].removeprefix(f"{short[f]}: ")  # noqa: E731
        if rows["estimate"].isna().all():
            parts.append(f"{short[f]}: not estimable")
        elif "p" in rows and rows["p"].isna().all():  # estimated, never tested: "no resolved effect" would read as a null result
            why = "1 seed shared by its cells" if (rows["n"] < 2).all() else "no spread across seeds"
            parts.append(f"{short[f]}: not tested ({why})")
        elif res.empty and len(rows) == 1:  # its estimate too: "no resolved effect" alone read as "no effect"
            parts.append(f"{short[f]} {level(rows.iloc[0])}: {one(rows.iloc[0])}, not resolved after Bonferroni correction")
        elif res.empty:
            parts.append(f"{short[f]}: no level resolved after Bonferroni correction ({_spread(rows, outcome)})")
        elif len(rows) == 1:  # "dropout 0 → 0.3: -7.0 pp": which way, not just by how much
            parts.append(f"{short[f]} {level(res.iloc[0])}: {one(res.iloc[0])}, resolved after Bonferroni correction")
        elif brief and len(res) > 1:
            res = res.sort_values("estimate", key=abs)
            lo, hi = res.iloc[0], res.iloc[-1]
            parts.append(f"{short[f]}: {len(res)} of {len(rows)} levels resolved after Bonferroni correction, from "
                         f"{one(lo)} ({level(lo)}) to {one(hi)} ({level(hi)})")
        else:
            listed = ", ".join(one(r, level(r) + " by") for _, r in res.iterrows())
            rest = rows[~rows["resolved"]]  # "resolved", as every other line says it ("holds" here alone)
            parts.append(f"{short[f]}: {listed}, resolved after Bonferroni correction (other levels not resolved: "
                         f"{_spread(rest, outcome)})" if len(rest) else f"{short[f]}: {listed}, resolved after Bonferroni correction")
    # a factor whose main effect is not resolved but that is at some level of another: the answer said only
    # "not resolved" of a factor with a resolved effect (its simple effects, under Effects)
    unresolved_main = {f for f in factors if not eff[(eff["kind"] == "main") & (eff["factor"] == f)]["resolved"].any()}
    simple = eff[(eff["kind"] == "simple") & eff["resolved"] & eff["factor"].isin(unresolved_main)]
    if brief:
        inter = eff[eff["kind"] == "interaction"]
        k = int(inter["resolved"].sum())
        if len(inter):
            parts.append(f"interactions: {k} of {len(inter)} resolved" if k else "no resolved interaction")
        if len(simple):  # the short answer dropped them (the console's long one listed them)
            parts.append(f"{len(simple)} more effect{'s' if len(simple) > 1 else ''} resolved at one level of another "
                         "factor (under Effects)")
        return "; ".join(parts)
    inter = eff[(eff["kind"] == "interaction") & eff["resolved"]]
    for _, r in inter.iterrows():
        parts.append(f"interaction {r['contrast']}: {one(r)}, resolved after Bonferroni correction")
    if len(simple):
        shown = [f"{r['contrast']} at {r['at']} {one(r)}" for _, r in simple.head(2).iterrows()]
        more = f" and {len(simple) - 2} more" if len(simple) > 2 else ""
        # "only" read as "the effect differs between the levels", which is the interaction's test, not this one's
        parts.append(f"resolved at one level of another factor (not a tested difference between levels): "
                     f"{', '.join(shown)}{more}")
    return "; ".join(parts)


# ---------------------------------------------------------------- everything at once


@dataclass
class Analysis:
    """What the figures, the report and the console summary are made from."""

    study: Study
    metric: str
    target: float | None
    target_auto: bool  # chosen by auto_target, not by the user
    runs: pd.DataFrame  # study.runs joined with run_outcomes, plus ``lacking`` (see lacking_values)
    cells: pd.DataFrame  # cell_table
    curves: pd.DataFrame  # epoch_curves of every metric column, used runs only
    # contrasts + adjust per outcome: EFFECT_COLUMNS (outcome, kind, factor, contrast, at, estimate, ci_lo,
    # ci_hi, n, std, p, p_adj, ci_lo_adj, ci_hi_adj, resolved, family, family_size, scope)
    effects: pd.DataFrame
    effect_outcomes: list[str] = field(default_factory=list)
    # The per-seed values behind every contrast: SEED_COLUMNS (outcome, kind, factor, contrast, at, seed, value).
    contrast_seeds: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SEED_COLUMNS))
    best_vs_runner_up: dict = field(default_factory=dict)  # see best_vs_runner_up(); {} with < 2 ranked cells
    headline: str = ""  # see headline()
    level: float = LEVEL
    # A non-grid sweep (regbench.report.optimize): the searched config keys and one row per trial in start
    # order; such a report has no effects and no best-vs-runner-up verdict.
    params: list[str] = field(default_factory=list)
    trials: pd.DataFrame | None = None

    @property
    def best_col(self) -> str:
        return f"best_{self.metric}"

    def shared_clock(self) -> bool:
        """Whether used runs trained in fused groups, each charged a share of its group's clock: their
        seconds say what the sweep spent, not how fast a cell trains alone."""
        return "shared_clock" in self.runs and bool(self.runs.loc[self.runs["used"], "shared_clock"].any())

    def ranked(self) -> pd.DataFrame:
        """Cells with usable runs, best first by the mean of the metric at the
        epoch of lowest validation loss (higher first for accuracies, lower
        for losses, gaps and anything else)."""
        col = f"{self.best_col}_mean"
        if col not in self.cells:
            return self.cells.iloc[:0]
        have = self.cells[self.cells[col].notna()]
        return have.sort_values(col, ascending=not higher_is_better(self.metric), kind="stable")


def effect_tables(used: pd.DataFrame, factors: list[str], levels: dict[str, list], outcomes: list[str],
                  level: float = LEVEL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`contrasts` of each outcome, adjusted per outcome (:func:`adjust`):
    (effects, per-seed contrasts), both with an ``outcome`` column."""
    effs, seeds = [], []
    for c in outcomes:
        e, s = contrasts(used, factors, levels, c, level)
        effs.append(e.assign(outcome=c))
        seeds.append(s.assign(outcome=c))
    if not effs or all(e.empty for e in effs):
        return pd.DataFrame(columns=EFFECT_COLUMNS), pd.DataFrame(columns=SEED_COLUMNS)
    effects = adjust(pd.concat([e for e in effs if not e.empty], ignore_index=True), level)
    seeds = pd.concat([s for s in seeds if not s.empty], ignore_index=True) if any(len(s) for s in seeds) else \
        pd.DataFrame(columns=SEED_COLUMNS)
    return effects, seeds[SEED_COLUMNS]


def analyze(study: Study, metric: str = "val_acc", target: float | None = None, level: float = LEVEL,
            effects: bool | str = True) -> Analysis:
    """Outcomes per run, statistics per cell and per epoch, and effects
    (none with ``effects=False``: a search's trials are no levels of a factor;
    with ``effects="later"`` they are left to :func:`complete_effects`, which
    the report calls while its figure workers draw the curves)."""
    target_auto = target is None
    if target_auto:  # the weakest cell's mean best_<metric> over its usable runs; no whole cell table for it
        first = study.runs.join(run_outcomes(study.epochs, metric, None), on="run")
        used_first, best = first[first["used"]], f"best_{metric}"
        target = (auto_target(aggregate(used_first, ["cell"], [best], level), metric)
                  if best in first and len(used_first) else None)
        if target is not None and metric in study.epochs:  # a target the untrained models meet times no learning
            ep = study.epochs
            untrained = ep.loc[(ep["epoch"] == 0) & ep["run"].isin(used_first["run"]), metric].astype(float)
            untrained = untrained[np.isfinite(untrained)]
            if len(untrained) and not (target > untrained.max() if higher_is_better(metric) else target < untrained.min()):
                target = None
    outcomes = run_outcomes(study.epochs, metric, target)
    runs = study.runs.join(outcomes, on="run")
    runs["lacking"] = lacking_values(runs, outcome_columns(outcomes))
    cells = cell_table(runs, study.factors, study.levels, outcome_columns(outcomes), level)
    used_epochs = study.epochs[study.epochs["run"].isin(study.used["run"])]
    columns = [c for c in study.metric_columns if used_epochs[c].notna().any()]
    curves = epoch_curves(used_epochs, columns, level)
    # Test accuracy at each run's val-chosen epoch beside it: the validation value at an epoch chosen on
    # validation data is biased upward, by more where curves are noisier; the test value is not.
    test = "best_test_acc" if metric == "val_acc" and "best_test_acc" in runs and runs["best_test_acc"].notna().any() else None
    effect_outcomes = [c for c in dict.fromkeys([f"best_{metric}", test, f"final_{metric}", "final_gap_loss"])
                       if c is not None and c in runs]
    if not effects:
        return Analysis(study, metric, target, target_auto, runs, cells, curves,
                        pd.DataFrame(columns=EFFECT_COLUMNS), level=level)
    a = Analysis(study, metric, target, target_auto, runs, cells, curves, pd.DataFrame(columns=EFFECT_COLUMNS),
                 effect_outcomes, level=level)
    return a if effects == "later" else complete_effects(a)


def complete_effects(a: Analysis) -> Analysis:
    """``a``'s effects (contrasts of its effect outcomes, paired by seed), the
    best-vs-runner-up verdict and the headline, computed in place; ``a``."""
    study, runs = a.study, a.runs
    a.effects, a.contrast_seeds = effect_tables(runs[runs["used"]], study.factors, study.levels, a.effect_outcomes, a.level)
    a.best_vs_runner_up = best_vs_runner_up(runs, a.ranked(), a.best_col, a.level, int((a.cells["n_runs"] > 0).sum()))
    a.headline = headline(a.effects, a.best_col, study.factors)
    return a
