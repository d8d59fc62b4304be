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
from .load import confounding_notes, fmt_value, incomplete, is_combined
from .stats import Analysis, higher_is_better, left_out_count

# ---------------------------------------------------------------- numbers as text


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and not math.isfinite(v)) and not pd.isna(v)


def _unit(col: str) -> tuple[float, int, str]:
    """(scale, decimals, unit) of a column: accuracies in percent, seconds in s."""
    base = col.removeprefix("best_").removeprefix("final_")
    if base.endswith("acc"):
        return 100.0, 1, "%"
    if "epoch" in col:
        return 1.0, 1, ""
    if col.startswith("seconds") or col.endswith("time_s"):
        return 1.0, 2, " s"
    return 1.0, 3, ""


def fmt_num(v, col: str) -> str:
    """A value with its unit: ``89.1%``, ``12.3`` (epochs), ``0.43 s``, ``0.397``."""
    if not _finite(v):
        return "–"
    scale, dec, unit = _unit(col)
    return f"{v * scale:.{dec}f}{unit}"


def fmt_diff(v, col: str) -> str:
    """A signed difference; of accuracies in percentage points."""
    if not _finite(v):
        return "–"
    scale, dec, unit = _unit(col)
    return f"{v * scale:+.{dec}f}{' pp' if unit == '%' else unit}"


def fmt_ci(row: pd.Series, col: str) -> str:
    """``mean ± half-width`` of the 95% CI, unit last (``89.1 ± 0.5%``); the
    mean alone when n < 2."""
    mean = row.get(f"{col}_mean", np.nan)
    if not _finite(mean):
        return "–"
    half = (row[f"{col}_ci_hi"] - row[f"{col}_ci_lo"]) / 2
    if not _finite(half):
        return fmt_num(mean, col)
    scale, dec, unit = _unit(col)
    return f"{mean * scale:.{dec}f} ± {half * scale:.{dec}f}{unit}"


def _interval(row, col: str) -> str:
    if not _finite(row["estimate"]):
        return "–"
    return f"[{fmt_diff(row['ci_lo'], col)}, {fmt_diff(row['ci_hi'], col)}]" if _finite(row["ci_lo"]) else "n < 2"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


CELLS_NOTE = (
    "Mean ± 95% CI half-width over each cell's usable runs (runs used / runs). Diverged, failed and unfinished "
    "runs (still running, interrupted, or fewer epochs than planned), runs with a gap in their epochs (no row for an "
    "epoch before their last) and duplicates (a second run of the same cell and seed, counted once) are left "
    "out and named in the caveats. "
    "\"At lowest val loss\": the value at each run's epoch of lowest validation loss, the epoch summary.json "
    "calls best; never the maximum over epochs."
)

NOT_ESTIMABLE = "a cell it needs has no usable run with a seed shared by the others"


def verdict(row) -> str:
    """What the interval allows us to say, in words."""
    if not _finite(row["estimate"]):
        return f"not estimable: {NOT_ESTIMABLE}"
    if not _finite(row["ci_lo"]):
        return "one seed: no interval"
    if row["ci_lo"] > 0 or row["ci_hi"] < 0:
        return "CI excludes 0"
    return "CI includes 0: not resolved"


# ---------------------------------------------------------------- findings


def findings(a: Analysis) -> list[str]:
    """The answers a reader came for, each one sentence with its uncertainty."""
    out = list(confounding_notes(a.study))
    cells, m = a.cells, a.metric
    ranked = a.ranked()
    best = a.best_col
    if ranked.empty:
        return out + ["No cell has a usable run: nothing to compare (see the runs left out below)."]
    top = ranked.iloc[0]
    text = (
        f"Best {label(m)} at the epoch of lowest validation loss (each run's best epoch, chosen on validation "
        f"loss only): {ranked.index[0]} with {fmt_ci(top, best)} (95% CI, "
        f"n={int(top[f'{best}_n'])}), {fmt_ci(top, f'final_{m}')} at the last epoch"
        + (f" (caveat: {top['caveats']})." if top["caveats"] else ".")
    )
    if len(ranked) > 1:
        second = ranked.iloc[1]
        overlap = second[f"{best}_ci_hi"] >= top[f"{best}_ci_lo"] if higher_is_better(m) else (
            second[f"{best}_ci_lo"] <= top[f"{best}_ci_hi"])
        text += f" Runner-up: {ranked.index[1]} ({fmt_ci(second, best)})"
        text += "; the intervals overlap, so the ranking of these two is not resolved." if overlap else "."
    out.append(text)

    if "val_loss_rise_mean" in cells and cells["val_loss_rise_mean"].notna().any():
        rise = cells["val_loss_rise_mean"].dropna().sort_values()
        worst, least = rise.index[-1], rise.index[0]
        if rise.iloc[-1] < 0.01:
            out.append("Overfitting: no cell's validation loss rises by more than 0.01 after its minimum.")
        else:
            w = cells.loc[worst]
            out.append(
                f"Overfitting is strongest in {worst}: validation loss is lowest at epoch "
                f"{w['best_epoch_mean']:.0f} (mean) and then rises by {fmt_ci(w, 'val_loss_rise')}; weakest in "
                f"{least} (rise {fmt_ci(cells.loc[least], 'val_loss_rise')}, lowest at epoch "
                f"{cells.loc[least, 'best_epoch_mean']:.0f})."
            )
    if "final_gap_loss_mean" in cells and cells["final_gap_loss_mean"].notna().any():
        gap = cells["final_gap_loss_mean"].dropna().sort_values()
        out.append(
            f"Final generalization gap (val − fit loss) ranges from {fmt_ci(cells.loc[gap.index[0]], 'final_gap_loss')}"
            f" ({gap.index[0]}) to {fmt_ci(cells.loc[gap.index[-1]], 'final_gap_loss')} ({gap.index[-1]})."
        )
    if a.target is not None and "epochs_to_target_mean" in cells:
        reach = cells[cells["n_used"] > 0]
        t = f"{a.target:.0%}" if m.endswith("acc") else f"{a.target:g}"
        fast = reach["epochs_to_target_mean"].dropna().sort_values()
        if not fast.empty:
            f0 = cells.loc[fast.index[0]]
            text = (
                f"Fastest to {label(m)} {'≥' if higher_is_better(m) else '≤'} {t}"
                f"{' (automatic target)' if a.target_auto else ''}: {fast.index[0]} in "
                f"{fmt_ci(f0, 'epochs_to_target')} epochs"
            )
            if "seconds_to_target_mean" in cells:
                secs = reach["seconds_to_target_mean"].dropna().sort_values()
                text += f"; in training time: {secs.index[0]} ({fmt_ci(cells.loc[secs.index[0]], 'seconds_to_target')})"
            text += f"; slowest: {fast.index[-1]} ({fmt_ci(cells.loc[fast.index[-1]], 'epochs_to_target')} epochs)."
            out.append(text)
        never = reach.index[reach["n_reached"] == 0].tolist()
        if never:
            out.append(f"Never reached {t}: {', '.join(never)}.")

    if not a.effects.empty:
        eff = a.effects[a.effects["outcome"] == best]
        lost = int(eff["estimate"].isna().sum())
        for _, r in eff.iterrows():
            if not _finite(r["estimate"]):
                continue
            kind = "Effect of" if r["kind"] == "main" else "Interaction"
            reading = verdict(r)
            if r["kind"] == "interaction":
                reading = ("CI excludes 0: the effect of one factor depends on the other" if reading == "CI excludes 0"
                           else reading.replace("not resolved", "no evidence that they interact"))
            out.append(
                f"{kind} {r['contrast']} on {label(best)}: {fmt_diff(r['estimate'], best)} "
                f"{_interval(r, best)} (paired over {int(r['n'])} seeds; {reading})."
            )
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
    fewer = cells["caveats"].str.contains("fewer seeds|missing|no usable", regex=True)
    if fewer.any():
        problems.append(f"{plural(int(fewer.sum()), 'cell')} with fewer usable runs than the others, or none")
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
        (f"final_{m}", f"final {label(m)}"),
        ("final_gap_loss", "final gap (val − fit loss)"),
        ("best_epoch", "epoch of lowest val loss"),
        ("val_loss_rise", "val loss rise after it"),
        ("epochs_to_target", "epochs to target"),
        ("seconds_to_target", "seconds to target"),
    ]
    cols = [(c, t) for c, t in cols if f"{c}_mean" in a.cells]
    header = ["cell", "runs used"] + [t for _, t in cols] + ["caveats"]
    rows = []
    for cell, r in a.cells.iterrows():
        row = [cell, f"{r['n_used']}/{r['n_runs']}"]
        for c, _ in cols:
            text = fmt_ci(r, c)
            if c.endswith("to_target") and r["n_used"] and r.get("n_reached", r["n_used"]) < r["n_used"]:
                text += f" ({int(r['n_reached'])}/{int(r['n_used'])} reached)"
            row.append(text)
        rows.append(row + [r["caveats"]])
    return header, rows


def effect_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    header = ["outcome", "contrast", "estimate", "95% CI", "seeds", "reading"]
    rows = [
        [label(r["outcome"]), r["contrast"], fmt_diff(r["estimate"], r["outcome"]), _interval(r, r["outcome"]),
         str(int(r["n"])), verdict(r)]
        for _, r in a.effects.iterrows()
    ]
    return header, rows


def flagged_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """Every run that is left out, unfinished, truncated or otherwise noted."""
    runs = a.runs
    mask = ~runs["used"] | (runs["status"] != "completed") | runs["truncated"] | (runs["note"] != "")
    header = ["run", "cell", "seed", "status", "in means", "epochs", "note", "error"]
    rows = [
        [r["run"], r["cell"], str(r["seed"]), r["status"], "yes" if r["used"] else "no",
         "–" if pd.isna(r["epochs"]) else str(r["epochs"]), r["note"], r["error"]]
        for _, r in runs[mask].iterrows()
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
