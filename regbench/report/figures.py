"""Figures. Plot functions are pure: ``(data, ..., ax=None) -> ax``; the
``fig_*`` builders arrange them into the report's figures.

Statistics are computed elsewhere (:mod:`regbench.report.stats`); these
functions only draw the ``<col>_mean`` / ``_ci_lo`` / ``_ci_hi`` columns they
are given. Figures are built on :class:`matplotlib.figure.Figure` directly,
never through pyplot: no global figure state to leak across a 200-run report
and no GUI backend, so the report runs headless without touching the
process-wide backend of whoever imports it.

How they look, and why:

- Colour: Okabe & Ito's palette for categories (safe under every common
  colour-vision deficiency); an ordered numeric factor (a dropout rate) gets
  viridis, which is too, and keeps the order visible. Colour is always
  doubled by a marker shape, the second factor by the line style.
- No titles inside figures: the report gives each its title and caption, so
  a title never collides with a legend. Small multiples carry row and
  column headers (``dropout=0.1`` once per column, not in every panel).
- Figures are at most :data:`PAGE_W` inches wide and shown at their size in
  the page (9 pt text reads as 12 px), rendered at :data:`DPI`.
- More than :data:`MANY` cells: curves show the best and worst few in colour
  and the others in grey, instead of a blob of 20 colours.
- Figures are rendered in this process and forked workers when there are
  CPUs to spare (:func:`run_tasks`): a figure is a pure function of its data.
"""

from __future__ import annotations

import io
import math
import multiprocessing as mp
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .load import fmt_value, is_combined, setting_text, short_names, unit
from .stats import higher_is_better, left_out_count, scope_where

# Okabe & Ito (2008), reordered: the strongest contrasts first, yellow (faint on white) last.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
BEST_COLOURS = ["#0072B2", "#56B4E9", "#009E73"]  # highlighted best cells: blues and green
WORST_COLOURS = ["#D55E00", "#E69F00", "#CC79A7"]  # highlighted worst cells: vermillion, orange, purple
GREY = "0.75"  # cells not highlighted
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
HATCHES = ["", "///", "...", "xxx"]
BAND_ALPHA = 0.18
# A reference line (target, "no shift"): thick light grey, unlike any cell's line style.
REFERENCE = {"color": "0.55", "lw": 5.0, "alpha": 0.3, "linestyle": "-", "zorder": 0}  # a band: unlike the thin grey lines of cells
MANY = 8  # more cells than this and curves highlight the best and worst few, the rest grey
HIGHLIGHT = 3  # cells highlighted at each end
PAGE_W = 11.0  # inches: the widest figure; the page shows figures at PX_PER_IN, so 1056 px
PX_PER_IN = 96  # CSS pixels per inch: figures are shown at their size, so 9 pt text is 12 px
DPI = 150  # PNG pixels per inch: ~1.6 device pixels per CSS pixel, sharp also on most HiDPI screens
PANEL_W, PANEL_H = 3.2, 2.4  # inches per panel of a curve figure
LEGEND_W = 2.4  # inches a legend on the right takes
# Every figure is drawn with these: the report's text sizes, no box around the data.
RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
      "legend.fontsize": 8, "legend.title_fontsize": 8, "figure.labelsize": 9.5,
      "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none", "svg.hashsalt": "regbench"}
# Accuracies are fractions in the records; people read percent (87.5%, 25%).
PERCENT = FuncFormatter(lambda v, _: f"{100 * v:.4g}%")

LABELS = {
    "epoch": "epoch",
    "time_s": "training time per seed (s, evaluation excluded)",
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
DEAD_SAYS_NOTHING = 0.01  # dead-ReLU shares all below this are a sentence, not a figure


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


def direction(column: str) -> str:
    """``higher is better`` / ``lower is better``; for a generalization gap
    ``lower: fit and val closer`` (a small gap is no objective: an underfit
    model has one too)."""
    if "gap" in column:
        return "lower: fit and val closer"
    return "higher is better" if higher_is_better(column) else "lower is better"


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


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in values)


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


def _epoch_axis(ax: Axes) -> None:
    """Epochs are whole numbers: ticks 0, 5, 10 or 0, 20, 40, never 2.5 or 15, 30, 45."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.margins(x=0.02)


def _log_if_wide(ax: Axes, values: np.ndarray, column: str, ratio: float = 10) -> None:
    """A positive quantity spanning more than ``ratio`` in this panel reads
    better on a log axis; ticks at 1, 2, 5 x 10^k so a narrow range keeps labels.
    Never a gap (val - fit loss, fit - val accuracy): a difference, 0 or below
    at times, drawn on the same linear axis in every report."""
    values = values[np.isfinite(values)]
    if column.startswith("gap"):  # a difference, which can be 0 or below (a single run's gap went log, alone)
        return
    if not values.size or values.min() <= 0 or values.max() / values.min() <= ratio or _is_accuracy(column):
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 2, 5, 10: not 10^0
    ax.yaxis.set_minor_formatter(NullFormatter())


def _new_ax(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    with matplotlib.rc_context(RC):
        return Figure(layout="constrained").add_subplot()


def _figure(w: float, h: float) -> Figure:
    return Figure(figsize=(min(w, PAGE_W), h), layout="constrained")


# ---------------------------------------------------------------- styles


@dataclass
class Styles:
    """One look per cell: colour (and marker) by one factor, line style (and
    hatch) by another. ``cell[c]`` may also set ``lw``, ``band`` (draw the
    interval band), ``zorder`` and ``label`` (see :func:`focus`)."""

    cell: dict[str, dict] = field(default_factory=dict)  # cell -> color, linestyle, marker, hatch
    legend: list = field(default_factory=list)  # handles explaining colour and style
    color_by: str | None = None
    style_by: str | None = None


def _heading(text: str) -> Line2D:
    return Line2D([], [], linestyle="none", label=text)


VIRIDIS_END = 0.7  # the lightest viridis colour a line gets (see palette)


def palette(k: int, ordered: bool = False) -> list:
    """``k`` colours: viridis (dark to light, without its light end) for
    an ordered factor with more than two levels, else Okabe-Ito (cycled past 8).
    Viridis stops at 0.7: its lime at 0.85 stood 1.7:1 against the white
    background, a thin line hard to see; at 0.7 it is 2.3:1."""
    if ordered and k > 2:
        cmap = matplotlib.colormaps["viridis"]
        return [cmap(VIRIDIS_END * i / (k - 1)) for i in range(k)]
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(k)]


def cell_styles(keys: pd.DataFrame, levels: dict[str, list], color_by: str | None, style_by: str | None) -> Styles:
    """``keys``: index = cell, columns = factors. Colour (with a marker per
    colour) by ``color_by`` and any factor beyond colour and style; line style
    (and hatch) by ``style_by``."""
    factors = list(keys.columns)
    short = short_names(factors)
    rest = [f for f in factors if f not in (color_by, style_by)]
    colour_keys = [f for f in [color_by, *rest] if f]
    combos = list(dict.fromkeys(tuple(r) for r in keys[colour_keys].itertuples(index=False))) if colour_keys else [()]
    combos.sort(key=lambda c: [levels[f].index(v) for f, v in zip(colour_keys, c)])
    ordered = color_by is not None and not rest and _numeric(levels[color_by])
    colour_of = dict(zip(combos, palette(len(combos), ordered)))
    marker_of = {c: MARKERS[i % len(MARKERS)] for i, c in enumerate(combos)}
    style_levels = levels[style_by] if style_by else [None]

    styles = Styles(color_by=color_by, style_by=style_by)
    for cell, row in keys.iterrows():
        i = style_levels.index(row[style_by]) if style_by else 0
        combo = tuple(row[f] for f in colour_keys)
        styles.cell[cell] = {
            "color": colour_of[combo] if colour_keys else OKABE_ITO[0],
            "marker": marker_of[combo] if colour_keys else "o",
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "hatch": HATCHES[i % len(HATCHES)],
        }
    if colour_keys:
        styles.legend.append(_heading(", ".join(short[f] for f in colour_keys)))
        cells_of: dict[tuple, set] = {}  # one pass: a search of 300 trials is 300 combinations of one cell each
        for cell, combo in zip(keys.index, keys[colour_keys].itertuples(index=False)):
            cells_of.setdefault(tuple(combo), set()).add(cell)
        for combo, colour in colour_of.items():
            text = ", ".join(setting_text(f, v, short[f]) for f, v in zip(colour_keys, combo))
            handle = Line2D([], [], color=colour, lw=2, marker=marker_of[combo], markersize=4.5, label=text)
            handle.cells = cells_of.get(combo, set())
            styles.legend.append(handle)
    if style_by:
        styles.legend.append(_heading(short[style_by]))
        for i, v in enumerate(style_levels):
            handle = Line2D([], [], color="0.3", lw=1.6, linestyle=LINESTYLES[i % len(LINESTYLES)],
                            label=setting_text(style_by, v, short[style_by]))
            handle.cells = set(keys.index[keys[style_by] == v])
            styles.legend.append(handle)
    return styles


def drawn_only(styles: Styles, drawn: set) -> Styles:
    """``styles`` whose legend names only what a figure draws: a figure of
    BatchNorm's variance shift listed "batchnorm=false" (solid) beside lines
    that are all dashed. A heading is kept where one of its entries is."""
    legend, heading = [], None
    for h in styles.legend:
        cells = getattr(h, "cells", None)  # cell_styles gives every entry its cells; a heading has none
        if cells is None:
            heading = h  # kept with its first entry kept
        elif cells & drawn:
            legend += [heading, h] if heading is not None else [h]
            heading = None
    if len(legend) == len(styles.legend):
        return styles
    return Styles(cell=styles.cell, legend=legend, color_by=styles.color_by, style_by=styles.style_by)


def focus(styles: Styles, ranked: list[str], k: int = HIGHLIGHT, noun: str = "cells",
          names: dict[str, str] | None = None, ends: tuple[str, str] = ("best {k} {noun}", "worst {k} {noun}")) -> Styles:
    """More than :data:`MANY` cells on one axis are a blob: the ``k`` best and
    ``k`` worst of ``ranked`` (best first; only cells drawn in this figure) in
    colour and named in the legend (``names[cell]`` if given), every other
    cell a thin grey line without its band. Returns ``styles`` itself for few
    cells."""
    if len(ranked) <= MANY:
        return styles
    best, worst = ranked[:k], ranked[-k:]
    out = Styles(color_by=styles.color_by, style_by=styles.style_by)
    for cell in styles.cell:
        out.cell[cell] = {"color": GREY, "linestyle": "-", "marker": None, "hatch": "", "lw": 0.8, "band": False,
                          "zorder": 1}
    out.legend.append(_heading(ends[0].format(k=k, noun=noun)))
    for group, colours in ((best, BEST_COLOURS), (worst, WORST_COLOURS)):
        if group is worst:
            out.legend.append(_heading(ends[1].format(k=k, noun=noun)))
        for i, cell in enumerate(group):
            st = {"color": colours[i % len(colours)], "linestyle": "-" if group is best else "--",
                  "marker": MARKERS[i + (0 if group is best else 3)], "hatch": "", "lw": 1.8, "band": True, "zorder": 3}
            out.cell[cell] = st
            out.legend.append(Line2D([], [], color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                                     markersize=4.5, lw=1.8, label=wrap((names or {}).get(cell, cell), 30)))
    out.legend.append(Line2D([], [], color=GREY, lw=1, label=f"the other {len(ranked) - 2 * k} {noun}"))
    return out


def _style(styles: Styles, cell: str) -> dict:
    return styles.cell.get(cell, {"color": OKABE_ITO[0], "linestyle": "-", "marker": "o", "hatch": ""})


def _legend(fig: Figure, handles: list, where: str = "outside right upper", **kw) -> None:
    if handles:
        fig.legend(handles=handles, loc=where, frameon=False, handlelength=2.6, **kw)


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
    Markers repeat each cell's colour in shape, a few per curve.
    """
    ax = _new_ax(ax)
    for k, (cell, d) in enumerate(curves.groupby(level="cell", sort=False)):
        d = d.droplevel("cell")
        if d[f"{column}_mean"].isna().all():
            continue
        st = _style(styles, cell)
        xs = d.index.to_numpy() if x == "epoch" else d[f"{x}_mean"].to_numpy()
        every = max(1, len(xs) // 6)
        ax.plot(xs, d[f"{column}_mean"], color=st["color"], linestyle=st["linestyle"], lw=st.get("lw", 1.6),
                marker=st.get("marker"), markersize=3.5, markevery=(k % every, every), zorder=st.get("zorder", 2))
        if band and st.get("band", True):
            lo, hi = _bounds(column)  # a t interval over 2-3 seeds can leave what the metric can be
            ax.fill_between(xs, d[f"{column}_ci_lo"].clip(lo, hi), d[f"{column}_ci_hi"].clip(lo, hi),
                            color=st["color"], alpha=BAND_ALPHA, lw=0, zorder=st.get("zorder", 2))
    ax.set_xlabel(label(x))
    if x == "epoch":
        _epoch_axis(ax)
    ax.set_ylabel(label(column))
    _format_y(ax, column)
    ax.grid(alpha=0.3)
    return ax


def plot_percentiles(curves: pd.DataFrame, layer: str, styles: Styles, ax: Axes | None = None) -> Axes:
    """One unit's pre-activation in ``layer`` per cell: the median as a line,
    the 15th-85th percentile as a band with thin edges (each the mean over
    seeds). The band is the spread of the unit's values, not an interval.
    Cells styled without a band (:func:`focus`) get their median only."""
    ax = _new_ax(ax)
    lo, mid, hi = (f"{PREACT.format(q)}/{layer}_mean" for q in (15, 50, 85))
    for cell, d in curves.groupby(level="cell", sort=False):
        d = d.droplevel("cell")
        if mid not in d or d[mid].isna().all():
            continue
        st = _style(styles, cell)
        x = d.index.to_numpy()
        z = st.get("zorder", 2)
        ax.plot(x, d[mid], color=st["color"], linestyle=st["linestyle"], lw=st.get("lw", 1.7), zorder=z)
        if lo in d and hi in d and st.get("band", True):
            # Faint fill, so that bands of several cells stay readable where they overlap; edges tell them apart.
            ax.fill_between(x, d[lo], d[hi], color=st["color"], alpha=0.07, lw=0, zorder=z)
            for edge in (lo, hi):
                ax.plot(x, d[edge], color=st["color"], linestyle=st["linestyle"], lw=0.8, zorder=z)
    ax.set_xlabel("epoch")
    _epoch_axis(ax)
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
    _epoch_axis(ax)
    _format_y(ax, kind)
    ax.grid(alpha=0.3)
    return ax


DODGE = 0.012  # how far apart time-to-target curves that coincide are drawn (1.2 pp: a share is k/n, steps of 1/n)
MAX_DODGES = 3  # the most a curve is lifted (in DODGEs): a fifth twin shares the fourth's place


def _ecdf_key(v: np.ndarray) -> tuple:
    """What a cell's time-to-target curve is drawn from: its sorted times and its count of runs."""
    return tuple(np.sort(v[np.isfinite(v)]).tolist()), len(v)


def coinciding(runs: pd.DataFrame, column: str) -> bool:
    """Whether two cells' time-to-target curves in ``column`` are the same (one would hide the other)."""
    curves = [_ecdf_key(g[column].astype(float).to_numpy()) for _, g in runs.groupby("cell", sort=False)]
    return len(set(curves)) < len(curves)


def plot_ecdf(runs: pd.DataFrame, column: str, styles: Styles, ax: Axes | None = None,
              xmax: float | None = None) -> Axes:
    """Per cell, the share of its runs that reached the target by each epoch
    (or second): an empirical CDF of ``column`` (``epochs_to_target``) over
    the cell's used runs in ``runs``. A run that never reached it (NaN) is
    censored: the curve ends at k/n, below 100%. Each line's ``label`` says
    ``k/n reached``. A curve that coincides with one drawn before it is lifted
    by ``DODGE`` per such curve, so that none is hidden."""
    ax = _new_ax(ax)
    values = runs[column].astype(float)
    xmax = xmax if xmax is not None else (float(np.nanmax(values)) if values.notna().any() else 1.0)
    drawn: dict[tuple, int] = {}  # curves already drawn: one that coincides is lifted DODGE above, not hidden under
    for cell, g in runs.groupby("cell", sort=False):
        v = g[column].astype(float).to_numpy()
        hit = np.sort(v[np.isfinite(v)])
        n, k = len(v), len(hit)
        if not n:
            continue
        st = _style(styles, cell)
        xs = np.concatenate([[0.0], hit, [xmax]])
        ys = np.concatenate([[0.0], np.arange(1, k + 1) / n, [k / n]])
        same = drawn.get(key := _ecdf_key(v), 0)
        drawn[key] = same + 1
        same = min(same, MAX_DODGES)  # more twins share the top lift: the axis grows by MAX_DODGES lifts at most
        ys = ys + same * DODGE
        ax.step(xs, ys, where="post", color=st["color"], linestyle=st["linestyle"], lw=st.get("lw", 1.6),
                zorder=st.get("zorder", 2), label=f"{cell}: {k}/{n} reached")
        if k and st.get("marker"):
            ax.plot(hit[-1:], [k / n + same * DODGE], linestyle="none", marker=st["marker"], color=st["color"], markersize=4.5,
                    zorder=st.get("zorder", 2))
    ax.axhline(0.5, **REFERENCE)
    ax.set_ylim(-0.02, 1.04 + DODGE * min(MAX_DODGES, max(drawn.values(), default=1) - 1))  # a lifted 100% stays in view
    ax.yaxis.set_major_formatter(PERCENT)
    ax.set_ylabel("share of the cell's runs that reached it")
    ax.set_xlabel(label(column) if column in LABELS else column.replace("_", " "))
    if column.startswith("epochs"):
        _epoch_axis(ax)
    ax.grid(alpha=0.3)
    return ax


def plot_ablation(
    cells: pd.DataFrame,
    column: str,
    x_factor: str,
    levels: dict[str, list],
    ax: Axes | None = None,
    styles: Styles | None = None,
) -> Axes:
    """``column`` (mean, 95% CI error bars) against ``x_factor``, one line
    per setting of the other factors. Colour, marker and line style encode
    that setting, never the x factor (the axis already shows it); the lines
    have labels for a legend. With the report's ``styles``, a line keeps the
    colour (and marker) and the line style its cells have in every other
    figure where they are the same along it, and is dark grey where they
    vary with the x factor: colour meant dropout in the other figures and
    batchnorm here."""
    ax = _new_ax(ax)
    factors = [c for c in cells.columns if c in levels]
    others = [f for f in factors if f != x_factor]
    short = short_names(factors)
    xl = levels[x_factor]
    numeric = _numeric(xl)
    pos = {v: (float(v) if numeric else i) for i, v in enumerate(xl)}
    span = (max(pos.values()) - min(pos.values())) or 1.0
    groups = list(cells.groupby(others, sort=False)) if others else [((), cells)]
    if others:  # in the order of the levels
        rank = lambda key: [levels[f].index(v) for f, v in zip(others, key if isinstance(key, tuple) else (key,))]  # noqa: E731
        groups.sort(key=lambda kv: rank(kv[0]))
    colours = palette(len(groups), ordered=len(others) == 1 and _numeric(levels[others[0]]))
    for k, (key, g) in enumerate(groups):
        g = g[g[f"{column}_mean"].notna()]
        if g.empty:
            continue
        g = g.assign(_x=g[x_factor].map(pos)).sort_values("_x")
        dodge = 0.015 * span * (k - (len(groups) - 1) / 2)  # keep error bars apart
        x = g["_x"].to_numpy(dtype=float) + dodge
        m = g[f"{column}_mean"].to_numpy(dtype=float)
        err = np.vstack([m - g[f"{column}_ci_lo"], g[f"{column}_ci_hi"] - m])
        key = key if isinstance(key, tuple) else (key,)
        text = ", ".join(setting_text(f, v, short[f]) for f, v in zip(others, key)) or "all runs"
        colour, linestyle, marker = colours[k], LINESTYLES[k % len(LINESTYLES)], MARKERS[k % len(MARKERS)]
        points = None  # each point's own marker, where the colour (and so the marker) changes along the line
        if styles is not None and styles.cell:
            own = [styles.cell[c] for c in g.index if c in styles.cell]
            same = lambda attr: len({str(st.get(attr)) for st in own}) == 1 and own  # noqa: E731
            if same("color"):
                colour, marker = own[0]["color"], own[0]["marker"]
            else:  # grey, and each point the marker its cell has elsewhere: a marker means one setting on the page
                colour, marker = "0.25", "none"
                points = [styles.cell.get(c, {}).get("marker", "o") for c in g.index]
            linestyle = own[0]["linestyle"] if same("linestyle") else linestyle
        # Lines only join ordered (numeric) settings; categories stand alone.
        ax.errorbar(x, m, yerr=np.where(np.isfinite(err), err, 0), color=colour, capsize=2.5, elinewidth=1,
                    linestyle=linestyle if numeric else "none", lw=1.4,
                    marker=marker, markersize=5.5, markeredgecolor="white", markeredgewidth=0.6,
                    label=text)
        for xi, mi, mk in zip(x, m, points or []):
            ax.plot([xi], [mi], linestyle="none", marker=mk, color=colour, markersize=5.5, markeredgecolor="white",
                    markeredgewidth=0.6)
    if not numeric:
        ax.set_xticks(list(pos.values()), [fmt_value(v) for v in xl], rotation=20 if len(xl) > 3 else 0)
    elif all(v > 0 for v in xl) and max(xl) / min(xl) >= 100:
        ax.set_xscale("log")  # learning rates, weight decays: decades
    ax.set_xlabel(short[x_factor])
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
    Brighter is better: the colour map is reversed where lower is better
    (losses; for a gap, brighter is smaller, which the colour bar does not
    call better), and the colour bar says which."""
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
            scale, dec, u = unit(column)
            text = f"{grid[i, j] * scale:.{dec}f}{u.strip()}"
            if np.isfinite(half):
                text += f"\n±{half * scale:.{dec}f}" + (" pp" if u.strip() == "%" else "")
            notes[i, j] = text + (f"\nn={n}" if n < most else "")
    higher = higher_is_better(column)
    cmap = matplotlib.colormaps["viridis" if higher else "viridis_r"].with_extremes(bad="0.88")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (i, j), text in notes.items():
        v = grid[i, j]
        bright = np.isfinite(v) and ((v > mid) == higher)
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="black" if bright or not np.isfinite(v) else "white")
    short = short_names([row_factor, col_factor])
    ax.set_xticks(range(len(cols)), [fmt_value(v) for v in cols])
    ax.set_yticks(range(len(rows)), [fmt_value(v) for v in rows])
    ax.set_xlabel(short[col_factor])
    ax.set_ylabel(short[row_factor])
    ax.spines[:].set_visible(False)
    bar = ax.figure.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label(f"{'↑' if higher else '↓'} {direction(column)} (brighter)", fontsize=8)
    if _is_accuracy(column):
        bar.formatter = PERCENT
        bar.update_ticks()
    return ax


def plot_forest(effects: pd.DataFrame, seeds: pd.DataFrame, outcome: str, ax: Axes | None = None) -> Axes:
    """Effects on ``outcome`` as a forest plot, one row per contrast (grouped
    by kind: main, interaction, simple): the estimate (diamond), its
    simultaneous interval (``ci_lo_adj``/``ci_hi_adj``), and the contrast of
    each seed (``seeds``, stats.SEED_COLUMNS) as dots. Resolved contrasts
    (after Bonferroni's correction) are filled blue with a bold label; others grey and open."""
    ax = _new_ax(ax)
    eff = effects[effects["outcome"] == outcome]
    per_seed = seeds[seeds["outcome"] == outcome] if len(seeds) else seeds
    scale = unit(outcome)[0]
    kinds = {"main": "main effects", "interaction": "interactions", "simple": "simple effects"}
    ticks, names, bold, y = [], [], [], 0.0
    by_contrast = {k: g["value"].to_numpy(dtype=float) for k, g in
                   per_seed.groupby(["kind", "factor", "contrast", "at"], sort=False)} if len(per_seed) else {}
    rng = np.random.default_rng(0)  # the same jitter every time
    for kind, heading in kinds.items():
        rows = eff[eff["kind"] == kind]
        if rows.empty:
            continue
        ax.text(0.0, y, heading, transform=ax.get_yaxis_transform(), ha="right", va="center", fontweight="bold",
                fontsize=8.5, color="0.25")
        y -= 1
        for _, r in rows.iterrows():
            scope = scope_where(r)  # a main effect measured on part of the grid: where
            text = r["contrast"] + (f"  at {r['at']}" if r["at"] else f"  ({scope})" if scope else "")
            ticks.append(y)
            names.append("  " + text)
            bold.append(bool(r["resolved"]))
            dots = by_contrast.get((r["kind"], r["factor"], r["contrast"], r["at"]), np.array([]))
            if len(dots):
                # On top of the interval, with a white rim: a resolved contrast's seeds stay visible.
                ax.scatter(dots * scale, y + rng.uniform(-0.22, 0.22, len(dots)), s=11, color="0.15", alpha=0.7,
                           edgecolor="white", lw=0.4, zorder=5)
            if not np.isfinite(r["estimate"]):
                ax.text(0, y, " not estimable", va="center", fontsize=8, color="0.4")
                y -= 1
                continue
            colour = OKABE_ITO[0] if r["resolved"] else "0.5"
            if not (np.isfinite(r["ci_lo_adj"]) and np.isfinite(r["ci_hi_adj"])):  # no bar: say why, not a tight interval
                n = r["n"]
                ax.annotate("  no test: 1 seed" if not n >= 2 else "  no test: no spread", (r["estimate"] * scale, y),
                            xytext=(6, 0), textcoords="offset points", va="center", fontsize=7.5, color="0.4")
            else:
                ax.plot([r["ci_lo_adj"] * scale, r["ci_hi_adj"] * scale], [y, y], color=colour,
                        lw=2.4 if r["resolved"] else 1.6, solid_capstyle="butt", zorder=3)
            ax.plot(r["estimate"] * scale, y, marker="D", markersize=6.5, color=colour, zorder=4,
                    markerfacecolor=colour if r["resolved"] else "white", markeredgewidth=1.3)
            y -= 1
        y -= 0.4
    ax.axvline(0, color="black", lw=0.9, zorder=1)
    ax.set_yticks(ticks, names)
    for tick, b in zip(ax.get_yticklabels(), bold):
        tick.set_fontweight("bold" if b else "normal")
    ax.set_ylim(y + 0.6, 0.6)
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    u = unit(outcome)[2]
    ax.set_xlabel(f"difference in {label(outcome)}" + (" (percentage points)" if u == "%" else ""))
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_search(trials: pd.DataFrame, param: str, metric: str, ax: Axes | None = None) -> Axes:
    """A search's outcome (``value``) against one parameter, a dot per used
    trial coloured by start order (early dark, late light); the best trial is
    a vermillion star. Log x for positive values spanning 100x or more;
    a categorical parameter gets one jittered column per value."""
    ax = _new_ax(ax)
    t = trials[trials["value"].notna()]
    v = t[param].tolist()
    if _numeric(v):
        x = t[param].astype(float).to_numpy()
        if len(x) and x.min() > 0 and x.max() / x.min() >= 100:
            ax.set_xscale("log")
    else:
        cats = sorted(set(map(str, v)))
        x = np.array([cats.index(str(c)) for c in v], dtype=float)
        x += np.random.default_rng(0).uniform(-0.15, 0.15, len(x))
        ax.set_xticks(range(len(cats)), cats)
    order = t["trial"].to_numpy(dtype=float)
    ax.scatter(x, t["value"], c=order, cmap="viridis", s=22, lw=0.4, edgecolor="white", zorder=2)
    best = t["is_best"].to_numpy(dtype=bool)
    ax.scatter(x[best], t["value"][best], marker="*", s=160, color=OKABE_ITO[1], edgecolor="black", lw=0.6,
               zorder=3)
    ax.set_xlabel(short_names([param])[param])
    ax.set_ylabel(label(f"best_{metric}"))
    _format_y(ax, metric)
    ax.grid(alpha=0.3)
    return ax


def plot_best_so_far(trials: pd.DataFrame, metric: str, ax: Axes | None = None) -> Axes:
    """Each trial's value in start order (dots; runs left out as crosses at
    the bottom) and the best value so far (a step line)."""
    ax = _new_ax(ax)
    t = trials
    ok = t["value"].notna()
    ax.scatter(t.loc[ok, "trial"], t.loc[ok, "value"], s=16, color="0.45", lw=0, zorder=2, label="trial")
    ax.step(t["trial"], t["best_so_far"], where="post", color=OKABE_ITO[1], lw=2, zorder=3, label="best so far")
    best = t[t["is_best"]]
    ax.scatter(best["trial"], best["value"], marker="*", s=160, color=OKABE_ITO[1], edgecolor="black", lw=0.6,
               zorder=4, label="best trial")
    if (~ok).any() and ok.any():
        floor = t.loc[ok, "value"].min() if higher_is_better(metric) else t.loc[ok, "value"].max()
        ax.scatter(t.loc[~ok, "trial"], np.full((~ok).sum(), floor), marker="x", s=20, color=OKABE_ITO[1],
                   zorder=2, label="left out (diverged, failed, unfinished)")
    ax.set_xlabel("trial, in the order it started")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label(f"best_{metric}"))
    _format_y(ax, metric)
    ax.grid(alpha=0.3)
    return ax


# ---------------------------------------------------------------- figures


def _facets(keys: pd.DataFrame, factors: list[str], levels: dict[str, list], max_cols: int = 6, max_rows: int = 6):
    """Panel layout for one panel per cell. Two factors: one row per level of
    the one with fewer levels (a header on the right) and one column per level
    of the other (a header on top); a factor with more than ``max_cols``
    levels wraps over several rows, its setting then titling each panel.
    Anything else: panels in reading order, each titled with its cell.
    Returns nrows, ncols, position per cell, column headers, row headers,
    panel titles."""
    names = list(keys.index)
    short = short_names(factors)
    if len(factors) == 2 and not any(map(is_combined, factors)):
        rows_f, cols_f = sorted(factors, key=lambda f: len(levels[f]))
        n = len(levels[cols_f])
        chunks = math.ceil(n / max_cols)  # rows per level of rows_f
        per_row = math.ceil(n / chunks)
        if len(levels[rows_f]) * chunks <= max_rows:
            pos = {}
            for c, r in keys.iterrows():
                j = levels[cols_f].index(r[cols_f])
                pos[c] = (levels[rows_f].index(r[rows_f]) * chunks + j // per_row, j % per_row)
            heads = {j: setting_text(cols_f, v, short[cols_f]) for j, v in enumerate(levels[cols_f])}
            rows = {r: setting_text(rows_f, v, short[rows_f]) for k, v in enumerate(levels[rows_f])
                    for r in range(k * chunks, (k + 1) * chunks)}
            if chunks == 1:
                return len(levels[rows_f]), n, pos, heads, rows, {}
            titles = {c: setting_text(cols_f, keys.at[c, cols_f], short[cols_f]) for c in names}
            return len(levels[rows_f]) * chunks, per_row, pos, {}, rows, titles
    ncols = min(len(names), 4 if len(names) <= 8 else 5)
    pos = {c: divmod(k, ncols) for k, c in enumerate(names)}
    return math.ceil(len(names) / ncols), ncols, pos, {}, {}, {c: wrap(c, 28) for c in names}


def fig_overfitting(curves: pd.DataFrame, cells: pd.DataFrame, styles: Styles, factors: list[str],
                    levels: dict[str, list], kind: str = "loss") -> Figure:
    """Small multiples: one panel per cell, fit vs validation ``kind``."""
    nrows, ncols, pos, col_head, row_head, titles = _facets(cells[factors], factors, levels)
    pw = min(2.6, (PAGE_W - 0.9) / ncols)
    ph = max(1.5, min(2.0, 0.78 * pw))
    fig = _figure(pw * ncols + 0.9, ph * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    placed = set()
    have = set(curves.index.get_level_values("cell"))
    for cell, (r, c) in pos.items():
        ax = axes[r, c]
        placed.add((r, c))
        if cell in titles:
            ax.set_title(titles[cell], fontsize=8)
        if cell not in have:
            why = (cells.loc[cell, "caveats"] or "no usable runs").split("; ")[0]
            ax.text(0.5, 0.5, wrap(why, 24), ha="center", va="center", transform=ax.transAxes, fontsize=7.5,
                    color="0.4")
            continue
        best = cells.loc[cell].get("best_epoch_mean", np.nan)
        plot_fit_vs_val(curves.loc[cell], kind, _style(styles, cell)["color"], ax=ax, best_epoch=best)
    for j, text in col_head.items():
        axes[0, j].set_title(text, fontsize=9, fontweight="bold")
    for i, text in row_head.items():
        axes[i, -1].annotate(text, xy=(1.04, 0.5), xycoords="axes fraction", rotation=-90, ha="left", va="center",
                             fontsize=9, fontweight="bold")
    for r in range(nrows):
        for c in range(ncols):
            if (r, c) not in placed:
                axes[r, c].set_axis_off()
    _bottom_labels(axes)
    fig.supxlabel("epoch")
    what = "loss" if kind == "loss" else "accuracy"
    fig.supylabel("cross-entropy loss" if kind == "loss" else "accuracy")
    _legend(fig, [Line2D([], [], color="0.3", ls="-", label=f"validation {what}"),
                  Line2D([], [], color="0.3", ls="--", label=f"fit {what} (train set, eval mode)"),
                  Line2D([], [], color="0.35", ls=":", label="lowest validation loss (mean epoch)")],
            "outside upper center", ncols=min(3, ncols))  # 3 abreast overflow a 2-panel-wide figure, 2 a 1-panel one
    return fig


def _bottom_labels(axes: np.ndarray) -> None:
    """Tick labels under the lowest panel drawn in each column of a grid with a
    shared x axis (matplotlib keeps them on the bottom row only: a column whose
    bottom panel is empty had none)."""
    for c in range(axes.shape[1]):
        shown = [r for r in range(axes.shape[0]) if axes[r, c].axison]
        if shown:
            axes[shown[-1], c].xaxis.set_tick_params(labelbottom=True)


def fig_curves(curves: pd.DataFrame, panels: list[tuple[str, str]], styles: Styles,
               hline: dict | None = None) -> Figure:
    """All cells on shared axes, one panel per (column, x) pair."""
    n = len(panels)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _figure(PANEL_W * ncols + LEGEND_W, PANEL_H * nrows + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (column, x) in zip(axes.flat, panels):
        plot_curve(curves, column, styles, ax=ax, x=x)
        if column.startswith("gap"):
            ax.axhline(0, color="0.5", lw=0.8)
        if hline and column in hline:
            ax.axhline(hline[column], **REFERENCE)
        _log_if_wide(ax, curves[f"{column}_mean"].to_numpy(dtype=float), column, ratio=100)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    extra = [Line2D([], [], **REFERENCE, label="target")] if hline else []
    _legend(fig, styles.legend + extra)
    return fig


def fig_panels(curves: pd.DataFrame, panels: list[tuple[str, str]], styles: Styles, ylabel: str,
               hline: tuple[float, str] | None = None, first_epoch: int = 0, sharey: bool = False) -> Figure:
    """Small panels of (column, panel title) over epochs, all cells in each;
    ``hline``: (value, legend text) of a reference line. At most three panels
    a row, rows balanced (4 panels: 2 x 2). Without ``sharey`` each panel has
    its own scale (linear, or log where its own values span 10x)."""
    curves = curves[curves.index.get_level_values("epoch") >= first_epoch]
    nrows = math.ceil(len(panels) / 3)
    ncols = math.ceil(len(panels) / nrows)
    fig = _figure(2.9 * ncols + LEGEND_W, 2.2 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    every = curves[[f"{c}_mean" for c, _ in panels]].to_numpy(dtype=float)
    for ax, (column, panel) in zip(axes.flat, panels):
        plot_curve(curves, column, styles, ax=ax)
        _log_if_wide(ax, every if sharey else curves[f"{column}_mean"].to_numpy(dtype=float), column)
        if hline:
            ax.axhline(hline[0], **REFERENCE)
        ax.set_title(panel)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    extra = [Line2D([], [], **REFERENCE, label=hline[1])] if hline else []
    _legend(fig, styles.legend + extra)
    fig.supxlabel("epoch")
    fig.supylabel(ylabel)
    return fig


def fig_preactivations(curves: pd.DataFrame, layers: list[str], styles: Styles,
                       groups: dict[str, list[str]] | None = None) -> Figure:
    """One panel per layer; with ``groups`` (column header -> cells, e.g. the
    levels of batchnorm) one row per layer and one column per group, so the
    percentile bands of a few cells at a time stay apart."""
    if groups:
        nrows, ncols = len(layers), len(groups)
        panels = [(layer, head, cells) for layer in layers for head, cells in groups.items()]
    else:
        nrows = math.ceil(len(layers) / 3)  # rows balanced as in fig_panels
        ncols = math.ceil(len(layers) / nrows)
        panels = [(layer, layer, None) for layer in layers]
    fig = _figure(3.3 * ncols + LEGEND_W, 2.3 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey="row" if groups else False)
    for k, (ax, (layer, head, cells)) in enumerate(zip(axes.flat, panels)):
        shown = curves if cells is None else curves[curves.index.get_level_values("cell").isin(cells)]
        plot_percentiles(shown, layer, styles, ax=ax)
        ax.set_xlabel("")
        ax.set_ylabel(layer if groups and k % ncols == 0 else "")
        if not groups:
            ax.set_title(layer)
        elif k < ncols:  # the top row: column headers
            ax.set_title(head, fontweight="bold")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    _bottom_labels(axes)
    how = [_heading("per cell"), Line2D([], [], color="0.3", lw=1.7, label="median"),
           Patch(facecolor="0.3", alpha=0.25, edgecolor="0.3", lw=0.6, label="15th–85th percentile")]
    _legend(fig, styles.legend + how)
    fig.supxlabel("epoch")
    fig.supylabel("pre-activation of unit 0" + (", per layer" if groups else ""))
    return fig


def fig_ecdf(runs: pd.DataFrame, styles: Styles, columns: list[str], xmax: dict[str, float | None],
             target: str, order: list[str]) -> Figure:
    """ECDFs of time to target, one panel per column (epochs, seconds). The
    legend names each cell in ``order`` (best first) with k/n reached; with
    many cells, the highlighted ones and a count for the grey rest. The x
    axis runs to the end of training (``xmax``) only where some run never
    reached the target: there the curve's plateau below 100% is the point."""
    fig = _figure(3.6 * len(columns) + 3.0, 2.9)
    axes = fig.subplots(1, len(columns), sharey=True, squeeze=False)[0]
    for ax, col in zip(axes, columns):
        v = runs[col].astype(float)
        end = xmax.get(col) if v.isna().any() or not v.notna().any() else None
        margin = float(v.max()) * 1.08 if v.notna().any() else None  # every run reached it: a little past the last
        if margin is not None and xmax.get(col) is not None:  # not far past the end of training (16 of 15 epochs),
            margin = min(margin, float(xmax[col]) * 1.02)     # but a last step there keeps a visible top
        plot_ecdf(runs, col, styles, ax=ax, xmax=end if end is not None else margin)
        ax.set_xlabel("epochs to target" if col.startswith("epochs") else "training time per seed to target (s)")
        if ax is not axes[0]:
            ax.set_ylabel("")
    reached = runs.groupby("cell")[columns[0]].agg(["count", "size"])
    many = len(order) > MANY
    legend = [_heading(target)]
    grey_k = grey_n = grey_cells = 0
    for i, cell in enumerate(c for c in order if c in reached.index):
        k, n = int(reached.at[cell, "count"]), int(reached.at[cell, "size"])
        st = _style(styles, cell)
        if many and st["color"] == GREY:
            grey_k, grey_n, grey_cells = grey_k + k, grey_n + n, grey_cells + 1
            continue
        if many and i == 0:
            legend.append(_heading(f"best {HIGHLIGHT} cells"))
        if many and i == len(order) - HIGHLIGHT:
            legend.append(_heading(f"worst {HIGHLIGHT} cells"))
        legend.append(Line2D([], [], color=st["color"], linestyle=st["linestyle"], marker=st.get("marker"),
                             markersize=4, lw=1.6, label=wrap(f"{cell}: {k}/{n} reached", 48)))
    if grey_cells:
        legend.append(Line2D([], [], color=GREY, lw=1, label=f"the other {grey_cells} cells: {grey_k}/{grey_n} reached"))
    legend.append(Line2D([], [], **REFERENCE, label="half the runs (the median)"))
    _legend(fig, legend)
    return fig


def fig_ablation(cells: pd.DataFrame, columns: list[str], x_factors: list[str], levels: dict[str, list],
                 styles: Styles | None = None) -> Figure:
    """Rows: each x factor; columns: each outcome; one legend per row (the
    settings of the factors not on its x axis)."""
    fig = _figure(3.1 * len(columns) + LEGEND_W, 2.6 * len(x_factors) + 0.3)
    axes = fig.subplots(len(x_factors), len(columns), squeeze=False)
    for r, xf in enumerate(x_factors):
        for c, col in enumerate(columns):
            plot_ablation(cells, col, xf, levels, ax=axes[r, c], styles=styles)
        others = [f for f in levels if f != xf]
        handles, labels = axes[r, 0].get_legend_handles_labels()
        if others and handles:
            axes[r, -1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1), frameon=False,
                               title=", ".join(short_names(list(levels))[f] for f in others), alignment="left")
    return fig


def fig_heatmap(cells: pd.DataFrame, columns: list[str], row_factor: str, col_factor: str,
                levels: dict[str, list]) -> Figure:
    w = max(3.4, 0.85 * len(levels[col_factor]) + 2.0)
    h = 0.7 * len(levels[row_factor]) + 1.3
    wide = w * len(columns) > PAGE_W  # many levels: stack the panels instead
    shape = (len(columns), 1) if wide else (1, len(columns))
    fig = _figure(w, h * len(columns) + 0.3) if wide else _figure(w * len(columns), h + 0.3)
    axes = fig.subplots(*shape, squeeze=False).flat
    for ax, col in zip(axes, columns):
        plot_heatmap(cells, col, row_factor, col_factor, levels, ax=ax)
        ax.set_title(f"{label(col)}\n({direction(col)})")
    return fig


def fig_forest(effects: pd.DataFrame, seeds: pd.DataFrame, outcome: str) -> Figure:
    rows = int((effects["outcome"] == outcome).sum()) + effects.loc[effects["outcome"] == outcome, "kind"].nunique()
    fig = _figure(9.5, 0.24 * rows + 0.9)
    ax = fig.subplots()
    plot_forest(effects, seeds, outcome, ax=ax)
    _legend(fig, [Line2D([], [], color=OKABE_ITO[0], lw=2.4, marker="D", label="resolved after Bonferroni correction"),
                  Line2D([], [], color="0.5", lw=1.6, marker="D", markerfacecolor="white", label="not resolved"),
                  Line2D([], [], color="0.2", alpha=0.55, marker="o", markersize=3.5, linestyle="none",
                         label="one seed's contrast")],
            "outside upper center", ncols=3)
    return fig


def fig_search(trials: pd.DataFrame, params: list[str], metric: str) -> Figure:
    n = len(params)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _figure(3.3 * ncols + 1.0, 2.6 * nrows + 0.2)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    for i, (ax, p) in enumerate(zip(axes.flat, params)):
        plot_search(trials, p, metric, ax=ax)
        if i % ncols:
            ax.set_ylabel("")
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    t = trials["trial"]
    if len(t):
        sm = matplotlib.cm.ScalarMappable(cmap="viridis", norm=matplotlib.colors.Normalize(t.min(), t.max()))
        bar = fig.colorbar(sm, ax=axes, shrink=0.8, aspect=30)
        bar.set_label("trial (start order)")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    return fig


def fig_best_so_far(trials: pd.DataFrame, metric: str) -> Figure:
    fig = _figure(7.5, 3.0)
    ax = fig.subplots()
    plot_best_so_far(trials, metric, ax=ax)
    _legend(fig, ax.get_legend_handles_labels()[0])
    return fig


# ---------------------------------------------------------------- output


@dataclass
class Rendered:
    """A figure as the report uses it. ``png`` empty: nothing worth a figure,
    ``caption`` then says so in a sentence."""

    name: str
    title: str
    caption: str
    png: bytes
    files: list[Path]
    width_in: float = 0.0  # the figure's size: the page shows it at PX_PER_IN
    height_in: float = 0.0
    section: str = "figures"  # "effects": the forest plot, shown with the effects

    @property
    def width_px(self) -> int:
        return round(self.width_in * PX_PER_IN)


def _png(fig: Figure) -> bytes:
    """``fig.savefig(format="png", dpi=DPI)`` in one draw instead of two.
    savefig first draws without rendering to solve the constrained layout,
    then draws again to render; an Agg canvas's own draw solves the layout
    and renders in the same pass, and its pixels are encoded as savefig
    encodes them (``matplotlib.image.imsave``): the same image, a third less
    time per figure (tests/test_report_presentation.py compares the pixels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.image import imsave

    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    buf = io.BytesIO()
    imsave(buf, canvas.buffer_rgba(), format="png", origin="upper", dpi=DPI)
    return buf.getvalue()


def _fit_ylabels(fig: Figure) -> None:
    """An axis label longer than its axes is tall ran off the figure's edge
    ("...accuracy at lowest val lo"): wrapped onto two or more lines instead.
    Measured against the axes' height before the layout is solved, a little
    short of it (the labels' font is about 0.55 of its size wide a character)."""
    import textwrap

    height = fig.get_figheight() * 72  # points
    for ax in fig.axes:
        label = ax.yaxis.label
        text = label.get_text()
        if not text or "\n" in text or not label.get_visible():
            continue
        room = int(ax.get_position().height * height / (label.get_fontsize() * 0.55))
        if len(text) > room:
            label.set_text(textwrap.fill(text, max(12, room)))


def save(fig: Figure, out_dir: Path, name: str, formats: list[str]) -> tuple[bytes, list[Path]]:
    """PNG bytes (for embedding) plus one file per format."""
    _fit_ylabels(fig)
    png = _png(fig)
    # The layout is solved; keep it for the other formats instead of solving again.
    fig.set_layout_engine("none")
    files = []
    for fmt in formats:  # SVG keeps text as text (RC); a fixed hash salt: same input, same file
        path = out_dir / f"{name}.{fmt}"
        if fmt == "png":
            path.write_bytes(png)
        else:
            fig.savefig(path, format=fmt, dpi=DPI)
        files.append(path)
    return png, files


# Every figure a report can draw, by file name: a report removes the ones an
# earlier report left in its output folder that it did not draw itself (another
# format, a diagnostic these runs lack), which contradicted the page beside them.
FIGURE_NAMES = ("effects", "overfitting_loss", "overfitting_acc", "gap", "convergence", "time_to_target", "ablation",
                "heatmap", "variance_shift", "preactivations", "noisy_labels", "dead_relu", "norms", "search_params",
                "best_so_far")


@dataclass
class Task:
    """One figure to draw: ``build(*args) -> Figure``, a module-level
    function so that a worker process can run it."""

    name: str
    title: str
    caption: str
    build: Callable[..., Figure]
    args: tuple
    section: str = "figures"
    cost: float = 1.0  # relative drawing time: the costliest start first


def render(task: Task, out_dir: Path, formats: list[str]) -> Rendered:
    with matplotlib.rc_context(RC):
        fig = task.build(*task.args)
        png, files = save(fig, out_dir, task.name, formats)
    w, h = fig.get_size_inches()
    return Rendered(task.name, task.title, task.caption, png, files, float(w), float(h), task.section)


# Total Task.cost (about 0.1 s each) from which drawing in two processes pays:
# a worker costs about 0.08 s (warm-up, fork, pool), half of 0.4 s is 0.2 s.
# Every report of a grid has 9 figures or more (cost 13 or more).
PARALLEL_COST = 4


def workers(tasks: list[Task], jobs: int | None) -> int:
    """Processes to draw in, this one included: ``jobs`` (at most one per
    figure: ``-j 1000`` forked 999 workers for 10 figures, 23 s instead of 2.4),
    or one per available CPU (at most 4) unless there is too little to draw to
    pay for a worker."""
    if jobs is not None:
        return max(1, min(jobs, len(tasks)))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, 4, len(tasks)) if sum(t.cost for t in tasks) >= PARALLEL_COST else 1


def _end_with(parent: int) -> None:
    """A drawing worker: end when the process that forked it is gone (a
    report process killed mid-drawing: SIGTERM from a sweep interrupted while
    its report.at_end report was being drawn, or SIGKILL)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="end-with-parent").start()


_warm = False


def warm_up() -> None:
    """Draw a little text once (once per process), so that forked workers
    inherit loaded fonts and text metrics instead of each loading them again."""
    global _warm
    if _warm:
        return
    _warm = True
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(2, 1), layout="constrained")
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], label="x")
        ax.set_title("warm-up 0123456789%")
        ax.legend()
        fig.savefig(io.BytesIO(), format="png", dpi=DPI)


# How long a process waits for its turn at the shared counter of figures
# before it stops taking figures (a worker killed while it held the counter's
# lock: this process then draws what nobody drew).
TAKE_TIMEOUT_S = 5.0


def _take(counter) -> int | None:
    """The next place in the drawing order, or None when the lock is not had."""
    lock = counter.get_lock()
    if not lock.acquire(timeout=TAKE_TIMEOUT_S):
        return None
    try:
        k = counter.value
        counter.value = k + 1
    finally:
        lock.release()
    return k


class RemoteTraceback(Exception):
    """The traceback of a figure that failed in a drawing worker: the cause
    of the exception :func:`run_tasks` raises for it."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


def _draw_worker(tasks: list[Task], order: list[int], counter, conn, out_dir: Path, formats: list[str],
                 parent: int) -> None:
    """A forked drawing worker: takes the next figure off the shared counter
    until none is left, and sends ``(index, "ok", Rendered, png path)`` or
    ``(index, "error", (exception, traceback))`` for each on ``conn``, its
    own pipe. The PNG goes by file (its .png, or a hidden one the report
    process removes), so that every message is small: a pipe holds 64 KiB,
    and a figure is 80-200 KB."""
    import pickle
    import signal
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the report process's to report; it ends this one
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # ended by it (not the report process's handler, inherited)
    _end_with(parent)
    while (k := _take(counter)) is not None and k < len(order):
        i = order[k]
        try:
            r = render(tasks[i], out_dir, formats)
            path = next((f for f in r.files if f.suffix == ".png"), None)
            if r.png and path is None:
                path = out_dir / f".{r.name}.png.part"
                path.write_bytes(r.png)
            r.png = b""
            conn.send((i, "ok", r, str(path) if path is not None else None))
        except Exception as exc:  # noqa: BLE001 - the report process raises it
            text = traceback.format_exc()
            try:
                pickle.loads(pickle.dumps(exc))
            except Exception:  # noqa: BLE001 - it raises what can cross
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            conn.send((i, "error", (exc, text)))
            break
    conn.close()


def _received(message, done: dict[int, Rendered]) -> BaseException | None:
    """A drawing worker's message into ``done``; the exception of a figure that failed."""
    i, kind, payload, *rest = message
    if kind == "error":
        exc, text = payload
        exc.__cause__ = RemoteTraceback(text)
        return exc
    path = rest[0]
    if path is not None:
        payload.png = Path(path).read_bytes()
        if path.endswith(".png.part"):
            Path(path).unlink()
    done[i] = payload
    return None


def run_tasks(tasks: list[Task], out_dir: Path, formats: list[str], jobs: int | None = None,
              meanwhile: Callable[[], None] | None = None,
              late: Callable[[], list[Task]] | None = None) -> list[Rendered]:
    """Every task rendered, in the order given; in :func:`workers` processes:
    this one and forked workers, which start with everything imported and
    warmed up, and with the tasks' data: nothing is pickled but the results.

    Every process takes its next figure, costliest first, off one shared
    counter when it is free, so none waits while a figure is left undrawn.
    (A process pool handed each worker its next figure while it drew the
    current one: at the end this process sat idle while the worker drew the
    two it held, 0.25 s of a 12-run sweep's 1.1 s of drawing.) A worker
    that dies leaves its figures to this process; one that fails a figure
    fails the report with that exception (its traceback the cause).

    ``late`` is called once, in this process, while the workers draw their
    first figures; the tasks it returns are drawn here, after it, and come
    after ``tasks`` in the result. ``meanwhile`` (the report's CSV tables) is
    called once, in this process, after it: done after the figures, it kept
    this process busy with a worker idle (0.07-0.14 s of the 12-run sweep's
    report)."""
    from multiprocessing.connection import wait

    n = workers(tasks, jobs)
    if n <= 1 or "fork" not in mp.get_all_start_methods():
        more = late() if late is not None else []
        if meanwhile is not None:
            meanwhile()
        return [render(t, out_dir, formats) for t in tasks + more]
    warm_up()
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i].cost)
    ctx = mp.get_context("fork")
    counter = ctx.Value("i", 0)
    done: dict[int, Rendered] = {}
    more: list[Task] = []
    failed: BaseException | None = None
    started: dict = {}  # this end of each worker's pipe -> the worker
    finished = False

    def collect(timeout: float | None) -> None:
        """Take what the workers sent; forget a worker whose pipe ended (done, or dead)."""
        nonlocal failed
        for conn in wait(list(started), timeout):
            try:
                message = conn.recv()
            except (EOFError, OSError):  # it ended: its unsent figures are this process's to draw
                started.pop(conn).join()
                conn.close()
                continue
            error = _received(message, done)
            failed = failed or error  # the first figure that failed

    try:
        for _ in range(n - 1):
            receive, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_draw_worker, args=(tasks, order, counter, send, out_dir, formats, os.getpid()),
                            daemon=True, name="regbench-report-draw")
            started[receive] = p  # before it starts: an interrupt as it does still ends it (below)
            try:
                p.start()
            finally:
                send.close()  # the worker's alone: its pipe ends when it does (workers forked later lack it)
        more = late() if late is not None else []
        if meanwhile is not None:
            meanwhile()
        for j, task in enumerate(more, start=len(tasks)):
            done[j] = render(task, out_dir, formats)
        while failed is None and (k := _take(counter)) is not None and k < len(order):
            done[order[k]] = render(tasks[order[k]], out_dir, formats)
            collect(0)
        while failed is None and started:
            collect(None)
        if failed is None:
            for i in [i for i in order if i not in done]:  # a worker died with them: drawn here
                done[i] = render(tasks[i], out_dir, formats)
        finished = failed is None
    finally:
        for receive, p in started.items():
            if p.pid is None:  # its fork failed
                continue
            if not finished and p.is_alive():
                p.terminate()  # interrupted, or a figure failed: the rest is not wanted
            p.join()
            receive.close()
        for task in tasks:  # a PNG a worker sent that was not read (stopped early), or wrote before it died
            (Path(out_dir) / f".{task.name}.png.part").unlink(missing_ok=True)
    if failed is not None:
        raise failed
    return [done[i] for i in range(len(done))]


def ablation_x_factors(factors: list[str], levels: dict[str, list], x: str | None) -> list[str]:
    """``--x`` if given, else every numeric factor, else the first factor."""
    if x:
        return [x]
    return [f for f in factors if _numeric(levels[f])] or factors[:1]


def layer_columns(columns, prefix: str) -> list[str]:
    """``<prefix>/<layer>`` columns in network order: hidden0, hidden1, ..., hidden10, then head."""

    def order(column: str) -> tuple:
        layer = column.partition("/")[2]
        m = re.fullmatch(r"hidden(\d+)", layer)
        return (0, int(m.group(1)), "") if m else (1, 0, layer)

    return sorted((c for c in columns if c == prefix or c.startswith(prefix + "/")), key=order)


def _layer(column: str) -> str:
    return column.partition("/")[2] or "all layers"


def _pct(v: float) -> str:
    return f"{100 * v:.2g}%"


BAND = "Bands: 95% confidence interval of the mean over seeds (Student t)."


def bands(cells: pd.DataFrame, what: str = "Bands") -> str:
    """The caption's sentence on intervals: a cell with one usable seed has none."""
    n = cells["n_used"][cells["n_used"] > 0] if "n_used" in cells else pd.Series([2])
    if n.empty or n.max() < 2:
        return f"No {what.lower()}: one seed per cell, so no interval over seeds."
    sentence = BAND if what == "Bands" else f"{what}: 95% confidence interval of the mean over seeds (Student t)."
    return sentence + (" A cell with one seed has none." if n.min() < 2 else "")


def make_figures(a, styles: Styles, out_dir: Path, formats: list[str], x: str | None = None,
                 jobs: int | None = None, meanwhile: Callable[[], None] | None = None,
                 complete: Callable[[], object] | None = None) -> list[Rendered]:
    """Every figure the data supports, saved under ``out_dir``; ``a`` is a
    :class:`regbench.report.stats.Analysis`, ``x`` the ablation's x factor,
    ``jobs`` the worker processes (default: see :func:`workers`).

    ``complete`` completes ``a`` (its effects: stats.complete_effects): called
    here, in this process, while the workers draw the figures that do not
    need it; the figures it adds (the forest plot) are drawn after it.

    A diagnostic that shows nothing (dead ReLU units below 1% everywhere) is
    a :class:`Rendered` without a PNG whose caption says so."""
    out_dir.mkdir(parents=True, exist_ok=True)
    build = lambda: search_tasks(a, styles) if a.trials is not None else grid_tasks(a, styles, x)  # noqa: E731
    tasks, notes = build()
    late = None
    if complete is not None:
        early = {t.name for t in tasks}

        def late() -> list[Task]:
            nonlocal tasks, notes
            complete()
            tasks, notes = build()  # every figure, in the page's order
            return [t for t in tasks if t.name not in early]

    drawn = {r.name: r for r in run_tasks(tasks, out_dir, formats, jobs, meanwhile, late)}
    built = [drawn[t.name] for t in tasks]
    for i, note in notes:
        built.insert(i, note)
    return built


def _ranked(a, present: set | None = None) -> list[str]:
    """Cells best first by the metric at the epoch of lowest validation loss."""
    return [c for c in a.ranked().index if present is None or c in present]


def _drawn(curves: pd.DataFrame, columns: list[str]) -> set:
    """Cells with a value in any of ``columns``."""
    have = curves[[f"{c}_mean" for c in columns]].notna().any(axis=1)
    return set(have[have].index.get_level_values("cell"))


def grid_tasks(a, styles: Styles, x: str | None) -> tuple[list[Task], list[tuple[int, Rendered]]]:
    study, cells, curves, metric = a.study, a.cells, a.curves, a.metric
    have = lambda col: f"{col}_mean" in curves  # noqa: E731
    what = label(a.best_col)
    tasks: list[Task] = []
    notes: list[tuple[int, Rendered]] = []
    size = len(curves) / 500  # cost: epochs x cells to draw, in units of about 0.1 s
    band = bands(a.cells)

    def focused(columns: list[str]) -> Styles:
        drawn = _drawn(curves, columns)
        out = focus(styles, _ranked(a, drawn))
        return drawn_only(out, drawn) if out is styles else out

    if not a.effects.empty and a.best_col in set(a.effects["outcome"]):
        size_f = a.effects["outcome"].eq(a.best_col).sum()
        family = a.effects.loc[a.effects["outcome"] == a.best_col, "family_size"].max()
        family = int(family) if family == family else 0  # NaN: nothing tested
        bars = (f"bars: simultaneous {a.level:.0%} intervals over the family of {family} contrasts (Bonferroni); "
                if family else "no bars: no contrast could be tested (one seed, or no spread across seeds); ")
        tasks.append(Task(
            "effects", "Effects (forest plot)",
            f"Every contrast on {what}, paired by seed: main effects (each level against the first), interactions "
            "(differences of differences) and simple effects (one factor at one level of another). Diamonds: "
            f"estimates; {bars}"
            "dots: the contrast in each seed. Blue, filled, bold: resolved after Bonferroni's correction (its "
            "interval excludes 0); grey, open: not resolved. The other outcomes are in the effects table.",
            fig_forest, (a.effects, a.contrast_seeds, a.best_col), "effects", 1 + size_f / 20))
    for kind, name in (("loss", "loss"), ("acc", "accuracy")):
        if have(f"val_{kind}") and have(f"fit_{kind}"):
            tasks.append(Task(
                f"overfitting_{kind}", f"Overfitting: fit vs validation {name}",
                f"One panel per cell. Dashed: {name} on the whole training set in eval mode (the clean fit, "
                f"without dropout noise); solid: validation {name}. The dotted line marks the mean epoch of the "
                "lowest validation loss over the cell's seeds: where validation stops improving (at the last "
                f"epoch for a cell still improving, which has not begun to overfit). {band}",
                fig_overfitting, (curves, cells, styles, study.factors, study.levels, kind),
                cost=1 + len(cells) / 3 + size))
    many = len(_ranked(a)) > MANY
    grey = (f" With {len(_ranked(a))} cells, the {HIGHLIGHT} best and {HIGHLIGHT} worst by {what} are in colour, "
            "the others grey." if many else "")
    gaps = [(c, "epoch") for c in ("gap_loss", "gap_acc") if have(c)]
    by_gap = []
    if gaps and many and "final_gap_loss_mean" in cells:
        # the gap figure's colours for the largest and smallest gaps: ranked by accuracy, the cell with the
        # largest gap (the one the summary names) was a thin grey line
        drawn = _drawn(curves, [c for c, _ in gaps])
        by_gap = [c for c in cells["final_gap_loss_mean"].dropna().sort_values(ascending=False, kind="stable").index
                  if c in drawn]
    if len(by_gap) > MANY:
        gap_styles = focus(styles, by_gap, ends=("largest final gap", "smallest final gap"))
        gap_grey = (f" With {len(by_gap)} cells, the {HIGHLIGHT} with the largest and the {HIGHLIGHT} with the "
                    "smallest final gap (val − fit loss) are in colour, the others grey.")
    elif gaps:
        gap_styles, gap_grey = focused([c for c, _ in gaps]), grey
    if gaps:
        tasks.append(Task(
            "gap", "Generalization gap",
            "Validation minus fit loss, and fit minus validation accuracy, for every cell on one axis. Above zero: "
            "the model does better on the data it was trained on. A growing gap shows it fitting its training data "
            "faster than what carries over to new data; that costs validation loss only where the validation loss "
            f"itself rises after its minimum (the rise the summary reports). {band}"
            + gap_grey, fig_curves, (curves, gaps, gap_styles), cost=1 + size))
    clock = (" Seconds: each seed's share of its fused group's clock; cells of different groups shared the CPU "
             "differently, so their seconds are not a comparison of speed (time cells with hydra/launcher=basic)."
             if a.shared_clock() else "")
    if have(metric):
        panels = [(metric, "epoch")] + ([(metric, "time_s")] if have("time_s") else [])
        hline = {metric: a.target} if a.target is not None else None
        tasks.append(Task(
            "convergence", "Convergence",
            f"{label(metric).capitalize()} against epochs and against training time per seed (evaluation excluded; "
            "mean over seeds)." + (" The broad grey band is the target." if a.target is not None else "")
            + (clock if len(panels) > 1 else "") + f" {band}" + grey,
            fig_curves, (curves, panels, focused([metric]), hline), cost=1 + size))
    targets = [c for c in ("epochs_to_target", "seconds_to_target") if c in a.runs]
    if a.target is not None and targets:
        used = a.runs[a.runs["used"]]
        xmax = {"epochs_to_target": float(used["final_epoch"].max()) if "final_epoch" in used else None,
                "seconds_to_target": float(used["final_time_s"].max()) if "final_time_s" in used else None}
        shown = f"{a.target:.0%}" if _is_accuracy(metric) else f"{a.target:g}"
        goal = f"{label(metric)} {'≥' if higher_is_better(metric) else '≤'} {shown}"
        tasks.append(Task(
            "time_to_target", "Time to target",
            f"For each cell, the share of its runs whose {goal} by a given epoch (left) or second of training time "
            f"per seed (right): an empirical CDF. The target is "
            f"{'chosen automatically: the weakest cell’s mean value at the epoch of lowest validation loss' if a.target_auto else 'from --target'}. "
            "A run that never reached it counts as not yet there at the end (censored), so a curve that stops "
            "below 100% names the runs that never got there (k/n reached in the legend); where a curve crosses "
            "the grey 50% band is the cell's median (one that only reaches 50% has none: half never got there)."
            + (f" Curves that coincide are drawn {DODGE * 100:.1f} percentage points apart, so that none hides another."
               if any(coinciding(used, c) for c in targets) else "")
            + (clock if "seconds_to_target" in targets else "") + grey,
            fig_ecdf, (used[["cell", *targets]], focus(styles, _ranked(a, set(used["cell"]))),
                       targets, xmax, goal, _ranked(a, set(used["cell"]))), cost=1 + size / 2))
    outcome_cols = [c for c in dict.fromkeys([a.best_col, f"final_{metric}", "final_gap_loss"])
                    if f"{c}_mean" in cells]
    if study.factors and outcome_cols:
        xf = ablation_x_factors(study.factors, study.levels, x)
        tasks.append(Task(
            "ablation", "Ablation",
            f"{what.capitalize()} (each run's best epoch, chosen on validation loss only), the final value and the "
            "final generalization gap against each setting; one line per setting of the other factor(s), in the "
            "line style (and colour and marker, where those do not change along the line; else dark grey) its "
            f"cells have in the other figures. {bands(a.cells, 'Error bars')} Settings without "
            "usable runs (none finished, or all diverged or failed) have no point.",
            fig_ablation, (cells, outcome_cols, xf, study.levels, styles), cost=1 + len(xf)))
    if len(study.factors) == 2 and outcome_cols:
        row_f = styles.style_by if styles.style_by in study.factors else study.factors[1]
        col_f = next(f for f in study.factors if f != row_f)
        shown_cols = [outcome_cols[0], "final_gap_loss"] if "final_gap_loss_mean" in cells else outcome_cols[:1]
        tasks.append(Task(
            "heatmap", "Grid",
            "Every combination of the two factors: mean and ± 95% CI half-width; n where a setting has fewer "
            "usable runs than the others; grey: no usable runs. Brighter is better: the colour scale is reversed "
            "where lower is better (losses)."
            + (" The gap's panel is bright where fit and validation are close, which is not better in itself: an "
               "underfit model has a small gap too." if "final_gap_loss" in shown_cols else ""),
            fig_heatmap, (cells, shown_cols, row_f, col_f, study.levels)))
    # Diagnostics: each figure only when some usable run recorded its columns.
    have_cols = [c[: -len("_mean")] for c in curves.columns if c.endswith("_mean")]
    shift = layer_columns(have_cols, VAR_SHIFT)
    if shift:
        tasks.append(Task(
            "variance_shift", "BatchNorm variance shift",
            "Variance shift near 1 means BatchNorm's test-time statistics match what the layer really sees at test "
            "time; values above 1 mean its running variance is off, typically too large because dropout before BN "
            "added noise during training (Li et al. 2019). Per unit: the running variance against the variance of "
            "the BN input over the whole training set in eval mode, as max(a/b, b/a), averaged over units. Only "
            "cells with BatchNorm in that layer have a line; epoch 0 is left out (the running statistics are still "
            f"their initial values there). {band}" + grey,
            fig_panels, (curves, [(c, _layer(c)) for c in shift], focused(shift), "variance shift (1 = none)",
                         (1, "1: no shift"), 1, True), cost=1 + size))
    layers = [_layer(c) for c in layer_columns(have_cols, PREACT.format(50))]
    if layers:
        tasks.append(Task(
            "preactivations", "Pre-activation distribution",
            "How the input of the activation function of one unit (unit 0 of each hidden block) is distributed over "
            "a fixed batch of training examples as training goes on, as in Ioffe & Szegedy (2015, Fig. 1): the line "
            "is the median and the band spans the 15th to 85th percentile; a band that drifts or widens means the "
            "layers above keep seeing a changing input distribution, which BatchNorm placed before the activation "
            "holds steady. Each percentile is the mean over seeds; the band is the spread of the unit's values, "
            "not a confidence interval." + (grey.replace("are in colour", "are in colour with their bands") if many
                                            else ""),
            fig_preactivations,
            (curves, layers, focused([f"{PREACT.format(50)}/{lay}" for lay in layers]), _groups(a, styles)),
            cost=1 + 2 * size))
    noisy = [(c, t) for c, t in (("noisy_fit_acc", "against the corrupted label (memorized)"),
                                 ("noisy_clean_acc", "against the original clean label")) if c in have_cols]
    if noisy:
        tasks.append(Task(
            "noisy_labels", "Fit of corrupted labels",
            "Accuracy on the training examples whose label was corrupted, measured in eval mode against the "
            "corrupted label (how much label noise the network has memorized) and against their original clean "
            "label (whether it still predicts the true class); memorization shows as the left curve rising while "
            f"the right one falls, and a regularizer that helps keeps the left low and the right high. {band}" + grey,
            fig_panels, (curves, noisy, focused([c for c, _ in noisy]), "accuracy on the corrupted examples", None, 0,
                         True), cost=1 + size))
    dead = layer_columns(have_cols, DEAD_FRAC)
    if dead:
        top = curves[[f"{c}_mean" for c in dead]].max()
        if top.max() < DEAD_SAYS_NOTHING:
            col = top.idxmax()[: -len("_mean")]
            where = curves[f"{col}_mean"].idxmax()
            most = ("none died in any cell or epoch" if not top.max() > 0 else  # "at most 0%: hidden0, ..., epoch 0"
                    f"at most {_pct(top.max())}: {_layer(col)}, {where[0]}, epoch {where[1]}")
            notes.append((len(tasks), Rendered(
                "dead_relu", "Dead ReLU units",
                f"Dead ReLU units (output zero for every training example) stay below {_pct(DEAD_SAYS_NOTHING)} of "
                f"each layer in every cell and epoch ({most}), so no units were lost; no figure.", b"", [])))
        else:
            tasks.append(Task(
                "dead_relu", "Dead ReLU units",
                "Share of each hidden block's ReLU units that output zero for every training example: dead units "
                f"get no gradient and no longer learn, so a share that grows over training is capacity lost. {band}"
                + grey, fig_panels, (curves, [(c, _layer(c)) for c in dead], focused(dead), "share of units dead",
                                     None, 0, True), cost=1 + size))
    norms = layer_columns(have_cols, WEIGHT_NORM)
    panels = [(c, f"‖W‖ {_layer(c)}") for c in norms] + [("grad_norm", "gradient (mean per step)")] * ("grad_norm" in have_cols)
    if panels:
        tasks.append(Task(
            "norms", "Weight and gradient norms",
            ("Frobenius norm of each Linear layer's weight, and " if norms else "")
            + "the mean L2 norm of the whole gradient per optimizer step, each panel on its own scale; where "
            "BatchNorm directly follows a Linear layer, that layer computes the same function at any weight scale, "
            "so a growing weight norm there only shrinks the effective learning rate (weight decay counteracts it). "
            f"{band}" + grey,
            fig_panels, (curves, panels, focused([c for c, _ in panels]), "L2 / Frobenius norm"),
            cost=1 + len(panels) / 2 * size))
    return tasks, notes


def _groups(a, styles: Styles) -> dict[str, list[str]] | None:
    """Cells by level of the line-style factor (``batchnorm=false``: [...]), for
    panels that show fewer cells each; None without a style factor."""
    f = styles.style_by
    if f is None or f not in a.cells:
        return None
    short = short_names(a.study.factors)[f]
    return {setting_text(f, v, short): a.cells.index[a.cells[f] == v].tolist() for v in a.study.levels[f]}


def search_tasks(a, styles: Styles) -> tuple[list[Task], list[tuple[int, Rendered]]]:
    """The optimization view of a non-grid sweep: outcome against each
    parameter, best so far, and the curves of the best and worst trials."""
    metric, t = a.metric, a.trials
    what = label(a.best_col)
    tasks = [
        Task("search_params", "Outcome against each parameter",
             f"{what.capitalize()} of each trial against each searched parameter; colour: the order the trials "
             "started (dark: early, light: late), star: the best trial. One run per setting: no intervals. A "
             "search is no factorial experiment, so no effects are estimated.",
             fig_search, (t, a.params, metric), cost=1 + len(a.params) / 2),
        Task("best_so_far", "Best so far",
             f"{what.capitalize()} of each trial in the order the trials started (summary.json started_at, then "
             "the job number), and the best value up to each trial.",
             fig_best_so_far, (t, metric)),
    ]
    curves = a.curves
    if f"{metric}_mean" in curves:
        ranked = _ranked(a, _drawn(curves, [metric]))
        n = len(ranked)
        # A trial is its cell: name it by trial number and its sampled values, 3 significant digits.
        names = {}
        for _, r in t.iterrows():
            cell = a.runs.loc[a.runs["run"] == r["run"], "cell"].iloc[0]
            names.setdefault(cell, f"#{r['trial']}: " + ", ".join(
                f"{short_names(a.params)[p]}={r[p]:.3g}" if isinstance(r[p], float) else
                f"{short_names(a.params)[p]}={fmt_value(r[p])}" for p in a.params))
        tasks.append(Task(
            "convergence", "Convergence of the best and worst trials",
            f"{label(metric).capitalize()} over epochs for every trial"
            + (f"; the {HIGHLIGHT} best and {HIGHLIGHT} worst trials by {what} in colour, the others grey."
               if n > MANY else "."),
            fig_curves, (curves, [(metric, "epoch")], focus(styles, ranked, noun="trials", names=names)),
            cost=1 + len(curves) / 500))
    return tasks, []
