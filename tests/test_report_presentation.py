"""What a reader of a report sees ("Reports a researcher can trust", presentation).

1. report.html comes from a Jinja2 template, escaped, and reads in order: the
   question and a one-line answer, contents, effects (forest plot, resolved
   rows emphasised, the correction named), cells with their caveats listed
   under the table, a sortable per-seed table, figures, and a short file list.
2. Figures: colour never repeats the x axis, an Okabe-Ito palette, no titles
   inside figures, integer epochs, per-panel scales, sentences for
   diagnostics that show nothing, highlighted extremes for many cells, an
   ECDF of time to target with censored runs, and the same figures from
   worker processes as from one.
3. A non-grid sweep (Optuna, random search) gets an optimization view and no effects.

Records are synthetic (regbench.report.synth) or written by hand, a few
epochs each, so every test runs in seconds.
"""

from __future__ import annotations

import json
import math
import html as html_lib
import re
import shutil
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from regbench.records import SUMMARY_FILE
from regbench.report import cli, figures, load, optimize, render, stats
from regbench.report.cli import main
from regbench.report.synth import BASE_CONFIG, curves, write_job, write_sweep

pytestmark = pytest.mark.usefixtures("whole_lines")  # console lines compared whole

EPOCHS = 4
ROOT = Path(__file__).resolve().parent.parent


def sweep(root: Path, **kw) -> Path:
    kw = {"dropouts": (0.0, 0.5), "batchnorms": (False, True), "seeds": (0, 1, 2), "epochs": EPOCHS,
          "diagnostics": False, **kw}
    return write_sweep(root, **kw)


def report(*args) -> int:
    return main([str(a) for a in args] + ["-q"])


def edit_summary(job: Path, **fields) -> None:
    summary = json.loads((job / SUMMARY_FILE).read_text())
    summary.update(fields)
    (job / SUMMARY_FILE).write_text(json.dumps(summary))


class Page(HTMLParser):
    """Section ids in page order, table rows with their class, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []  # (class, cells)
        self.tables: list[list[str]] = []  # header cells of each table
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._cell = False
        self._head: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("section", "nav") and "id" in a:
            self.sections.append(a["id"])
        elif tag == "nav":
            self.sections.append("toc")
        elif tag == "table":
            self._head = []
            self.tables.append(self._head)
        elif tag == "tr":
            self._row = []
            self.rows.append((a.get("class", ""), self._row))
        elif tag in ("td", "th"):
            self._cell = tag

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell == "th" and self._head is not None:
            self._head.append(data)
        elif self._cell == "td" and self._row is not None:
            self._row.append(data)


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory):
    """A 2 x 2 sweep, 3 seeds, where batchnorm helps a lot and dropout 0.5 hurts, one seed of one cell
    diverged (a caveat), written by the command line."""
    root = tmp_path_factory.mktemp("grid")
    sweep(root / "s", diverged=[(0.5, True, 2)])
    out = root / "out"
    assert report(root / "s", "-o", out) == 0
    return out


# ---------------------------------------------------------------- 1. the page


def test_the_page_reads_in_order_question_answer_contents_evidence(grid_report):
    html = (grid_report / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert page.sections == ["toc", "glance", "effects", "cells", "runs", "figures", "flagged", "settings", "files"]
    h1 = re.search(r"<h1>(.*?)</h1>", html).group(1)
    assert h1 == "How do dropout and batchnorm change validation accuracy?"
    answer = re.search(r'<p class="answer">(.*?)</p>', html, re.S).group(1)
    study = load.load_study([grid_report.parent / "s"])
    a = stats.analyze(study)
    assert a.headline and a.headline in answer.replace("&#39;", "'")
    assert html.index('class="answer"') < html.index('<nav class="toc"') < html.index('id="effects"')
    # The forest plot opens the effects, before the cells table.
    assert html.index('<figure id="effects">') < html.index('id="cells"')
    assert "<script>" in html and "http" not in html.split("<script>")[1]  # works offline, one file


def test_each_figure_opens_its_full_size_png_beside_the_page(grid_report):
    """The page shows figures scaled to its width; a click opens the file."""
    html = (grid_report / "report.html").read_text(encoding="utf-8")
    figures = re.findall(r'<figure id="([^"]+)"><h3>.*?</h3>\n(.*?)<figcaption>', html, re.S)
    assert len(figures) >= 5
    for name, body in figures:
        link = re.fullmatch(r'<a href="([^"]+)"[^>]*><img src="data:image/png;base64,[^"]+"[^>]*></a>\n?', body)
        assert link, (name, body[:200])
        assert link.group(1) == f"figures/{name}.png" and (grid_report / link.group(1)).is_file()


def test_the_effects_tables_reading_is_short_beside_its_p_column(grid_report):
    """The reading repeated "not resolved after Bonferroni correction, p_adj = 0.093; unadjusted p = 0.013"
    beside the p_adj column: at 800 px one word a line, cut at the table's edge."""
    md = (grid_report / "report.md").read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith(("| main |", "| interaction |", "| simple |"))]
    assert rows
    readings = {r[-1].rstrip(" |").split(";")[0] for r in rows}
    allowed = re.compile(r"resolved|not resolved( \(unadjusted p [=<] [0-9.]+\))?|1 seed: no interval|no test: .*|not estimable: .*")
    assert all(allowed.fullmatch(x) for x in readings), readings
    assert "after Bonferroni correction" not in " ".join(readings)


def test_caveats_are_a_list_under_the_cells_table_not_a_column(grid_report):
    html = (grid_report / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    cells_header = next(h for h in page.tables if h[:2] == ["cell", "runs used"])
    assert "caveats" not in cells_header
    cells = html[html.index('id="cells"'):html.index('id="runs"')]
    assert cells.index("</table>") < cells.index('<ol class="caveats">')
    n = re.search(r'<li id="caveat-(\d+)"><strong>dropout=0.5, batchnorm=true</strong>: fewer seeds \(2 of 3\)',
                  cells).group(1)
    row = re.search(r"<tr[^>]*><td>dropout=0.5, batchnorm=true<sup>(.*?)</sup>", cells).group(1)
    assert f'href="#caveat-{n}"' in row  # the row points to its caveat


def test_effect_rows_are_emphasised_when_resolved_and_the_correction_is_named(grid_report):
    html = (grid_report / "report.html").read_text(encoding="utf-8")
    effects = pd.read_csv(grid_report / "effects.csv")
    main_outcome = effects[effects["outcome"] == "best_val_acc"]
    assert main_outcome["resolved"].any() and not main_outcome["resolved"].all()  # both kinds are shown
    section = html[html.index('id="effects"'):html.index('id="cells"')]
    page = Page(section)
    rows = [r for r in page.rows if r[1]][: len(main_outcome)]  # the open table: the main outcome
    assert [cls == "sig" for cls, _ in rows] == main_outcome["resolved"].tolist()
    text = " ".join(Page(section).text)
    assert "Bonferroni's method over each outcome's family of contrasts" in text
    assert f"({len(main_outcome)} on validation accuracy at lowest val loss" in text


def test_per_seed_table_is_sortable_with_a_value_per_cell(grid_report):
    html = (grid_report / "report.html").read_text(encoding="utf-8")
    runs = html[html.index('id="runs"'):html.index('id="figures"')]
    assert '<table class="sortable' in runs and runs.count("<tr") == 1 + 12  # header + every run
    # Numbers sort by their value, not their text: 85.3% by 0.853...
    values = re.findall(r'<td class="num" data-v="([^"]*)">([0-9.]+)%</td>', runs)
    assert values and all(abs(float(v) * 100 - float(t)) < 0.051 for v, t in values)
    assert 'th.setAttribute("aria-sort"' in html
    # the headings' sort arrows: CSS's escape \2195 was Python's octal \21 (a control character), its quotes escaped
    assert 'table.sortable th::after{content:" \\2195"' in html and "\x11" not in html and "&#34;" not in html.split("</style>")[0]


def test_file_list_is_compact(grid_report):
    html = (grid_report / "report.html").read_text(encoding="utf-8")
    files = html[html.index('id="files"'):]
    assert files.count("<a ") <= 7  # report.md, four tables, the figures folder
    assert '<a href="figures/">figures/</a>, 9 × png: effects, overfitting_loss' in files
    md = (grid_report / "report.md").read_text()
    assert md.index("## At a glance") < md.index("## Effects") < md.index("## Cells") < md.index("## Runs, one row") \
        < md.index("## Figures") < md.index("## Files")
    assert "<script" not in md
    assert "![Effects (forest plot)](figures/effects.png)" in md  # the same figures, linked as files


def test_markup_in_a_config_value_is_escaped(tmp_path):
    for i, act in enumerate(("relu", "<b>gelu</b>")):
        write_job(tmp_path / "s" / str(i), {**BASE_CONFIG, "model.activation": act, "trainer.epochs": EPOCHS},
                  curves(0.0, False, 0, EPOCHS, diagnostics=False))
    assert report(tmp_path / "s", "-o", tmp_path / "out") == 0
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<b>gelu</b>" not in html and "&lt;b&gt;gelu&lt;/b&gt;" in html


def test_a_run_name_breaks_after_its_commas_and_is_escaped(tmp_path):
    """The per-seed table's last column, a run's folder (its job overrides):
    it broke anywhere (`model.dropo|ut=0`); now it may break after each comma
    (<wbr>, which a copy of the text leaves out), mid-name only where it must."""
    for i, (act, folder) in enumerate((("relu", "model.activation=relu,seed=0"), ("gelu", "model.activation=gelu,x=<b>"))):
        write_job(tmp_path / "s" / folder, {**BASE_CONFIG, "model.activation": act, "trainer.epochs": EPOCHS},
                  curves(0.0, False, 0, EPOCHS, diagnostics=False))
    assert report(tmp_path / "s", "-o", tmp_path / "out") == 0
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    runs = html[html.index('id="runs"'):html.index('id="figures"')]
    names = re.findall(r'<td data-v="([^"]*)">((?:[^<]|<wbr>)*)</td></tr>', runs)
    assert sorted(text for _, text in names) == ["model.activation=gelu,<wbr>x=&lt;b&gt;:0",
                                                  "model.activation=relu,<wbr>seed=0:0"], names
    assert "table.sortable td:last-child{overflow-wrap:anywhere" in html and "break-all" not in html


def test_the_question_comes_from_the_stored_experiment(tmp_path):
    root = sweep(tmp_path / "s", dropouts=(0.0, 0.1), seeds=(0,))
    for job in root.iterdir():
        edit_summary(job, overrides=["+experiment=dropout_vs_bn", "seed=0"])
    a = stats.analyze(load.load_study([root]))
    asked, context = render.question(a)
    assert asked == ("What do Dropout and BatchNorm each do to overfitting and convergence, and do they "
                     "interact?")
    assert context.startswith("A 4 x 2 factorial with shared seeds")
    # No experiment (or an unknown one): a question from the factors.
    for job in root.iterdir():
        edit_summary(job, overrides=["+experiment=no_such_experiment"])
    a = stats.analyze(load.load_study([root]))
    assert render.question(a) == ("How do dropout and batchnorm change validation accuracy?", "")
    assert load.experiment_header("../config") == ""  # a name, never a path out of conf/experiment


def test_a_long_headline_is_summarized_per_factor(tmp_path):
    root = write_sweep(tmp_path / "s", dropouts=[i / 20 for i in range(12)], batchnorms=(False,), seeds=(0, 1, 2),
                       epochs=EPOCHS, diagnostics=False)
    a = stats.analyze(load.load_study([root]))
    assert len(a.headline) > render.MAX_ANSWER
    text = render.answer(a)
    resolved = int(a.effects[(a.effects["outcome"] == a.best_col) & (a.effects["kind"] == "main")]["resolved"].sum())
    assert text.startswith(f"dropout: {resolved} of 11 levels resolved after Bonferroni correction, from ")
    assert text.startswith(render.short_headline(a)) and len(render.short_headline(a)) < render.MAX_ANSWER


def test_console_shows_kind_adjusted_intervals_and_the_level_of_simple_effects(grid_report, capsys):
    study = load.load_study([grid_report.parent / "s"])
    a = stats.analyze(study)
    lines = cli.effect_lines(a)
    assert lines[0].startswith("effects on val_acc at the epoch of lowest val_loss (paired over seeds; "
                               "simultaneous 95% intervals, Bonferroni over ")  # 2 or 3 seeds: one diverged
    eff = a.effects[a.effects["outcome"] == a.best_col].set_index(["kind", "contrast", "at"])
    r = eff.loc[("main", "batchnorm: false → true", "")]
    adjusted = load.fmt_bounds(r["ci_lo_adj"], r["ci_hi_adj"], a.best_col)
    heads = [i for i, x in enumerate(lines) if x.startswith("  ") and not x.startswith("    ")]  # a heading per kind
    assert [lines[i].split(":")[0].strip() for i in heads] == ["main effects", "interactions", "simple effects (each "
                                                               "factor at each level of another)"]
    main_rows = lines[heads[0] + 1:heads[1]]
    line = next(x for x in main_rows if "batchnorm: false → true" in x)
    assert adjusted in line and load.fmt_bounds(r["ci_lo"], r["ci_hi"], a.best_col) not in line
    assert f" n={int(r['n'])}  " in line  # contrasts over 2 or 3 seeds: each says how many
    simple = lines[heads[2] + 1:]
    assert simple and all(" at " in x for x in simple)


def test_the_console_summary_fits_the_terminal(grid_report, monkeypatch, capsys):
    """On an 80-column terminal the effects' rows were 110-130 characters
    (wrapped by the terminal, mid-number), a caveat 111."""
    study = load.load_study([grid_report.parent / "s"])
    a = stats.analyze(study)
    wide = cli.effect_lines(a)  # in a pipe: whole lines
    assert max(map(len, wide)) > 80
    for width in (80, 72, 60, 50, 40):
        lines = cli.effect_lines(a, width)
        assert max(map(len, lines)) <= width, "\n".join(x for x in lines if len(x) > width)
        # every contrast and every reading is still there, each reading within the two lines after its contrast
        text = "\n".join(lines)
        for x in wide[1:]:
            if x.startswith("    "):
                contrast, reading = x.split("  ")[2].strip(), x.rsplit("  ", 1)[1]
                if len(contrast) + 4 > width:
                    continue  # wrapped itself
                i = next(i for i, y in enumerate(lines) if y.strip().startswith(contrast))
                near = " ".join(y.strip() for y in lines[i:i + 4])
                assert reading in near, (width, contrast, reading, near)
        # two-line rows put their numbers at one indent for the whole table: their intervals line up
        starts = {y.index(" [") for y in lines if y.lstrip()[:1] in "+-" and y.startswith("      ") and " [" in y}
        assert len(starts) <= 1, (width, starts, text)
    for env, expected in (("0", None), ("abc", None), ("²", None), ("100", 100), ("12", 40)):
        monkeypatch.setenv("COLUMNS", env)
        assert cli.columns() == expected, env  # not a width: as in a pipe (pytest's stdout is no terminal)
    monkeypatch.setenv("COLUMNS", "80")
    assert main([str(grid_report.parent / "s"), "-o", str(grid_report.parent / "out80")]) == 0
    out = capsys.readouterr().out
    assert max(len(x) for x in out.splitlines()[:-1]) <= 80  # the last names the output path, whatever its length


# ---------------------------------------------------------------- 2. figures


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig")
    sweep(root / "s", diagnostics=True)
    study = load.load_study([root / "s"])
    a = stats.analyze(study)
    styles = figures.cell_styles(a.cells[study.factors], study.levels, "model.dropout", "model.batchnorm")
    return a, styles


def test_an_ordered_factors_lightest_colour_still_stands_out_against_white():
    """viridis up to 0.85 ended in a lime 1.7:1 against the page: a dropout rate's thin line hard to see."""
    def contrast(rgb) -> float:  # WCAG's contrast ratio against white
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb[:3]]
        return 1.05 / (0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] + 0.05)

    colours = figures.palette(7, ordered=True)
    assert len(set(colours)) == 7 and min(map(contrast, colours)) >= 2.3


def test_a_legend_names_only_the_lines_its_figure_draws(analysis):
    """BatchNorm's variance shift has lines for batchnorm=true only; its legend
    listed "batchnorm=false" (solid) too. Figures of every cell keep every entry."""
    import matplotlib.pyplot as plt

    a, styles = analysis
    tasks = {t.name: t for t in figures.grid_tasks(a, styles, None)[0]}

    def legend_of(name: str) -> list[str]:
        with matplotlib.rc_context(figures.RC):
            fig = tasks[name].build(*tasks[name].args)
        texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        plt.close(fig)
        return texts

    shift = legend_of("variance_shift")
    assert "batchnorm=true" in shift and "batchnorm=false" not in shift
    assert {"dropout=0", "dropout=0.5", "batchnorm", "dropout"} <= set(shift)
    assert {"batchnorm=true", "batchnorm=false"} <= set(legend_of("gap"))


def test_ablation_colours_the_factor_that_is_not_on_the_x_axis(analysis):
    a, _ = analysis
    ax = figures.plot_ablation(a.cells, "best_val_acc", "model.dropout", a.study.levels)
    lines = [c for c in ax.containers]  # one errorbar per setting of batchnorm
    labels = [c.get_label() for c in lines]
    assert labels == ["batchnorm=false", "batchnorm=true"]
    colours = {c.lines[0].get_color() for c in lines}
    assert colours == set(figures.OKABE_ITO[:2])  # two colours for two batchnorm settings, whatever dropout does


def test_ablation_draws_each_line_as_its_cells_are_drawn_in_the_other_figures(analysis):
    """Colour was dropout in every figure but the ablation (dropout on its x axis), where it was batchnorm:
    "orange, dashed" meant two different things a figure apart. With the report's styles the batchnorm
    lines keep their line style, in dark grey (their cells' colours change along the line)."""
    a, styles = analysis  # colour by dropout, line style by batchnorm
    ax = figures.plot_ablation(a.cells, "best_val_acc", "model.dropout", a.study.levels, styles=styles)
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    assert set(lines) == {"batchnorm=false", "batchnorm=true"}
    assert {line.get_color() for line in lines.values()} == {"0.25"}
    for label, line in lines.items():
        cell = next(c for c, st in styles.cell.items() if c.endswith(label))
        assert line.get_linestyle() == matplotlib.lines.Line2D([], [], linestyle=styles.cell[cell]["linestyle"]).get_linestyle()
    # and each point has the marker its cell has elsewhere: the second line's squares meant batchnorm=true here
    # and dropout's second level in every other figure
    drawn = {(round(float(p.get_xdata()[0]), 6), round(float(p.get_ydata()[0]), 6)): p.get_marker()
             for p in ax.lines if len(p.get_xdata()) == 1}
    assert len(drawn) == len(a.cells)
    for cell, row in a.cells.iterrows():
        marks = {mk for (x, y), mk in drawn.items() if abs(y - row["best_val_acc_mean"]) < 1e-6}
        assert marks == {styles.cell[cell]["marker"]}, (cell, marks)
    # coloured by batchnorm instead (--color batchnorm): the ablation's lines take those colours
    by_bn = figures.cell_styles(a.cells[a.study.factors], a.study.levels, "model.batchnorm", "model.dropout")
    ax = figures.plot_ablation(a.cells, "best_val_acc", "model.dropout", a.study.levels, styles=by_bn)
    for c in ax.containers:
        cell = next(k for k in by_bn.cell if k.endswith(c.get_label()))
        assert matplotlib.colors.same_color(c.lines[0].get_color(), by_bn.cell[cell]["color"])


def test_categorical_colours_are_okabe_ito_with_a_marker_each():
    keys = pd.DataFrame({"model.order": ["a", "b", "c"]}, index=["o=a", "o=b", "o=c"])
    styles = figures.cell_styles(keys, {"model.order": ["a", "b", "c"]}, "model.order", None)
    assert [s["color"] for s in styles.cell.values()] == figures.OKABE_ITO[:3]
    assert len({s["marker"] for s in styles.cell.values()}) == 3  # colour is doubled by shape


def test_figures_have_no_inner_title_integer_epochs_and_fit_the_page(analysis, tmp_path):
    a, styles = analysis
    built = figures.make_figures(a, styles, tmp_path, ["png"], jobs=1)
    with_png = [f for f in built if f.png]
    assert {f.name for f in built} >= {"effects", "overfitting_loss", "convergence", "time_to_target", "norms"}
    for f in with_png:
        assert f.width_in <= figures.PAGE_W + 1e-9, f.name
        w = int.from_bytes(f.png[16:20], "big")  # the PNG's width in pixels
        assert w == pytest.approx(f.width_in * figures.DPI, abs=2), f.name
    import matplotlib

    with matplotlib.rc_context(figures.RC):
        fig = figures.fig_curves(a.curves, [("val_acc", "epoch")], styles)
    assert fig._suptitle is None  # titles are the report's, never inside the figure
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)


def test_norms_have_their_own_scale_per_panel(analysis):
    a, styles = analysis
    panels = [("weight_norm/hidden0", "h0"), ("grad_norm", "grad")]
    fig = figures.fig_panels(a.curves, panels, styles, "norm")
    (lo0, hi0), (lo1, hi1) = fig.axes[0].get_ylim(), fig.axes[1].get_ylim()
    assert hi0 > 2 * hi1 and (lo0, hi0) != (lo1, hi1)
    fig.canvas.draw()
    assert all(len([t for t in ax.get_yticklabels() if t.get_text()]) >= 3 for ax in fig.axes[:2])


def test_dead_relu_below_one_percent_is_a_sentence_not_a_figure(tmp_path, capsys):
    for seed in (0, 1):
        for p in (0.0, 0.5):
            rows = curves(p, True, seed, EPOCHS)  # with BatchNorm the made-up dead share stays near 1%
            for r in rows:
                for k in [k for k in r if k.startswith("dead_frac")]:
                    r[k] = 0.004 * r["epoch"] / EPOCHS
            write_job(tmp_path / "s" / f"{p}-{seed}", {**BASE_CONFIG, "model.dropout": p, "seed": seed,
                                                       "trainer.epochs": EPOCHS}, rows)
    assert main([str(tmp_path / "s"), "-o", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "figures" / "dead_relu.png").exists()
    drawn = len(list((tmp_path / "out" / "figures").glob("*.png")))
    assert f"CSV tables, {drawn} figures as png)" in capsys.readouterr().out  # the sentence is no figure (it said one more)
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert '<p class="nofig" id="dead_relu"><strong>Dead ReLU units.</strong> Dead ReLU units' in html
    assert "stay below 1% of each layer in every cell and epoch (at most 0.4%" in html
    # none at all: said so, not "at most 0%: hidden0, all runs, epoch 0"
    for job in (tmp_path / "s").iterdir():
        m = pd.read_csv(job / "metrics.csv")
        m[[c for c in m.columns if c.startswith("dead_frac")]] = 0.0
        m.to_csv(job / "metrics.csv", index=False)
    assert main([str(tmp_path / "s"), "-o", str(tmp_path / "out2")]) == 0
    html = (tmp_path / "out2" / "report.html").read_text(encoding="utf-8")
    assert "in every cell and epoch (none died in any cell or epoch), so no units were lost" in html
    assert "at most 0%" not in html


def test_many_cells_highlight_the_best_and_worst_and_grey_the_rest(tmp_path):
    root = write_sweep(tmp_path / "s", dropouts=[i / 20 for i in range(6)], seeds=(0, 1), epochs=EPOCHS,
                       diagnostics=False)
    study = load.load_study([root])
    a = stats.analyze(study)
    styles = figures.cell_styles(a.cells[study.factors], study.levels, "model.dropout", "model.batchnorm")
    ranked = list(a.ranked().index)
    focused = figures.focus(styles, ranked)
    colours = [focused.cell[c]["color"] for c in ranked]
    k = figures.HIGHLIGHT
    assert colours[:k] == figures.BEST_COLOURS and colours[-k:] == figures.WORST_COLOURS
    assert set(colours[k:-k]) == {figures.GREY} and len(ranked) == 12
    assert figures.focus(styles, ranked[: figures.MANY]) is styles  # few cells: everyone in colour
    # the gap figure picks its coloured cells by the final gap: by accuracy, the largest gap was a grey line
    gap_task = next(t for t in figures.grid_tasks(a, styles, None)[0] if t.name == "gap")
    gap_styles = gap_task.args[2]
    by_gap = list(a.cells["final_gap_loss_mean"].dropna().sort_values(ascending=False, kind="stable").index)
    assert [gap_styles.cell[c]["color"] for c in by_gap[:k]] == figures.BEST_COLOURS
    assert "the 3 with the largest and the 3 with the smallest final gap" in gap_task.caption


def test_time_to_target_is_an_ecdf_that_stops_at_k_of_n_for_censored_runs():
    runs = pd.DataFrame({"cell": ["a"] * 4 + ["b"] * 2, "epochs_to_target": [2, 3, np.nan, 5, 1, 1]})
    styles = figures.Styles(cell={"a": {"color": "C0", "linestyle": "-", "marker": "o"},
                                  "b": {"color": "C1", "linestyle": "--", "marker": "s"}})
    ax = figures.plot_ecdf(runs, "epochs_to_target", styles, xmax=10)
    a, b = (line for line in ax.lines if line.get_label().endswith("reached"))
    assert a.get_label() == "a: 3/4 reached" and b.get_label() == "b: 2/2 reached"
    assert list(a.get_xdata()) == [0, 2, 3, 5, 10] and list(a.get_ydata()) == [0, 0.25, 0.5, 0.75, 0.75]
    assert b.get_ydata()[-1] == 1.0


def test_worker_processes_draw_the_same_figures(analysis, tmp_path):
    a, styles = analysis
    one = figures.make_figures(a, styles, tmp_path / "one", ["png"], jobs=1)
    two = figures.make_figures(a, styles, tmp_path / "two", ["png"], jobs=2)
    assert [f.name for f in one] == [f.name for f in two]
    assert [f.png for f in one] == [f.png for f in two]
    assert all((tmp_path / "two" / f"{f.name}.png").is_file() for f in two if f.png)


@pytest.mark.parametrize("jobs", [1, 2])
def test_effects_completed_while_the_workers_draw_give_the_same_figures(analysis, tmp_path, jobs):
    """make_figures(complete=...): the figures that need no effects are handed
    out first, the effects are computed (once, in this process), and the
    forest plot is drawn after them: the same figures, in the same order, as
    from a complete analysis."""
    import os

    a, styles = analysis
    later = stats.analyze(a.study, effects="later")
    assert later.effects.empty and not later.headline
    calls = []

    def complete():
        calls.append(os.getpid())
        stats.complete_effects(later)

    full = figures.make_figures(a, styles, tmp_path / "full", ["png"], jobs=jobs)
    parted = figures.make_figures(later, styles, tmp_path / "parted", ["png"], jobs=jobs, complete=complete)
    assert calls == [os.getpid()]
    assert [(f.name, f.title, f.caption) for f in parted] == [(f.name, f.title, f.caption) for f in full]
    assert full[0].name == "effects" and parted[0].png == full[0].png
    assert later.headline == a.headline and later.best_vs_runner_up == a.best_vs_runner_up
    pd.testing.assert_frame_equal(later.effects, a.effects)


def _figure_drawn_in(folder: Path, fail: bool = False, sleep_s: float = 0.05):
    """A small figure that leaves a file named by the process that drew it (a Task.build)."""
    import os
    import time

    from matplotlib.figure import Figure

    if fail:
        raise ValueError("this figure cannot be drawn")
    (folder / str(os.getpid())).touch()
    time.sleep(sleep_s)  # long enough that no worker finishes every figure before this process takes one
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    return fig


def test_this_process_draws_beside_its_workers_and_a_failing_figure_fails_the_run(tmp_path):
    import os

    pids, out = tmp_path / "pids", tmp_path / "out"
    pids.mkdir()
    out.mkdir()
    tasks = [figures.Task(f"f{i}", "", "", _figure_drawn_in, (pids,), cost=i) for i in range(8)]
    built = figures.run_tasks(tasks, out, ["png"], jobs=2)
    assert [r.name for r in built] == [t.name for t in tasks]  # in the order given, whoever drew them
    drawn_by = {int(p.name) for p in pids.iterdir()}
    assert os.getpid() in drawn_by and len(drawn_by) == 2, "this process and one worker"
    for failing in (0, 7):  # the costliest (a worker's) and the cheapest (this process's)
        bad = [figures.Task(t.name, "", "", _figure_drawn_in, (pids, i == failing), cost=i) for i, t in enumerate(tasks)]
        with pytest.raises(ValueError, match="cannot be drawn"):
            figures.run_tasks(bad, out, ["png"], jobs=2)


def _figure_not_in_a_worker(parent: int, name: str):
    """A Task.build whose drawing worker dies (as one killed mid-figure); drawn in ``parent``."""
    import os

    from matplotlib.figure import Figure

    if os.getpid() != parent:
        os._exit(1)
    fig = Figure(figsize=(1, 1))
    fig.subplots().set_title(name)
    return fig


def _figure_failing_in_a_worker(parent: int):
    import os
    import time

    from matplotlib.figure import Figure

    if os.getpid() != parent:
        raise ValueError("this figure cannot be drawn in a worker")
    time.sleep(0.5)  # long enough that the worker takes one, however loaded the machine
    return Figure(figsize=(1, 1))


def test_a_figure_failing_in_a_worker_fails_the_run_with_the_workers_traceback(tmp_path):
    import os

    tasks = [figures.Task(f"f{i}", "", "", _figure_failing_in_a_worker, (os.getpid(),), cost=i) for i in range(4)]
    with pytest.raises(ValueError, match="in a worker") as caught:
        figures.run_tasks(tasks, tmp_path, ["png"], jobs=2)
    assert isinstance(caught.value.__cause__, figures.RemoteTraceback)
    assert "_figure_failing_in_a_worker" in str(caught.value.__cause__)


def _figure_failing_here(parent: int):
    """A Task.build that fails in ``parent`` after a while (the workers meanwhile draw theirs)."""
    import os
    import time

    from matplotlib.figure import Figure

    if os.getpid() == parent:
        time.sleep(0.5)
        raise ValueError("this figure cannot be drawn here")
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    return fig


def test_a_run_stopped_early_leaves_no_png_a_worker_sent_for_it(tmp_path):
    """Without png among the formats a worker sends each PNG as a hidden
    file: those this process did not read, when a figure of its own failed,
    are removed."""
    import os

    tasks = [figures.Task(f"f{i}", "", "", _figure_failing_here, (os.getpid(),), cost=10 - i) for i in range(6)]
    with pytest.raises(ValueError, match="drawn here"):
        figures.run_tasks(tasks, tmp_path, ["svg"], jobs=2)
    assert not list(tmp_path.glob(".*.part")) and list(tmp_path.glob("*.svg")), sorted(p.name for p in tmp_path.iterdir())


def test_the_figures_a_dead_worker_took_are_drawn_by_this_process(tmp_path):
    import os

    tasks = [figures.Task(f"f{i}", "", "", _figure_not_in_a_worker, (os.getpid(), f"f{i}"), cost=i) for i in range(4)]
    built = figures.run_tasks(tasks, tmp_path, ["png"], jobs=2)  # a process pool raised BrokenProcessPool
    assert [r.name for r in built] == ["f0", "f1", "f2", "f3"] and all(r.png for r in built)


def _run_script(script: str, tmp_path: Path, timeout: float = 60):
    import subprocess
    import sys

    try:
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the drawing hung: {exc.stderr}")


def test_a_worker_killed_while_this_process_is_busy_leaves_its_figures_to_it(tmp_path):
    """Killed (the OOM killer) with figures of a real figure's size (a PNG of
    100-200 KB), which filled the pipe back: the report read the dead
    worker's half-written result for ever."""
    script = (
        "import os, signal, time, multiprocessing as mp, numpy as np\n"
        "from pathlib import Path\n"
        "from matplotlib.figure import Figure\n"
        "from regbench.report import figures\n"
        "def noisy(seed):\n"
        "    time.sleep(0.1)\n"
        "    fig = Figure(figsize=(8, 6))\n"
        "    fig.subplots().imshow(np.random.default_rng(seed).random((150, 200)))\n"
        "    return fig\n"
        "def busy():  # the report's tables: meanwhile the worker draws, and is killed\n"
        "    time.sleep(1.0)\n"
        "    for p in mp.active_children():\n"
        "        os.kill(p.pid, signal.SIGKILL)\n"
        "    time.sleep(0.3)\n"
        "tasks = [figures.Task(f'f{i}', '', '', noisy, (i,), cost=10 - i) for i in range(6)]\n"
        "built = figures.run_tasks(tasks, Path('.'), ['png'], jobs=2, meanwhile=busy)\n"
        "print([r.name for r in built], all(len(r.png) > 65536 for r in built))\n"
    )
    proc = _run_script(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['f0', 'f1', 'f2', 'f3', 'f4', 'f5'] True"


def test_an_interrupt_while_a_worker_draws_the_last_figure_ends_the_worker(tmp_path):
    """Ctrl-C (or the sweep's SIGTERM to its report.at_end report) while this
    process, done with its own figures and the forest plot, waits for a
    worker's: the worker is ended and the interrupt raised at once (with the
    forest plot counted among the figures drawn, the worker was left to
    finish, and the report waited for it)."""
    script = (
        "import os, signal, threading, time\n"
        "from pathlib import Path\n"
        "from matplotlib.figure import Figure\n"
        "from regbench.report import figures\n"
        "me = os.getpid()\n"
        "def draw():  # whatever a worker takes, it draws for a minute; this process takes 0.5 s a figure\n"
        "    time.sleep(60 if os.getpid() != me else 0.5)\n"
        "    fig = Figure(figsize=(1, 1))\n"
        "    fig.subplots().plot([0, 1])\n"
        "    return fig\n"
        "tasks = [figures.Task(f'f{i}', '', '', draw, (), cost=3 - i) for i in range(3)]\n"
        "late = lambda: [figures.Task('forest', '', '', draw, ())]\n"
        "threading.Timer(3.0, os.kill, (me, signal.SIGINT)).start()\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    figures.run_tasks(tasks, Path('.'), ['png'], jobs=2, late=late)\n"
        "except KeyboardInterrupt:\n"
        "    import multiprocessing as mp\n"
        "    print('interrupted', time.monotonic() - t < 10, mp.active_children())\n"
    )
    proc = _run_script(script, tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interrupted True []"


def test_the_figures_are_shared_out_as_each_process_is_free(tmp_path):
    """Each process takes its next figure when it has drawn the last: none
    holds figures in reserve while another is idle (a process pool handed
    its worker the next one ahead, and this process waited at the end)."""
    import os

    pids, out = tmp_path / "pids", tmp_path / "out"
    pids.mkdir()
    out.mkdir()
    # f0 is long: whoever draws it draws nothing else; the other process draws every short one
    tasks = [figures.Task("f0", "", "", _figure_drawn_in, (pids / "long", False, 2.5), cost=10)]
    tasks += [figures.Task(f"f{i}", "", "", _figure_drawn_in, (pids / "short",), cost=1) for i in range(1, 7)]
    (pids / "long").mkdir()
    (pids / "short").mkdir()
    figures.run_tasks(tasks, out, ["png"], jobs=2)
    long_by = {p.name for p in (pids / "long").iterdir()}
    short_by = {p.name for p in (pids / "short").iterdir()}
    assert len(long_by) == 1 and str(os.getpid()) in long_by | short_by
    assert not long_by & short_by, "the process that drew the long figure drew no short one"


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_tables_are_written_once_while_the_workers_draw(tmp_path, jobs):
    """``meanwhile`` (the report's CSV tables) runs once, in this process: with
    workers, after they have their figures and before this process draws its
    first; alone, before the figures."""
    import os

    pids, out = tmp_path / "pids", tmp_path / "out"
    pids.mkdir()
    out.mkdir()
    calls = []
    meanwhile = lambda: calls.append((os.getpid(), sorted(p.name for p in pids.iterdir())))  # noqa: E731
    tasks = [figures.Task(f"f{i}", "", "", _figure_drawn_in, (pids,), cost=i) for i in range(4)]
    figures.run_tasks(tasks, out, ["png"], jobs=jobs, meanwhile=meanwhile)
    assert len(calls) == 1 and calls[0][0] == os.getpid()
    assert str(os.getpid()) not in calls[0][1], "before this process draws"


def test_a_report_in_this_process_leaves_the_garbage_collector_as_it_was(grid_report, tmp_path):
    import gc

    frozen = gc.get_freeze_count()
    assert report(grid_report.parent / "s", "-o", tmp_path / "again") == 0
    assert gc.get_freeze_count() == frozen


def test_templates_ship_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "templates/*" in config["tool"]["setuptools"]["package-data"]["regbench.report"]
    assert any(d.startswith("jinja2") for d in config["project"]["dependencies"])
    for name in ("report.html", "report.md"):
        assert (ROOT / "regbench" / "report" / "templates" / name).is_file()


# ---------------------------------------------------------------- 3. a search is not a grid


def search_sweep(root: Path, n: int = 16, seed: int = 0) -> Path:
    """An Optuna-like sweep: ``n`` trials of a log-uniform learning rate and a
    uniform dropout rate, one run each with seed 0, in job folders 0..n-1.
    Jobs ran two at a time, so the start times (summary.json) do not follow
    the job numbers exactly. Validation accuracy peaks near lr = 3e-3 and
    falls with dropout."""
    rng = np.random.default_rng(seed)
    lrs = 10 ** rng.uniform(-4, -1, n)
    drops = rng.uniform(0, 0.6, n)
    for job in range(n):
        lr, p = float(lrs[job]), float(drops[job])
        rows = curves(p, False, 0, EPOCHS, diagnostics=False)
        quality = math.exp(-((math.log10(lr) + 2.5) ** 2))
        for r in rows:
            r["val_acc"] = r["val_acc"] * (0.5 + 0.5 * quality)
        path = write_job(root / str(job), {**BASE_CONFIG, "optim.lr": lr, "model.dropout": p,
                                           "trainer.epochs": EPOCHS}, rows)
        start = 2 * (job // 2) + (1 - job % 2)  # jobs 0 and 1 swap, 2 and 3 swap, ...
        edit_summary(path, started_at=f"2026-12-01T10:{start:02d}:00+00:00")
    return root


def test_a_search_ranked_on_test_accuracy_says_its_best_was_chosen_on_test_data(tmp_path, capsys):
    """`--metric test_acc`: "It is the best of 16 on validation data", of a trial picked on test data."""
    root = search_sweep(tmp_path / "search")
    for metrics in root.glob("*/metrics.csv"):
        df = pd.read_csv(metrics)
        df["test_acc"] = df["val_acc"] * 0.98
        df.to_csv(metrics, index=False)
    assert main([str(root), "-o", str(tmp_path / "out"), "--metric", "test_acc"]) == 0
    console = capsys.readouterr().out
    best = next(line for line in console.splitlines() if line.startswith("Best trial"))
    assert "It is the best of 16 on test data (ranked on test accuracy" in best and "validation data" not in best
    assert main([str(root), "-o", str(tmp_path / "out2")]) == 0
    assert "It is the best of 16 on validation data, so its value is biased upward" in capsys.readouterr().out


def test_an_optuna_like_sweep_gets_the_optimization_view_and_no_effects(tmp_path, capsys):
    root = search_sweep(tmp_path / "search")
    study = load.load_study([root])
    assert optimize.is_search(study)
    assert set(optimize.search_params(study)) == {"optim.lr", "model.dropout"}
    out = tmp_path / "out"
    assert main([str(root), "-o", str(out)]) == 0
    console = capsys.readouterr().out
    assert "Search over " in console and "no effects and no best-vs-runner-up verdict" in console
    assert "effects on" not in console and "vs runner-up" not in console

    assert not (out / "effects.csv").exists()
    trials = pd.read_csv(out / "trials.csv")
    assert trials["job"].astype(str).tolist()[:4] == ["1", "0", "3", "2"]  # in the order they started, not by job number
    assert trials["trial"].tolist() == list(range(1, 17))
    best = trials["best_so_far"].to_numpy()
    assert (np.diff(best) >= 0).all() and best[-1] == trials["value"].max()
    assert trials["is_best"].sum() == 1

    html = (out / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert "effects" not in page.sections and "cells" not in page.sections
    assert page.sections[:4] == ["toc", "glance", "top", "runs"]
    assert {"search_params", "best_so_far"} <= set(re.findall(r'<figure id="([^"]+)"', html))
    assert '<figure id="effects">' not in html and "Best vs runner-up" not in html
    top = html[html.index('id="top"'):html.index('id="runs"')]
    best_row = trials.loc[trials["is_best"]].iloc[0]
    assert f"<td class=\"num\">{best_row['trial']}</td>" in top.split("</tr>")[1]  # rank 1 is the best trial
    assert (out / "figures" / "search_params.png").is_file() and (out / "figures" / "best_so_far.png").is_file()


def test_a_one_seed_grid_with_round_values_is_not_a_search(tmp_path):
    root = write_sweep(tmp_path / "s", dropouts=[i / 10 for i in range(8)], seeds=(0,), epochs=EPOCHS,
                       diagnostics=False)
    assert not optimize.is_search(load.load_study([root]))
    assert optimize.continuous([0.0034518, 0.0912, 0.00017342]) and not optimize.continuous([0.001, 0.003, 0.01])


def test_a_figure_is_drawn_once_into_the_pixels_savefig_gives():
    """figures._png solves the constrained layout and renders in one draw;
    the image is savefig's (two draws), pixel for pixel."""
    import io

    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    from regbench.report import figures

    def build():
        with matplotlib.rc_context(figures.RC):
            fig = Figure(figsize=(6, 2.5), layout="constrained")
            axes = fig.subplots(1, 2, sharey=True)
            for ax in axes:
                for k in range(3):
                    ax.plot(np.arange(20), np.sin(np.arange(20) / (k + 2)), label=f"dropout 0.{k}")
                ax.set_xlabel("epoch")
            axes[0].set_ylabel("validation loss (eval mode)")
            axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), title="setting")
            fig.suptitle("a title the layout makes room for")
        return fig

    ours = np.asarray(Image.open(io.BytesIO(figures._png(build()))))
    buf = io.BytesIO()
    build().savefig(buf, format="png", dpi=figures.DPI)
    theirs = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


def test_a_p_value_is_never_rounded_across_the_threshold_it_is_read_against():
    from regbench.report import stats
    from regbench.report.load import fmt_p

    import pandas as pd

    assert stats.ALPHA == 0.05  # p_adj = 0.05 (0.025 x 2) is not resolved, as it prints: "p_adj = 0.050"
    effects = pd.DataFrame({"estimate": [1.0, 1.0], "std": [1.0, 1.0], "n": [5, 5], "outcome": ["val_acc"] * 2,
                            **{k: ["x"] * 2 for k in ("kind", "factor", "contrast", "at")}, "ci_lo": [0.0] * 2, "ci_hi": [2.0] * 2})
    p = stats.t_test_p(1.0, 1.0, 5)
    adjusted = stats.adjust(effects)
    assert adjusted["p_adj"].tolist() == [min(1.0, 2 * p)] * 2
    at = stats.adjust(effects.assign(outcome=["a", "b"]))  # families of 1: p_adj = p
    assert (at["resolved"] == (at["p_adj"] < 0.05)).all()
    from unittest import mock
    with mock.patch.object(stats, "t_test_p", return_value=0.025):  # Bonferroni over 2: exactly 0.05
        exact = stats.adjust(effects)
    assert exact["p_adj"].tolist() == [0.05, 0.05] and not exact["resolved"].any()

    assert fmt_p(0.0499) == "0.0499" and fmt_p(0.04999) == "0.04999" and fmt_p(0.0499999) == "< 0.05"
    assert fmt_p(0.0501) == "0.050" and fmt_p(0.05) == "0.050"  # not resolved (stats.ALPHA is 0.05 exactly)
    assert fmt_p(0.0312) == "0.031" and fmt_p(0.0004) == "< 0.001" and fmt_p(float("nan")) == "–"


def test_an_interval_end_beside_zero_shows_its_side():
    from regbench.report.load import fmt_bounds, fmt_diff

    assert fmt_diff(-0.0003, "val_acc") == "-0.03 pp" and fmt_diff(0.0, "val_acc") == "+0.0 pp"
    assert fmt_bounds(-0.118, -0.0003, "val_acc") == "[-11.8, -0.03]"
    assert fmt_bounds(0.031, 0.042, "val_acc") == "[+3.1, +4.2]"
    assert fmt_diff(-0.0000001, "val_acc") == "-0.000 pp"  # at most two more decimals


def test_jobs_draw_at_most_one_figure_each():
    """`report -j 1000` forked 999 workers to draw 10 figures (23 s against 2.4 s)."""
    tasks = [figures.Task(f"f{i}", "", "", print, ()) for i in range(10)]
    assert figures.workers(tasks, 1000) == 10 and figures.workers(tasks, 3) == 3 and figures.workers(tasks, 1) == 1
    assert figures.workers(tasks[:1], 8) == 1


@pytest.mark.parametrize("fault", ["full disk", "Ctrl-C"])
def test_a_report_that_fails_leaves_the_folder_as_it_was(tmp_path, monkeypatch, capsys, fault):
    """Written in place, a report cut short (a full disk, Ctrl-C) left the new
    tables beside the old report.html, which they contradicted, and empty
    figures. Now it is written aside and moved into place when complete."""
    import errno

    s = sweep(tmp_path / "s")
    out = tmp_path / "out"
    assert report(s, "-o", out, "-j", "1") == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        if fault == "Ctrl-C":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(render, "write_markdown", broken)  # after the tables and figures are written
    for folder in (out, tmp_path / "new" / "deeper"):
        assert report(s, "-o", folder, "-j", "1", "--metric", "val_loss") == (2 if fault == "full disk" else 130)
    err = capsys.readouterr().err
    assert (f"cannot write the report to {out}: No space left on device" if fault == "full disk" else "interrupted") in err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing new, nothing gone
    assert not list(out.glob(".report-*")) and not (tmp_path / "new").exists()  # what it made for itself: gone


def test_an_output_folder_whose_name_is_too_long_is_one_line(tmp_path, capsys):
    """-o with a 300-byte name: OSError (File name too long) escaped the report (a report.at_end process ended silently)."""
    s = sweep(tmp_path / "s")
    assert report(s, "-o", tmp_path / ("x" * 300) / "rep") == 2
    err = capsys.readouterr().err
    assert err.startswith("regbench report: error: cannot write the report to ") and "File name too long" in err, err


def test_a_gap_stays_on_a_linear_axis_however_wide_its_values(analysis):
    """A single run's gap (0.0005 at the start, 0.2 at the end) went onto a log
    axis, unannounced, while every sweep's was linear; a gap can be 0 or below."""
    a, styles = analysis
    curves = a.curves.copy()
    curves["gap_loss_mean"] = np.geomspace(0.0005, 0.2, len(curves))
    curves["weight_norm/hidden0_mean"] = np.geomspace(0.01, 50, len(curves))  # a norm that wide still goes log
    fig = figures.fig_panels(curves, [("gap_loss", "gap"), ("weight_norm/hidden0", "h0")], styles, "value")
    assert [ax.get_yscale() for ax in fig.axes[:2]] == ["linear", "log"]


def test_labels_and_legends_stay_inside_their_figure(analysis, tmp_path):
    """Clipped at the figure's edge: a y label longer than its axes is tall
    ("...accuracy at lowest val lo"), and a one-panel overfitting figure's
    legend, two entries abreast ("dation loss", "lowest validation loss (me")."""
    from matplotlib.figure import Figure

    a, styles = analysis
    one = a.cells.index[:1]
    fig = figures.fig_overfitting(a.curves.loc[list(one)], a.cells.loc[one], styles, [], {})  # a single run's: one panel
    tall = Figure(figsize=(2.5, 1.6), layout="constrained")
    tall.add_subplot().set_ylabel("final generalization gap: val − fit loss")
    for k, f in enumerate((fig, tall)):
        figures.save(f, tmp_path, f"f{k}", ["png"])
        box = f.bbox
        for artist in [*f.legends, *(ax.yaxis.label for ax in f.axes)]:
            ext = artist.get_window_extent()
            assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1 and box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, (k, artist, ext, box)
    assert "\n" in tall.axes[0].yaxis.label.get_text()


def test_a_single_run_is_described_as_one_not_ranked_among_cells(tmp_path):
    """A single run's page said "Best ... all runs with", "ranges from 0.155 (all
    runs) to 0.155 (all runs)" and "Fastest to validation accuracy >= 43%
    (automatic target): all runs", a target that was its own value rounded."""
    write_job(tmp_path / "r", {**BASE_CONFIG, "trainer.epochs": EPOCHS}, curves(0.0, False, 0, EPOCHS, diagnostics=False))
    a = stats.analyze(load.load_study([tmp_path / "r"]))
    text = " ".join(render.findings(a))
    assert text.startswith("Validation accuracy at the epoch of lowest validation loss"), text
    assert "Final generalization gap (val − fit loss): " in text and "ranges from" not in text
    assert a.target is None and "Fastest" not in text and "Best " not in text and "best cell" not in text


def test_an_interval_without_spread_is_not_printed_three_times():
    """The cells table said "30.0 [30.0, 30.0]" (epochs) and "0.36 s [0.36, 0.36]"."""
    row = pd.Series({"best_epoch_mean": 30.0, "best_epoch_ci_lo": 30.0, "best_epoch_ci_hi": 30.0,
                     "final_time_s_mean": 0.43, "final_time_s_ci_lo": 0.41, "final_time_s_ci_hi": 0.47})
    assert render.fmt_ci(row, "best_epoch") == render.fmt_num(30.0, "best_epoch") and "[" not in render.fmt_ci(row, "best_epoch")
    assert render.fmt_ci(row, "final_time_s").endswith("[0.41, 0.47]")


def test_a_sweep_of_one_seed_a_cell_says_nothing_was_tested(tmp_path, capsys):
    """One seed per cell: the console said "Bonferroni over 0 contrasts", the
    forest plot's caption "intervals over the family of 0 contrasts"."""
    s = sweep(tmp_path / "s", seeds=(0,))
    assert main([str(s), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "no contrast could be tested: one seed, or no spread across seeds" in out and "over 0 contrasts" not in out
    assert "none of the 4 could be tested" in out and "0 of 4" not in out
    md = (tmp_path / "out" / "report.md").read_text()
    assert "no bars: no contrast could be tested" in md and "family of 0 contrasts" not in md
    # nor did its captions and introduction speak of bands and intervals over seeds there were not
    assert "Bands: 95%" not in md and "Error bars: 95%" not in md and "over seeds (Student t)" not in md
    assert md.count("No bands: one seed per cell, so no interval over seeds.") >= 3
    assert "No error bars: one seed per cell" in md
    assert "1 usable run per cell" in md and "Intervals: none (one seed per cell)" in md
    # and nothing was corrected: "0 of 0 contrasts resolved", "(0 on ...)", "after Bonferroni correction"
    assert "0 of 0" not in md and "(0 on " not in md and "n < 2 (" not in md
    assert "**Answer (validation accuracy at lowest val loss):**" in md
    assert "validation accuracy at lowest val loss: no contrast could be tested: one seed, or no spread" in md
    assert "none of the 4 could be tested (1 shared seed or no spread)" in md
    # with a second seed in one cell only, the bands are there, and the cells without one are named
    more = sweep(tmp_path / "s2", seeds=(0, 1))
    for job in (3, 5, 7):  # seed 1 of every cell but the first
        shutil.rmtree(more / str(job))
    assert report(more, "-o", tmp_path / "out2") == 0
    md = (tmp_path / "out2" / "report.md").read_text()
    assert "Bands: 95% confidence interval of the mean over seeds (Student t). A cell with one seed has none." in md
    assert "1–2 usable runs per cell" in md and "Intervals: 95% Student-t over seeds (none for a cell with one seed)" in md


def test_a_report_removes_what_an_earlier_one_left_that_it_does_not_write(analysis, tmp_path):
    """`report --formats png,svg`, then `report`: the SVGs of the first stayed
    beside a page that names PNGs only (and a figure no longer drawn stayed too)."""
    a, styles = analysis
    tasks, _ = figures.grid_tasks(a, styles, None)
    assert {t.name for t in tasks} <= set(figures.FIGURE_NAMES)  # every figure a report draws is known by name
    s = sweep(tmp_path / "s")
    out = tmp_path / "out"
    assert report(s, "-o", out, "--formats", "png,svg", "-j", "1") == 0
    assert list((out / "figures").glob("*.svg"))
    (out / "figures" / "mine.svg").write_text("<svg/>")  # not a report's: stays
    (out / "figures" / "noisy_labels.png").write_bytes(b"old")  # a figure these runs do not have: goes
    assert report(s, "-o", out, "-j", "1") == 0
    assert [p.name for p in (out / "figures").glob("*.svg")] == ["mine.svg"]
    assert not (out / "figures" / "noisy_labels.png").exists() and list((out / "figures").glob("*.png"))


def test_a_small_gap_is_not_called_better():
    """The heatmap's colour bar and the ablation's titles called a small
    generalization gap "lower is better": an underfit model has a small gap too."""
    from regbench.report import figures

    assert figures.direction("final_gap_loss") == "lower: fit and val closer"
    assert figures.direction("val_loss") == "lower is better" and figures.direction("val_acc") == "higher is better"


def test_time_to_target_curves_that_coincide_are_both_seen_and_the_axis_ends_with_training():
    """Two cells reaching the target at the same epochs drew one curve exactly over the other: the cell the
    summary named fastest was invisible. And with every run there, the axis ran to 16 of 15 epochs."""
    from regbench.report import figures

    runs = pd.DataFrame({"cell": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                         "epochs_to_target": [3.0, 4.0, 4.0, 3.0, 4.0, 4.0, 5.0, 6.0, 15.0]})
    styles = figures.cell_styles(pd.DataFrame({"f": [0, 1, 2]}, index=["a", "b", "c"]), {"f": [0, 1, 2]}, None, None)
    assert figures.coinciding(runs, "epochs_to_target") and not figures.coinciding(runs[runs["cell"] != "b"], "epochs_to_target")
    fig = figures.fig_ecdf(runs, styles, ["epochs_to_target"], {"epochs_to_target": 15.0}, "goal", ["a", "b", "c"])
    ax = fig.axes[0]
    steps = {line.get_label().split(":")[0]: line.get_ydata() for line in ax.lines if ":" in str(line.get_label())}
    assert np.allclose(steps["b"] - steps["a"], figures.DODGE)
    assert ax.get_xlim()[1] < 16.0  # 15, a last step's 2% and matplotlib's margin (it ran to 16.2 and past)
    # ten twins: lifted at most MAX_DODGES times, and the axis shows the highest lift's 100%
    many = pd.DataFrame({"cell": [f"c{i}" for i in range(10) for _ in range(3)], "epochs_to_target": [2.0, 3.0, 3.0] * 10})
    ten = figures.cell_styles(pd.DataFrame({"f": list(range(10))}, index=[f"c{i}" for i in range(10)]),
                              {"f": list(range(10))}, None, None)
    ax = figures.plot_ecdf(many, "epochs_to_target", ten, xmax=5.0)
    tops = [max(line.get_ydata()) for line in ax.lines if "reached" in str(line.get_label())]
    assert max(tops) == pytest.approx(1 + figures.MAX_DODGES * figures.DODGE) and max(tops) <= ax.get_ylim()[1]


def test_each_column_of_a_grid_has_tick_labels_under_its_lowest_panel():
    """Six cells in a 4-column grid: the third and fourth columns' only panels are in the top row, and
    with a shared x axis matplotlib drew their epochs nowhere."""
    import matplotlib.pyplot as plt

    from regbench.report import figures

    fig = plt.figure()
    axes = fig.subplots(2, 4, sharex=True, squeeze=False)
    for ax in axes.flat:
        ax.plot([0, 10], [0, 1])
    for ax in axes[1, 2:]:
        ax.set_axis_off()
    figures._bottom_labels(axes)
    fig.canvas.draw()
    labelled = lambda ax: any(t.get_visible() and t.get_text() for t in ax.get_xticklabels())  # noqa: E731
    assert [labelled(ax) for ax in axes[0]] == [False, False, True, True]
    assert labelled(axes[1, 0]) and labelled(axes[1, 1])
    plt.close(fig)
