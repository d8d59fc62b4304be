"""Report statistics on tables small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from types import SimpleNamespace

from regbench.report import stats

T_975_DF1 = 12.706204736174707  # scipy.stats.t.ppf(0.975, 1)
T_975_DF2 = 4.302652729749464  # scipy.stats.t.ppf(0.975, 2)


def test_summarize_ci_of_three_values():
    s = stats.summarize([0.1, 0.2, 0.3])
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.2)
    assert s["std"] == pytest.approx(0.1)
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # = 0.2484
    assert half == pytest.approx(0.24841, abs=1e-5)
    assert s["ci_lo"] == pytest.approx(0.2 - half)
    assert s["ci_hi"] == pytest.approx(0.2 + half)


def test_summarize_drops_non_finite_and_handles_one_value():
    s = stats.summarize([1.0, float("nan"), float("inf"), 3.0])
    assert s["n"] == 2 and s["mean"] == pytest.approx(2.0)
    assert s["ci_hi"] - s["mean"] == pytest.approx(T_975_DF1 * math.sqrt(2) / math.sqrt(2))
    one = stats.summarize([0.5])
    assert one["n"] == 1 and one["mean"] == 0.5 and math.isnan(one["std"]) and math.isnan(one["ci_lo"])
    none = stats.summarize([])
    assert none["n"] == 0 and math.isnan(none["mean"])


def test_aggregate_matches_summarize_per_group():
    df = pd.DataFrame({"cell": ["a", "a", "a", "b", "b"], "v": [0.1, 0.2, 0.3, 1.0, float("-inf")]})
    out = stats.aggregate(df, ["cell"], ["v"])
    assert out.loc["a", "v_mean"] == pytest.approx(0.2)
    assert out.loc["a", "v_ci_hi"] == pytest.approx(stats.summarize([0.1, 0.2, 0.3])["ci_hi"])
    assert out.loc["b", "v_n"] == 1 and out.loc["b", "v_mean"] == 1.0 and math.isnan(out.loc["b", "v_ci_lo"])


def test_t_quantile_and_tail_are_scipy_stats_t():
    """stats.t_ppf / t_sf call scipy.special directly (scipy.stats is slow to
    import): the same values as scipy.stats.t, to the last bit, for the dof a
    report meets (n - 1 seeds, Welch's fractional dof) and its levels (95%,
    Bonferroni-adjusted up to 100 contrasts), and NaN where scipy.stats gives NaN."""
    from scipy import stats as sps

    dofs = np.array([1, 2, 3, 4, 5, 7, 9, 10, 19, 29, 49, 99, 199, 999, 0.5, 1.37, 2.5, 4.81, 17.3, 1e6, np.inf])
    levels = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999] + [1 - 0.05 / m for m in (2, 3, 7, 12, 40, 100)]
    for level in levels:
        q = 0.5 + level / 2
        np.testing.assert_array_equal(stats.t_ppf(q, dofs), sps.t.ppf(q, dofs))
        for d in dofs:  # scalars too, as t_test_p and compare pass them
            assert stats.t_ppf(q, d) == sps.t.ppf(q, d)
    xs = np.array([0.0, 1e-8, 0.3, 1.0, 1.96, 2.5, 4.0, 12.7, 40.0, 1e3, np.inf])
    for d in dofs:
        np.testing.assert_array_equal(stats.t_sf(xs, d), sps.t.sf(xs, d))
        np.testing.assert_array_equal(stats.t_sf(-xs, d), sps.t.sf(-xs, d))
        assert stats.t_sf(2.0, d) == sps.t.sf(2.0, d)
    for bad in (0.0, -1.0, np.nan):
        assert math.isnan(stats.t_ppf(0.975, bad)) and math.isnan(sps.t.ppf(0.975, bad))
        assert math.isnan(stats.t_sf(2.0, bad)) and math.isnan(sps.t.sf(2.0, bad))
    assert math.isnan(stats.t_sf(np.nan, 3.0)) and math.isnan(sps.t.sf(np.nan, 3.0))


def test_higher_is_better():
    assert stats.higher_is_better("val_acc") and stats.higher_is_better("test_acc")
    assert not stats.higher_is_better("val_loss")
    assert not stats.higher_is_better("gap_acc")  # a smaller gap is better
    assert not stats.higher_is_better("final_gap_acc")  # also as an outcome column


def _epochs() -> pd.DataFrame:
    # run a: val loss lowest at epoch 2, reaches 60% at epoch 2 (t = 2.0 s)
    # run b: never reaches 60%
    return pd.DataFrame(
        {
            "run": ["a"] * 4 + ["b"] * 3,
            "epoch": [0, 1, 2, 3, 0, 1, 2],
            "time_s": [0.0, 1.0, 2.0, 3.0, 0.0, 0.5, 1.0],
            "fit_loss": [2.0, 0.9, 0.5, 0.3, 2.0, 1.5, 1.2],
            "val_loss": [2.0, 1.0, 0.8, 0.9, 2.0, 1.6, 1.4],
            "val_acc": [0.1, 0.5, 0.7, 0.65, 0.1, 0.3, 0.4],
            "gap_loss": [0.0, 0.1, 0.3, 0.6, 0.0, 0.1, 0.2],
        }
    )


def test_run_outcomes_by_hand():
    out = stats.run_outcomes(_epochs(), "val_acc", target=0.6)
    a, b = out.loc["a"], out.loc["b"]
    assert a["best_val_acc"] == 0.7 and a["final_val_acc"] == 0.65
    assert a["best_val_loss"] == 0.8 and a["final_val_loss"] == 0.9
    assert a["best_epoch"] == 2 and a["val_loss_rise"] == pytest.approx(0.1)
    assert a["final_gap_loss"] == 0.6 and a["final_epoch"] == 3
    assert a["epochs_to_target"] == 2 and a["seconds_to_target"] == 2.0
    assert math.isnan(b["epochs_to_target"]) and math.isnan(b["seconds_to_target"])
    assert b["best_epoch"] == 2 and b["final_val_acc"] == 0.4


def test_run_outcomes_for_a_loss_metric_reaches_downwards():
    out = stats.run_outcomes(_epochs(), "val_loss", target=1.0)
    assert out.loc["a", "epochs_to_target"] == 1  # first val_loss <= 1.0
    assert math.isnan(out.loc["b", "epochs_to_target"])


def _factorial(drop: tuple | None = None) -> pd.DataFrame:
    """2 x 2 factorial (A, B) with 2 shared seeds; y by hand."""
    y = {
        (0, False, False): 0.50, (0, True, False): 0.60, (0, False, True): 0.55, (0, True, True): 0.70,
        (1, False, False): 0.40, (1, True, False): 0.52, (1, False, True): 0.46, (1, True, True): 0.60,
    }
    rows = [
        {"seed": s, "A": a, "B": b, "cell": f"A={str(a).lower()}, B={str(b).lower()}", "y": v, "used": True}
        for (s, a, b), v in y.items()
        if (s, a, b) != drop
    ]
    return pd.DataFrame(rows)


def test_paired_effects_of_a_2x2_factorial_by_hand():
    levels = {"A": [False, True], "B": [False, True]}
    eff = stats.paired_effects(_factorial(), ["A", "B"], levels, "y")
    eff = eff[eff["kind"] != "simple"].set_index("contrast")  # simple effects share the contrast text (see "at")
    a = eff.loc["A: false → true"]
    # per seed: mean over B of the A difference: seed 0 (0.10 + 0.15)/2, seed 1 (0.12 + 0.14)/2
    assert a["estimate"] == pytest.approx((0.125 + 0.13) / 2)
    half = T_975_DF1 * (abs(0.125 - 0.13) / math.sqrt(2)) / math.sqrt(2)
    assert a["ci_hi"] - a["estimate"] == pytest.approx(half)
    assert a["n"] == 2
    assert eff.loc["B: false → true", "estimate"] == pytest.approx((0.075 + 0.07) / 2)
    inter = eff.loc["(A: false → true) × (B: false → true)"]
    # seed 0: (0.70 - 0.55) - (0.60 - 0.50) = 0.05; seed 1: (0.60 - 0.46) - (0.52 - 0.40) = 0.02
    assert inter["estimate"] == pytest.approx(0.035)
    assert inter["kind"] == "interaction" and inter["n"] == 2


def test_paired_effects_use_only_seeds_present_in_every_cell():
    levels = {"A": [False, True], "B": [False, True]}
    eff = stats.paired_effects(_factorial(drop=(1, True, True)), ["A", "B"], levels, "y")
    eff = eff[eff["kind"] != "simple"].set_index("contrast")
    assert eff.loc["A: false → true", "n"] == 1
    assert eff.loc["A: false → true", "estimate"] == pytest.approx(0.125)
    assert math.isnan(eff.loc["A: false → true", "ci_lo"])  # one seed: no interval
    assert eff.loc["(A: false → true) × (B: false → true)", "estimate"] == pytest.approx(0.05)


def test_paired_effects_without_a_cell_use_the_complete_sub_grid():
    levels = {"A": [False, True], "B": [False, True]}
    runs = _factorial()
    runs = runs[~((runs["A"]) & (runs["B"]))]  # cell (true, true) never ran
    eff = stats.paired_effects(runs, ["A", "B"], levels, "y")
    eff = eff[eff["kind"] != "simple"].set_index("contrast")
    # A at B=false only: seed 0: 0.60 - 0.50, seed 1: 0.52 - 0.40
    assert eff.loc["A: false → true", "n"] == 2 and eff.loc["A: false → true", "estimate"] == pytest.approx(0.11)
    assert "at B=false only" in eff.loc["A: false → true", "scope"]
    inter = eff.loc["(A: false → true) × (B: false → true)"]
    assert inter["n"] == 0 and math.isnan(inter["estimate"])  # needs all four cells


def test_paired_effects_not_estimable_without_a_shared_seed():
    levels = {"A": [False, True], "B": [False, True]}
    runs = _factorial()
    runs = runs[~((runs["seed"] == 0) & runs["A"]) & ~((runs["seed"] == 1) & ~runs["A"])]  # A=true: seed 1 only
    eff = stats.paired_effects(runs, ["A", "B"], levels, "y")
    a = eff[eff["kind"] == "main"].set_index("contrast").loc["A: false → true"]
    assert a["n"] == 0 and math.isnan(a["estimate"])


def test_cell_table_counts_flags_and_missing_cells():
    runs = _factorial()
    runs["status"] = "completed"
    runs["truncated"] = False
    runs["epochs"] = 3
    runs["left_out"] = ""
    bad = (runs["seed"] == 1) & runs["A"] & ~runs["B"]
    runs.loc[bad, ["status", "used", "left_out"]] = ["diverged", False, "diverged"]
    killed = (runs["seed"] == 0) & ~runs["A"] & ~runs["B"]
    runs.loc[killed, ["status", "used", "left_out"]] = ["interrupted", False, "unfinished"]  # listed, not averaged in
    runs["planned_epochs"] = 3
    runs.loc[killed, "epochs"] = 2
    runs = runs[~((runs["A"]) & (runs["B"]))]  # a grid cell with no runs at all
    cells = stats.cell_table(runs, ["A", "B"], {"A": [False, True], "B": [False, True]}, ["y"])
    assert cells.loc["A=false, B=false", "y_mean"] == pytest.approx(0.40)  # seed 1 only
    assert cells.loc["A=false, B=false", ["n_runs", "n_used", "n_unfinished", "n_interrupted"]].tolist() == [2, 1, 1, 1]
    row = cells.loc["A=true, B=false"]
    assert row["n_runs"] == 2 and row["n_used"] == 1 and row["n_diverged"] == 1
    assert row["y_mean"] == 0.60  # the diverged run is not averaged in
    assert "fewer seeds (1 of 2)" in row["caveats"] and "1 diverged left out (seed 1)" in row["caveats"]
    assert cells.loc["A=true, B=true", "caveats"] == "missing: no runs"
    assert cells.loc["A=false, B=false", "caveats"] == (
        "fewer seeds (1 of 2); 1 unfinished left out (seed 0 stopped at epoch 2 of 3)")


def test_cell_table_flags_a_seed_used_twice():
    runs = pd.DataFrame({"cell": ["c", "c"], "A": [1, 1], "seed": [0, 0], "y": [0.1, 0.2], "used": True,
                         "status": "completed", "truncated": False, "epochs": 3, "left_out": ""})
    cells = stats.cell_table(runs, ["A"], {"A": [1]}, ["y"])
    assert cells.loc["c", "caveats"] == "seed 0 in more than one run"


def test_auto_target_is_the_weakest_cells_best():
    cells = pd.DataFrame({"best_val_acc_mean": [0.834, 0.91, np.nan], "best_val_loss_mean": [0.51, 0.3, np.nan]})
    assert stats.auto_target(cells, "val_acc") == 0.83
    assert stats.auto_target(cells, "val_loss") == 0.51
    assert stats.auto_target(cells, "test_acc") is None


@pytest.mark.parametrize("metric", ["val_acc", "val_loss"])
def test_analyze_sets_the_automatic_target_from_its_cells(tmp_path, metric):
    """analyze finds the automatic target from the cells' means of best_<metric>
    before it builds the cell table once; it is the target the finished cell
    table gives, also with a diverged run and a cell with none usable."""
    from regbench.report.load import load_study
    from regbench.report.synth import write_sweep

    sweep = write_sweep(tmp_path / "s", dropouts=(0.0, 0.5), seeds=(0, 1), epochs=6,
                        diverged=[(0.5, True, 0), (0.5, True, 1), (0.0, False, 1)])
    a = stats.analyze(load_study([sweep]), metric)
    assert a.target_auto and a.target is not None
    assert a.target == stats.auto_target(a.cells, metric)
    assert stats.analyze(load_study([sweep]), metric, a.target).cells.equals(a.cells)


def _coinciding() -> pd.DataFrame:
    """The 2 x 2 of _factorial, as the records hold accuracies (float32, steps
    of 1/800), with the A contrast the same in both seeds: seed 0
    ((222 - 257) + (280 - 373)) / 2 / 800, seed 1 ((232 - 272) + (286 - 374)) / 2 / 800."""
    counts = {(0, False, False): 257, (0, True, False): 222, (0, False, True): 373, (0, True, True): 280,
              (1, False, False): 272, (1, True, False): 232, (1, False, True): 374, (1, True, True): 286}
    return pd.DataFrame([
        {"seed": s, "A": a, "B": b, "cell": f"A={str(a).lower()}, B={str(b).lower()}",
         "y": float(np.float32(k / 800)), "used": True}
        for (s, a, b), k in counts.items()])


def test_a_contrast_the_same_in_every_seed_has_no_test():
    """Two seeds whose contrasts coincide at the metric's steps differ only by
    float32 rounding: a t-test would give p ~ 0 and an interval of zero width.
    No interval, no test, not resolved, and not counted in the family (as R's
    t.test refuses "essentially constant" data); the other contrasts are tested."""
    from regbench.report.render import verdict

    levels = {"A": [False, True], "B": [False, True]}
    eff = stats.adjust(stats.paired_effects(_coinciding(), ["A", "B"], levels, "y").assign(outcome="y"))
    main = eff[eff["kind"] == "main"].set_index("factor")
    a = main.loc["A"]
    assert a["estimate"] == pytest.approx(-0.08) and a["n"] == 2
    assert all(math.isnan(a[c]) for c in ("std", "ci_lo", "ci_hi", "p", "p_adj", "ci_lo_adj"))
    assert not a["resolved"]
    assert verdict(a).startswith("no test: the 2 seeds give the same value")
    b = main.loc["B"]
    assert b["std"] > 0 and math.isfinite(b["p"])
    assert (eff["family_size"] == int(np.isfinite(eff["p"]).sum())).all()
    assert int(np.isfinite(eff["p"]).sum()) < len(eff)
    # a spread far above float32 rounding is tested as before
    assert not stats.essentially_constant([-0.08, -0.0801], scale=0.5)
    assert stats.essentially_constant([-0.08, float(np.float32(-0.08))], scale=0.5)
    assert not stats.essentially_constant([-0.08], scale=0.5)  # one value: nothing to say


def test_best_against_runner_up_the_same_in_every_seed_is_not_resolved():
    x = pd.Series([np.float32(300 / 800), np.float32(310 / 800)], index=[0, 1]).astype(float)
    y = pd.Series([np.float32(280 / 800), np.float32(290 / 800)], index=[0, 1]).astype(float)
    c = stats.compare(x, y)
    assert c["paired"] and c["estimate"] == pytest.approx(0.025)
    assert math.isnan(c["ci_lo"]) and math.isnan(c["p"]) and not c["resolved"]
    runs = pd.DataFrame({"cell": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "used": True,
                         "best_val_acc": [*x, *y]})
    d = stats.best_vs_runner_up(runs, pd.DataFrame(index=["a", "b"]), "best_val_acc")
    assert not d["resolved"] and math.isnan(d["p"])
    assert "(the 2 shared seeds give the same difference: no spread, no interval)" in d["text"], d["text"]
    assert d["text"].endswith("the ranking of these two is not resolved.")


def test_unpaired_best_against_runner_up_without_spread_is_not_resolved():
    """No shared seeds (Welch), and each side's runs all give the same value."""
    x = pd.Series([0.375, 0.375], index=[0, 1])
    y = pd.Series([0.35, 0.35], index=[2, 3])
    c = stats.compare(x, y)
    assert not c["paired"] and c["estimate"] == pytest.approx(0.025)
    assert math.isnan(c["ci_lo"]) and math.isnan(c["p"]) and not c["resolved"]


def test_best_against_runner_up_on_one_shared_seed_is_that_seeds_difference():
    """A 2 x 2 sweep with one job deleted: the best cell has seed 1 only, the runner-up seeds 0 and 1. The
    console said "+11.2 pp (paired, n=1)", the difference of the two cells' means over different seeds,
    beside an effect of -2.5 pp on the one seed they share: paired must be that seed's difference."""
    runs = pd.DataFrame({"cell": ["A=0", "A=1", "A=1"], "A": [0, 1, 1], "seed": [1, 0, 1], "used": True,
                         "best_val_acc": [0.60, 0.40, 0.575]})
    x = runs[runs["cell"] == "A=0"].set_index("seed")["best_val_acc"]
    y = runs[runs["cell"] == "A=1"].set_index("seed")["best_val_acc"]
    c = stats.compare(x, y)
    assert c["paired"] and c["n"] == 1 and c["estimate"] == pytest.approx(0.025)  # seed 1: 0.60 - 0.575
    assert math.isnan(c["ci_lo"]) and math.isnan(c["p"]) and not c["resolved"]
    d = stats.best_vs_runner_up(runs, pd.DataFrame(index=["A=0", "A=1"]), "best_val_acc")
    assert d["paired"] and d["n"] == 1 and d["estimate"] == pytest.approx(0.025)
    assert d["text"].startswith("Best vs runner-up: A=0 leads A=1 by +2.5 pp (1 seed: no interval)"), d["text"]
    # the effects read the same seed: the same amount, the other way round (A 0 → 1)
    eff = stats.paired_effects(runs, ["A"], {"A": [0, 1]}, "best_val_acc").set_index("kind").loc["main"]
    assert eff["n"] == 1 and eff["estimate"] == pytest.approx(-d["estimate"])
    # first on its mean (0.60 against 0.51), behind on the seed the two share: said so, not "leads by +9.0 pp"
    behind = runs.assign(best_val_acc=[0.60, 0.40, 0.62])
    d = stats.best_vs_runner_up(behind, pd.DataFrame(index=["A=0", "A=1"]), "best_val_acc")
    assert d["paired"] and d["n"] == 1 and d["estimate"] == pytest.approx(-0.02)
    assert d["text"].startswith("Best vs runner-up: A=0 ranks first on its mean, but on the seeds it shares with A=1 "
                                "it trails by 2.0 pp (1 seed: no interval)"), d["text"]
    # no shared seed: not paired, the difference of the means over all runs of both, no interval
    apart = runs.assign(seed=[2, 0, 1])
    x = apart[apart["cell"] == "A=0"].set_index("seed")["best_val_acc"]
    y = apart[apart["cell"] == "A=1"].set_index("seed")["best_val_acc"]
    c = stats.compare(x, y)
    assert not c["paired"] and c["n"] == 3 and c["estimate"] == pytest.approx(0.60 - 0.4875)
    assert math.isnan(c["ci_lo"]) and math.isnan(c["p"]) and not c["resolved"]


def test_the_answer_says_when_the_first_cell_trails_its_runner_up_on_shared_seeds():
    """With no effects to answer by, the answer read "ahead of A=1 by -2.0 pp" where the first cell
    on its mean trails on the seeds the two share."""

    from regbench.report import render

    cells = pd.DataFrame({"best_val_acc_mean": [0.60, 0.51], "best_val_acc_n": [1, 2], "best_val_acc_std": [math.nan, 0.1],
                          "best_val_acc_ci_lo": [math.nan, 0.4], "best_val_acc_ci_hi": [math.nan, 0.62], "n_used": [1, 2]},
                         index=["A=0", "A=1"])
    for estimate, behind, says in ((-0.02, True, "; first on its mean, but behind A=1 on the seeds they share by 2.0 pp, not resolved."),
                                   (0.03, False, "; ahead of A=1 by +3.0 pp, not resolved.")):
        a = SimpleNamespace(trials=None, headline="", best_col="best_val_acc", cells=cells, ranked=lambda: cells,
                            best_vs_runner_up={"runner_up": "A=1", "estimate": estimate, "ci_lo": math.nan,
                                               "ci_hi": math.nan, "resolved": False, "behind": behind})
        assert render.answer(a).endswith(says), render.answer(a)


def test_best_against_runner_up_on_a_loss_reads_lower_as_ahead():
    """--metric val_loss: a lower loss on the shared seeds read as "behind" in the answer (the sign alone
    decided), and a best cell trailing on a loss had its interval flipped against the size the text states."""
    from regbench.report import render
    from regbench.report.load import fmt_bounds

    ahead = pd.DataFrame({"cell": ["A=0"] * 3 + ["A=1"] * 3, "A": [0] * 3 + [1] * 3, "seed": [0, 1, 2] * 2, "used": True,
                          "best_val_loss": [0.30, 0.31, 0.32, 0.40, 0.42, 0.41]})
    # first on its mean (0.305 against 0.362), behind on seeds 0 and 1, which the two share
    trails = pd.DataFrame({"cell": ["A=0"] * 2 + ["A=1"] * 3, "A": [0] * 2 + [1] * 3, "seed": [0, 1, 0, 1, 2], "used": True,
                           "best_val_loss": [0.30, 0.31, 0.29, 0.295, 0.50]})
    for runs, behind in ((ahead, False), (trails, True)):
        d = stats.best_vs_runner_up(runs, pd.DataFrame(index=["A=0", "A=1"]), "best_val_loss")
        assert d["best"] == "A=0" and d["behind"] == behind and (d["estimate"] > 0) == behind, d
        cells = pd.DataFrame({"best_val_loss_mean": [0.3, 0.4], "best_val_loss_n": [3, 3], "best_val_loss_std": [0.01, 0.01],
                              "best_val_loss_ci_lo": [0.2, 0.3], "best_val_loss_ci_hi": [0.4, 0.5], "n_used": [3, 3]},
                             index=["A=0", "A=1"])
        a = SimpleNamespace(trials=None, headline="", best_col="best_val_loss", cells=cells, ranked=lambda: cells,
                            best_vs_runner_up=d)
        text = render.answer(a)
        if not behind:
            assert f"; ahead of A=1 by -0.10" in text and "behind" not in text, text
        else:  # the gap's size, with the interval of that (positive) difference as it is
            bounds = fmt_bounds(d["ci_lo"], d["ci_hi"], "best_val_loss")
            assert f"; first on its mean, but behind A=1 on the seeds they share by 0.013 {bounds}, not resolved." in text, text
            assert f"it trails by 0.013 {bounds}" in d["text"], d["text"]


def test_the_answer_names_the_one_level_estimated_and_the_ones_not():
    """dropout=0 and dropout=0.2 with no seed in common: the answer said "no level resolved (estimate -7.7 pp)",
    neither which contrast that was nor that 0 → 0.2 could not be estimated."""
    rows = pd.DataFrame({"contrast": ["dropout: 0 → 0.2", "dropout: 0 → 0.5"], "estimate": [math.nan, -0.077],
                         "p": [math.nan, 0.3]})
    assert stats._spread(rows, "best_val_acc") == ("estimate -7.7 pp (dropout: 0 → 0.5); 1 of 2 not estimable (no seed "
                                                    "shared by their cells)")
    assert stats._spread(rows.iloc[1:], "best_val_acc") == "estimate -7.7 pp"  # the only level: nothing more to say
