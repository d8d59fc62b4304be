"""What the report's numbers mean: which epoch is "best", which runs enter a
mean, and which cells exist.

Three defects found in review, each pinned here:

1. "best" was the maximum over epochs (so ``--metric test_acc`` picked epochs
   on the test set); it is the value at the epoch of lowest validation loss,
   the epoch the trainer's summary.json calls best.
2. An unfinished run (killed, still running, fewer epochs than planned) was
   averaged in with finished runs; it is listed and left out.
3. Runs that differ in two keys at once were reported as a 2 x 2 factorial
   with invented "missing" cells; confounded keys form one combined factor.

Records are synthetic (regbench.report.synth, the real record writers), a few
epochs each; one test trains a tiny real run to check the contract with the
trainer's summary.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regbench.records import COMPLETED, INTERRUPTED, RUNNING, read_summary
from regbench.report import load, stats
from regbench.report.cli import main
from regbench.report.synth import BASE_CONFIG, curves, write_job, write_sweep

pytestmark = pytest.mark.usefixtures("whole_lines")  # console lines compared whole

EPOCHS = 6


def job(root: Path, name: str, dropout=0.0, bn=False, seed=0, epochs=EPOCHS, stop=None, **kw) -> Path:
    """One job of ``epochs`` planned epochs; ``stop``: records end at that epoch."""
    config = {**BASE_CONFIG, "model.dropout": dropout, "model.batchnorm": bn, "seed": seed, "trainer.epochs": epochs}
    config.update(kw.pop("config", {}))
    rows = kw.pop("rows", None) or curves(dropout, bn, seed, epochs, diagnostics=False)
    if stop is not None:
        rows = [r for r in rows if r["epoch"] <= stop]
    return write_job(root / name, config, rows, **kw)


def report(*args) -> int:
    return main([str(a) for a in args] + ["--formats", "png"])


def peaks_after_the_loss_minimum(seed: int = 0) -> list[dict]:
    """Rows whose validation loss is lowest at epoch 2, while validation and
    test accuracy peak later (epochs 4 and 5), as in a run that overfits in
    loss before it does in accuracy."""
    rows = curves(0.0, False, seed, EPOCHS, diagnostics=False)
    val_loss = [2.3, 1.2, 0.9, 1.0, 1.1, 1.2, 1.3]
    val_acc = [0.10, 0.50, 0.58, 0.59, 0.62, 0.60, 0.57]
    test_acc = [0.10, 0.48, 0.55, 0.57, 0.58, 0.66, 0.56]
    for r, vl, va, ta in zip(rows, val_loss, val_acc, test_acc):
        r.update(val_loss=vl, val_acc=va, test_acc=ta, test_loss=vl + 0.05)
        r["gap_loss"] = vl - r["fit_loss"]
        r["gap_acc"] = r["fit_acc"] - va
    return rows


# ---------------------------------------------------------------- 1. best = at the lowest validation loss


def test_run_outcomes_best_is_at_the_lowest_val_loss_not_the_maximum():
    ep = pd.DataFrame(
        {
            "run": ["a"] * 5 + ["b"] * 4,
            "epoch": [0, 1, 2, 3, 4, 0, 1, 2, 3],
            "val_loss": [2.0, 0.9, 0.8, 0.8, 1.1, 2.0, np.inf, 1.5, 1.6],
            "val_acc": [0.1, 0.6, 0.7, 0.72, 0.75, 0.1, 0.9, 0.4, 0.45],
            "test_acc": [0.1, 0.9, 0.65, 0.7, 0.8, 0.1, 0.95, 0.38, 0.5],
        }
    )
    out = stats.run_outcomes(ep, "test_acc")
    a, b = out.loc["a"], out.loc["b"]
    # a: lowest val_loss 0.8 at epochs 2 and 3: the earlier one; not the max of val_acc (0.75) or test_acc (0.9)
    assert a["best_epoch"] == 2 and a["best_val_loss"] == 0.8
    assert a["best_val_acc"] == 0.7 and a["best_test_acc"] == 0.65
    # b: an inf loss is no minimum; its epoch's high accuracies are not chosen either
    assert b["best_epoch"] == 2 and b["best_val_acc"] == 0.4 and b["best_test_acc"] == 0.38
    assert a["final_test_acc"] == 0.8 and b["final_val_acc"] == 0.45


def test_report_best_is_the_value_at_the_epoch_of_lowest_val_loss(tmp_path, capsys):
    job(tmp_path / "runs", "r", rows=peaks_after_the_loss_minimum())
    out = tmp_path / "out"
    assert report(tmp_path / "runs", "-o", out, "--metric", "test_acc") == 0
    console = capsys.readouterr().out
    cells = pd.read_csv(out / "cells.csv", index_col="cell")
    row = cells.loc["all runs"]
    assert row["best_epoch_mean"] == 2
    assert row["best_val_acc_mean"] == pytest.approx(0.58)  # not 0.62, the maximum at epoch 4
    assert row["best_test_acc_mean"] == pytest.approx(0.55)  # not 0.66: epochs are never chosen on test data
    assert row["best_val_loss_mean"] == pytest.approx(0.9)
    runs = pd.read_csv(out / "runs.csv")
    assert runs.loc[0, "best_test_acc"] == pytest.approx(0.55)
    assert "best test_acc (at each run's epoch of lowest val_loss): all runs  55.0%" in console
    assert "66.0" not in console
    md = (out / "report.md").read_text()
    assert "test accuracy at lowest val loss" in md and "epoch of lowest validation loss" in md
    assert "66.0" not in md.split("## Figures")[0]
    # The automatic target (the weakest cell's mean best) is the value at that epoch, too; but with one cell
    # (a single run) it is its own value rounded and compares with nothing: none is set.
    assert "test accuracy ≥" not in md
    assert report(tmp_path / "runs", "-o", out, "--metric", "test_acc", "--target", "0.5") == 0  # one given is used
    assert "test accuracy ≥ 50%" in (out / "report.md").read_text()


def test_report_best_matches_the_trainers_summary(make_cfg, tmp_path):
    """The contract: runs.csv's best values are summary.json's ``best``, per seed."""
    from regbench import train  # only this test trains; the report itself never imports it

    job_dir = tmp_path / "runs" / "job"
    # Label noise on a larger blobs set: validation accuracy peaks after the loss minimum (1.5 s on CPU).
    cfg = make_cfg("trainer.epochs=12", "trainer.replicas=2", "trainer.progress=false", "optim.lr=0.01",
                   "data.n_samples=1200", "data.label_noise=0.4")
    train.run(cfg, job_dir)
    summary = read_summary(job_dir)
    out = tmp_path / "out"
    assert report(tmp_path / "runs", "-o", out, "-q", "--metric", "test_acc") == 0
    runs = pd.read_csv(out / "runs.csv").set_index("seed")
    peak = pd.read_csv(job_dir / "metrics.csv").groupby("seed")["val_acc"].max()
    assert len(runs) == 2 and runs["used"].all()
    for seed, r in runs.iterrows():
        best = summary["per_seed"][str(seed)]["best"]
        assert r["best_epoch"] == best["epoch"]
        for col in ("val_loss", "val_acc", "test_acc"):
            assert r[f"best_{col}"] == pytest.approx(best[col], rel=1e-9), col
    # What makes the check above bite: here the maximum is elsewhere.
    assert (peak > runs["best_val_acc"]).any(), "this config no longer overfits; pick one whose accuracy peaks later"


# ---------------------------------------------------------------- 2. unfinished runs are left out


def test_unfinished_runs_are_listed_not_averaged_in(tmp_path, capsys):
    root = tmp_path / "runs"
    done = job(root, "done", seed=0)
    killed = job(root, "killed", seed=1, stop=3, status=INTERRUPTED)  # stopped at epoch 3 of 6
    summary = json.loads((killed / "summary.json").read_text())  # as train writes it: Ctrl-C leaves the live seed running
    (killed / "summary.json").write_text(json.dumps({**summary, "seed_status": {"1": RUNNING}}))
    job(root, "still_running", seed=2, stop=2, status=RUNNING)
    job(root, "cut_short", seed=3, stop=5, status=COMPLETED)  # says completed, but its metrics end early
    out = tmp_path / "out"
    assert report(root, "-o", out, "--target", "0.5") == 0
    console = capsys.readouterr().out

    runs = pd.read_csv(out / "runs.csv").set_index("seed")
    assert runs["used"].tolist() == [True, False, False, False]
    assert runs["status"].tolist() == [COMPLETED, INTERRUPTED, RUNNING, COMPLETED]  # the job's status, not its seed's running
    assert (runs.loc[[1, 2, 3], "left_out"] == "unfinished").all()
    cells = pd.read_csv(out / "cells.csv", index_col="cell")
    row = cells.loc["all runs"]
    assert (row["n_runs"], row["n_used"], row["n_unfinished"]) == (4, 1, 3)
    assert (row["n_completed"], row["n_interrupted"], row["n_running"]) == (2, 1, 1)
    # Final and best statistics are the finished run's alone.
    final = pd.read_csv(done / "metrics.csv").iloc[-1]
    assert row["final_val_acc_n"] == 1 and row["best_val_acc_n"] == 1 and row["epochs_to_target_n"] <= 1
    assert row["final_val_acc_mean"] == pytest.approx(final["val_acc"])
    assert "stopped at epoch 3 of 6" in row["caveats"] and "stopped at epoch 5 of 6" in row["caveats"]

    assert "usable runs per cell: 1" in console
    assert "left out of the statistics (1/4 runs used): 3 unfinished" in console
    # a job whose summary says running is not called stopped (a report of a sweep still training)
    assert "3 unfinished left out (seed 1 stopped at epoch 3 of 6, seed 2 at epoch 2 of 6 (still running, or its " \
           "process died), seed 3 stopped at epoch 5 of 6)" in console
    assert runs.loc[2, "note"].startswith("unfinished (at epoch 2 of 6, still running or its process died)"), runs.loc[2, "note"]
    md = (out / "report.md").read_text()
    assert "| all runs | 1/4 |" in md
    assert "3 unfinished" in md and "averaged in" not in md
    # Figures draw the used runs only: the epoch curves have n = 1 at every epoch.
    study = load.load_study([root])
    a = stats.analyze(study)
    assert (a.curves["val_acc_n"] == 1).all() and len(a.curves) == EPOCHS + 1


def test_an_unfinished_run_is_never_averaged_with_a_finished_one_in_a_sweep(tmp_path):
    root = write_sweep(tmp_path / "s", dropouts=(0.0, 0.5), batchnorms=(False,), seeds=(0, 1), epochs=EPOCHS,
                       diagnostics=False)
    killed = job(root, "again", dropout=0.5, seed=2, stop=2, status=INTERRUPTED)
    assert killed.is_dir()
    a = stats.analyze(load.load_study([root]))
    row = a.cells.loc["dropout=0.5"]
    assert (row["n_runs"], row["n_used"], row["final_val_acc_n"]) == (3, 2, 2)
    assert "1 unfinished left out (seed 2 stopped at epoch 2 of 6)" in row["caveats"]
    # The effect is paired over the finished seeds only.
    eff = a.effects[a.effects["outcome"] == "final_val_acc"].iloc[0]
    assert eff["n"] == 2


def test_a_job_without_summary_with_every_planned_epoch_is_used(tmp_path):
    job(tmp_path, "complete", summary=False)
    job(tmp_path, "partial", seed=1, summary=False, stop=3)
    runs = load.load_study([tmp_path]).runs.set_index("job")
    assert runs.loc["complete", "used"]
    assert not runs.loc["partial", "used"] and runs.loc["partial", "left_out"] == "unfinished"


# ---------------------------------------------------------------- 3. confounded keys


def test_two_runs_differing_in_two_keys_are_two_cells_not_a_grid(tmp_path, capsys):
    job(tmp_path / "run1", "r", epochs=2)
    job(tmp_path / "run2", "r", dropout=0.3, epochs=5)
    out = tmp_path / "out"
    assert report(tmp_path / "run1", tmp_path / "run2", "-o", out) == 0
    console = capsys.readouterr().out
    assert console.startswith("2 runs in 2 cells (dropout & epochs); usable runs per cell: 1\n")
    assert "missing" not in console
    notes = [line for line in console.splitlines() if "confounded" in line]
    assert notes == ["dropout and epochs are confounded: they change together in these runs (2 observed "
                     "combinations, not a grid), so each combination is one cell and no separate effect of "
                     "dropout or epochs can be estimated."]
    cells = pd.read_csv(out / "cells.csv", index_col="cell")
    assert list(cells.index) == ["dropout=0, epochs=2", "dropout=0.3, epochs=5"]
    assert cells["n_runs"].tolist() == [1, 1]
    # No missing cell; 2 and 5 epochs of these curves end while validation loss still falls.
    assert (cells["caveats"] == "still improving: lowest val loss at the last epoch in 1 of 1 runs (train longer)").all()
    assert cells["model.dropout"].tolist() == [0.0, 0.3] and cells["trainer.epochs"].tolist() == [2, 5]
    md = (out / "report.md").read_text()
    assert "missing" not in md and "are confounded" in md
    assert "dropout=0, epochs=2 → dropout=0.3, epochs=5" in md  # the one comparison there is


def test_confounded_keys_crossed_with_a_third_form_one_factor(tmp_path):
    for bn in (False, True):
        job(tmp_path, f"a-{bn}", 0.0, bn, epochs=2)
        job(tmp_path, f"b-{bn}", 0.5, bn, epochs=3)
    study = load.load_study([tmp_path])
    combined = "model.dropout & trainer.epochs"
    assert study.confounded == {combined: ["model.dropout", "trainer.epochs"]}
    assert sorted(study.factors) == sorted(["model.batchnorm", combined])
    assert study.levels[combined] == ["dropout=0, epochs=2", "dropout=0.5, epochs=3"]
    a = stats.analyze(study)
    assert len(a.cells) == 4 and (a.cells["n_runs"] == 1).all()
    assert "batchnorm: false → true" in set(a.effects["contrast"])


def test_a_factorial_sweep_with_a_missing_job_still_reports_it_missing(tmp_path, capsys):
    root = write_sweep(tmp_path / "s", dropouts=(0.0, 0.5), batchnorms=(False, True), seeds=(0,), epochs=3,
                       diagnostics=False)
    shutil.rmtree(root / "3")  # dropout=0.5, batchnorm=true never ran
    assert report(root, "-o", tmp_path / "out", "-q") == 0
    study = load.load_study([root])
    assert study.confounded == {} and len(study.factors) == 2
    cells = pd.read_csv(tmp_path / "out" / "cells.csv", index_col="cell")
    assert len(cells) == 4 and cells.loc["dropout=0.5, batchnorm=true", "caveats"] == "missing: no runs"


def test_confounded_groups():
    def runs(*combos):
        return pd.DataFrame(combos, columns=["a", "b", "c"])

    full = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    assert load.confounded_groups(runs(*full), ["a", "b", "c"]) == []
    assert load.confounded_groups(runs(*full[:-1]), ["a", "b", "c"]) == []  # one hole: missing, not confounded
    # c follows a; b is crossed with both
    assert load.confounded_groups(runs((0, 0, 0), (0, 1, 0), (1, 0, 1), (1, 1, 1)), ["a", "b", "c"]) == [["a", "c"]]
    # a half fraction (c = a xor b): every pair is a full grid, but no key ever changes alone
    half = [(0, 0, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1)]
    assert load.confounded_groups(runs(*half), ["a", "b", "c"]) == [["a", "b", "c"]]
