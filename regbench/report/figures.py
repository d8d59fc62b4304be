"""Figures. Plot functions are pure: ``(data, ..., ax=None) -> ax``; the
``fig_*`` builders arrange them into the report's figures.

Statistics are computed elsewhere (:mod:`regbench.report.stats`); these
functions only draw the ``<col>_mean`` / ``_ci_lo`` / ``_ci_hi`` columns they
are given. Figures are built on :class:`matplotlib.figure.Figure` directly,
never through pyplot: no global figure state to leak across a 200-run report
and no GUI backend, so the report runs headless without touching the
process-wide backend of whoever imports it.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .load import fmt_value, setting_text, short_names
from .stats import higher_is_better, left_out_count

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
HATCHES = ["", "///", "...", "xxx"]
BAND_ALPHA = 0.18
PANEL_W, PANEL_H = 3.0, 2.3  # inches per small-multiple panel
DPI = 110  # PNG resolution: sharp in a browser, small enough to embed
# Accuracies are fractions in the records; people read percent (87.5%, 25%).
PERCENT = FuncFormatter(lambda v, _: f"{100 * v:.4g}%")

LABELS = {
    "epoch": "epoch",
    "time_s": "training time (s, evaluation excluded)",
    "lr": "learning rate",
    "train_loss": "training loss (train mode, running)",
    "train_acc": "training accuracy (train mode, running)",
    "fit_loss": "fit loss (train set, eval mode)",
    "fit_acc": "fit accuracy (train set, eval mode)",
    "val_loss": "validation loss (cross-entropy)",
    "val_acc": "validation accuracy",
    "test_loss": "test loss (cross-entropy)",
    "test_acc": "test accuracy",
    "gap_loss": "generalization gap: val − fit loss",
    "gap_acc": "generalization gap: fit − val accuracy",
    "grad_norm": "gradient L2 norm (mean per step)",
    "noisy_fit_acc": "memorized noisy labels (acc. vs noisy label)",
    "noisy_clean_acc": "noisy-label examples: acc. vs clean label",
    "val_loss_rise": "val loss rise after its minimum",
    "best_epoch": "epoch of lowest validation loss",
}

# Per-layer diagnostics (regbench.diagnostics), recorded as ``<prefix>/<layer>``.
VAR_SHIFT, DEAD_FRAC, WEIGHT_NORM = "bn_var_shift", "dead_frac", "weight_norm"
PREACT = "preact_p{}"  # 15th, 50th and 85th percentile of one unit's pre-activation
LAYER_LABELS = {
    VAR_SHIFT: "BatchNorm variance shift",
    DEAD_FRAC: "dead ReLU units",
    WEIGHT_NORM: "weight norm ‖W‖",
}


def label(column: str) -> str:
    """Axis label, with the unit where it has one. ``best_<col>`` is the value
    at the epoch of lowest validation loss, and says so."""
    if column in LABELS:
        return LABELS[column]
    if column.startswith("best_") and column[5:] in LABELS:
        return LABELS[column[5:]] + " at lowest val loss"
    if column.startswith("final_") and column[6:] in LABELS:
        return "final " + LABELS[column[6:]]
    prefix, _, layer = column.partition("/")
    if prefix in LAYER_LABELS or (prefix.startswith("preact_p") and prefix[8:].isdigit()):
        what = LAYER_LABELS.get(prefix) or f"pre-activation, {prefix[8:]}th percentile"
        return f"{what}{' (' + layer + ')' if layer else ''}"
    return LABELS.get(column, column)


def wrap(cell: str, width: int = 32) -> str:
    """A cell label over several lines, breaking only between settings."""
    lines = [""]
    for part in cell.split(", "):
        if lines[-1] and len(lines[-1]) + len(part) + 2 > width:
            lines.append(part)
        else:
            lines[-1] = f"{lines[-1]}, {part}" if lines[-1] else part
    return "\n".join(lines)


def _is_accuracy(column: str) -> bool:
    return column.endswith("acc")


def _bounds(column: str) -> tuple[float | None, float | None]:
    """The range a metric can take, to keep interval bands inside it."""
    if _is_accuracy(column) and not column.startswith("gap") or column.startswith(DEAD_FRAC):
        return 0.0, 1.0
    if column.startswith(VAR_SHIFT):
        return 1.0, None  # max(a/b, b/a) >= 1
    if column.startswith(WEIGHT_NORM) or column == "grad_norm":
        return 0.0, None
    return None, None


def _format_y(ax: Axes, column: str) -> None:
    if _is_accuracy(column) or column.startswith(DEAD_FRAC):  # fractions, read as percent
        ax.yaxis.set_major_formatter(PERCENT)


def _new_ax(ax: Axes | None) -> Axes:
    return ax if ax is not None else Figure(layout="constrained").add_subplot()


# ---------------------------------------------------------------- styles


@dataclass
class Styles:
    """One look per cell, the same in every figure: colour by one factor,
    line style (and marker, hatch) by another."""

    cell: dict[str, dict] = field(default_factory=dict)  # cell -> color, linestyle, marker, hatch
    legend: list = field(default_factory=list)  # handles explaining colour and style
    color_by: str | None = None
    style_by: str | None = None


def _heading(text: str) -> Line2D:
    return Line2D([], [], linestyle="none", label=text)


def cell_styles(keys: pd.DataFrame, levels: dict[str, list], color_by: str | None, style_by: str | None) -> Styles:
    """``keys``: index = cell, columns = factors. A numeric colour factor gets
    a sequential colour map (order matters: 0 < 0.1 < 0.3); anything else and
    every factor beyond colour and style get distinct qualitative colours."""
    factors = list(keys.columns)
    short = short_names(factors)
    rest = [f for f in factors if f not in (color_by, style_by)]
    colour_keys = [f for f in [color_by, *rest] if f]
    combos = list(dict.fromkeys(tuple(r) for r in keys[colour_keys].itertuples(index=False))) if colour_keys else [()]
    combos.sort(key=lambda c: [levels[f].index(v) for f, v in zip(colour_keys, c)])
    numeric = color_by is not None and not rest and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in levels[color_by]
    )
    if numeric:
        cmap = matplotlib.colormaps["viridis"]
        k = len(combos)
        colours = [cmap(0.85 * i / max(k - 1, 1)) for i in range(k)]  # skip the faint yellow end
    else:
        cmap = matplotlib.colormaps["tab10" if len(combos) <= 10 else "tab20"]
        colours = [cmap(i % cmap.N) for i in range(len(combos))]
    colour_of = dict(zip(combos, colours))
    style_levels = levels[style_by] if style_by else [None]

    styles = Styles(color_by=color_by, style_by=style_by)
    for cell, row in keys.iterrows():
        i = style_levels.index(row[style_by]) if style_by else 0
        styles.cell[cell] = {
            "color": colour_of[tuple(row[f] for f in colour_keys)] if colour_keys else "C0",
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)],
            "hatch": HATCHES[i % len(HATCHES)],
        }
    if colour_keys:
        styles.legend.append(_heading("colour: " + ", ".join(short[f] for f in colour_keys)))
        for combo, colour in colour_of.items():
            text = ", ".join(setting_text(f, v, short[f]) for f, v in zip(colour_keys, combo))
            styles.legend.append(Line2D([], [], color=colour, lw=2.5, label=text))
    if style_by:
        styles.legend.append(_heading(f"line: {short[style_by]}"))
        for i, v in enumerate(style_levels):
            styles.legend.append(
                Line2D([], [], color="0.3", lw=1.6, linestyle=LINESTYLES[i % len(LINESTYLES)],
                       marker=MARKERS[i % len(MARKERS)], markersize=4, markerfacecolor="white",
                       label=setting_text(style_by, v, short[style_by]))
            )
    return styles


def _cell_legend(fig: Figure, styles: Styles, extra: list | None = None) -> None:
    handles = styles.legend + (extra or [])
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False, handlelength=2.6)


# ---------------------------------------------------------------- plot functions


def plot_curve(
    curves: pd.DataFrame,
    column: str,
    styles: Styles,
    ax: Axes | None = None,
    x: str = "epoch",
    band: bool = True,
) -> Axes:
    """Mean of ``column`` over seeds per cell, with its 95% CI as a band.

    ``curves``: index (cell, epoch), columns ``<col>_mean/_ci_lo/_ci_hi``.
    ``x``: ``epoch`` or another column (e.g. ``time_s``) averaged over seeds.
    """
    ax = _new_ax(ax)
    for cell, d in curves.groupby(level="cell", sort=False):
        d = d.droplevel("cell")
        if d[f"{column}_mean"].isna().all():
            continue
        st = styles.cell.get(cell, {"color": "C0", "linestyle": "-"})
        xs = d.index.to_numpy() if x == "epoch" else d[f"{x}_mean"].to_numpy()
        ax.plot(xs, d[f"{column}_mean"], color=st["color"], linestyle=st["linestyle"], lw=1.6)
        if band:
            lo, hi = _bounds(column)  # a t interval over 2-3 seeds can leave what the metric can be
            ax.fill_between(xs, d[f"{column}_ci_lo"].clip(lo, hi), d[f"{column}_ci_hi"].clip(lo, hi),
                            color=st["color"], alpha=BAND_ALPHA, lw=0)
    ax.set_xlabel(label(x))
    if x == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label(column))
    _format_y(ax, column)
    ax.grid(alpha=0.3)
    return ax


def plot_percentiles(curves: pd.DataFrame, layer: str, styles: Styles, ax: Axes | None = None) -> Axes:
    """One unit's pre-activation in ``layer`` per cell: the median as a line,
    the 15th-85th percentile as a band with thin edges (each the mean over
    seeds). The band is the spread of the unit's values, not an interval."""
    ax = _new_ax(ax)
    lo, mid, hi = (f"{PREACT.format(q)}/{layer}_mean" for q in (15, 50, 85))
    for cell, d in curves.groupby(level="cell", sort=False):
        d = d.droplevel("cell")
        if mid not in d or d[mid].isna().all():
            continue
        st = styles.cell.get(cell, {"color": "C0", "linestyle": "-"})
        x = d.index.to_numpy()
        ax.plot(x, d[mid], color=st["color"], linestyle=st["linestyle"], lw=1.7)
        if lo in d and hi in d:
            # Faint fill, so that bands of several cells stay readable where they overlap; edges tell them apart.
            ax.fill_between(x, d[lo], d[hi], color=st["color"], alpha=0.07, lw=0)
            for edge in (lo, hi):
                ax.plot(x, d[edge], color=st["color"], linestyle=st["linestyle"], lw=0.8)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"pre-activation ({layer})")
    ax.grid(alpha=0.3)
    return ax


def plot_fit_vs_val(curve: pd.DataFrame, kind: str, color, ax: Axes | None = None, best_epoch: float | None = None) -> Axes:
    """One cell: fit (train set, eval mode; dashed) and validation (solid)
    ``kind`` ("loss" or "acc") over epochs with seed bands; a dotted line
    marks the mean epoch of lowest validation loss."""
    ax = _new_ax(ax)
    x = curve.index.to_numpy()
    for split, ls in (("fit", "--"), ("val", "-")):
        col = f"{split}_{kind}"
        if f"{col}_mean" not in curve:
            continue
        ax.plot(x, curve[f"{col}_mean"], color=color, linestyle=ls, lw=1.6)
        ax.fill_between(x, curve[f"{col}_ci_lo"], curve[f"{col}_ci_hi"], color=color, alpha=BAND_ALPHA, lw=0)
    if best_epoch is not None and np.isfinite(best_epoch):
        ax.axvline(best_epoch, color="0.35", linestyle=":", lw=1.2)
    _format_y(ax, kind)
    ax.grid(alpha=0.3)
    return ax


def plot_bars(cells: pd.DataFrame, column: str, styles: Styles, ax: Axes | None = None) -> Axes:
    """Horizontal bars of ``column`` mean per cell with 95% CI whiskers; each
    bar says how many of the cell's runs reached the target (``n_reached``)."""
    ax = _new_ax(ax)
    names = list(cells.index)
    y = np.arange(len(names))[::-1]  # first cell on top
    mean = cells[f"{column}_mean"].to_numpy(dtype=float)
    lo, hi = cells[f"{column}_ci_lo"].to_numpy(dtype=float), cells[f"{column}_ci_hi"].to_numpy(dtype=float)
    err = np.vstack([mean - lo, hi - mean])
    err = np.where(np.isfinite(err), err, 0)
    for i, cell in enumerate(names):
        st = styles.cell.get(cell, {"color": "0.7", "hatch": ""})
        ax.barh(y[i], np.nan_to_num(mean[i]), color=st["color"], hatch=st["hatch"], edgecolor="white", height=0.7)
    ax.errorbar(np.nan_to_num(mean), y, xerr=err, fmt="none", ecolor="black", elinewidth=1, capsize=2)
    right = np.nanmax(np.where(np.isfinite(hi), hi, mean)) if np.isfinite(mean).any() else 1.0
    for i, cell in enumerate(names):
        used, reached = int(cells["n_used"].iloc[i]), int(cells.get("n_reached", cells["n_used"]).iloc[i])
        if used == 0:
            text = "no usable runs"
        elif reached == 0:
            text = "never reached"
        else:
            text = f"{reached}/{used} reached" if reached < used else f"n={used}"
        x = max(np.nan_to_num(hi[i] if np.isfinite(hi[i]) else mean[i]), 0)
        ax.text(x + 0.02 * right, y[i], text, va="center", fontsize=7, color="0.25")
    ax.set_xlim(0, right * 1.3 if right > 0 else 1)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(label(column))
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_ablation(
    cells: pd.DataFrame,
    column: str,
    x_factor: str,
    levels: dict[str, list],
    styles: Styles,
    ax: Axes | None = None,
) -> Axes:
    """``column`` (mean, 95% CI error bars) against ``x_factor``, one line per
    setting of the other factors. Markers carry each cell's colour; lines
    carry the style factor's line style."""
    ax = _new_ax(ax)
    factors = [c for c in cells.columns if c in levels]
    others = [f for f in factors if f != x_factor]
    xl = levels[x_factor]
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in xl)
    pos = {v: (float(v) if numeric else i) for i, v in enumerate(xl)}
    span = (max(pos.values()) - min(pos.values())) or 1.0
    groups = list(cells.groupby(others, sort=False)) if others else [((), cells)]
    for k, (_, g) in enumerate(groups):
        g = g[g[f"{column}_mean"].notna()]
        if g.empty:
            continue
        g = g.assign(_x=g[x_factor].map(pos)).sort_values("_x")
        dodge = 0.02 * span * (k - (len(groups) - 1) / 2)  # keep error bars apart
        x = g["_x"].to_numpy(dtype=float) + dodge
        m = g[f"{column}_mean"].to_numpy(dtype=float)
        err = np.vstack([m - g[f"{column}_ci_lo"], g[f"{column}_ci_hi"] - m])
        first = styles.cell.get(g.index[0], {})
        # Lines only join ordered (numeric) settings; categories stand alone.
        ax.errorbar(x, m, yerr=np.where(np.isfinite(err), err, 0), color="0.3", capsize=3, elinewidth=1, zorder=1,
                    linestyle=first.get("linestyle", "-") if numeric else "none", lw=1.3)
        for xi, mi, cell in zip(x, m, g.index):
            st = styles.cell.get(cell, {})
            ax.plot(xi, mi, linestyle="none", marker=st.get("marker", "o"), markersize=7,
                    markerfacecolor=st.get("color", "C0"), markeredgecolor="0.2", zorder=2)
    if not numeric:
        ax.set_xticks(list(pos.values()), [fmt_value(v) for v in xl], rotation=20, fontsize=8)
    elif all(v > 0 for v in xl) and max(xl) / min(xl) >= 100:
        ax.set_xscale("log")  # learning rates, weight decays: decades
    ax.set_xlabel(short_names(factors)[x_factor])
    ax.set_ylabel(label(column))
    _format_y(ax, column.removeprefix("best_").removeprefix("final_"))
    ax.grid(alpha=0.3)
    return ax


def plot_heatmap(
    cells: pd.DataFrame,
    column: str,
    row_factor: str,
    col_factor: str,
    levels: dict[str, list],
    ax: Axes | None = None,
) -> Axes:
    """Mean ``column`` for every (row, column) setting, annotated with ± the
    95% CI half-width; settings without usable runs are grey and say why.
    Brighter is better."""
    ax = _new_ax(ax)
    rows, cols = levels[row_factor], levels[col_factor]
    grid = np.full((len(rows), len(cols)), np.nan)
    notes = {}
    most = cells["n_used"].max()
    for cell, r in cells.iterrows():
        i, j = rows.index(r[row_factor]), cols.index(r[col_factor])
        grid[i, j] = r.get(f"{column}_mean", np.nan)
        half = (r[f"{column}_ci_hi"] - r[f"{column}_ci_lo"]) / 2
        n = int(r["n_used"])
        if n == 0:
            left = ", ".join(left_out_count(int(r[c]), c[2:].replace("_", " ")) for c in r.index
                             if c in ("n_diverged", "n_failed", "n_unfinished", "n_missing_epochs") and r[c])
            notes[i, j] = "no runs" if r["n_runs"] == 0 else "no usable\nruns" + (f"\n({left})" if left else "")
        else:
            pct = 100 if _is_accuracy(column) else 1
            unit = "%" if pct == 100 else ""
            text = f"{grid[i, j] * pct:.{1 if pct == 100 else 3}f}{unit}"
            if np.isfinite(half):
                text += f"\n±{half * pct:.{1 if pct == 100 else 3}f}"
            notes[i, j] = text + (f"\nn={n}" if n < most else "")
    cmap = matplotlib.colormaps["viridis" if higher_is_better(column.split("_", 1)[1]) else "viridis_r"]
    cmap = cmap.with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (i, j), text in notes.items():
        v = grid[i, j]
        bright = np.isfinite(v) and ((v > mid) == higher_is_better(column.split("_", 1)[1]))
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if bright or not np.isfinite(v) else "white")
    short = short_names([row_factor, col_factor])
    ax.set_xticks(range(len(cols)), [fmt_value(v) for v in cols])
    ax.set_yticks(range(len(rows)), [fmt_value(v) for v in rows])
    ax.set_xlabel(short[col_factor])
    ax.set_ylabel(short[row_factor])
    bar = ax.figure.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label(label(column), fontsize=8)
    if _is_accuracy(column):
        bar.formatter = PERCENT
        bar.update_ticks()
    return ax


# ---------------------------------------------------------------- figures


def fig_overfitting(
    curves: pd.DataFrame, cells: pd.DataFrame, styles: Styles, levels: dict[str, list], kind: str = "loss"
) -> Figure:
    """Small multiples: one panel per cell, fit vs validation ``kind``."""
    names = list(cells.index)
    grid_rows = grid_cols = None
    if styles.color_by and styles.style_by and len(levels) == 2 and len(levels[styles.color_by]) <= 6:
        grid_rows, grid_cols = levels[styles.style_by], levels[styles.color_by]
        nrows, ncols = len(grid_rows), len(grid_cols)
    else:
        ncols = min(len(names), 5 if len(names) > 8 else 4)
        nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(PANEL_W * ncols + 2.4, PANEL_H * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    placed = set()
    have = set(curves.index.get_level_values("cell"))
    for k, cell in enumerate(names):
        if grid_rows is not None:
            r = cells.loc[cell]
            ax = axes[grid_rows.index(r[styles.style_by]), grid_cols.index(r[styles.color_by])]
        else:
            ax = axes.flat[k]
        placed.add(id(ax))
        ax.set_title(wrap(cell), fontsize=8.5)
        if cell not in have:
            why = (cells.loc[cell, "caveats"] or "no usable runs").replace("; ", "\n")
            ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")
            continue
        best = cells.loc[cell].get("best_epoch_mean", np.nan)
        plot_fit_vs_val(curves.loc[cell], kind, styles.cell[cell]["color"], ax=ax, best_epoch=best)
    for ax in axes.flat:
        if id(ax) not in placed:
            ax.set_axis_off()
    fig.supxlabel("epoch")
    fig.supylabel("cross-entropy loss" if kind == "loss" else "accuracy")
    what = "loss" if kind == "loss" else "accuracy"
    fig.suptitle(f"Overfitting: fit vs validation {what} per cell (mean, 95% CI band over seeds)", fontsize=11)
    fig.legend(
        handles=[
            Line2D([], [], color="0.3", ls="-", label=f"validation {what}"),
            Line2D([], [], color="0.3", ls="--", label=f"fit {what} (train set, eval mode)"),
            Line2D([], [], color="0.35", ls=":", label="lowest validation loss (mean epoch)"),
        ],
        loc="outside right upper", fontsize=8, frameon=False, handlelength=2.6,
    )
    return fig


def fig_curves(curves: pd.DataFrame, panels: list[tuple[str, str]], styles: Styles, title: str,
               hline: dict | None = None, ncols: int | None = None) -> Figure:
    """All cells on shared axes, one panel per (column, x) pair."""
    n = len(panels)
    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.3 * ncols + 2.2, 3.3 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (column, x) in zip(axes.flat, panels):
        plot_curve(curves, column, styles, ax=ax, x=x)
        if column.startswith("gap"):
            ax.axhline(0, color="0.5", lw=0.8)
        if hline and column in hline:
            ax.axhline(hline[column], color="black", lw=1, linestyle=(0, (4, 3)))
        # Loss/gradient scales that span decades read better on a log axis.
        values = curves[f"{column}_mean"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() / values.min() > 100 and not _is_accuracy(column):
            ax.set_yscale("log")
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    extra = []
    if hline:
        extra = [Line2D([], [], color="black", lw=1, linestyle=(0, (4, 3)), label="target")]
    _cell_legend(fig, styles, extra)
    fig.suptitle(title, fontsize=11)
    return fig


def fig_panels(curves: pd.DataFrame, panels: list[tuple[str, str]], styles: Styles, title: str, ylabel: str,
               hline: tuple[float, str] | None = None, first_epoch: int = 0, sharey: bool = False) -> Figure:
    """Small panels of (column, panel title) over epochs, all cells in each;
    ``hline``: (value, legend text) of a reference line. At most three panels
    a row, rows balanced (4 panels: 2 x 2), so the page does not shrink the text."""
    curves = curves[curves.index.get_level_values("epoch") >= first_epoch]
    nrows = math.ceil(len(panels) / 3)
    ncols = math.ceil(len(panels) / nrows)
    fig = Figure(figsize=(3.3 * ncols + 2.4, 2.6 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    values = curves[[f"{c}_mean" for c, _ in panels]].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    # Ratios that span a decade (an early variance shift of 15 next to 1.02) read better on a log axis.
    logy = values.size and values.min() > 0 and values.max() / values.min() > 10 and not _is_accuracy(panels[0][0])
    for ax, (column, panel) in zip(axes.flat, panels):
        plot_curve(curves, column, styles, ax=ax)
        if logy:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 2, 5, 10: not 10^0
            ax.yaxis.set_minor_formatter(NullFormatter())
        if hline:
            ax.axhline(hline[0], color="black", lw=1, linestyle=(0, (4, 3)))
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    extra = [Line2D([], [], color="black", lw=1, linestyle=(0, (4, 3)), label=hline[1])] if hline else []
    _cell_legend(fig, styles, extra)
    fig.supxlabel("epoch", fontsize=10)
    fig.supylabel(ylabel, fontsize=10)
    fig.suptitle(title, fontsize=11)
    return fig


def fig_preactivations(curves: pd.DataFrame, layers: list[str], styles: Styles) -> Figure:
    nrows = math.ceil(len(layers) / 3)  # rows balanced as in fig_panels
    ncols = math.ceil(len(layers) / nrows)
    fig = Figure(figsize=(4.0 * ncols + 2.4, 3.0 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        plot_percentiles(curves, layer, styles, ax=ax)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(layers):]:
        ax.set_axis_off()
    how = [_heading("per cell"), Line2D([], [], color="0.3", lw=1.7, label="median"),
           Patch(facecolor="0.3", alpha=0.25, edgecolor="0.3", lw=0.6, label="15th–85th percentile")]
    _cell_legend(fig, styles, how)
    fig.supxlabel("epoch", fontsize=10)
    fig.supylabel("pre-activation of unit 0 (input of the activation)", fontsize=10)
    fig.suptitle("Pre-activation distribution of one unit per layer over training (mean over seeds)", fontsize=11)
    return fig


def fig_to_target(cells: pd.DataFrame, styles: Styles, metric: str, target: float) -> Figure:
    cols = [c for c in ("epochs_to_target", "seconds_to_target") if f"{c}_mean" in cells]
    fig = Figure(figsize=(4.6 * len(cols) + 1.5, 0.32 * len(cells) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(cols), sharey=True, squeeze=False)[0]
    for ax, col in zip(axes, cols):
        plot_bars(cells, col, styles, ax=ax)
        ax.set_xlabel("epochs to target" if col.startswith("epochs") else "training time to target (s)")
    shown = f"{target:.0%}" if _is_accuracy(metric) else f"{target:g}"
    verb = "≥" if higher_is_better(metric) else "≤"
    fig.suptitle(f"Convergence: time to {label(metric)} {verb} {shown} (mean, 95% CI)", fontsize=11)
    return fig


def fig_ablation(cells: pd.DataFrame, columns: list[str], x_factors: list[str], levels: dict[str, list],
                 styles: Styles) -> Figure:
    """Rows: each x factor; columns: each outcome."""
    fig = Figure(figsize=(3.9 * len(columns) + 2.2, 3.2 * len(x_factors) + 0.4), layout="constrained")
    axes = fig.subplots(len(x_factors), len(columns), squeeze=False)
    for r, xf in enumerate(x_factors):
        for c, col in enumerate(columns):
            plot_ablation(cells, col, xf, levels, styles, ax=axes[r, c])
    handles = list(styles.legend)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False, handlelength=2.6)
    fig.suptitle("Ablation: outcome per setting (mean over seeds, 95% CI error bars)", fontsize=11)
    return fig


def fig_heatmap(cells: pd.DataFrame, columns: list[str], row_factor: str, col_factor: str,
                levels: dict[str, list]) -> Figure:
    w = max(3.2, 0.9 * len(levels[col_factor]) + 1.8)
    h = 0.75 * len(levels[row_factor]) + 1.4
    wide = w * len(columns) > 13  # many levels: stack the panels instead
    shape = (len(columns), 1) if wide else (1, len(columns))
    fig = Figure(figsize=(w, h * len(columns) + 0.3) if wide else (w * len(columns), h + 0.3), layout="constrained")
    axes = fig.subplots(*shape, squeeze=False).flat
    for ax, col in zip(axes, columns):
        plot_heatmap(cells, col, row_factor, col_factor, levels, ax=ax)
        ax.set_title(label(col), fontsize=9)
    fig.suptitle("Grid of settings: mean ± 95% CI half-width (brighter is better)", fontsize=11)
    return fig


# ---------------------------------------------------------------- output


@dataclass
class Rendered:
    name: str
    title: str
    caption: str
    png: bytes
    files: list[Path]


def save(fig: Figure, out_dir: Path, name: str, formats: list[str]) -> tuple[bytes, list[Path]]:
    """PNG bytes (for embedding) plus one file per format."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    png = buf.getvalue()
    # The layout is solved; keep it for the other formats instead of solving again.
    fig.set_layout_engine("none")
    files = []
    # Text as text in SVG (small, searchable); fixed hash salt: same input, same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "regbench"}):
        for fmt in formats:
            path = out_dir / f"{name}.{fmt}"
            if fmt == "png":
                path.write_bytes(png)
            else:
                fig.savefig(path, format=fmt, dpi=DPI)
            files.append(path)
    return png, files


def ablation_x_factors(factors: list[str], levels: dict[str, list], x: str | None) -> list[str]:
    """``--x`` if given, else every numeric factor, else the first factor."""
    if x:
        return [x]
    numeric = [
        f for f in factors
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in levels[f])
    ]
    return numeric or factors[:1]


def layer_columns(columns, prefix: str) -> list[str]:
    """``<prefix>/<layer>`` columns in network order: hidden0, hidden1, ..., hidden10, then head."""

    def order(column: str) -> tuple:
        layer = column.partition("/")[2]
        m = re.fullmatch(r"hidden(\d+)", layer)
        return (0, int(m.group(1)), "") if m else (1, 0, layer)

    return sorted((c for c in columns if c == prefix or c.startswith(prefix + "/")), key=order)


def _layer(column: str) -> str:
    return column.partition("/")[2] or "all layers"


def make_figures(a, styles: Styles, out_dir: Path, formats: list[str], x: str | None = None) -> list[Rendered]:
    """Every figure the data supports, saved under ``out_dir``; ``a`` is a
    :class:`regbench.report.stats.Analysis`, ``x`` the ablation's x factor."""
    out_dir.mkdir(parents=True, exist_ok=True)
    study, cells, curves, metric = a.study, a.cells, a.curves, a.metric
    have = lambda col: f"{col}_mean" in curves  # noqa: E731
    built: list[Rendered] = []

    def add(name: str, fig: Figure, title: str, caption: str) -> None:
        png, files = save(fig, out_dir, name, formats)
        built.append(Rendered(name, title, caption, png, files))

    band = "Bands: 95% confidence interval of the mean over seeds (Student t)."
    for kind, what in (("loss", "loss"), ("acc", "accuracy")):
        if have(f"val_{kind}") and have(f"fit_{kind}"):
            add(f"overfitting_{kind}", fig_overfitting(curves, cells, styles, study.levels, kind),
                f"Overfitting: fit vs validation {what}",
                f"One panel per cell. Dashed: {what} on the whole training set in eval mode (the clean fit, "
                f"without dropout noise); solid: validation {what}. The dotted line marks the mean epoch of the "
                f"lowest validation loss: where overfitting starts. {band}")
    gaps = [(c, "epoch") for c in ("gap_loss", "gap_acc") if have(c)]
    if gaps:
        add("gap", fig_curves(curves, gaps, styles, "Generalization gap over epochs (mean, 95% CI band)"),
            "Generalization gap",
            "Validation minus fit loss, and fit minus validation accuracy, for every cell on one axis. Above zero: "
            f"the model does better on the data it was trained on; a gap that keeps growing is overfitting. {band}")
    if have(metric):
        panels = [(metric, "epoch")] + ([(metric, "time_s")] if have("time_s") else [])
        hline = {metric: a.target} if a.target is not None else None
        add("convergence", fig_curves(curves, panels, styles, f"Convergence: {label(metric)}", hline=hline),
            "Convergence",
            f"{label(metric).capitalize()} against epochs and against training wall-clock time (evaluation "
            f"excluded; mean time over seeds). The dashed line is the target. {band}")
    if a.target is not None and "epochs_to_target_mean" in cells:
        add("time_to_target", fig_to_target(cells, styles, metric, a.target), "Time to target",
            f"Epochs and training seconds until {label(metric)} first reaches the target "
            f"({'chosen automatically: the weakest cell’s mean value at the epoch of lowest validation loss' if a.target_auto else 'from --target'}). "
            "Means are over the runs that reached it; the label says how many did. Whiskers: 95% CI.")
    outcome_cols = [c for c in dict.fromkeys([f"best_{metric}", f"final_{metric}", "final_gap_loss"])
                    if f"{c}_mean" in cells]
    if study.factors and outcome_cols:
        xf = ablation_x_factors(study.factors, study.levels, x)
        add("ablation", fig_ablation(cells, outcome_cols, xf, study.levels, styles), "Ablation",
            "The metric at each run's epoch of lowest validation loss (its best epoch, chosen on validation loss "
            "only) and at the last epoch, and the final generalization gap, for every setting; one line per "
            "setting of the other factor(s), markers in the cell's colour. Error bars: 95% CI of the mean over "
            "seeds. Settings without usable runs (none finished, or all diverged or failed) have no point.")
    if len(study.factors) == 2 and outcome_cols:
        row_f = styles.style_by if styles.style_by in study.factors else study.factors[1]
        col_f = next(f for f in study.factors if f != row_f)
        add("heatmap", fig_heatmap(cells, [outcome_cols[0], "final_gap_loss"] if "final_gap_loss_mean" in cells
                                   else outcome_cols[:1], row_f, col_f, study.levels),
            "Grid", "Every combination of the two factors: mean and ± 95% CI half-width; n is shown where a "
            "setting has fewer usable runs than the others; grey: no usable runs.")
    # Diagnostics: each figure only when some usable run recorded its columns.
    have_cols = [c[: -len("_mean")] for c in curves.columns if c.endswith("_mean")]
    shift = layer_columns(have_cols, VAR_SHIFT)
    if shift:
        add("variance_shift",
            fig_panels(curves, [(c, _layer(c)) for c in shift], styles,
                       "BatchNorm variance shift per layer (Li et al. 2019; mean, 95% CI band)",
                       "variance shift (1 = none)", hline=(1, "1: no shift"), first_epoch=1, sharey=True),
            "BatchNorm variance shift",
            "Variance shift near 1 means BatchNorm's test-time statistics match what the layer really sees at test "
            "time; values above 1 mean its running variance is off, typically too large because dropout before BN "
            "added noise during training (Li et al. 2019). Per unit: the running variance against the variance of "
            "the BN input over the whole training set in eval mode, as max(a/b, b/a), averaged over units. Only "
            "cells with BatchNorm in that layer have a line; epoch 0 is left out (the running statistics are still "
            f"their initial values there). {band}")
    layers = [_layer(c) for c in layer_columns(have_cols, PREACT.format(50))]
    if layers:
        add("preactivations", fig_preactivations(curves, layers, styles), "Pre-activation distribution",
            "How the input of the activation function of one unit (unit 0 of each hidden block) is distributed over "
            "a fixed batch of training examples as training goes on, as in Ioffe & Szegedy (2015, Fig. 1): the line "
            "is the median and the band spans the 15th to 85th percentile; a band that drifts or widens means the "
            "layers above keep seeing a changing input distribution, which BatchNorm placed before the activation "
            "holds steady. Each percentile is the mean over seeds; the band is the spread of the unit's values, "
            "not a confidence interval.")
    noisy = [(c, t) for c, t in (("noisy_fit_acc", "against the corrupted label (memorized)"),
                                 ("noisy_clean_acc", "against the original clean label")) if c in have_cols]
    if noisy:
        add("noisy_labels",
            fig_panels(curves, noisy, styles, "Training examples with corrupted labels (mean, 95% CI band)",
                       "accuracy on the corrupted examples", sharey=True),
            "Fit of corrupted labels",
            "Accuracy on the training examples whose label was corrupted, measured in eval mode against the "
            "corrupted label (how much label noise the network has memorized) and against their original clean "
            "label (whether it still predicts the true class); memorization shows as the left curve rising while "
            f"the right one falls, and a regularizer that helps keeps the left low and the right high. {band}")
    dead = layer_columns(have_cols, DEAD_FRAC)
    if dead:
        add("dead_relu",
            fig_panels(curves, [(c, _layer(c)) for c in dead], styles,
                       "Dead ReLU units per layer (mean, 95% CI band)", "share of units dead", sharey=True),
            "Dead ReLU units",
            "Share of each hidden block's ReLU units that output zero for every training example: dead units get "
            f"no gradient and no longer learn, so a share that grows over training is capacity lost. {band}")
    norms = layer_columns(have_cols, WEIGHT_NORM)
    panels = [(c, f"‖W‖ {_layer(c)}") for c in norms] + [("grad_norm", "gradient (mean per step)")] * ("grad_norm" in have_cols)
    if panels:
        add("norms",
            fig_panels(curves, panels, styles, "Weight and gradient norms (mean, 95% CI band)", "L2 / Frobenius norm"),
            "Weight and gradient norms",
            ("Frobenius norm of each Linear layer's weight, and " if norms else "")
            + "the mean L2 norm of the whole gradient per optimizer step; where BatchNorm directly follows a Linear "
            "layer, that layer computes the same function at any weight scale, so a growing weight norm there only "
            f"shrinks the effective learning rate (weight decay counteracts it). {band}")
    return built
