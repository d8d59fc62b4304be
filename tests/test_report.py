"""`regbench report`: loading records, figures, report.html, and bad input.

Fixture records are written with the real regbench.records writers
(through regbench.report.synth) into tmp_path: a few runs of a few epochs.
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from regbench.records import COMPLETED, DIVERGED, FAILED, write_summary
from regbench.report import load
from regbench.report.cli import main
from regbench.report.synth import BASE_CONFIG, curves, write_job, write_sweep

pytestmark = pytest.mark.usefixtures("whole_lines")  # console lines compared whole

EPOCHS = 4


def sweep(root: Path, **kw) -> Path:
    """dropout {0, 0.5} x batchnorm {false, true} x seeds {0, 1}, 4 epochs; no
    per-layer diagnostics unless asked (four figures fewer: faster tests)."""
    kw = {"dropouts": (0.0, 0.5), "batchnorms": (False, True), "seeds": (0, 1), "epochs": EPOCHS,
          "diagnostics": False, **kw}
    return write_sweep(root, **kw)


def job(root: Path, name: str, dropout=0.0, bn=False, seed=0, **kw) -> Path:
    config = {**BASE_CONFIG, "model.dropout": dropout, "model.batchnorm": bn, "seed": seed, "trainer.epochs": EPOCHS}
    config.update(kw.pop("config", {}))
    rows = kw.pop("rows", None) or curves(dropout, bn, seed, EPOCHS, diagnostics=False)
    return write_job(root / name, config, rows, **kw)


def report(*args: str) -> int:
    return main([str(a) for a in args])


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def parse_html(path: Path) -> _Images:
    p = _Images()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("regbench report: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- loading


def test_load_builds_tidy_tables_and_finds_factors(tmp_path):
    sweep(tmp_path / "s", diverged=[(0.5, True, 1)], diagnostics=True)
    study = load.load_study([tmp_path / "s"])
    assert study.factors == ["model.dropout", "model.batchnorm"]
    assert study.levels == {"model.dropout": [0.0, 0.5], "model.batchnorm": [False, True]}
    assert "seed" not in study.factors and "device" not in study.factors
    assert study.constants["model.order"] == "linear-bn-act-dropout"  # lists compare as strings
    assert len(study.runs) == 8 and len(study.epochs) == 8 * (EPOCHS + 1)
    assert study.runs["cell"].nunique() == 4
    assert set(study.epochs.columns) >= {"run", "cell", "seed", "epoch", "val_acc", "bn_var_shift/hidden0"}
    bad = study.runs.set_index("cell").loc["dropout=0.5, batchnorm=true"].set_index("seed").loc[1]
    assert bad["status"] == DIVERGED and not bad["used"]
    assert study.runs["used"].sum() == 7


def test_truncated_metrics_are_read_up_to_the_last_complete_epoch(tmp_path):
    j = job(tmp_path, "killed", status="interrupted", config={"trainer.epochs": EPOCHS + 2})
    with open(j / "metrics.csv", "a") as fh:
        fh.write("0,5,200,0.3,0.001,0.4,0.8,0.3")  # killed mid-row: no newline
    study = load.load_study([tmp_path])
    run = study.runs.iloc[0]
    assert run["truncated"] and run["epochs"] == EPOCHS and run["planned_epochs"] == EPOCHS + 2
    assert not run["used"] and run["left_out"] == "unfinished"  # listed, not averaged in
    assert "truncated" in run["note"] and f"stopped at epoch {EPOCHS} of {EPOCHS + 2}" in run["note"]
    assert study.epochs["epoch"].max() == EPOCHS


def test_job_without_summary_uses_hydra_config(tmp_path):
    job(tmp_path, "fresh", summary=False)
    study = load.load_study([tmp_path])
    run = study.runs.iloc[0]
    assert run["status"] == load.UNKNOWN and run["used"] and run["dataset"] == "mnist1d"
    assert "no summary.json" in run["note"]


def test_multi_seed_job_has_one_run_per_seed(tmp_path):
    rows = curves(0.1, True, 0, EPOCHS) + curves(0.1, True, 1, EPOCHS, diverge_at=2)
    job(tmp_path, "replicas", 0.1, True, rows=rows, seeds=[0, 1], seed_status={"0": COMPLETED, "1": DIVERGED})
    runs = load.load_study([tmp_path]).runs.set_index("seed")
    assert runs.loc[0, "status"] == COMPLETED and runs.loc[0, "used"]
    assert runs.loc[1, "status"] == DIVERGED and not runs.loc[1, "used"]


def test_nan_loss_keeps_a_run_out_even_if_marked_completed(tmp_path):
    job(tmp_path, "ok")
    job(tmp_path, "nan", seed=1, rows=curves(0.0, False, 1, EPOCHS, diverge_at=3))
    runs = load.load_study([tmp_path]).runs.set_index("job")
    assert runs.loc["ok", "used"] and not runs.loc["nan", "used"]
    assert "non-finite" in runs.loc["nan", "note"]


# ---------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One report over a 2 x 2 x 2-seed sweep with a diverged, a failed and a corrupt record."""
    root = tmp_path_factory.mktemp("sweep")
    sweep(root, diverged=[(0.5, True, 1)], diagnostics=True)
    failed = {**BASE_CONFIG, "model.dropout": 0.0, "model.batchnorm": True, "seed": 2, "trainer.epochs": EPOCHS}
    (root / "failed").mkdir()
    write_summary(root / "failed", {"status": FAILED, "config": failed, "seeds": [2], "error": "Traceback...\nRuntimeError: CUDA oops",
                                    "data": {"name": "mnist1d"}})
    job(root, "corrupt")
    (root / "corrupt" / "summary.json").write_text('{"status": "compl')
    return root, main([str(root), "--formats", "png,svg,pdf"])


def test_report_writes_every_output(full_report, capsys):
    root, code = full_report
    assert code == 0
    out = root / "report"  # default: <first PATH>/report
    for name in ("report.html", "report.md", "runs.csv", "epochs.csv", "cells.csv"):
        assert (out / name).stat().st_size > 0, name
    expected = ["effects", "overfitting_loss", "overfitting_acc", "gap", "convergence", "time_to_target", "ablation",
                "heatmap", "variance_shift", "preactivations", "dead_relu", "norms"]
    for name in expected:
        for fmt in ("png", "svg", "pdf"):
            assert (out / "figures" / f"{name}.{fmt}").stat().st_size > 1000, (name, fmt)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 9 and {"best_val_acc", "epochs_to_target", "status", "used"} <= set(runs.columns)
    cells = pd.read_csv(out / "cells.csv", index_col="cell")
    assert len(cells) == 4 and "best_val_acc_ci_hi" in cells
    assert len(pd.read_csv(out / "epochs.csv")) == 8 * (EPOCHS + 1)


def test_report_html_is_self_contained_and_honest(full_report):
    root, _ = full_report
    page = parse_html(root / "report" / "report.html")
    assert len(page.srcs) == 12  # 11 figures and the forest plot of the effects
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = " ".join(page.text)
    assert "diverged" in text and "failed" in text and "RuntimeError: CUDA oops" in text
    assert "Unreadable records" in text and "corrupt" in text
    assert "fewer seeds (1 of 2)" in text
    assert "(dropout: 0 → 0.5) × (batchnorm: false → true)" in text
    md = (root / "report" / "report.md").read_text()
    assert "![Overfitting: fit vs validation loss](figures/overfitting_loss.png)" in md


def test_corrupt_record_is_one_warning_line(tmp_path, capsys):
    sweep(tmp_path / "s", dropouts=(0.0,), batchnorms=(False,), seeds=(0,))
    bad = job(tmp_path / "s", "broken")
    (bad / "metrics.csv").write_text("seed,val_acc\n0,0.5\n")  # no epoch column: nothing can be read
    code = report(tmp_path / "s", "-o", tmp_path / "out", "--formats", "png")
    err = capsys.readouterr().err
    assert code == 0
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("regbench report: warning: unreadable record")
    assert "broken" in warnings[0] and "Traceback" not in err


def test_single_run_reports_without_factors(tmp_path, capsys):
    job(tmp_path / "runs", "one")
    assert report(tmp_path / "runs", "-o", tmp_path / "out", "--formats", "png", "--target", "0.5") == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert not (tmp_path / "out" / "figures" / "ablation.png").exists()  # nothing varies
    assert "1 run in 1 cell" in capsys.readouterr().out


def test_three_factors_with_a_categorical_one(tmp_path):
    for i, order in enumerate((["linear", "bn", "act", "dropout"], ["linear", "act", "dropout", "bn"])):
        for lr in (0.001, 0.01):
            for bn in (False, True):
                job(tmp_path / "s", f"{i}-{lr}-{bn}", 0.1, bn, config={"model.order": order, "optim.lr": lr})
    assert report(tmp_path / "s", "--formats", "png", "--x", "order", "--style", "batchnorm") == 0
    cells = pd.read_csv(tmp_path / "s" / "report" / "cells.csv")
    assert len(cells) == 8 and "model.order" in cells


def test_loss_metric_target_and_explicit_roles(tmp_path, capsys):
    sweep(tmp_path / "s", seeds=(0,))
    out = tmp_path / "out"
    args = ["--metric", "val_loss", "--target", "2.0", "--color", "batchnorm", "--style", "dropout", "--x", "dropout"]
    assert report(tmp_path / "s", "-o", out, "--formats", "png", *args) == 0
    assert "best val_loss (at each run's epoch of lowest val_loss):" in capsys.readouterr().out
    runs = pd.read_csv(out / "runs.csv")
    assert {"best_val_loss", "epochs_to_target"} <= set(runs.columns)
    assert runs["epochs_to_target"].notna().all()  # every made-up run gets below 2 nats
    assert "validation loss (cross-entropy) ≤ 2" in (out / "report.md").read_text()


def test_mixed_datasets_need_allow_mixed(tmp_path, capsys):
    job(tmp_path / "a", "r")
    job(tmp_path / "b", "r", config={"data.name": "digits"})
    assert report(tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "digits (1 run)" in line and "mnist1d (1 run)" in line and "--allow-mixed" in line
    assert report(tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out", "--allow-mixed", "--formats", "png") == 0
    assert "data.name" in pd.read_csv(tmp_path / "out" / "cells.csv").columns


@pytest.mark.parametrize(
    "make, args, expected",
    [
        (None, ["{tmp}/nowhere"], "nowhere: no such folder"),
        ("empty", ["{tmp}/empty"], "no run records under"),
        ("corrupt", ["{tmp}/runs"], "none of the 1 run records could be read"),
        ("good", ["{tmp}/runs", "--metric", "val_accuracy"], "--metric val_accuracy: no such column in metrics.csv; allowed: "),
        ("good", ["{tmp}/runs", "--metric", "test_acc"], "--metric test_acc: has no values in these runs; allowed: "),
        ("good", ["{tmp}/runs", "--target", "60"], "--target 60: accuracies are fractions in [0, 1]; did you mean 0.6?"),
        ("good", ["{tmp}/runs", "--formats", "png,gif"], "unknown format 'gif'; allowed: png, svg, pdf"),
        ("good", ["{tmp}/runs", "-j", "0"], "argument -j/--jobs: 0 is not allowed: at least 1 process"),
        ("good", ["{tmp}/runs", "--metric", "val_loss", "--target", "nan"], "argument --target: nan is not allowed: a finite number"),
        ("good", ["{tmp}/runs", "--metric", "val_loss", "--target", "-1e-3"],
         "argument --target: expected one argument (a negative value is written --target=-1e-3)"),
        ("good", ["{tmp}/runs", "--x", "width"], "--x width: not a factor of these runs; allowed: none"),
        ("five", ["{tmp}/runs", "--style", "dropout"], "--style model.dropout: 5 levels, but line styles tell apart at most 4"),
        ("five", ["{tmp}/runs", "--color", "lr"], "--color lr: not a factor of these runs; allowed: model.dropout"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, capsys, make, args, expected):
    if make == "empty":
        (tmp_path / "empty").mkdir()
    elif make == "corrupt":
        (job(tmp_path / "runs", "r") / "summary.json").write_text("not json")
    elif make == "good":
        job(tmp_path / "runs", "r")
    elif make == "five":
        for p in (0.0, 0.1, 0.2, 0.3, 0.4):
            job(tmp_path / "runs", f"d{p}", dropout=p)
    code = report(*[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert expected in one_error_line(capsys.readouterr().err)


def test_missing_path_argument_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "regbench report: error:" in capsys.readouterr().err


def test_empty_folder_among_good_ones_warns(tmp_path, capsys):
    job(tmp_path / "runs", "r")
    (tmp_path / "empty").mkdir()
    assert report(tmp_path / "runs", tmp_path / "empty", "-o", tmp_path / "out", "--formats", "png", "-q") == 0
    assert "warning: no run records under" in capsys.readouterr().err


def test_report_never_imports_training_code(tmp_path):
    job(tmp_path / "runs", "r")
    code = (
        "import sys; from regbench.report.cli import main; "
        f"assert main([{str(tmp_path / 'runs')!r}, '--formats', 'png', '-q']) == 0; "
        "bad = [m for m in sys.modules if m == 'torch' or m.split('.')[-1] in ('train', 'config', 'data', 'model')"
        " and m.startswith('regbench')]; "
        "print(bad); assert not bad and 'torch' not in sys.modules; "
        # scipy.stats alone imports in about 0.6 s: the t distribution comes from scipy.special
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def _cli(*args, serial: bool = False, **env) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **env}
    env.pop("REGBENCH_REPORT_SERIAL", None)
    if serial:
        env["REGBENCH_REPORT_SERIAL"] = "1"
    return subprocess.run([sys.executable, "-m", "regbench", "report", *map(str, args)], capture_output=True,
                          text=True, timeout=180, env=env)


def test_analysis_in_a_forked_process_gives_the_serial_report(tmp_path):
    """A fresh `regbench report` analyses in a forked process while it imports
    matplotlib: the same tables and report as analysing in this one."""
    runs = sweep(tmp_path / "s")
    forked, serial, drawing = tmp_path / "forked", tmp_path / "serial", tmp_path / "drawing"
    # serial: the effects computed after the figures' tasks are made (stats.complete_effects), by this
    # process alone (-j 1), and while a worker draws (-j 2): the same report
    for out, is_serial, jobs in ((forked, False, "1"), (serial, True, "1"), (drawing, True, "2")):
        proc = _cli(runs, "-o", out, "-q", "-j", jobs, serial=is_serial)
        assert proc.returncode == 0, proc.stderr
    dated = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")
    same = lambda p: dated.sub("<date>", p.read_text())  # noqa: E731
    for other in (serial, drawing):
        for name in ("runs.csv", "cells.csv", "effects.csv", "epochs.csv"):
            assert (forked / name).read_bytes() == (other / name).read_bytes(), name
        assert same(forked / "report.md") == same(other / "report.md")
        assert sorted(p.name for p in (other / "figures").iterdir()) == sorted(p.name for p in (forked / "figures").iterdir())
    # and the analysis did run in another process
    code = ("import os; from regbench.report import cli; real = cli.analyze_study; "
            "cli.analyze_study = lambda args: (os.getpid(), real(args)); "
            f"pid, *_ = cli.analyze_while_importing(cli.build_parser().parse_args([{str(runs)!r}])); "
            "assert pid != os.getpid(), 'analysed in this process'; "
            "import sys; assert 'matplotlib' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_an_error_found_in_the_forked_analysis_is_said_once(tmp_path):
    runs = sweep(tmp_path / "s")
    proc = _cli(runs, "--metric", "nope", "-q")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench report: error: --metric nope: no such column"), proc.stderr
    assert not (runs / "report").exists()


def test_the_forked_analysis_hands_back_errors_and_asks_again_on_surprises(tmp_path, monkeypatch):
    import multiprocessing as mp

    from regbench.report import cli

    sweep(tmp_path / "s")
    parser = cli.build_parser()
    before = signal.getsignal(signal.SIGINT)

    def handed_back(argv):
        receive, send = mp.Pipe(duplex=False)
        cli._analyze_forked(parser.parse_args(argv), send)
        return receive.recv()

    kind, (study, a, roles) = handed_back([str(tmp_path / "s")])
    assert kind == "ok" and len(a.runs) == 8 and roles[1] in study.factors
    kind, error = handed_back([str(tmp_path / "s"), "--metric", "nope"])
    assert kind == "error" and isinstance(error, load.ReportError) and "--metric nope" in str(error)
    monkeypatch.setattr(cli, "analyze_study", lambda args: 1 / 0)
    assert handed_back([str(tmp_path / "s")]) == ("again", None)
    # and none of it touched this process's signal handling (children would inherit an ignored Ctrl-C)
    assert signal.getsignal(signal.SIGINT) is before


# ---------------------------------------------------------------- plot functions


def test_plot_functions_create_an_axes_when_none_is_given(tmp_path):
    from regbench.report import figures, stats

    sweep(tmp_path / "s", diagnostics=True)
    study = load.load_study([tmp_path / "s"])
    a = stats.analyze(study, "val_acc", 0.5)
    styles = figures.cell_styles(a.cells[study.factors], study.levels, "model.dropout", "model.batchnorm")
    cell = a.cells.index[0]
    axes = [
        figures.plot_curve(a.curves, "val_loss", styles),
        figures.plot_curve(a.curves, "val_acc", styles, x="time_s"),
        figures.plot_fit_vs_val(a.curves.loc[cell], "loss", "C0", best_epoch=2.0),
        figures.plot_ecdf(a.runs[a.runs["used"]], "epochs_to_target", styles),
        figures.plot_ablation(a.cells, "best_val_acc", "model.dropout", study.levels),
        figures.plot_forest(a.effects, a.contrast_seeds, "best_val_acc"),
        figures.plot_heatmap(a.cells, "best_val_acc", "model.batchnorm", "model.dropout", study.levels),
        figures.plot_percentiles(a.curves, "hidden1", styles),
    ]
    for ax in axes:
        assert ax.figure is not None and (ax.lines or ax.patches or ax.images or ax.collections)
    # The same cell has the same look in every figure.
    assert styles.cell[cell] == figures.cell_styles(
        a.cells[study.factors], study.levels, "model.dropout", "model.batchnorm").cell[cell]


# ---------------------------------------------------------------- diagnostics


DIAGNOSTIC_FIGURES = {
    "variance_shift": "Variance shift near 1 means",
    "preactivations": "the line is the median and the band spans the 15th to 85th percentile",
    "noisy_labels": "against the corrupted label",
    "dead_relu": "output zero for every training example",
}


def figure_ids(html_path: Path) -> set[str]:
    return set(re.findall(r'<figure id="([^"]+)"', html_path.read_text(encoding="utf-8")))


def test_diagnostic_figures_appear_only_with_their_columns(tmp_path):
    # Records without the probe's columns and without label noise: only the gradient norm.
    sweep(tmp_path / "plain", seeds=(0,), diagnostics=False)
    assert report(tmp_path / "plain", "-o", tmp_path / "out1", "--formats", "png", "-q") == 0
    ids = figure_ids(tmp_path / "out1" / "report.html")
    assert not ids & set(DIAGNOSTIC_FIGURES) and "norms" in ids
    md = (tmp_path / "out1" / "report.md").read_text()
    assert not [t for t in DIAGNOSTIC_FIGURES.values() if t in md] and "Frobenius" not in md

    # No BatchNorm anywhere, tanh (no dead_frac), label noise: no variance shift, no dead units.
    for seed in (0, 1):
        for p in (0.0, 0.5):
            rows = [{k: v for k, v in r.items() if not k.startswith("dead_frac")}
                    for r in curves(p, False, seed, EPOCHS, label_noise=0.2)]
            job(tmp_path / "tanh", f"{p}-{seed}", p, seed=seed, rows=rows,
                config={"model.activation": "tanh", "data.label_noise": 0.2})
    assert report(tmp_path / "tanh", "-o", tmp_path / "out2", "--formats", "png", "-q") == 0
    ids = figure_ids(tmp_path / "out2" / "report.html")
    assert {"preactivations", "noisy_labels", "norms"} <= ids
    assert "variance_shift" not in ids and "dead_relu" not in ids
    text = " ".join(parse_html(tmp_path / "out2" / "report.html").text)
    for name in ("preactivations", "noisy_labels"):
        assert DIAGNOSTIC_FIGURES[name] in text  # each figure carries its reading
    md = (tmp_path / "out2" / "report.md").read_text()
    assert "![Fit of corrupted labels](figures/noisy_labels.png)" in md and "Frobenius" in md


def test_layer_columns_in_network_order_and_labels():
    from regbench.report.figures import label, layer_columns

    cols = ["weight_norm/head", "weight_norm/hidden10", "weight_norm/hidden2", "grad_norm", "weight_normx"]
    assert layer_columns(cols, "weight_norm") == ["weight_norm/hidden2", "weight_norm/hidden10", "weight_norm/head"]
    assert label("preact_p15/hidden0") == "pre-activation, 15th percentile (hidden0)"
    assert label("bn_var_shift/hidden1") == "BatchNorm variance shift (hidden1)"
    assert label("dead_frac/hidden0") == "dead ReLU units (hidden0)"


def test_variance_shift_panels_skip_epoch_zero_and_bn_free_cells(tmp_path):
    """Epoch 0 holds BN's initial running statistics, not estimates: not plotted."""
    from regbench.report import figures, stats

    sweep(tmp_path / "s", seeds=(0,), diagnostics=True)
    study = load.load_study([tmp_path / "s"])
    a = stats.analyze(study)
    styles = figures.cell_styles(a.cells[study.factors], study.levels, "model.dropout", "model.batchnorm")
    fig = figures.fig_panels(a.curves, [("bn_var_shift/hidden1", "hidden1")], styles, "y",
                             hline=(1, "1: no shift"), first_epoch=1)
    ax = fig.axes[0]
    curves_drawn = [line for line in ax.lines if len(line.get_xdata()) > 2]  # not the reference line
    assert len(curves_drawn) == 2  # the two BatchNorm cells; the others recorded no shift
    assert all(min(line.get_xdata()) == 1 for line in curves_drawn)
