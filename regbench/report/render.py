"""report.html (self-contained: figures embedded as base64 PNG, no scripts, no
network) and report.md (figures linked as files), from one Analysis.

Both say the same things in the same order: findings at a glance, the cell
table with intervals and caveats, effects, figures, and every run that was
left out or is suspect.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from .figures import Rendered, label
from .load import confounding_notes, finite, fmt_diff, fmt_num, fmt_p, fmt_value, incomplete, is_combined
from .load import unit as _unit
from .stats import LEVEL, Analysis, higher_is_better, left_out_count, positive_column

# ---------------------------------------------------------------- numbers as text


def _finite(v) -> bool:
    return finite(v)


def fmt_ci(row: pd.Series, col: str) -> str:
    """``mean ± half-width`` of the 95% CI, unit last (``89.1 ± 0.5%``); the
    mean alone when n < 2. Positive quantities (times) have asymmetric
    bootstrap intervals: ``0.43 s [0.41, 0.47]``."""
    mean = row.get(f"{col}_mean", np.nan)
    if not _finite(mean):
        return "–"
    lo, hi = row.get(f"{col}_ci_lo", np.nan), row.get(f"{col}_ci_hi", np.nan)
    if not (_finite(lo) and _finite(hi)):
        return fmt_num(mean, col)
    scale, dec, unit = _unit(col)
    if positive_column(col):
        return f"{fmt_num(mean, col)} [{lo * scale:.{dec}f}, {hi * scale:.{dec}f}]"
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
    return f"[{fmt_diff(lo, col)}, {fmt_diff(hi, col)}]" if _finite(lo) and _finite(hi) else "n < 2"


def _p(name: str, p) -> str:
    text = fmt_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


CELLS_NOTE = (
    "Mean ± 95% CI half-width over each cell's usable runs (runs used / runs); \"(n=3)\" after a value: fewer "
    "runs have it than are used (named in the caveats). Diverged, failed and unfinished "
    "runs (still running, interrupted, or fewer epochs than planned), runs with a gap in their epochs (no row for an "
    "epoch before their last) and duplicates (a second run of the same cell and seed, counted once) are left "
    "out and named in the caveats. "
    "\"At lowest val loss\": the value at each run's epoch of lowest validation loss, the epoch summary.json "
    "calls best; never the maximum over epochs. Test accuracy is at that same epoch: the cell that looks best on "
    "validation is chosen on validation data, so its validation value is biased upward and its test value is the "
    "unbiased estimate. Epochs and seconds to target: the median over all used runs, counting runs that never "
    "reached the target as slower than any that did (none where half or more never did), and k/n reached. "
    "Training time is per seed (a job's clock divided by the seeds it trained together), one value per job, "
    "with a percentile bootstrap interval."
)

NOT_ESTIMABLE = "a cell it needs has no usable run with a seed shared by the others"
CORRECTION = "Holm"


def verdict(row) -> str:
    """What the adjusted reading allows us to say, in words (``resolved``,
    ``p_adj`` from stats.adjust); the raw interval is never the verdict."""
    if not _finite(row["estimate"]):
        return f"not estimable: {NOT_ESTIMABLE}"
    n = row.get("n", 0)
    if not (_finite(n) and n >= 2) or not _finite(row.get("ci_lo")):
        return "1 seed: no interval"
    if "resolved" not in row:  # an unadjusted table: no verdict on it
        return "unadjusted: no verdict"
    if row["resolved"]:
        text = f"resolved after {CORRECTION} correction, {_p('p_adj', row['p_adj'])}"
        if not (row["ci_lo_adj"] > 0 or row["ci_hi_adj"] < 0):
            # Holm's step-down test is sharper than the single-step Bonferroni interval shown.
            text += " (Holm's step-down test resolves what the Bonferroni-width interval, still touching 0, does not)"
        return text
    if row["ci_lo"] > 0 or row["ci_hi"] < 0:
        return (f"not resolved after {CORRECTION} correction, {_p('p_adj', row['p_adj'])}; "
                f"unadjusted {_p('p', row['p'])}")
    return f"not resolved, {_p('p_adj', row['p_adj'])}"


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
    text = (
        f"Best {label(m)} at the epoch of lowest validation loss (each run's best epoch, chosen on validation "
        f"loss only): {ranked.index[0]} with {fmt_ci(top, best)} ({ci_note(top, best)}), "
        f"{fmt_ci(top, f'final_{m}')} at the last epoch"
        + (f" (caveat: {top['caveats']})." if top["caveats"] else ".")
    )
    if a.best_vs_runner_up:
        text += " " + a.best_vs_runner_up["text"]
    out.append(text)
    if m.startswith("val_") and "best_test_acc_mean" in cells and _finite(top.get("best_test_acc_mean")):
        out.append(
            f"The best cell is the one that looks best on validation data, so its validation value is biased "
            f"upward; its test accuracy at the same epoch, {fmt_ci(top, 'best_test_acc')}, is the unbiased estimate."
        )
    elif m.startswith("test_"):
        out.append(f"Cells are ranked on {label(m)} here, so the best cell's test value is chosen on test data and "
                   "biased upward; rank on a validation metric (--metric val_acc) for an unbiased test estimate.")

    still = cells.index[cells["still_improving"]].tolist() if "still_improving" in cells else []
    if still:
        out.append(f"Still improving at the last epoch (lowest validation loss at the last epoch in most runs: "
                   f"train longer before reading their best or final values): {'; '.join(still)}.")
    if "val_loss_rise_mean" in cells and cells["val_loss_rise_mean"].notna().any():
        # A cell still improving has not overfitted yet: it is not the "weakest overfitting".
        rise = cells.loc[~cells.index.isin(still), "val_loss_rise_mean"].dropna().sort_values()
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
                + (" among the cells no longer improving." if still else ".")
            )
    if "final_gap_loss_mean" in cells and cells["final_gap_loss_mean"].notna().any():
        gap = cells["final_gap_loss_mean"].dropna().sort_values()
        out.append(
            f"Final generalization gap (val − fit loss) ranges from {fmt_ci(cells.loc[gap.index[0]], 'final_gap_loss')}"
            f" ({gap.index[0]}) to {fmt_ci(cells.loc[gap.index[-1]], 'final_gap_loss')} ({gap.index[-1]})."
        )
    if a.target is not None and "n_reached" in cells:
        reach = cells[cells["n_used"] > 0]
        t = f"{a.target:.0%}" if m.endswith("acc") else f"{a.target:g}"
        goal = f"{label(m)} {'≥' if higher_is_better(m) else '≤'} {t}{' (automatic target)' if a.target_auto else ''}"

        def order(col: str) -> list:
            # Censored: a defined median first, smallest first; then by how many reached.
            return reach.assign(_m=reach[f"{col}_median"].fillna(np.inf), _k=-reach["n_reached"]) \
                .sort_values(["_m", "_k"], kind="stable").index.tolist()

        if "epochs_to_target_median" in reach and reach["epochs_to_target_median"].notna().any():
            fast = order("epochs_to_target")
            text = f"Fastest to {goal}: {fast[0]} ({_reached(cells.loc[fast[0]], 'epochs_to_target', ' epochs')})"
            if "seconds_to_target_median" in reach and reach["seconds_to_target_median"].notna().any():
                secs = order("seconds_to_target")[0]
                text += (f"; in training time per seed: {secs} "
                         f"({_reached(cells.loc[secs], 'seconds_to_target', '')})")
            text += f"; slowest: {fast[-1]} ({_reached(cells.loc[fast[-1]], 'epochs_to_target', ' epochs')})."
            out.append(text)
        elif len(reach):
            out.append(f"No cell reached {goal} in more than half of its runs: no median time to it.")
        never = reach.index[reach["n_reached"] == 0].tolist()
        if never:
            out.append(f"Never reached {t} in any run (0/n reached): {'; '.join(never)}.")
    together = a.runs.loc[a.runs["used"], "seeds_together"] if "seeds_together" in a.runs else pd.Series(dtype=float)
    if (together > 1).any():
        sizes = " or ".join(str(int(s)) for s in sorted(set(together[together > 1])))
        out.append(f"Times are per seed: a job that trained R seeds together as one vectorized model records one "
                   f"clock for all of them (R = {sizes} here), so each seed is charged 1/R of it; the n of a training "
                   "time counts jobs, not seeds.")

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
                f"simultaneous {LEVEL:.0%} intervals (Bonferroni width); an effect is resolved when its "
                f"{CORRECTION}-adjusted p < {1 - LEVEL:.2f}, and effects.csv keeps the unadjusted p and intervals too."
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
                reading += ": no evidence that they interact"
            where = f", {r['scope']}" if r["scope"] else ""
            out.append(
                f"{kind} {r['contrast']} on {label(best)}: {fmt_diff(r['estimate'], best)} "
                f"{_interval(r, best)} (paired over {plural(int(r['n']), 'seed')}{where}; {reading})."
            )
        simple = eff[(eff["kind"] == "simple") & eff["estimate"].notna()]
        if len(simple):
            res = simple[simple["resolved"]]
            shown = [f"{r['contrast']} at {r['at']} {fmt_diff(r['estimate'], best)} {_interval(r, best)}"
                     for _, r in res.head(8).iterrows()]
            more = f"; {len(res) - 8} more in the effects table" if len(res) > 8 else ""
            out.append(f"Simple effects (each factor at each level of another): {len(res)} of {len(simple)} resolved"
                       + (f": {'; '.join(shown)}{more}." if shown else "."))
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
    Holm-adjusted p (the unadjusted ones are in effects.csv)."""
    header = ["outcome", "kind", "contrast", "at", "estimate", f"{LEVEL:.0%} simultaneous CI", "seeds",
              f"p ({CORRECTION})", "reading"]
    rows = [
        [label(r["outcome"]), r["kind"], r["contrast"], r["at"] or "–", fmt_diff(r["estimate"], r["outcome"]),
         _interval(r, r["outcome"]), str(int(r["n"])), fmt_p(r["p_adj"]),
         verdict(r) + (f"; {r['scope']}" if r["scope"] else "")]
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


def setting_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    return ["key", "value"], [[k, fmt_value(v)] for k, v in sorted(a.study.constants.items())]


def _intro(a: Analysis, paths: list[str]) -> str:
    runs, cells = a.runs, a.cells
    per = cells.loc[cells["n_runs"] > 0, "n_used"]
    seeds = f"{per.min()}" if per.min() == per.max() else f"{per.min()}–{per.max()}"
    factors = " × ".join(
        f"{f} ({len(a.study.levels[f])} {'observed combinations' if is_combined(f) else 'levels'})"
        for f in a.study.factors
    ) or "none (one cell)"
    datasets = ", ".join(sorted(map(str, runs["dataset"].dropna().unique()))) or "unknown"
    return (
        f"{plural(len(runs), 'run')} ({int(runs['used'].sum())} in the statistics) in {plural(len(cells), 'cell')}, "
        f"{seeds} usable runs per cell. Factors: {factors}. Dataset: {datasets}. Metric: {a.metric}. Intervals: 95% Student-t "
        f"over seeds. Sources: {', '.join(paths)}."
    )


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1250px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.meta{color:#555;font-size:.92em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;white-space:nowrap}
tr.warn td{background:#fff6e0} tr.bad td{background:#fde8e8} tr.sig td{font-weight:600}
figure{margin:1.2em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;max-width:62em}
ul.findings li{margin:.35em 0} code{background:#f4f4f4;padding:0 .2em}
"""


def _html_table(header: list[str], rows: list[list[str]], row_class=None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = row_class(i, row) if row_class else ""
        cells = "".join(
            f"<td class=\"num\">{html.escape(str(v))}</td>" if 0 < j < len(row) - 1 and str(v)[:1] in "+-–0123456789"
            else f"<td>{html.escape(str(v))}</td>"
            for j, v in enumerate(row)
        )
        body.append(f"<tr class=\"{cls}\">{cells}</tr>" if cls else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_html(a: Analysis, figures: list[Rendered], path: Path, paths: list[str], outputs: list[str]) -> None:
    esc = html.escape
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        f"<title>regbench report: {esc(', '.join(paths))}</title><style>{CSS}</style></head><body>",
        "<h1>regbench report</h1>",
        f"<p class=\"meta\">{esc(_intro(a, paths))} Generated {now} by regbench {__version__}.</p>",
        "<h2>At a glance</h2><ul class=\"findings\">",
        *(f"<li>{esc(f)}</li>" for f in findings(a)),
        "</ul>",
    ]
    header, rows = cell_rows(a)
    parts += [
        "<h2>Cells</h2>",
        f"<p>{esc(CELLS_NOTE)} Rows in colour need a caveat read first.</p>",
        _html_table(header, rows, lambda i, r: ("bad" if r[1].startswith("0/") else "warn") if r[-1] else ""),
    ]
    if not a.effects.empty:
        header, rows = effect_rows(a)
        parts += [
            "<h2>Effects</h2>",
            "<p>Each factor's levels against its first level (main effect: averaged over the other factors), "
            "and interactions as differences of differences, <code>(y[a,b] − y[a0,b]) − (y[a,b0] − y[a0,b0])</code>: "
            "how much one factor changes the other's effect. Computed per seed on seeds shared by all cells "
            "involved, then a Student-t 95% CI over seeds.</p>",
            _html_table(header, rows, lambda i, r: "sig" if r[-1] == "CI excludes 0" else ""),
        ]
    parts.append("<h2>Figures</h2>")
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(
            f"<figure id=\"{esc(f.name)}\"><h3>{esc(f.title)}</h3>"
            f"<img src=\"data:image/png;base64,{data}\" alt=\"{esc(f.title)}\">"
            f"<figcaption>{esc(f.caption)}</figcaption></figure>"
        )
    header, rows = flagged_rows(a)
    parts.append("<h2>Runs left out or flagged</h2>")
    if rows:
        parts.append(_html_table(header, rows, lambda i, r: "bad" if r[4] == "no" else "warn"))
    else:
        parts.append("<p>None: every run completed and is in the statistics.</p>")
    if a.study.unreadable:
        parts += ["<h2>Unreadable records</h2>",
                  _html_table(["job", "reason"], [list(u) for u in a.study.unreadable], lambda i, r: "bad")]
    header, rows = setting_rows(a)
    parts += [
        "<h2>Settings shared by all runs</h2>",
        f"<details><summary>{len(rows)} keys</summary>{_html_table(header, rows)}</details>",
        "<h2>Files</h2><ul>", *(f"<li><a href=\"{esc(o)}\">{esc(o)}</a></li>" for o in outputs), "</ul>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")


# ---------------------------------------------------------------- Markdown


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(a: Analysis, figures: list[Rendered], path: Path, paths: list[str], outputs: list[str]) -> None:
    md = ["# regbench report", "", _intro(a, paths), "", "## At a glance", ""]
    md += [f"- {f}" for f in findings(a)]
    header, rows = cell_rows(a)
    md += ["", "## Cells", "", CELLS_NOTE, "", _md_table(header, rows)]
    if not a.effects.empty:
        header, rows = effect_rows(a)
        md += ["", "## Effects", "",
               "Levels against the first level, paired by seed; interactions are differences of differences.", "",
               _md_table(header, rows)]
    md += ["", "## Figures", ""]
    for f in figures:
        png = next((p for p in f.files if p.suffix == ".png"), f.files[0] if f.files else None)
        rel = png.relative_to(path.parent).as_posix() if png else ""
        md += [f"### {f.title}", "", f"![{f.title}]({rel})", "", f.caption, ""]
    header, rows = flagged_rows(a)
    md += ["## Runs left out or flagged", ""]
    md += [_md_table(header, rows) if rows else "None: every run completed and is in the statistics."]
    if a.study.unreadable:
        md += ["", "## Unreadable records", "", _md_table(["job", "reason"], [list(u) for u in a.study.unreadable])]
    header, rows = setting_rows(a)
    md += ["", "## Settings shared by all runs", "", _md_table(header, rows), "", "## Files", ""]
    md += [f"- [{o}]({o})" for o in outputs]
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
