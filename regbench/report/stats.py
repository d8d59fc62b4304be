"""Statistics over the tidy tables: pure functions, DataFrames in, DataFrames out.

Every headline number is a distribution over seeds: mean, std, n and a 95%
Student-t confidence interval of the mean. Non-finite values (a diverged
run's NaN/inf) never enter a mean.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

from .load import (
    COMBINED_SEP,
    DUPLICATE,
    GAP,
    UNFINISHED,
    Study,
    cell_labels,
    fmt_value,
    incomplete,
    is_combined,
    missing_text,
    short_names,
)

LEVEL = 0.95  # confidence level of every interval in the report
STATS = ("mean", "std", "n", "ci_lo", "ci_hi")


def higher_is_better(metric: str) -> bool:
    """Accuracies go up; losses, gaps and everything else go down."""
    return metric.endswith("acc") and not metric.startswith("gap")


def _t_half_width(std, n, level: float = LEVEL):
    """Half-width of the Student-t interval of a mean; NaN where n < 2."""
    n = np.asarray(n, dtype=float)
    dof = np.where(n > 1, n - 1, np.nan)
    return sps.t.ppf(0.5 + level / 2, dof) * np.asarray(std, dtype=float) / np.sqrt(np.where(n > 0, n, np.nan))


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


def aggregate(df: pd.DataFrame, by: list[str], columns: list[str], level: float = LEVEL) -> pd.DataFrame:
    """Per group of ``by``: ``<col>_mean, _std, _n, _ci_lo, _ci_hi`` for each column.

    One vectorized groupby for all groups (no per-group Python), so it scales
    to thousands of run x epoch groups.
    """
    values = df[columns].astype(float)
    values = values.where(np.isfinite(values))
    g = values.groupby([df[b] for b in by], sort=False)
    mean, std, n = g.mean(), g.std(ddof=1), g.count()
    half = pd.DataFrame(_t_half_width(std, n, level), index=mean.index, columns=columns)
    out = {}
    for c in columns:
        out[f"{c}_mean"], out[f"{c}_std"], out[f"{c}_n"] = mean[c], std[c], n[c]
        out[f"{c}_ci_lo"], out[f"{c}_ci_hi"] = mean[c] - half[c], mean[c] + half[c]
    return pd.DataFrame(out, index=mean.index)


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
    for col in dict.fromkeys([metric, "val_acc", "val_loss"]):
        if col in ep:
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
    before trusting the row: fewer seeds than other cells, runs left out.
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
    stats = aggregate(used, ["cell"], columns, level) if len(used) else pd.DataFrame()
    table = table.join(stats)
    if "epochs_to_target" in used:
        table["n_reached"] = used.groupby("cell")["epochs_to_target"].count().reindex(table.index).fillna(0).astype(int)

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
    table["caveats"] = _flags(table, runs)
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
    """``seed 1 stopped at epoch 96 of 300`` (the planned epochs where recorded)."""
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
    known."""
    col = f"best_{metric}_mean"
    if col not in cells or cells[col].dropna().empty:
        return None
    if higher_is_better(metric):
        return math.floor(cells[col].min() * 100) / 100
    return math.ceil(cells[col].max() * 100) / 100


# ---------------------------------------------------------------- effects


def paired_effects(
    runs: pd.DataFrame,
    factors: list[str],
    levels: dict[str, list],
    value: str,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Main and two-way interaction effects on ``value``, paired by seed.

    For each factor, each level is compared with the first (reference)
    level: the main effect is the difference averaged over all settings of
    the other factors. The interaction of A (a0 -> a) and B (b0 -> b) is a
    difference of differences, ``(y[a,b] - y[a0,b]) - (y[a,b0] - y[a0,b0])``:
    how much B changes the effect of A. For a 2-level factorial this is the
    classic design. Each contrast is computed per seed, so seed-to-seed
    variation shared by all cells cancels; a seed enters only if it has a
    used run in every cell the contrast needs, and the interval is Student-t
    over those seeds. ``runs`` must hold only used runs.

    Returns one row per contrast: kind, factor, contrast, estimate, ci_lo,
    ci_hi, n (seeds), with ``estimate`` NaN when no seed covers the contrast.
    """
    if not factors or runs.empty:
        return pd.DataFrame(columns=["kind", "factor", "contrast", "estimate", "ci_lo", "ci_hi", "n", "std"])
    vals = runs[value].astype(float).where(np.isfinite(runs[value].astype(float)))
    wide = runs.assign(_v=vals).pivot_table(index="seed", columns="cell", values="_v", aggfunc="mean")
    keys = runs.drop_duplicates("cell").set_index("cell")[factors]
    short = short_names(factors)

    def select(fixed: dict) -> pd.DataFrame:
        """Seeds x settings of the other factors, at the ``fixed`` levels."""
        mask = np.ones(len(keys), dtype=bool)
        for f, v in fixed.items():
            mask &= (keys[f] == v).to_numpy()
        rest = [f for f in factors if f not in fixed]
        sub = keys[mask]
        block = wide.reindex(columns=sub.index)
        block.columns = ["|".join(map(repr, r)) for r in sub[rest].itertuples(index=False)]
        # Every setting of the other factors must be present, or the average
        # would silently be over a different set of cells.
        grid = ["|".join(map(repr, g)) for g in itertools.product(*(levels[f] for f in rest))]
        return block.reindex(columns=grid)

    def row(kind: str, factor: str, contrast: str, diff: pd.DataFrame) -> dict:
        per_seed = diff.mean(axis=1, skipna=False).dropna()
        return {"kind": kind, "factor": factor, "contrast": contrast, **_effect(per_seed, level)}

    def change(f: str, a, b) -> str:
        """``dropout: 0 → 0.5``; a combined factor: ``dropout=0, epochs=2 → dropout=0.3, epochs=5``."""
        return f"{a} → {b}" if is_combined(f) else f"{short[f]}: {fmt_value(a)} → {fmt_value(b)}"

    rows = []
    for f in factors:
        ref = levels[f][0]
        for lv in levels[f][1:]:
            diff = select({f: lv}) - select({f: ref})
            rows.append(row("main", f, change(f, ref, lv), diff))
    for f, h in itertools.combinations(factors, 2):
        rf, rh = levels[f][0], levels[h][0]
        for a in levels[f][1:]:
            for b in levels[h][1:]:
                diff = (select({f: a, h: b}) - select({f: rf, h: b})) - (select({f: a, h: rh}) - select({f: rf, h: rh}))
                contrast = f"({change(f, rf, a)}) × ({change(h, rh, b)})"
                rows.append(row("interaction", f"{f} × {h}", contrast, diff))
    return pd.DataFrame(rows)


def _effect(per_seed: pd.Series, level: float) -> dict:
    s = summarize(per_seed, level)
    return {"estimate": s["mean"], "ci_lo": s["ci_lo"], "ci_hi": s["ci_hi"], "n": s["n"], "std": s["std"]}


# ---------------------------------------------------------------- everything at once


@dataclass
class Analysis:
    """What the figures, the report and the console summary are made from."""

    study: Study
    metric: str
    target: float | None
    target_auto: bool  # chosen by auto_target, not by the user
    runs: pd.DataFrame  # study.runs joined with run_outcomes
    cells: pd.DataFrame  # cell_table
    curves: pd.DataFrame  # epoch_curves of every metric column, used runs only
    effects: pd.DataFrame  # paired_effects per outcome, with an ``outcome`` column
    effect_outcomes: list[str] = field(default_factory=list)

    @property
    def best_col(self) -> str:
        return f"best_{self.metric}"

    def ranked(self) -> pd.DataFrame:
        """Cells with usable runs, best first by the mean of the metric at the
        epoch of lowest validation loss."""
        col = f"{self.best_col}_mean"
        if col not in self.cells:
            return self.cells.iloc[:0]
        have = self.cells[self.cells[col].notna()]
        return have.sort_values(col, ascending=not higher_is_better(self.metric))


def analyze(study: Study, metric: str = "val_acc", target: float | None = None) -> Analysis:
    """Outcomes per run, statistics per cell and per epoch, and effects."""
    outcomes = run_outcomes(study.epochs, metric, target=None)
    runs = study.runs.join(outcomes, on="run")
    cells = cell_table(runs, study.factors, study.levels, outcome_columns(outcomes))
    target_auto = target is None
    if target_auto:
        target = auto_target(cells, metric)
    if target is not None:  # second pass now that the target is known
        outcomes = run_outcomes(study.epochs, metric, target)
        runs = study.runs.join(outcomes, on="run")
        cells = cell_table(runs, study.factors, study.levels, outcome_columns(outcomes))
    used_epochs = study.epochs[study.epochs["run"].isin(study.used["run"])]
    columns = [c for c in study.metric_columns if used_epochs[c].notna().any()]
    curves = epoch_curves(used_epochs, columns)
    effect_outcomes = [c for c in dict.fromkeys([f"best_{metric}", f"final_{metric}", "final_gap_loss"]) if c in runs]
    used = runs[runs["used"]]
    effects = pd.concat(
        [paired_effects(used, study.factors, study.levels, c).assign(outcome=c) for c in effect_outcomes],
        ignore_index=True,
    ) if effect_outcomes else pd.DataFrame()
    return Analysis(study, metric, target, target_auto, runs, cells, curves, effects, effect_outcomes)
