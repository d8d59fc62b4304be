"""Defective or repeated records in a report ("Nothing breaks ugly", report side).

1. Rows are counted, not the highest epoch trusted: a run is finished only with
   one row for every epoch 0..planned. A run with a gap (rows lost in the
   middle) is listed and left out; a row with a cell that is no number is
   dropped and named by its line, and the rest of the record is read.
2. Runs with the same cell and seed (copied folders, a seed trained alone and
   as a replica) count once; the others are listed as duplicates.

metrics.csv files are written by hand, four columns and a few epochs, so each
expected number can be checked by eye.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regbench.records import DIVERGED, INTERRUPTED
from regbench.report import load, stats
from regbench.report.cli import main
from regbench.report.synth import BASE_CONFIG, write_job

pytestmark = pytest.mark.usefixtures("whole_lines")  # console lines compared whole

HEADER = "seed,epoch,val_loss,val_acc\n"


def row(seed: int, epoch: int) -> str:
    """Validation loss falls 1.0, 0.9, 0.8, ...; accuracy rises 0.50, 0.51, ...;
    seed s adds s/100 to the accuracy: the best epoch is always the last."""
    return f"{seed},{epoch},{1.0 - epoch / 10:.1f},{0.5 + epoch / 100 + seed / 100:.2f}\n"


def rows(seed: int, epochs) -> str:
    return "".join(row(seed, e) for e in epochs)


def job(root: Path, name: str, metrics: str, seed=0, epochs=4, seeds=None, config=None, **kw) -> Path:
    """A job of ``epochs`` planned epochs whose metrics.csv is exactly ``metrics``."""
    config = {**BASE_CONFIG, "seed": seed, "trainer.epochs": epochs, **(config or {})}
    one = [{"seed": s, "epoch": 0, "time_s": 0.0} for s in (seeds or [seed])]
    path = write_job(root / name, config, one, seeds=seeds, **kw)
    (path / "metrics.csv").write_text(metrics)
    return path


def report(*args) -> int:
    return main([str(a) for a in args] + ["--formats", "png"])


def runs_by_run(*paths) -> pd.DataFrame:
    return load.load_study(list(paths)).runs.set_index("run")


# ---------------------------------------------------------------- 1. gaps and bad rows


def test_a_run_with_epochs_missing_in_the_middle_is_left_out(tmp_path, capsys):
    # Seed 1 has rows for epochs 0-2 and 7-10 of 10: its highest epoch is the
    # planned one, but epochs 3-6 are gone.
    job(tmp_path / "runs", "whole", HEADER + rows(0, range(11)), seed=0, epochs=10)
    job(tmp_path / "runs", "holed", HEADER + rows(1, [0, 1, 2, 7, 8, 9, 10]), seed=1, epochs=10)
    out = tmp_path / "out"
    assert report(tmp_path / "runs", "-o", out) == 0
    console = capsys.readouterr().out

    runs = pd.read_csv(out / "runs.csv").set_index("run")
    holed = runs.loc["holed:1"]
    assert not holed["used"] and holed["left_out"] == "missing epochs"
    assert holed["epochs"] == 2  # the unbroken rows 0..2, not the highest epoch 10
    assert holed["missing_epochs"] == "3-6"
    assert "epochs 3-6 missing (last recorded epoch 10 of 10)" in holed["note"]
    assert runs.loc["whole:0", "used"] and runs.loc["whole:0", "epochs"] == 10

    cells = pd.read_csv(out / "cells.csv", index_col="cell")
    cell = cells.loc["all runs"]
    assert (cell["n_runs"], cell["n_used"], cell["n_missing_epochs"], cell["n_unfinished"]) == (2, 1, 1, 0)
    # Only seed 0 is averaged: final accuracy at epoch 10 is 0.5 + 10/100 = 0.60, n = 1.
    assert cell["final_val_acc_mean"] == pytest.approx(0.60) and cell["final_val_acc_n"] == 1
    assert "1 with missing epochs left out (seed 1: epochs 3-6 missing)" in cell["caveats"]

    assert "left out of the statistics (1/2 runs used): 1 with missing epochs" in console
    md = (out / "report.md").read_text()
    assert "| all runs | 1/2 |" in md
    assert "| holed:1 | all runs | 1 | completed | no | 2 | epochs 3-6 missing" in md


def test_gaps_at_epoch_zero_and_in_several_places_are_named(tmp_path):
    job(tmp_path, "no_zero", HEADER + rows(0, [1, 2, 3, 4]), seed=0)
    job(tmp_path, "two_holes", HEADER + rows(1, [0, 2, 4]), seed=1)
    job(tmp_path, "short", HEADER + rows(2, [0, 1, 2]), seed=2)  # unbroken, but stops at 2 of 4
    runs = runs_by_run(tmp_path)
    assert runs.loc["no_zero:0", "left_out"] == "missing epochs" and pd.isna(runs.loc["no_zero:0", "epochs"])
    assert "epoch 0 missing (last recorded epoch 4 of 4)" in runs.loc["no_zero:0", "note"]
    assert runs.loc["two_holes:1", "missing_epochs"] == "1, 3" and runs.loc["two_holes:1", "epochs"] == 0
    assert runs.loc["short:2", "left_out"] == "unfinished" and runs.loc["short:2", "missing_epochs"] == ""
    assert "stopped at epoch 2 of 4" in runs.loc["short:2", "note"]
    assert not runs["used"].any()


def test_a_file_cut_inside_a_row_and_then_appended_to(tmp_path):
    # The writer was killed inside the epoch-3 row; a resumed writer appended
    # epochs 7-10 to the cut line: line 5 has too many fields.
    cut = row(0, 3)[:-3]  # "0,3,0.7,0." without its newline
    text = HEADER + rows(0, [0, 1, 2]) + cut + rows(0, [7, 8, 9, 10])
    job(tmp_path, "resumed", text, epochs=10)
    run = runs_by_run(tmp_path).loc["resumed:0"]
    assert "metrics.csv: 1 malformed row dropped (line 5: wrong number of fields)" in run["note"]
    assert run["missing_epochs"] == "3-7" and run["epochs"] == 2 and run["left_out"] == "missing epochs"


def test_a_cell_that_is_no_number_drops_its_row_not_the_record(tmp_path):
    # Line 4 (epoch 2) has "abc" as its epoch; line 6 (epoch 4) "x" as its accuracy.
    text = HEADER + rows(0, [0, 1]) + "0,abc,0.8,0.52\n" + row(0, 3) + "0,4,0.6,x\n"
    job(tmp_path, "garbled", text)
    study = load.load_study([tmp_path])
    assert study.unreadable == []
    run = study.runs.set_index("run").loc["garbled:0"]
    assert ("metrics.csv: 2 malformed rows dropped (line 4: 'abc' in epoch; line 6: 'x' in val_acc)"
            in run["note"])
    assert sorted(study.epochs["epoch"]) == [0, 1, 3]
    assert run["epochs"] == 1 and run["missing_epochs"] == "2" and not run["used"]
    # Numbers as the trainer writes them (nan, inf) are numbers, not garbage.
    job(tmp_path, "diverged", HEADER + "1,0,1.0,0.5\n1,1,nan,0.1\n1,2,inf,0.1\n", seed=1, epochs=2, status=DIVERGED)
    runs = runs_by_run(tmp_path)
    assert runs.loc["diverged:1", "left_out"] == DIVERGED and "malformed" not in runs.loc["diverged:1", "note"]


def test_a_seed_or_epoch_that_is_no_whole_number_is_dropped(tmp_path):
    text = HEADER + rows(0, [0, 1, 2]) + "0,2.5,0.75,0.6\n0,-1,1.0,0.5\n,3,0.7,0.5\n0,inf,0.7,0.5\n" + rows(0, [3, 4])
    job(tmp_path, "odd", text)
    run = runs_by_run(tmp_path).loc["odd:0"]
    assert ("4 malformed rows dropped (line 5: seed 0, epoch 2.5; line 6: seed 0, epoch -1; "
            "line 7: seed empty, epoch 3; 1 more)") in run["note"]
    assert run["used"] and run["epochs"] == 4  # rows 0..4 are all there


def test_rows_are_read_by_seed_then_epoch_and_a_re_recorded_epoch_keeps_its_last_row(tmp_path):
    # Replicas write epoch by epoch (seeds interleaved); a resumed run records
    # its last epoch again (line 7 repeats seed 0, epoch 1 with other values).
    interleaved = HEADER + "".join(row(s, e) for e in range(3) for s in (0, 1))
    again = HEADER + rows(0, [0, 1]) + "0,1,0.95,0.4\n" + rows(0, [2])
    in_order = HEADER + rows(0, range(3)) + rows(1, range(3))
    for name, text in (("interleaved", interleaved), ("again", again), ("in_order", in_order)):
        (tmp_path / f"{name}.csv").write_text(text)
    df, notes, truncated = load._read_metrics(tmp_path / "interleaved.csv")
    assert list(zip(df["seed"], df["epoch"])) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert df["seed"].dtype == df["epoch"].dtype == np.int64 and notes == [] and not truncated
    ordered, _, _ = load._read_metrics(tmp_path / "in_order.csv")
    pd.testing.assert_frame_equal(ordered.reset_index(drop=True), df.reset_index(drop=True))
    df, notes, _ = load._read_metrics(tmp_path / "again.csv")
    assert list(df["epoch"]) == [0, 1, 2]
    assert df.set_index("epoch").loc[1, "val_acc"] == 0.4 and len(df) == 3 and notes == []


def test_many_bad_lines_are_counted_and_the_first_named(tmp_path):
    text = HEADER + rows(0, range(5)) + "".join(f"0,{e},?,?\n" for e in range(5, 10))
    job(tmp_path, "noisy", text)
    note = runs_by_run(tmp_path).loc["noisy:0", "note"]
    assert "5 malformed rows dropped (line 7: '?' in val_loss; line 8: '?' in val_loss; " \
           "line 9: '?' in val_loss; 2 more)" in note


def test_a_record_without_an_epoch_column_is_unreadable_with_its_reason(tmp_path):
    job(tmp_path, "good", HEADER + rows(0, range(5)))
    job(tmp_path, "bad", "seed,val_acc\n0,0.5\n", seed=1)
    study = load.load_study([tmp_path], warn=lambda m: None)
    assert study.unreadable == [("bad", "ValueError: metrics.csv has no 'epoch' column")]
    assert study.runs["run"].tolist() == ["good:0"]


# ---------------------------------------------------------------- 2. duplicates


def two_seeds(root: Path) -> Path:
    """Dropout 0 and 0.5, seeds 0 and 1, 4 epochs: four jobs."""
    for i, (p, s) in enumerate([(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]):
        job(root, str(i), HEADER + rows(s, range(5)), seed=s, config={"model.dropout": p})
    return root


def test_two_copies_of_a_sweep_count_each_seed_once(tmp_path, capsys):
    sweep = two_seeds(tmp_path / "sweep")
    shutil.copytree(sweep, tmp_path / "sweep_copy")
    out = tmp_path / "out"
    # The copy is given first: the run kept is still the first by path (sweep/ < sweep_copy/).
    assert report(tmp_path / "sweep_copy", sweep, "-o", out) == 0
    console = capsys.readouterr().out

    cells = pd.read_csv(out / "cells.csv", index_col="cell")
    # Each cell: seeds 0 and 1, best (final) accuracy 0.54 and 0.55: n = 2, mean 0.545.
    assert cells["n_runs"].tolist() == [4, 4] and cells["n_used"].tolist() == [2, 2]
    assert cells["n_duplicate"].tolist() == [2, 2]
    assert cells["best_val_acc_n"].tolist() == [2, 2]
    assert cells["best_val_acc_mean"].tolist() == pytest.approx([0.545, 0.545])
    assert cells["best_val_acc_std"].tolist() == pytest.approx([0.01 / np.sqrt(2)] * 2)
    assert cells.loc["dropout=0", "caveats"] == (
        "2 duplicates left out (seed 0: sweep_copy/0:0 duplicates sweep/0:0, "
        "seed 1: sweep_copy/1:1 duplicates sweep/1:1); "
        "still improving: lowest val loss at the last epoch in 2 of 2 runs (train longer)")  # see row()

    runs = pd.read_csv(out / "runs.csv").set_index("run")
    copies = runs[runs["job"].str.startswith("sweep_copy/")]
    assert len(copies) == 4 and (copies["left_out"] == "duplicate").all() and not copies["used"].any()
    assert runs.loc["sweep_copy/2:0", "duplicate_of"] == "sweep/2:0"
    assert runs.loc["sweep_copy/2:0", "note"].startswith("duplicate of sweep/2:0")
    assert runs.loc[runs["job"].str.startswith("sweep/"), "used"].all()

    assert "8 runs in 2 cells (dropout); usable runs per cell: 2" in console
    assert "left out of the statistics (4/8 runs used): 4 duplicates" in console
    assert "best val_acc (at each run's epoch of lowest val_loss): dropout=0  54.5% ± 6.4 pp (95% CI, n=2)" in console
    # Effects in their adjusted reading, with their kind: both cells are the same run twice, so no effect,
    # and the same (zero) contrast in both seeds: no spread to test with.
    assert ("effects on val_acc at the epoch of lowest val_loss (paired over 2 seeds; no contrast could be tested: "
            "one seed, or no spread across seeds):\n  main effects:\n    dropout: 0 → 0.5  +0.0 pp  no test: the 2 seeds "
            "give the same value, so there is no spread to estimate the noise from") in console
    md = (out / "report.md").read_text()
    assert "| dropout=0 | 2/4 |" in md and "runs left out of all means: 4 duplicates" in md
    assert "| sweep_copy/0:0 | dropout=0 | 0 | completed | no | 4 | duplicate of sweep/0:0" in md
    html = (out / "report.html").read_text()
    assert "<td>sweep_copy/0:0</td>" in html and "duplicate of sweep/0:0" in html
    # Effects are paired over the two seeds, as with one sweep.
    assert (pd.read_csv(out / "effects.csv")["n"] == 2).all()


def test_three_copies_of_one_run_are_one_run(tmp_path, capsys):
    first = job(tmp_path / "a", "run", HEADER + rows(0, range(5)))
    for name in ("b", "c"):
        shutil.copytree(first, tmp_path / name / "run")
    assert report(tmp_path / "a", tmp_path / "b", tmp_path / "c", "-o", tmp_path / "out") == 0
    console = capsys.readouterr().out
    # One run left: a mean without an interval, never "95% CI" (or "± 0.0") for n = 1.
    assert "best val_acc (at each run's epoch of lowest val_loss): all runs  54.0% (1 seed: no interval)" in console
    assert "CI" not in console and "± 0.0" not in console
    cell = pd.read_csv(tmp_path / "out" / "cells.csv", index_col="cell").loc["all runs"]
    assert (cell["n_runs"], cell["n_used"], cell["n_duplicate"], cell["best_val_acc_n"]) == (3, 1, 2, 1)
    assert np.isnan(cell["best_val_acc_std"])
    runs = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("run")
    assert runs["used"].tolist() == [True, False, False]
    assert runs["duplicate_of"].tolist()[1:] == ["a/run:0", "a/run:0"]


def test_a_seed_trained_alone_and_as_a_replica_counts_once(tmp_path):
    job(tmp_path, "alone", HEADER + rows(0, range(5)), seed=0, config={"trainer.replicas": 1, "device": "cpu"})
    job(tmp_path, "replicas", HEADER + rows(0, range(5)) + rows(1, range(5)), seed=0, seeds=[0, 1],
        config={"trainer.replicas": 2, "device": "cuda"})
    study = load.load_study([tmp_path])
    assert study.factors == []  # replicas and device define no cell
    runs = study.runs.set_index("run")
    assert runs["used"].to_dict() == {"alone:0": True, "replicas:0": False, "replicas:1": True}
    assert runs.loc["replicas:0", "left_out"] == "duplicate"
    assert runs.loc["replicas:0", "note"].startswith("duplicate of alone:0")
    a = stats.analyze(study)
    assert a.cells.loc["all runs", "n_used"] == 2 and (a.curves["val_acc_n"] == 2).all()


def test_only_runs_that_would_be_used_are_duplicates(tmp_path):
    # The first by path of each pair is left out for its own reason: the other is used.
    job(tmp_path, "a_killed", HEADER + rows(0, [0, 1]), seed=0, status=INTERRUPTED)
    job(tmp_path, "b_done", HEADER + rows(0, range(5)), seed=0)
    job(tmp_path, "c_diverged", HEADER + rows(1, range(5)), seed=1, status=DIVERGED)
    job(tmp_path, "d_done", HEADER + rows(1, range(5)), seed=1)
    runs = runs_by_run(tmp_path)
    assert runs["left_out"].to_dict() == {"a_killed:0": "unfinished", "b_done:0": "", "c_diverged:1": DIVERGED,
                                          "d_done:1": ""}
    assert (runs["duplicate_of"] == "").all()


def test_the_run_kept_is_the_first_by_path_whatever_the_order_given(tmp_path):
    for name in ("x/2", "x/10", "w"):
        job(tmp_path, name, HEADER + rows(0, range(5)))
    for order in ([tmp_path / "x", tmp_path / "w"], [tmp_path / "w", tmp_path / "x"]):
        runs = load.load_study(order).runs.set_index("run")
        assert runs.index[runs["used"]].tolist() == ["w:0"]
        assert set(runs.loc[~runs["used"], "duplicate_of"]) == {"w:0"}


# ---------------------------------------------------------------- pieces


def test_ranges():
    assert load._ranges([]) == ""
    assert load._ranges([0]) == "0"
    assert load._ranges([0, 3, 4, 5, 6, 9]) == "0, 3-6, 9"


def test_cell_table_counts_and_names_gaps_and_duplicates():
    runs = pd.DataFrame({
        "run": ["a:0", "b:0", "a:1", "c:2"], "cell": "c", "A": 1, "seed": [0, 0, 1, 2], "y": [0.1, 0.1, 0.3, 0.9],
        "used": [True, False, True, False], "status": "completed", "truncated": False, "epochs": [3, 3, 3, 1],
        "planned_epochs": 3, "left_out": ["", "duplicate", "", "missing epochs"],
        "missing_epochs": ["", "", "", "2"], "duplicate_of": ["", "a:0", "", ""],
    })
    cell = stats.cell_table(runs, ["A"], {"A": [1]}, ["y"]).loc["c"]
    assert (cell["n_runs"], cell["n_used"], cell["n_duplicate"], cell["n_missing_epochs"]) == (4, 2, 1, 1)
    assert cell["y_mean"] == pytest.approx(0.2) and cell["y_n"] == 2  # 0.1 and 0.3; not the copy, not 0.9
    assert cell["caveats"] == ("1 duplicate left out (seed 0: b:0 duplicates a:0); "
                               "1 with missing epochs left out (seed 2: epoch 2 missing)")


def test_heatmap_says_why_a_setting_has_no_usable_run():
    from regbench.report import figures

    nan = float("nan")
    cells = pd.DataFrame({"A": [0, 0, 1, 1], "B": [0, 1, 0, 1], "best_val_acc_mean": [0.5, 0.6, 0.7, nan],
                          "best_val_acc_ci_lo": nan, "best_val_acc_ci_hi": nan, "n_runs": [1, 1, 1, 2],
                          "n_used": [1, 1, 1, 0], "n_unfinished": 0, "n_missing_epochs": [0, 0, 0, 2]})
    ax = figures.plot_heatmap(cells, "best_val_acc", "A", "B", {"A": [0, 1], "B": [0, 1]})
    assert "no usable\nruns\n(2 with missing epochs)" in [t.get_text() for t in ax.texts]


def test_a_categorical_factor_is_read_against_the_configs_default(tmp_path):
    """model.order's levels were read against the alphabetically first
    (linear-act-bn-dropout), not the default every other run has
    (linear-bn-act-dropout, Ioffe & Szegedy's placement)."""
    from regbench.report import load
    from regbench.report.synth import BASE_CONFIG, curves, write_job

    for order in (["linear", "act", "bn", "dropout"], ["linear", "bn", "act", "dropout"], ["linear", "act", "dropout", "bn"]):
        for seed in (0, 1):
            write_job(tmp_path / "s" / f"{'-'.join(order)}-{seed}", {**BASE_CONFIG, "model.order": order, "seed": seed,
                                                                    "model.batchnorm": True, "trainer.epochs": 3},
                      curves(0.0, True, seed, 3, diagnostics=False))
    study = load.load_study([tmp_path / "s"])
    assert study.levels["model.order"] == ["linear-bn-act-dropout", "linear-act-bn-dropout", "linear-act-dropout-bn"]
