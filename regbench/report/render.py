"""report.html (self-contained: figures embedded as base64 PNG, a few lines
of inline script, no network) and report.md (figures linked as files), from
one Analysis, through the Jinja2 templates in ``templates/``.

The upper part turns numbers into sentences and table rows; the lower part
prepares the page as data (:func:`page`), which both templates show in the
same order: the question and its one-line answer, contents, findings at a
glance, effects (forest plot, Bonferroni-adjusted table), cells with their caveats
listed under them, every run (one row per seed), figures, the runs left out
or flagged, shared settings and the files written. Markup lives in the
templates only.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..records import USED_ONLY_WITH, plural  # noqa: F401  (plural: the report cli's too)
from . import optimize
from .figures import PX_PER_IN, Rendered, label
from .load import confounding_notes, experiment_header, finite, fmt_bounds, fmt_diff, fmt_num, fmt_p, fmt_value, \
    incomplete, is_combined, short_names
from .load import unit as _unit
from .stats import LEVEL, Analysis, behind_bounds, headline, higher_is_better, left_out_count, positive_column

# ---------------------------------------------------------------- numbers as text


def _finite(v) -> bool:
    return finite(v)


def fmt_ci(row: pd.Series, col: str) -> str:
    """``mean ± half-width`` of the 95% CI (``89.1% ± 0.5 pp``: percentage points); the
    mean alone when n < 2. Quantities never below 0 (times, epochs) have
    their t interval cut at 0, so shown by its ends: ``0.43 s [0.41, 0.47]``,
    or the value alone where the interval's ends print the same."""
    mean = row.get(f"{col}_mean", np.nan)
    if not _finite(mean):
        return "–"
    lo, hi = row.get(f"{col}_ci_lo", np.nan), row.get(f"{col}_ci_hi", np.nan)
    if not (_finite(lo) and _finite(hi)):
        return fmt_num(mean, col)
    scale, dec, unit = _unit(col)
    if positive_column(col):
        ends = f"{lo * scale:.{dec}f}", f"{hi * scale:.{dec}f}"
        if ends[0] == ends[1]:  # no spread at this precision: "30.0 [30.0, 30.0]" said it three times
            return fmt_num(mean, col)
        return f"{fmt_num(mean, col)} [{ends[0]}, {ends[1]}]"
    if unit.strip() == "%":  # an accuracy: its interval's half-width is in percentage points, not a percent of it
        return f"{mean * scale:.{dec}f}% ± {(hi - lo) / 2 * scale:.{dec}f} pp"
    return f"{mean * scale:.{dec}f} ± {(hi - lo) / 2 * scale:.{dec}f}{unit}"


def ci_note(row: pd.Series, col: str) -> str:
    """``95% CI, n=5``; ``1 seed: no interval`` (never "CI" without one)."""
    n = row.get(f"{col}_n", 0)
    n = int(n) if _finite(n) else 0
    return f"{LEVEL:.0%} CI, n={n}" if n >= 2 else f"{plural(n, 'seed')}: no interval"


def _interval(row, col: str, adjusted: bool = True) -> str:
    """The simultaneous (``adjusted``) or raw interval of an effect row."""
    if not _finite(row["estimate"]):
        return "–"
    lo, hi = (row.get("ci_lo_adj"), row.get("ci_hi_adj")) if adjusted else (row["ci_lo"], row["ci_hi"])
    if _finite(lo) and _finite(hi):
        return f"[{fmt_diff(lo, col)}, {fmt_diff(hi, col)}]"
    return "no spread" if _finite(row.get("n")) and row.get("n") >= 2 else "n < 2"


def _p(name: str, p) -> str:
    text = fmt_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"




CELLS_NOTE = (
    "Mean ± 95% CI half-width (Student t; in percentage points, pp, for accuracies) over each cell's usable runs (runs used / runs); times, epochs and the "
    "rise of validation loss, never below 0, have their interval cut at 0 and shown as [low, high]. "
    "\"(n=3)\" after a value: fewer "
    "runs have it than are used (named in the caveats). Diverged, failed and unfinished "
    "runs (still running, interrupted, or fewer epochs than planned), runs with a gap in their epochs (no row for an "
    "epoch before their last) and duplicates (a second run of the same cell and seed, counted once) are left "
    "out and named in the caveats. "
    "\"At lowest val loss\": the value at each run's epoch of lowest validation loss, the epoch summary.json "
    "calls best; never the maximum over epochs. Test accuracy is at that same epoch: the cell that looks best on "
    "validation is chosen on validation data, so its validation value is biased upward and its test value is the "
    "unbiased estimate. Epochs and seconds to target: the median over all used runs, counting runs that never "
    "reached the target as slower than any that did (none where half or more never did), and k/n reached. "
    "Training time is per seed (the clock of the model a seed trained in, a job's or a fused group's, divided by "
    "the seeds that model trained together), one value per job."
)

NOT_ESTIMABLE = "a cell it needs has no usable run with a seed shared by the others"
CORRECTION = "Bonferroni"


SAME_IN_EVERY_SEED = "the {n} seeds give the same value, so there is no spread to estimate the noise from"


def verdict(row) -> str:
    """What the adjusted reading allows us to say, in words (``resolved``,
    ``p_adj`` from stats.adjust); the raw interval is never the verdict."""
    if not _finite(row["estimate"]):
        return f"not estimable: {NOT_ESTIMABLE}"
    n = row.get("n", 0)
    if _finite(n) and n >= 2 and not _finite(row.get("std")):
        return f"no test: {SAME_IN_EVERY_SEED.format(n=int(n))}"
    if not (_finite(n) and n >= 2) or not _finite(row.get("ci_lo")):
        return "1 seed: no interval"
    if "resolved" not in row:  # an unadjusted table: no verdict on it
        return "unadjusted: no verdict"
    if row["resolved"]:
        return f"resolved after {CORRECTION} correction, {_p('p_adj', row['p_adj'])}"
    if row["ci_lo"] > 0 or row["ci_hi"] < 0:
        return (f"not resolved after {CORRECTION} correction, {_p('p_adj', row['p_adj'])}; "
                f"unadjusted {_p('p', row['p'])}")
    return f"not resolved, {_p('p_adj', row['p_adj'])}"


def _short_verdict(row) -> str:
    """:func:`verdict` for the effects table, whose p column already holds
    p_adj: "resolved" / "not resolved" (at 800 px the whole sentence stood one
    word a line, cut at the table's edge)."""
    long = verdict(row)
    if long.startswith("resolved"):
        return "resolved"
    if long.startswith("not resolved"):
        return "not resolved" + (f" (unadjusted {_p('p', row['p'])})" if "unadjusted" in long else "")
    return long


def _reached(r: pd.Series, col: str, what: str) -> str:
    """``median 12.0 epochs, 4/5 reached``; ``2/5 reached: no median``."""
    k, n = int(r.get("n_reached", 0)), int(r["n_used"])
    med = r.get(f"{col}_median", np.nan)
    if not _finite(med):
        return f"{k}/{n} reached: no median"
    return f"median {fmt_num(med, col)}{what}, {k}/{n} reached"


# ---------------------------------------------------------------- findings


def findings(a: Analysis) -> list[str]:
    """The answers a reader came for, each one sentence with its uncertainty;
    effects in their adjusted reading only."""
    out = list(confounding_notes(a.study))
    cells, m = a.cells, a.metric
    ranked = a.ranked()
    best = a.best_col
    if ranked.empty:
        return out + ["No cell has a usable run: nothing to compare (see the runs left out below)."]
    top = ranked.iloc[0]
    one = len(ranked) == 1  # a single run, or one cell: nothing was chosen among cells
    what = label(m).capitalize() if one else f"Best {label(m)}"
    which = "" if one else f"{ranked.index[0]} with "
    text = (
        f"{what} at the epoch of lowest validation loss (each run's best epoch, chosen on validation loss only): "
        f"{which}{fmt_ci(top, best)} ({ci_note(top, best)}), {fmt_ci(top, f'final_{m}')} at the last epoch"
        + (f" (caveat: {top['caveats']})." if top["caveats"] else ".")
    )
    if a.best_vs_runner_up:
        text += " " + a.best_vs_runner_up["text"]
    out.append(text)
    # over fewer runs than the validation value where some run lacks a test value: said, as the cells table says it
    n_val, n_test = top.get(f"{best}_n"), top.get("best_test_acc_n")
    fewer = (f" (over {int(n_test)} of its {int(n_val)} runs)" if _finite(n_val) and _finite(n_test) and n_test < n_val else "")
    if one:  # no cell was chosen, but each run's epoch was, on validation data
        if m.startswith("val_") and "best_test_acc_mean" in cells and _finite(top.get("best_test_acc_mean")):
            out.append(f"The epoch is chosen on validation loss, so the validation value there is biased upward; test "
                       f"accuracy at the same epoch, {fmt_ci(top, 'best_test_acc')}{fewer}, is the unbiased estimate.")
    elif m.startswith("val_") and "best_test_acc_mean" in cells and _finite(top.get("best_test_acc_mean")):
        out.append(
            f"The best cell is the one that looks best on validation data, so its validation value is biased "
            f"upward; its test accuracy at the same epoch, {fmt_ci(top, 'best_test_acc')}{fewer}, is the unbiased estimate."
        )
    elif m.startswith("test_"):
        out.append(f"Cells are ranked on {label(m)} here, so the best cell's test value is chosen on test data and "
                   "biased upward; rank on a validation metric (--metric val_acc) for an unbiased test estimate.")

    still = cells.index[cells["still_improving"]].tolist() if "still_improving" in cells else []
    if still:
        out.append(f"Still improving at the last epoch (lowest validation loss at the last epoch in most runs: "
                   f"train longer before reading their best or final values): {'; '.join(still)}.")
    stuck = cells.index[cells["never_learned"]].tolist() if "never_learned" in cells else []
    if stuck:
        out.append(f"Did not learn (lowest validation loss at epoch 0, the untrained model, in most runs: their "
                   f"values are those of an untrained network): {'; '.join(stuck)}.")
    if "val_loss_rise_mean" in cells and cells["val_loss_rise_mean"].notna().any():
        # A cell still improving has not overfitted yet, and one that never learned cannot:
        # neither is the "weakest overfitting".
        rise = cells.loc[~cells.index.isin(still + stuck), "val_loss_rise_mean"].dropna().sort_values()
        if rise.empty:
            pass
        elif rise.iloc[-1] < 0.01:
            out.append("Overfitting: no cell's validation loss rises by more than 0.01 after its minimum"
                       + (" (cells still improving aside)." if still else "."))
        elif len(rise) == 1:
            w = cells.loc[rise.index[0]]
            out.append(f"Overfitting in {rise.index[0]}: validation loss is lowest at epoch {w['best_epoch_mean']:.0f} "
                       f"(mean) and then rises by {fmt_ci(w, 'val_loss_rise')}"
                       + (", the only cell no longer improving." if still else "."))
        else:
            worst, least = rise.index[-1], rise.index[0]
            w = cells.loc[worst]
            out.append(
                f"Overfitting is strongest in {worst}: validation loss is lowest at epoch "
                f"{w['best_epoch_mean']:.0f} (mean) and then rises by {fmt_ci(w, 'val_loss_rise')}; weakest in "
                f"{least} (rise {fmt_ci(cells.loc[least], 'val_loss_rise')}, lowest at epoch "
                f"{cells.loc[least, 'best_epoch_mean']:.0f})"
                + (" among the cells no longer improving" if still else "")
                + " (cell means over their used runs; descriptive, not tested)."
            )
    if "final_gap_loss_mean" in cells and cells["final_gap_loss_mean"].notna().sum() == 1:
        gap = cells["final_gap_loss_mean"].dropna()
        out.append(f"Final generalization gap (val − fit loss): {fmt_ci(cells.loc[gap.index[0]], 'final_gap_loss')}.")
    elif "final_gap_loss_mean" in cells and cells["final_gap_loss_mean"].notna().any():
        gap = cells["final_gap_loss_mean"].dropna().sort_values()
        out.append(
            f"Final generalization gap (val − fit loss) ranges from {fmt_ci(cells.loc[gap.index[0]], 'final_gap_loss')}"
            f" ({gap.index[0]}) to {fmt_ci(cells.loc[gap.index[-1]], 'final_gap_loss')} ({gap.index[-1]})."
        )
    if a.target is not None and "n_reached" in cells:
        reach = cells[cells["n_used"] > 0]
        t = f"{a.target:.0%}" if m.endswith("acc") else f"{a.target:g}"
        goal = f"{label(m)} {'≥' if higher_is_better(m) else '≤'} {t}{' (automatic target)' if a.target_auto else ''}"

        def order(col: str) -> pd.DataFrame:
            # Censored: a defined median first, smallest first; then by the share of runs that reached it.
            return reach.assign(_m=reach[f"{col}_median"].fillna(np.inf), _k=-reach["n_reached"] / reach["n_used"]) \
                .sort_values(["_m", "_k"], kind="stable")

        def tied(ranked: pd.DataFrame) -> bool:
            return ranked[["_m", "_k"]].iloc[0].tolist() == ranked[["_m", "_k"]].iloc[-1].tolist()

        def ends(ranked: pd.DataFrame, col: str, what: str, last: bool = False) -> str:
            # the first (or last) cell and every cell tied with it: naming one of them would rank a tie
            key = ranked[["_m", "_k"]].iloc[-1 if last else 0].tolist()
            names = [c for c in ranked.index if ranked.loc[c, ["_m", "_k"]].tolist() == key]
            texts = [_reached(cells.loc[c], col, what) for c in names]
            if len(names) == 1:
                return f"{names[0]} ({texts[0]})"
            if len(set(texts)) == 1:
                return f"{'; '.join(names)} (tied: {texts[0]} each)"
            return "; ".join(f"{c} ({t})" for c, t in zip(names, texts)) + " (tied)"

        if "epochs_to_target_median" in reach and reach["epochs_to_target_median"].notna().any():
            ranked = order("epochs_to_target")
            fast = ranked.index.tolist()
            if len(fast) > 1 and tied(ranked):
                text = (f"Every cell reaches {goal} alike: "
                        f"{_reached(cells.loc[fast[0]], 'epochs_to_target', ' epochs')} (no fastest or slowest)")
            else:
                text = f"Fastest to {goal}: {ends(ranked, 'epochs_to_target', ' epochs')}"
            if not a.shared_clock() and "seconds_to_target_median" in reach and reach["seconds_to_target_median"].notna().any():
                secs = order("seconds_to_target")
                if not tied(secs):
                    text += f"; in training time per seed: {ends(secs, 'seconds_to_target', '')}"
            if len(fast) > 1 and not tied(ranked):
                text += f"; slowest: {ends(ranked, 'epochs_to_target', ' epochs', last=True)}"
            out.append(text + ". Descriptive: not tested.")
        elif len(reach):
            out.append(f"No cell reached {goal} in more than half of its runs: no median time to it.")
        never = reach.index[reach["n_reached"] == 0].tolist()
        if never:
            out.append(f"Never reached {t} in any run (0/n reached): {'; '.join(never)}.")
    together = a.runs.loc[a.runs["used"], "seeds_together"] if "seeds_together" in a.runs else pd.Series(dtype=float)
    sizes = " or ".join(str(int(s)) for s in sorted(set(together[together > 1])))
    if a.shared_clock():  # one note of times, with the jobs of R seeds in it (two notes began alike and said half each)
        out.append("Times are per seed: the runs trained in fused groups (regbench's default launcher), each group "
                   "as one vectorized model with one clock, and each seed is charged an equal share of it. So the "
                   "cells of one group train equally fast per epoch by construction: seconds say what the sweep "
                   "spent, not how fast a cell trains alone (no cell is ranked by them here); time cells with "
                   "hydra/launcher=basic."
                   + (f" A job of R seeds (R = {sizes} here) is one measurement of time: the n of a training time "
                      "counts jobs, not seeds." if sizes else ""))
    elif sizes:
        out.append(f"Times are per seed: a job that trained R seeds together as one vectorized model records one "
                   f"clock for all of them (R = {sizes} here), so each seed is charged 1/R of it; the n of a training "
                   "time counts jobs, not seeds.")

    diverged = a.runs[a.runs["status"] == "diverged"] if "status" in a.runs else a.runs.iloc[:0]
    if len(diverged):
        # Divergence is an outcome of the settings too: the means and effects are over the runs that did not.
        total = a.runs.groupby("cell")["run"].count()
        per_cell = diverged.groupby("cell")["run"].count()
        listed = "; ".join(f"{cell} {k}/{total[cell]}" for cell, k in per_cell.items())
        clean = [c for c in total.index if c not in per_cell.index]
        out.append(f"Diverged (runs per cell): {listed}" + (f"; none in {'; '.join(clean)}" if clean else "")
                   + ". Means and effects here are over the runs that did not diverge, so they say nothing of "
                   "how often a setting diverges; the counts above do (descriptive, not tested).")
    if not a.effects.empty:
        eff = a.effects[a.effects["outcome"] == best]
        size = int(eff["family_size"].max()) if len(eff) else 0
        kinds = {"main": "main effects", "interaction": "interactions", "simple": "simple effects"}
        present = [kinds[k] for k in kinds if (eff["kind"] == k).any()]
        members = ", ".join(present[:-1]) + " and " + present[-1] if len(present) > 1 else "".join(present)
        if size:
            out.append(
                f"Effects are read after {CORRECTION}'s correction over each outcome's family of contrasts ({size} "
                f"with an interval on {label(best)}: {members}), with "
                f"simultaneous {LEVEL:.0%} intervals; an effect is resolved when its "
                f"{CORRECTION}-adjusted p < {1 - LEVEL:.2f}, which is when its simultaneous interval excludes 0, "
                "and effects.csv keeps the unadjusted p and intervals too."
            )
        two = eff[eff["resolved"].astype(bool) & (eff["n"] == 2)] if "n" in eff else eff.iloc[:0]
        if len(two):  # 1 degree of freedom: two seeds that happen to agree give a narrow interval
            out.append(
                f"{plural(len(two), 'resolved contrast')} on {label(best)} rest{'s' if len(two) == 1 else ''} on 2 seeds "
                "(1 degree of freedom): the interval is then as narrow as the two seeds' values happen to agree (one "
                "validation example apart can move it across 0). Add seeds before relying on "
                f"{'it' if len(two) == 1 else 'them'}."
            )
        lost = int(eff["estimate"].isna().sum())
        for _, r in eff[eff["kind"] != "simple"].iterrows():
            if not _finite(r["estimate"]):
                continue
            kind = "Effect of" if r["kind"] == "main" else "Interaction"
            reading = verdict(r)
            if r["kind"] == "interaction" and r["resolved"]:
                reading += ": the effect of one factor depends on the other"
            elif r["kind"] == "interaction" and reading.startswith("not resolved"):
                # not "no evidence that they interact": an unadjusted p of 0.013 is some, and a wide interval rules nothing out
                reading += ": its interval leaves open whether, and which way, the factors interact"
            where = f", {r['scope']}" if r["scope"] else ""
            interval = _interval(r, best)
            interval = "" if interval == "n < 2" else f" {interval}"  # its reading says "1 seed: no interval"
            out.append(
                f"{kind} {r['contrast']} on {label(best)}: {fmt_diff(r['estimate'], best)}"
                f"{interval} (paired over {plural(int(r['n']), 'seed')}{where}; {reading})."
            )
        simple = eff[(eff["kind"] == "simple") & eff["estimate"].notna()]
        if len(simple):
            res = simple[simple["resolved"]]
            shown = [f"{r['contrast']} at {r['at']} {fmt_diff(r['estimate'], best)} {_interval(r, best)}"
                     for _, r in res.head(8).iterrows()]
            more = f"; {len(res) - 8} more in the effects table" if len(res) > 8 else ""
            tested = int(simple["p"].notna().sum()) if "p" in simple else len(simple)
            untested = f" ({len(simple) - tested} more with no test: 1 shared seed or no spread)" if tested < len(simple) else ""
            if tested:
                out.append(f"Simple effects (each factor at each level of another): {len(res)} of {tested} tested "
                           "resolved" + untested + (f": {'; '.join(shown)}{more}." if shown else "."))
            else:  # it said "0 of 0 tested resolved"
                out.append(f"Simple effects (each factor at each level of another): none of the {len(simple)} could be "
                           "tested (1 shared seed or no spread).")
        if lost:
            out.append(f"{lost} of {len(eff)} effects are not estimable: {NOT_ESTIMABLE}.")

    runs = a.runs
    left = runs[~runs["used"]]
    problems = []
    if len(left):
        counts = left["left_out"].value_counts()
        problems.append("runs left out of all means: " + ", ".join(left_out_count(n, s) for s, n in counts.items()))
    if runs["truncated"].any():
        problems.append(f"{plural(int(runs['truncated'].sum()), 'run')} with a truncated metrics file "
                        "(read up to its last complete epoch; left out if that is short of the planned epochs)")
    unknown = incomplete(runs)
    if unknown.any():
        problems.append(f"{plural(int(unknown.sum()), 'run')} of unknown status (no summary.json, every planned "
                        "epoch recorded) averaged in")
    if "lacking" in runs and (runs["lacking"] != "").any():
        lacking = runs[runs["used"] & (runs["lacking"] != "")]
        problems.append(f"{plural(len(lacking), 'used run')} without a value for some outcome (a NaN at its best "
                        f"epoch, or an older record), so that outcome's n is smaller: "
                        + ", ".join(f"{r['run']} ({r['lacking']})" for _, r in lacking.head(5).iterrows())
                        + (", …" if len(lacking) > 5 else ""))
    fewer = cells["caveats"].str.contains("fewer seeds|missing: no runs|no usable", regex=True)
    if fewer.any():
        problems.append(f"{plural(int(fewer.sum()), 'cell')} with fewer usable runs than the others, or none")
    if still:
        problems.append(f"{plural(len(still), 'cell')} still improving at the last epoch")
    if a.study.unreadable:
        problems.append(plural(len(a.study.unreadable), "unreadable record"))
    if problems:
        out.append("Caveats: " + "; ".join(problems) + " (listed below).")
    return out


# ---------------------------------------------------------------- tables as rows


def cell_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    m = a.metric
    cols = [
        (f"best_{m}", f"{label(m)} at lowest val loss"),
        ("best_test_acc", f"{label('test_acc')} at the same epoch"),
        (f"final_{m}", f"final {label(m)}"),
        ("final_gap_loss", "final gap (val − fit loss)"),
        ("best_epoch", "epoch of lowest val loss"),
        ("val_loss_rise", "val loss rise after it"),
        ("epochs_to_target", "epochs to target (median, k/n reached)"),
        ("seconds_to_target", "seconds to target (median, k/n reached)"),
        ("final_time_s", "training time per seed"),
    ]
    seen: set[str] = set()  # --metric test_acc: its column comes first, not again as "at the same epoch"
    cols = [(c, t) for c, t in cols if (f"{c}_mean" in a.cells or f"{c}_median" in a.cells)
            and not (c in seen or seen.add(c))]
    header = ["cell", "runs used"] + [t for _, t in cols] + ["caveats"]
    rows = []
    for cell, r in a.cells.iterrows():
        row = [cell, f"{r['n_used']}/{r['n_runs']}"]
        for c, _ in cols:
            if c.endswith("to_target"):
                row.append(_reached(r, c, "").removeprefix("median ") if r["n_used"] else "–")
                continue
            text = fmt_ci(r, c)
            n = r.get(f"{c}_n", np.nan)
            if c != "final_time_s" and _finite(n) and 0 < r["n_used"] and n < r["n_used"] and text != "–":
                text += f" (n={int(n)})"
            row.append(text)
        rows.append(row + [r["caveats"]])
    return header, rows


def effect_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """Every contrast in its adjusted reading: estimate, simultaneous interval,
    Bonferroni-adjusted p (the unadjusted ones are in effects.csv)."""
    header = ["outcome", "kind", "contrast", "at", "estimate", f"{LEVEL:.0%} simultaneous CI", "seeds",
              f"p ({CORRECTION})", "reading"]
    rows = [
        [label(r["outcome"]), r["kind"], r["contrast"], r["at"] or "–", fmt_diff(r["estimate"], r["outcome"]),
         _interval(r, r["outcome"]), str(int(r["n"])), fmt_p(r["p_adj"]),
         _short_verdict(r) + (f"; {r['scope']}" if r["scope"] else "")]
        for _, r in a.effects.iterrows()
    ]
    return header, rows


def flagged_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """Every run that is left out, unfinished, truncated, lacks a value or is otherwise noted."""
    runs = a.runs
    lacking = runs["lacking"] if "lacking" in runs else pd.Series("", index=runs.index)
    mask = ~runs["used"] | (runs["status"] != "completed") | runs["truncated"] | (runs["note"] != "") | (lacking != "")
    header = ["run", "cell", "seed", "status", "in means", "epochs", "note", "error"]
    rows = [
        [r["run"], r["cell"], str(r["seed"]), r["status"], "yes" if r["used"] else "no",
         "–" if pd.isna(r["epochs"]) else str(r["epochs"]),
         "; ".join(x for x in (r["note"], f"no value for {lacking[i]}: left out of those means" if lacking[i] else "")
                   if x),
         r["error"]]
        for i, r in runs[mask].iterrows()
    ]
    return header, rows


# Config keys that only some settings read (regbench/config.py's comments): the
# settings table leaves them out where the runs' value of the key in front does
# not read them, e.g. data.n_features=20 beside mnist1d's 40 real features.


def setting_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """The config every run shares, without keys its settings do not read; the
    data's real sizes first (from summary.json), where every run has the same."""
    const = a.study.constants
    rows = []
    shapes = a.runs.loc[a.runs["used"], "data_shape"].dropna().unique() if "data_shape" in a.runs else []
    if len(shapes) == 1:
        rows.append(["data (as trained)", shapes[0]])
    for k, v in sorted(const.items()):
        rule = USED_ONLY_WITH.get(k)
        if rule is not None and rule[0] in const and const[rule[0]] not in rule[1]:
            continue
        rows.append([k, fmt_value(v)])
    return ["key", "value"], rows


def _intro(a: Analysis, paths: list[str]) -> str:
    runs, cells = a.runs, a.cells
    datasets = ", ".join(sorted(map(str, runs["dataset"].dropna().unique()))) or "unknown"
    used = f"{plural(len(runs), 'run')} ({int(runs['used'].sum())} in the statistics)"
    if a.trials is not None:
        return (f"{used}: a search over {_join(list(short_names(a.params).values()))}. Dataset: {datasets}. "
                f"Metric: {a.metric}. Sources: {', '.join(paths)}.")
    per = cells.loc[cells["n_runs"] > 0, "n_used"]
    seeds = f"{per.min()}" if per.min() == per.max() else f"{per.min()}–{per.max()}"
    factors = " × ".join(
        f"{f} ({len(a.study.levels[f])} {'observed combinations' if is_combined(f) else 'levels'})"
        for f in a.study.factors
    ) or "none (one cell)"
    runs_per = f"{seeds} usable {'run' if per.max() == 1 else 'runs'} per cell"
    some = per[per > 0]  # cells with no usable run (all diverged) have no interval, for that reason
    intervals = ("none (no usable run)" if some.empty else "none (one seed per cell)" if some.max() < 2 else
                 "95% Student-t over seeds" + (" (none for a cell with one seed)" if some.min() < 2 else ""))
    return (
        f"{used} in {plural(len(cells), 'cell')}, {runs_per}. Factors: {factors}. "
        f"Dataset: {datasets}. Metric: {a.metric}. Intervals: {intervals}. Sources: {', '.join(paths)}."
    )


def _join(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def _plain(text: str) -> str:
    """A label without its parenthesis, for a sentence: ``validation loss``."""
    return text.split(" (")[0]


def question(a: Analysis) -> tuple[str, str]:
    """(the question the runs answer, what the experiment says about itself).

    From the stored experiment's comment header (``conf/experiment/<name>.yaml``,
    ``# Question: ...?``) when every run came from the same ``+experiment=NAME``;
    otherwise a question built from the factors and the metric."""
    names = set(a.runs["experiment"].dropna()) if "experiment" in a.runs else set()
    if len(names) == 1 and a.runs["experiment"].notna().all():
        header = experiment_header(names.pop())
        text = header.removeprefix("Question:").strip()
        asked, mark, rest = text.partition("?")
        if mark:
            return asked[:1].upper() + asked[1:] + "?", rest.strip()
        context = text
    else:
        context = ""
    what = _plain(label(a.metric))
    short = list(short_names(a.params if a.trials is not None else a.study.factors).values())
    if a.trials is not None:
        return f"Which setting of {_join(short)} gives the best {what}?", context
    if not short:
        return f"What {what} does this configuration reach?", context
    if any(map(is_combined, a.study.factors)):
        return f"How do the settings of {_join(short)} compare on {what}?", context
    verb = "does" if len(short) == 1 else "do"
    return f"How {verb} {_join(short)} change {what}?", context


def answer(a: Analysis) -> str:
    """The one-line answer: :attr:`Analysis.headline` (each factor's effect,
    adjusted reading); without effects, the best cell or trial."""
    if a.trials is not None:
        best = optimize.top(a.trials, a.metric, 1)
        if best.empty:
            return "No trial has a usable value."
        b = best.iloc[0]
        return (f"Best of {plural(len(a.trials), 'trial')}: #{b['trial']} ({_settings(b, a.params)}), "
                f"{fmt_num(b['value'], a.best_col)} {label(a.best_col)} (one run: no interval).")
    if a.headline:
        return (a.headline if len(a.headline) <= MAX_ANSWER else short_headline(a)) + _budget(a)
    ranked = a.ranked()
    if ranked.empty:
        return "No cell has a usable run: nothing to compare."
    top, best = ranked.iloc[0], a.best_col
    text = f"{label(best).capitalize()}: {fmt_ci(top, best)} ({ci_note(top, best)})"
    if len(ranked) == 1:
        return text + "." + _budget(a)
    d = a.best_vs_runner_up
    text = f"Best: {ranked.index[0]}, {fmt_ci(top, best)} {label(best)} ({ci_note(top, best)})"
    if d:
        if d.get("behind"):  # first on its mean, behind on the seeds both share: "ahead of X by -2.0 pp" said both
            text += (f"; first on its mean, but behind {d['runner_up']} on the seeds they share by "
                     f"{fmt_diff(abs(d['estimate']), best).lstrip('+')}"
                     + (f" {behind_bounds(d['estimate'], d['ci_lo'], d['ci_hi'], best)}" if _finite(d["ci_lo"]) else ""))
        else:
            text += (f"; ahead of {d['runner_up']} by {fmt_diff(d['estimate'], best)}"
                     + (f" {fmt_bounds(d['ci_lo'], d['ci_hi'], best)}" if _finite(d["ci_lo"]) else ""))
        text += ", resolved" if d["resolved"] else ", not resolved"
    return text + "." + _budget(a)


def _budget(a: Analysis) -> str:
    """The answer's caveat where cells were still improving at the last epoch:
    its effects are of this training budget (the caveats said so further down
    the page only)."""
    cells = a.cells[a.cells["n_used"] > 0] if "n_used" in a.cells else a.cells
    if "still_improving" not in cells or not cells["still_improving"].any():
        return ""
    k, n = int(cells["still_improving"].sum()), len(cells)
    usable = " with usable runs" if n < len(a.cells) else ""  # "every cell" where half the cells had none read as all
    which = (f"the cell{usable} was" if n == 1 else f"every cell{usable} was" if k == n
             else f"{k} of {n} cells{usable} were")
    return f" ({which} still improving at the last epoch: this is the answer at this training budget; train longer)"


MAX_ANSWER = 320  # characters: a longer headline (many levels) is summarized per factor


def short_headline(a: Analysis) -> str:
    """:attr:`Analysis.headline` for factors with many levels (stats.headline, brief)."""
    return headline(a.effects, a.best_col, a.study.factors, brief=True)


MAX_EFFECT_FINDINGS = 6  # more effect sentences than this become one line (they are all under Effects)


def glance(a: Analysis) -> list[str]:
    """:func:`findings`, with the sentences on single effects folded into one
    when there are many: the forest plot and the table show each of them."""
    out = findings(a)
    each = [i for i, f in enumerate(out) if f.startswith(("Effect of ", "Interaction "))]
    if len(each) <= MAX_EFFECT_FINDINGS:
        return out
    eff = a.effects[(a.effects["outcome"] == a.best_col) & (a.effects["kind"] != "simple")]
    eff = eff[eff["estimate"].notna()]
    text = (f"{len(eff)} main effects and interactions on {label(a.best_col)}, {int(eff['resolved'].sum())} of them "
            f"resolved after {CORRECTION} correction: each is in the forest plot and the table under Effects.")
    return out[:each[0]] + [text] + [f for i, f in enumerate(out) if i > each[0] and i not in each]


def _settings(row: pd.Series, params: list[str]) -> str:
    short = short_names(params)
    return ", ".join(f"{short[p]}={_param(row[p])}" for p in params)


def _param(v) -> str:
    """A sampled value to 3 significant digits (0.00345), a typed one as typed."""
    if isinstance(v, (float, np.floating)) and math.isfinite(v):
        return f"{float(v):.3g}"
    return fmt_value(v)


def search_lines(a: Analysis) -> list[str]:
    """What a search found, in sentences: the search, its best trial (and why
    its value is optimistic), the best few, when the best was found."""
    t, m, best_col = a.trials, a.metric, a.best_col
    short = list(short_names(a.params).values())
    have = t[t["value"].notna()]
    per = a.runs.groupby("cell").size()
    out = [f"Search over {_join(short)}: {plural(len(t), 'trial')}, {len(have)} with a usable value; "
           f"{(per == 1).mean():.0%} of the settings ran once, with sampled values, so this is an optimization, "
           "not a factorial experiment: no effects and no best-vs-runner-up verdict (a single run has no interval)."]
    top = optimize.top(t, m)
    if top.empty:
        return out + ["No trial has a usable value."]
    b = top.iloc[0]
    test = (f", test accuracy at the same epoch {fmt_num(b['best_test_acc'], 'best_test_acc')}"
            if "best_test_acc" in b and _finite(b["best_test_acc"]) else "")
    out.append(f"Best trial: #{b['trial']} ({_settings(b, a.params)}) with {fmt_num(b['value'], best_col)} "
               f"{label(best_col)}{test}. It is the best of {len(have)} on "
               + (f"test data (ranked on {label(m)}; rank on --metric val_acc to keep the test data for measuring)"
                  if m.startswith("test_") else "validation data" if m.startswith("val_") else f"its {label(m)}")
               + ", so its value is biased upward: retrain that setting with several seeds to measure it.")
    if len(top) > 1:
        out.append(f"Top {len(top)}: " + "; ".join(f"#{r['trial']} {fmt_num(r['value'], best_col)}"
                                                    for _, r in top.iterrows()) + ".")
    improved = have.loc[have["value"] == have["best_so_far"], "trial"]
    last = int(improved.iloc[-1]) if len(improved) else int(b["trial"])
    out.append(f"The best value so far last improved at trial {last} of {len(t)} (in start order)"
               + (": the search may not have converged." if last > 0.8 * len(t) else "."))
    return out


# ---------------------------------------------------------------- page data

# raw: "\2195" is CSS's escape of an arrow, not Python's octal \21 (a control character)
CSS = r"""
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin:.1em 0 .3em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.kicker{color:#666;text-transform:uppercase;letter-spacing:.06em;font-size:.78em;margin:0}
.context{color:#444;max-width:62em;margin:.2em 0 .6em}
.answer{font-size:1.12em;background:#eef5fb;border-left:4px solid #0072B2;padding:.5em .8em;margin:.8em 0}
.meta{color:#555;font-size:.9em}
nav.toc{font-size:.92em;background:#f7f7f7;padding:.4em .9em;border-radius:4px}
nav.toc ol{margin:.3em 0;padding-left:1.4em;columns:2}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ddd;padding:.25em .45em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none} table.sortable td:last-child{overflow-wrap:anywhere;min-width:10em}
table.sortable th::after{content:" \2195";color:#aaa}
table.sortable th[aria-sort=ascending]::after{content:" \2191";color:#222}
table.sortable th[aria-sort=descending]::after{content:" \2193";color:#222}
.scroll{max-height:32em;overflow:auto;display:block}
tr.warn td{background:#fff6e0} tr.bad td{background:#fde8e8} tr.sig td{font-weight:600;background:#eef5fb}
sup a{text-decoration:none}
ol.caveats{font-size:.88em;color:#333} ol.caveats li{margin:.2em 0}
figure{margin:1.4em 0} figure img{max-width:100%;height:auto}
figcaption{font-size:.88em;color:#444;max-width:62em}
p.nofig{font-size:.92em;color:#444;border-left:3px solid #ddd;padding-left:.7em}
ul.findings li{margin:.35em 0} code{background:#f4f4f4;padding:0 .2em}
ul.files{font-size:.9em}
"""


def _is_number(text: str) -> bool:
    """Right-aligned: numbers, intervals, ``< 0.001``."""
    return text[:1] in "+-–−<0123456789" and text != "–" or text[:2] in ("[+", "[-")


LONG_TABLE = 25  # rows: a longer table scrolls in its own box in the HTML


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None,
           sort: list[list] | None = None, notes: list[int | None] | None = None, sortable: bool = False) -> dict:
    """A table as the templates take it: ``header``, ``rows`` of ``cls`` and
    ``cells`` (``text``, ``num``: right-aligned, ``v``: the value to sort by,
    ``note``: a caveat number on the first cell)."""
    out = []
    for i, row in enumerate(rows):
        cells = []
        for j, text in enumerate(row):
            text = str(text)
            v = sort[i][j] if sort is not None else None
            cells.append({"text": text, "num": j > 0 and _is_number(text),
                          "v": "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v,
                          "note": notes[i] if notes is not None and j == 0 else None})
        out.append({"cls": classes[i] if classes else "", "cells": cells})
    return {"header": header, "rows": out, "sortable": sortable, "sort": sort is not None,
            "long": len(rows) > LONG_TABLE}


def _sortable_value(v):
    """A number to sort by (a bool as 0/1); None for anything else."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


RUN_COLUMNS = [  # (column, header) of the per-seed table; best_* at each run's epoch of lowest val loss
    ("best_epoch", "epoch of lowest val loss"),
    ("epochs_to_target", "epochs to target"),
    ("final_time_s", "training time per seed"),
]


def run_table(a: Analysis) -> dict:
    """Every run, one row per seed, sortable: identity, status, and its own
    values (the per-seed evidence behind each cell's mean)."""
    m = a.metric
    runs = a.runs
    cols = [(f"best_{m}", f"{label(m)} at lowest val loss"), ("best_test_acc", "test accuracy at that epoch"),
            (f"final_{m}", f"final {label(m)}"), ("final_gap_loss", "final gap (val − fit loss)"), *RUN_COLUMNS]
    seen: set[str] = set()
    cols = [(c, t) for c, t in cols if c in runs and runs[c].notna().any() and not (c in seen or seen.add(c))]
    params = a.params if a.trials is not None else []
    trial = {r: n for r, n in zip(a.trials["run"], a.trials["trial"])} if a.trials is not None else {}
    header = (["trial"] if trial else []) + ["cell" if not trial else "setting", "seed", "status", "in means"] \
        + [t for _, t in cols] + ["run"]
    rows, sort, classes = [], [], []
    for _, r in runs.iterrows():
        row = ([str(trial.get(r["run"], ""))] if trial else []) + [
            _settings(r, params) if params else r["cell"], str(r["seed"]), r["status"],
            "yes" if r["used"] else f"no: {r['left_out']}"]
        keys = ([trial.get(r["run"])] if trial else []) + [row[-4], r["seed"], r["status"], int(r["used"])]
        for c, _ in cols:
            v = r[c]
            if c.endswith("to_target") and r["used"] and not _finite(v):
                row.append("never")
            elif c in ("best_epoch", "epochs_to_target") and _finite(v):
                row.append(f"{v:.0f}")  # one run's epoch: a whole number
            else:
                row.append(fmt_num(v, c))
            keys.append(_sortable_value(v) if _finite(v) else None)
        row.append(r["run"])
        keys.append(r["run"])
        rows.append(row)
        sort.append(keys)
        classes.append("" if r["used"] else "bad")
    if trial:  # in the order the trials started
        order = sorted(range(len(rows)), key=lambda i: sort[i][0] or 0)
        rows, sort, classes = [rows[i] for i in order], [sort[i] for i in order], [classes[i] for i in order]
    return _table(header, rows, classes, sort, sortable=True)


def top_table(a: Analysis) -> dict:
    """A search's best trials, best first."""
    top = optimize.top(a.trials, a.metric)
    short = short_names(a.params)
    m, best = a.metric, a.best_col
    extra = [(c, t) for c, t in ((f"final_{m}", f"final {label(m)}"), ("best_test_acc", "test accuracy at that epoch"),
                                 ("best_epoch", "epoch of lowest val loss")) if c in top and c != best]
    header = ["rank", "trial", *[short[p] for p in a.params], f"{label(best)}", *[t for _, t in extra], "run"]
    rows = [[str(i), str(r["trial"]), *[_param(r[p]) for p in a.params], fmt_num(r["value"], best),
             *[fmt_num(r[c], c) for c, _ in extra], r["run"]] for i, (_, r) in enumerate(top.iterrows(), start=1)]
    return _table(header, rows)


def effects_section(a: Analysis, figures: list[Rendered], embed: bool = True, base: Path | None = None) -> dict | None:
    if a.effects.empty:
        return None
    header, rows = effect_rows(a)
    resolved = a.effects["resolved"].tolist()
    outcomes = list(dict.fromkeys(a.effects["outcome"]))
    tables = []
    for o in outcomes:
        idx = [i for i, out in enumerate(a.effects["outcome"]) if out == o]
        fam = a.effects[a.effects["outcome"] == o]
        n_res = int(fam["resolved"].sum())
        role = ("primary outcome" if o == a.best_col else
                "secondary outcome, corrected within its own family: read with the primary one, not as extra evidence")
        tables.append({
            "title": (f"{label(o)}: {n_res} of {int(fam['family_size'].max())} contrasts resolved ({role})"
                      if fam["family_size"].max() > 0 else  # it said "0 of 0 contrasts resolved"
                      f"{label(o)}: no contrast could be tested: one seed, or no spread across seeds ({role})"),
            "open": o == a.best_col,
            "table": _table(header[1:], [rows[i][1:] for i in idx], ["sig" if resolved[i] else "" for i in idx]),
        })
    main = a.effects[a.effects["outcome"] == a.best_col]
    size = int(main["family_size"].max()) if len(main) else 0
    kinds = {"main": "main effects", "interaction": "interactions", "simple": "simple effects"}
    members = _join([kinds[k] for k in kinds if (main["kind"] == k).any()])
    correction = (
        f"Correction: {CORRECTION}'s method over each outcome's family of contrasts ({size} on "
        f"{label(a.best_col)}: its {members}), with simultaneous {LEVEL:.0%} intervals of the same test; a "
        f"contrast is resolved when its {CORRECTION}-adjusted p < {1 - LEVEL:.2f}, which is when its "
        "simultaneous interval excludes 0. Resolved rows are in bold. "
        "effects.csv keeps the unadjusted p and intervals too."
    ) if size else (  # it said "over each outcome's family of contrasts (0 on ...)"
        f"No contrast on {label(a.best_col)} could be tested (one seed, or no spread across seeds): the estimates "
        "are listed, nothing is corrected or resolved."
    )
    text = (
        "Each factor's levels against its first level (main effect: averaged over the other factors); "
        "interactions as differences of differences, (y[a,b] − y[a0,b]) − (y[a,b0] − y[a0,b0]): how much one factor "
        "changes the other's effect; simple effects: one factor's effect at one level of another. Each is computed "
        "per seed on the seeds shared by all cells involved. " + correction
    )
    forest = next((f for f in figures if f.section == "effects"), None)
    return {"text": text, "tables": tables, "forest": _figure_data(forest, embed, base) if forest else None}


def _tested(a: Analysis) -> bool:
    """Whether any contrast on the primary outcome had a test (and so a correction)."""
    main = a.effects[a.effects["outcome"] == a.best_col] if not a.effects.empty else a.effects
    return bool(len(main)) and bool((main["family_size"].fillna(0) > 0).any())


def _figure_data(f: Rendered, embed: bool = True, base: Path | None = None) -> dict:
    png = next((p for p in f.files if p.suffix == ".png"), None)
    return {
        "id": f.name, "title": f.title, "caption": f.caption, "summary": not f.png,
        "src": "data:image/png;base64," + base64.b64encode(f.png).decode("ascii") if embed and f.png else "",
        "path": png.relative_to(base).as_posix() if png is not None and base is not None else "",
        "width": f.width_px, "height": round(f.height_in * PX_PER_IN),
    }


def cells_section(a: Analysis) -> dict:
    header, rows = cell_rows(a)  # the last column is the caveats: a list under the table instead
    caveats, notes, classes = [], [], []
    for row in rows:
        if row[-1]:
            caveats.append({"n": len(caveats) + 1, "cell": row[0], "text": row[-1]})
            notes.append(len(caveats))
            classes.append("bad" if row[1].startswith("0/") else "warn")
        else:
            notes.append(None)
            classes.append("")
    return {"note": CELLS_NOTE, "table": _table(header[:-1], [r[:-1] for r in rows], classes, notes=notes),
            "caveats": caveats}


def files_list(outputs: list[str]) -> dict:
    """Outputs grouped: tables (each a link), figures (one folder, counted by format)."""
    figs = [o for o in outputs if o.startswith("figures/")]
    names = list(dict.fromkeys(Path(o).stem for o in figs))
    formats = list(dict.fromkeys(Path(o).suffix.lstrip(".") for o in figs))
    return {"documents": [o for o in outputs if o.endswith((".md", ".html"))],
            "tables": [o for o in outputs if o.endswith(".csv")],
            "figures": {"count": len(names), "formats": formats, "names": names} if figs else None}


def page(a: Analysis, figures: list[Rendered], paths: list[str], outputs: list[str], embed: bool,
         base: Path | None = None) -> dict:
    """Everything report.html and report.md show, as data, in page order."""
    asked, context = question(a)
    search = a.trials is not None
    flagged_header, flagged = flagged_rows(a)
    settings_header, settings = setting_rows(a)
    effects = effects_section(a, figures, embed, base)
    p = {
        "question": asked, "context": context, "answer": answer(a),
        "answer_on": "" if search or not a.headline else label(a.best_col) + (
            f", after {CORRECTION} correction" if _tested(a) else ""),  # nothing tested: nothing corrected
        "intro": _intro(a, paths),
        "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "version": __version__,
        "findings": search_lines(a) if search else glance(a),
        "effects": effects,
        "cells": None if search else cells_section(a),
        "top": {"table": top_table(a), "by": label(a.best_col)} if search else None,
        "runs": run_table(a),
        "figures": [_figure_data(f, embed, base) for f in figures if f.section == "figures"],
        "flagged": _table(flagged_header, flagged, ["bad" if r[4] == "no" else "warn" for r in flagged])
        if flagged else None,
        "unreadable": _table(["job", "reason"], [list(u) for u in a.study.unreadable], ["bad"] * len(a.study.unreadable))
        if a.study.unreadable else None,
        "settings": _table(settings_header, settings),
        "files": files_list(outputs),
        "css": CSS,
    }
    p["toc"] = [(i, t) for i, t, on in (
        ("glance", "At a glance", True),
        ("effects", "Effects", effects is not None),
        ("cells", "Cells", p["cells"] is not None),
        ("top", "Top trials", search),
        ("runs", "Runs, one row per seed", True),
        ("figures", "Figures", bool(p["figures"])),
        ("flagged", "Runs left out or flagged", True),
        ("unreadable", "Unreadable records", p["unreadable"] is not None),
        ("settings", "Settings shared by all runs", True),
        ("files", "Files", True),
    ) if on]
    return p


# ---------------------------------------------------------------- HTML and Markdown


@functools.lru_cache(maxsize=None)
def _environment():
    """The templates' environment, one per process: it keeps each template
    compiled (about 40 ms for the two), so a report process of
    ``report.at_end`` compiles them while the sweep trains (:func:`warm_up`)."""
    import jinja2
    import markupsafe

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("regbench.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters["mdcell"] = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    # a run's name (its job overrides) may break after each comma, and only where it must inside a key=value
    env.filters["wbr"] = lambda v: markupsafe.Markup(",<wbr>").join(markupsafe.escape(p) for p in str(v).split(","))
    return env


def warm_up() -> None:
    """Import Jinja and compile both templates ahead of the first report."""
    env = _environment()
    for name in ("report.html", "report.md"):
        env.get_template(name)


def write_html(a: Analysis, figures: list[Rendered], path: Path, paths: list[str], outputs: list[str]) -> None:
    """report.html: one self-contained file (figures embedded, a few lines of
    script to sort the per-seed table, nothing fetched), from templates/report.html.
    Each figure links to its PNG file beside the page, at full size."""
    html = _environment().get_template("report.html").render(page(a, figures, paths, outputs, embed=True,
                                                                  base=path.parent))
    path.write_text(html, encoding="utf-8")


def write_markdown(a: Analysis, figures: list[Rendered], path: Path, paths: list[str], outputs: list[str]) -> None:
    """report.md: the same sections in the same order, figures linked as files, from templates/report.md."""
    md = _environment().get_template("report.md").render(page(a, figures, paths, outputs, embed=False,
                                                              base=path.parent))
    path.write_text(md, encoding="utf-8")
