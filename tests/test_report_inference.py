"""What a report may conclude: corrected inference and data-quality guards.

The defects pinned here (issue "Reports a researcher can trust"):

1. Many unadjusted 95% intervals were each read as a finding. Effects now
   form a family per outcome (main + interaction + simple effects), get a
   paired t p-value, Bonferroni's adjustment and simultaneous (Bonferroni)
   intervals; "resolved" is said of the adjusted reading only.
2. The best cell was judged against the runner-up by overlapping unpaired
   intervals; it is now their own paired difference (Welch without shared
   seeds), with the probability of improvement, and "1 seed: no interval".
3. Simple effects, and main effects from the complete sub-grid when a cell
   is missing.
4. A run without a value at its best epoch, a cell stopped while still
   improving, and runs that never reach a target (censored) are named.
5. Seeds trained together share one clock: time is per seed, and intervals
   of times stay positive.
7. Lower is better for losses and gaps; keys that do not define an
   experiment never become factors.

Tables are small enough to check by hand; numbers are checked against scipy.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from regbench.report import load, render, stats
from regbench.report.synth import BASE_CONFIG, write_job

# ---------------------------------------------------------------- the arithmetic, against scipy and by hand


def test_t_test_p_is_scipys_one_sample_t_test():
    x = np.array([0.01, 0.03, -0.005, 0.02])
    s = stats.summarize(x)
    assert stats.t_test_p(s["mean"], s["std"], s["n"]) == pytest.approx(sps.ttest_1samp(x, 0).pvalue, rel=1e-12)
    assert math.isnan(stats.t_test_p(0.02, math.nan, 1))  # one seed: no test
    assert stats.t_test_p(0.02, 0.0, 3) == 0.0 and stats.t_test_p(0.0, 0.0, 3) == 1.0  # identical seeds


def test_bonferroni_by_hand():
    adj = stats.bonferroni([0.01, np.nan, 0.04, 0.03, 0.005])  # 4 tests in the family
    assert adj[[0, 2, 3, 4]] == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert math.isnan(adj[1])  # no test, not in the family
    assert stats.bonferroni([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1
    assert stats.bonferroni([]).tolist() == []


def test_resolved_is_exactly_the_simultaneous_interval_excluding_zero():
    # The verdict and the interval printed next to it never disagree: Holm's
    # step-down test, used before, resolved contrasts whose interval held 0.
    rng = np.random.default_rng(0)
    rows = []
    for k in range(400):
        n = int(rng.integers(2, 7))
        x = rng.normal(rng.normal(0, 0.02), 0.02, n)
        s = stats.summarize(x)
        rows.append({"outcome": f"o{k % 8}", "kind": "main", "factor": "f", "contrast": f"c{k}", "at": "",
                     "estimate": s["mean"], "ci_lo": s["ci_lo"], "ci_hi": s["ci_hi"], "n": s["n"], "std": s["std"]})
    eff = stats.adjust(pd.DataFrame(rows))
    excludes = (eff["ci_lo_adj"] > 0) | (eff["ci_hi_adj"] < 0)
    assert (eff["resolved"] == excludes).all()
    assert 0 < eff["resolved"].sum() < len(eff)  # both kinds occur


def test_simultaneous_interval_is_scipys_interval_at_the_bonferroni_level():
    x = np.array([0.010, 0.025, 0.000, 0.018, 0.012])
    s = stats.summarize(x)
    half = stats.simultaneous_half_width(s["std"], s["n"], 7)
    ci = sps.ttest_1samp(x, 0).confidence_interval(confidence_level=1 - 0.05 / 7)
    assert s["mean"] - half == pytest.approx(ci.low) and s["mean"] + half == pytest.approx(ci.high)
    # By hand: t(1 - 0.05 / 14, 4) * std / sqrt(5)
    assert half == pytest.approx(sps.t.ppf(1 - 0.05 / 14, 4) * s["std"] / math.sqrt(5))


def test_probability_of_improvement_counts_ties_half():
    # best 0.60 vs runner 0.59, 0.60, 0.605: 1 + 0.5 + 0; 0.62 and 0.61 beat all three: 3 + 3  -> 7.5 / 9
    x, y = [0.60, 0.62, 0.61], [0.59, 0.60, 0.605]
    assert stats.prob_improvement(x, y) == pytest.approx(7.5 / 9)
    assert stats.prob_improvement(x, y, higher=False) == pytest.approx(1.5 / 9)  # for a loss, lower wins


def test_compare_paired_over_shared_seeds_is_scipys_paired_t():
    x = pd.Series([0.60, 0.62, 0.61, 0.70], index=[0, 1, 2, 3])  # seed 3 has no partner: not in the pairs
    y = pd.Series([0.59, 0.60, 0.605], index=[0, 1, 2])
    c = stats.compare(x, y)
    ci = sps.ttest_rel(x[[0, 1, 2]], y).confidence_interval()
    assert c["paired"] and c["n"] == 3
    assert c["estimate"] == pytest.approx(np.mean([0.01, 0.02, 0.005]))
    assert (c["ci_lo"], c["ci_hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert c["resolved"] == (ci.low > 0)


def test_compare_without_shared_seeds_is_welch():
    x = pd.Series([0.60, 0.62, 0.65], index=[0, 1, 2])
    y = pd.Series([0.55, 0.58, 0.56, 0.57], index=[10, 11, 12, 13])
    c = stats.compare(x, y)
    ref = sps.ttest_ind(x, y, equal_var=False)
    ci = ref.confidence_interval()
    assert not c["paired"] and c["n"] == 7
    assert (c["ci_lo"], c["ci_hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert c["p"] == pytest.approx(ref.pvalue) and c["resolved"]


def test_compare_a_loss_is_resolved_below_zero():
    x = pd.Series([0.40, 0.41, 0.39], index=[0, 1, 2])  # lower loss: better
    y = pd.Series([0.50, 0.52, 0.49], index=[0, 1, 2])
    c = stats.compare(x, y, higher=False)
    assert c["ci_hi"] < 0 and c["resolved"] and c["prob_improvement"] == 1.0
    assert not stats.compare(x, y, higher=True)["resolved"]


def test_the_interval_of_a_time_stays_positive_and_covers_95_percent():
    """Times and epochs had percentile bootstrap intervals, called 95%: within
    the seeds' range, they covered the mean in about 75% of cases at 3 seeds.
    Now the t interval, cut at 0."""
    x = [0.1, 0.1, 5.0]
    t = stats.summarize(x)
    assert t["ci_lo"] < 0  # the t interval of a skewed positive quantity goes below 0
    df = pd.DataFrame({"cell": ["a"] * 3, "final_time_s": x})
    row = stats.aggregate(df, ["cell"], ["final_time_s"], positive=["final_time_s"]).loc["a"]
    assert row["final_time_s_ci_lo"] == 0.0 and row["final_time_s_ci_hi"] == pytest.approx(t["ci_hi"])
    # coverage of the true mean, 3 seeds a cell, 4000 cells of a positive quantity
    rng = np.random.default_rng(0)
    n_cells, mu = 4000, 2.0
    df = pd.DataFrame({"cell": np.repeat(np.arange(n_cells), 3), "best_epoch": rng.normal(mu, 1.0, 3 * n_cells)})
    agg = stats.aggregate(df, ["cell"], ["best_epoch"], positive=["best_epoch"])
    assert (agg["best_epoch_ci_lo"] >= 0).all()
    covered = ((agg["best_epoch_ci_lo"] <= mu) & (mu <= agg["best_epoch_ci_hi"])).mean()
    assert 0.93 < covered < 0.97, covered


def test_censored_median_counts_never_as_slowest():
    assert stats.censored_median([2, 4, np.nan]) == 4  # 2/3 reached: [2, 4, never]
    assert math.isnan(stats.censored_median([2, np.nan, np.nan]))  # 1/3 reached: no median
    assert math.isnan(stats.censored_median([2, 4, np.nan, np.nan]))  # half: still not defined
    assert stats.censored_median([3, 1, 2]) == 2


def test_direction_per_metric():
    assert stats.higher_is_better("val_acc") and stats.higher_is_better("best_test_acc")
    for lower in ("val_loss", "best_val_loss", "gap_acc", "final_gap_acc", "final_gap_loss", "time_s",
                  "noisy_fit_acc"):
        assert not stats.higher_is_better(lower), lower


# ---------------------------------------------------------------- 1. family-wise control


# A 2 x 2 factorial (A, B), 5 seeds. The truth: B adds 5 pp, A adds nothing;
# A's per-seed differences happen to look like +1.3 pp with unadjusted
# p = 0.014 to 0.036 (the raw 95% interval of each excludes 0).
BASE = [0.50, 0.52, 0.48, 0.51, 0.49]
A_LUCK = [0.010, 0.025, 0.000, 0.018, 0.012]
B_REAL = [0.050, 0.046, 0.055, 0.049, 0.052]
NOISE = [0.004, -0.004, 0.002, -0.002, 0.0]  # on the (true, true) cell only: the interaction is null


def factorial_runs() -> pd.DataFrame:
    rows = []
    for s in range(5):
        y = {(False, False): BASE[s], (True, False): BASE[s] + A_LUCK[s], (False, True): BASE[s] + B_REAL[s],
             (True, True): BASE[s] + B_REAL[s] + A_LUCK[s] + NOISE[s]}
        for (a, b), v in y.items():
            rows.append({"seed": s, "A": a, "B": b, "cell": f"A={str(a).lower()}, B={str(b).lower()}", "y": v,
                         "used": True})
    return pd.DataFrame(rows)


LEVELS = {"A": [False, True], "B": [False, True]}


def adjusted() -> pd.DataFrame:
    effects, _ = stats.effect_tables(factorial_runs(), ["A", "B"], LEVELS, ["y"])
    return effects


def test_effects_have_the_documented_columns():
    effects, seeds = stats.effect_tables(factorial_runs(), ["A", "B"], LEVELS, ["y"])
    assert list(effects.columns[:16]) == ["outcome", "kind", "factor", "contrast", "at", "estimate", "ci_lo",
                                          "ci_hi", "n", "std", "p", "p_adj", "ci_lo_adj", "ci_hi_adj", "resolved",
                                          "family"]
    assert list(seeds.columns) == ["outcome", "kind", "factor", "contrast", "at", "seed", "value"]
    # 2 main + 1 interaction + 4 simple effects: one family of 7
    assert effects["kind"].value_counts().to_dict() == {"simple": 4, "main": 2, "interaction": 1}
    assert (effects["family"] == "y").all() and (effects["family_size"] == 7).all()
    assert len(seeds) == 7 * 5


def test_a_false_positive_among_seven_contrasts_is_not_resolved():
    eff = adjusted()
    a = eff[eff["factor"] == "A"]
    assert len(a) == 3  # main, at B=false, at B=true
    assert (a["p"] < 0.05).all() and (a["ci_lo"] > 0).all()  # each, alone, "excludes 0"
    assert (a["p"] > 0.01).all() and (a["p_adj"] > 0.05).all() and not a["resolved"].any()
    assert (a["ci_lo_adj"] < 0).all()  # the simultaneous intervals include 0
    # By hand: each p times the family's 7 tests, capped at 1.
    p = eff.set_index(["kind", "factor", "at"])["p"]
    got = eff.set_index(["kind", "factor", "at"])["p_adj"]
    for key in (("simple", "A", "B=true"), ("main", "A", ""), ("simple", "A", "B=false")):
        assert got[key] == pytest.approx(min(1.0, 7 * p[key]))
    assert got["simple", "A", "B=false"] == pytest.approx(min(1.0, 7 * sps.ttest_1samp(A_LUCK, 0).pvalue))


def test_a_real_effect_is_resolved():
    eff = adjusted()
    b = eff[eff["factor"] == "B"]
    assert len(b) == 3 and b["resolved"].all() and (b["ci_lo_adj"] > 0).all()
    main = b[b["kind"] == "main"].iloc[0]
    assert main["estimate"] == pytest.approx(np.mean(B_REAL) + np.mean(NOISE) / 2)
    assert main["p_adj"] == pytest.approx(7 * sps.ttest_1samp(np.add(B_REAL, np.divide(NOISE, 2)), 0).pvalue)
    inter = eff[eff["kind"] == "interaction"].iloc[0]
    assert not inter["resolved"] and inter["p_adj"] == pytest.approx(1.0)


def test_sentences_and_headline_use_the_adjusted_reading(tmp_path):
    a = analysis_of_factorial(tmp_path)
    # a factor not resolved keeps its estimate and interval: "A: no resolved effect" read as "A does nothing"
    # each factor with its levels: which way, not only by how much
    assert a.headline.startswith("A false → true: +1.3 pp [-0.5, +3.1], not resolved after Bonferroni correction; "
                                 "B false → true: +5.0 pp [")
    assert a.headline.endswith("], resolved after Bonferroni correction")
    text = "\n".join(render.findings(a))
    assert "Bonferroni's correction over each outcome's family of contrasts (7 with an interval" in text
    line = next(t for t in text.splitlines() if t.startswith("Effect of A: false → true"))
    assert "not resolved after Bonferroni correction" in line and "unadjusted p = 0.02" in line
    assert "excludes 0" not in line
    header, rows = render.effect_rows(a)
    assert "95% simultaneous CI" in header and "p (Bonferroni)" in header


def analysis_of_factorial(tmp_path: Path) -> stats.Analysis:
    """The factorial above as records: val_acc is y at every epoch (best epoch = the lowest val loss, 1)."""
    i = 0
    for _, r in factorial_runs().iterrows():
        config = {**BASE_CONFIG, "model.dropout": 0.0, "seed": int(r["seed"]), "trainer.epochs": 2,
                  "A": bool(r["A"]), "B": bool(r["B"])}
        rows = [{"seed": int(r["seed"]), "epoch": e, "step": e, "time_s": 0.1 * e, "lr": 0.001,
                 "fit_loss": 1.0, "fit_acc": r["y"], "val_loss": vl, "val_acc": r["y"], "gap_loss": vl - 1.0,
                 "gap_acc": 0.0} for e, vl in ((0, 2.0), (1, 1.5), (2, 1.6))]
        write_job(tmp_path / str(i), config, rows)
        i += 1
    return stats.analyze(load.load_study([tmp_path]))


# ---------------------------------------------------------------- 2. best vs runner-up


def test_best_vs_runner_up_is_their_paired_difference(tmp_path):
    a = analysis_of_factorial(tmp_path)
    d = a.best_vs_runner_up
    assert (d["best"], d["runner_up"]) == ("A=true, B=true", "A=false, B=true")
    # paired over the 5 seeds: (y11 - y01) = A_LUCK + NOISE
    diff = np.add(A_LUCK, NOISE)
    test = sps.ttest_1samp(diff, 0)
    assert d["paired"] and d["n"] == 5 and d["estimate"] == pytest.approx(diff.mean())
    assert (d["ci_lo_raw"], d["ci_hi_raw"]) == (pytest.approx(test.confidence_interval().low),
                                                pytest.approx(test.confidence_interval().high))
    # The best was picked among 4 cells: simultaneous over its 3 comparisons with the others.
    adj = test.confidence_interval(confidence_level=1 - 0.05 / 3)
    assert d["family_size"] == 3 and d["ci_lo"] == pytest.approx(adj.low) and d["ci_hi"] == pytest.approx(adj.high)
    assert d["p_adj"] == pytest.approx(3 * test.pvalue) and d["resolved"] == (adj.low > 0)
    # over all 5 x 5 run pairs, not only the paired ones
    x = np.add(BASE, B_REAL) + diff
    y = np.add(BASE, B_REAL)
    assert d["prob_improvement"] == pytest.approx(np.mean([xi > yj for xi in x for yj in y]))
    assert "paired over 5 shared seeds" in d["text"] and "probability of improvement" in d["text"]
    # said as what it is: read after "paired over 5 shared seeds", a share of 94% looked like 4.7 of 5 seeds
    assert "of the 25 run pairs, each of its runs against each of the other's (the probability" in d["text"]
    assert "simultaneous over the 3 comparisons" in d["text"]
    assert d["text"] in " ".join(render.findings(a))


def test_the_runner_up_family_counts_a_cell_that_lost_every_run_and_says_what_diverged(tmp_path):
    """The best was picked among every cell that ran, also one whose runs all
    diverged: with it left out of k the correction was smaller (none at all
    with one such cell of three), and the same contrast read "resolved" here
    and "not resolved" in the effects. The best cell's own divergence is named."""
    from regbench.report.synth import write_sweep
    first = stats.analyze(load.load_study([write_sweep(tmp_path / "a", dropouts=(0.0, 0.5), seeds=(0, 1, 2), epochs=6,
                                                     diagnostics=False)]))
    best = first.best_vs_runner_up["best"]
    cell = lambda name: (float(name.split(", ")[0].split("=")[1]), name.split("=")[-1] == "true")  # noqa: E731
    other = next(c for c in first.ranked().index[::-1] if c not in (best, first.best_vs_runner_up["runner_up"]))
    diverged = [(*cell(other), s) for s in (0, 1, 2)] + [(*cell(best), 2)]
    a = stats.analyze(load.load_study([write_sweep(tmp_path / "b", dropouts=(0.0, 0.5), seeds=(0, 1, 2), epochs=6,
                                                   diagnostics=False, diverged=diverged)]))
    d = a.best_vs_runner_up
    assert len(a.ranked()) == 3 and d["family_size"] == 3  # 4 cells ran: 3 comparisons of the best with the others
    assert "simultaneous over the 3 comparisons" in d["text"]
    if d["best"] == best:
        # after the verdict, not between the estimate and its interval
        assert d["text"].endswith(f"not resolved. {best}'s values are over its runs that did not diverge: 1 of 3 "
                                  "diverged.") or d["text"].endswith(f"resolved. {best}'s values are over its runs "
                                                                     "that did not diverge: 1 of 3 diverged.")


def test_a_best_cell_behind_on_the_shared_seeds_is_not_said_to_lead(tmp_path):
    """Ranked on its mean over seeds 0-2, compared with the runner-up on the two
    seeds they share: it "led dropout=0.5 by -5.5 pp"."""
    for s, acc in ((0, "0.60"), (1, "0.60"), (2, "0.90")):
        job(tmp_path, f"a{s}", HEADER + u_shaped(s, acc), seed=s)
    for s, acc in ((0, "0.65"), (1, "0.66")):
        job(tmp_path, f"b{s}", HEADER + u_shaped(s, acc), seed=s, dropout=0.5)
    d = stats.analyze(load.load_study([tmp_path])).best_vs_runner_up
    assert d["best"] == "dropout=0" and d["estimate"] == pytest.approx(-0.055)
    assert "leads" not in d["text"] and not d["resolved"]
    assert d["text"].startswith("Best vs runner-up: dropout=0 ranks first on its mean, but on the seeds it shares with "
                                "dropout=0.5 it trails by 5.5 pp [")
    # the interval is of the amount the text states (runner-up - best): it holds 5.5, not -5.5
    lo, hi = (float(v.replace("+", "").replace("−", "-")) for v in d["text"].split("trails by 5.5 pp [")[1].split("]")[0].split(", "))
    assert lo < 5.5 < hi and (lo, hi) == (pytest.approx(-100 * d["ci_hi"], abs=0.051), pytest.approx(-100 * d["ci_lo"], abs=0.051))


def test_the_answer_says_where_an_effect_measured_on_part_of_the_grid_was_measured(tmp_path):
    """The effects table said "at batchnorm=false only (complete sub-grid ...)"; the answer did not."""
    import shutil as sh

    from regbench.report.synth import write_sweep
    root = write_sweep(tmp_path, dropouts=(0.0, 0.5), seeds=(0, 1, 2), epochs=6, diagnostics=False)
    for j in (9, 10, 11):  # every run of dropout=0.5, batchnorm=true
        sh.rmtree(root / str(j))
    a = stats.analyze(load.load_study([root]))
    parts = dict(p.split(": ", 1) for p in a.headline.split("; ") if not p.startswith(("interaction", "at one")))
    assert "(measured at batchnorm=false only)" in parts["dropout 0 → 0.5"], a.headline
    assert "(measured at dropout=0 only)" in parts["batchnorm false → true"], a.headline


def test_the_answer_carries_the_training_budget_and_effects_at_one_level_only(tmp_path, whole_lines):
    """Every cell was still improving at the last epoch, and the answer did not say so (only the caveats far
    below did); a factor not resolved on average but resolved at one level of another read as only "not resolved"."""
    from regbench.report.synth import write_sweep
    root = write_sweep(tmp_path, dropouts=(0.0, 0.5), seeds=(0, 1, 2), epochs=6, diagnostics=False,
                       diverged=[(0.5, True, 2)])
    a = stats.analyze(load.load_study([root]))
    assert a.cells["still_improving"].all()
    text = render.answer(a)
    assert text.endswith("(every cell was still improving at the last epoch: this is the answer at this training "
                         "budget; train longer)")
    eff = a.effects[(a.effects["outcome"] == a.best_col)]
    main_bn = eff[(eff["kind"] == "main") & (eff["factor"] == "model.batchnorm")].iloc[0]
    simple_bn = eff[(eff["kind"] == "simple") & (eff["factor"] == "model.batchnorm") & eff["resolved"]]
    assert not main_bn["resolved"] and len(simple_bn)
    shown = eff[(eff["kind"] == "simple") & eff["resolved"]]  # of the factors not resolved on average
    shown = shown[shown["factor"].isin([f for f in a.study.factors if not eff[(eff["kind"] == "main") & (eff["factor"] == f)]["resolved"].any()])]
    first = shown.iloc[0]
    assert (f"resolved at one level of another factor (not a tested difference between levels): {first['contrast']} "
            f"at {first['at']} ") in a.headline
    assert (f" and {len(shown) - 2} more" in a.headline) == (len(shown) > 2)
    # "only" claimed a difference between the levels, which the interaction tests (not resolved in the audit's sweep)
    assert "factor only" not in a.headline
    # the short answer (a headline over MAX_ANSWER characters) dropped them
    brief = stats.headline(a.effects, a.best_col, a.study.factors, brief=True)
    assert brief.endswith(f"{len(shown)} more effect{'s' if len(shown) > 1 else ''} resolved at one level of another factor "
                          "(under Effects)"), brief
    # the console says it once for the cells whose only caveat it is (it said it once per cell)
    from pathlib import Path as P

    from regbench.report import cli
    console = cli.summary(a, P("out"), 0, ["png"], 0.0)
    plain = a.cells.index[a.cells["caveats"].str.startswith("still improving")].tolist()
    assert len(plain) >= 3 and console.count("still improving") == 1 + (len(a.cells) - len(plain))
    assert f"still improving: lowest val loss at the last epoch in most runs of {len(plain)} cells (" in console


def test_one_seed_says_no_interval_never_ci(tmp_path):
    for i, (p, acc) in enumerate([(0.0, 0.6), (0.5, 0.55)]):
        config = {**BASE_CONFIG, "model.dropout": p, "trainer.epochs": 2}
        rows = [{"seed": 0, "epoch": e, "time_s": 0.1 * e, "val_loss": vl, "val_acc": acc}
                for e, vl in ((0, 2.0), (1, 1.5), (2, 1.6))]
        write_job(tmp_path / str(i), config, rows)
    a = stats.analyze(load.load_study([tmp_path]))
    text = " ".join(render.findings(a))
    assert "1 seed: no interval" in text and "CI, n=1" not in text
    assert a.best_vs_runner_up["text"].count("1 seed: no interval") == 1
    assert not a.best_vs_runner_up["resolved"]


# ---------------------------------------------------------------- 3. simple effects, missing cells


def small_factorial(drop_cell: tuple | None = None) -> pd.DataFrame:
    """2 x 2, seeds 0 and 1 (as in test_report_stats), optionally without one cell."""
    y = {
        (0, False, False): 0.50, (0, True, False): 0.60, (0, False, True): 0.55, (0, True, True): 0.70,
        (1, False, False): 0.40, (1, True, False): 0.52, (1, False, True): 0.46, (1, True, True): 0.60,
    }
    return pd.DataFrame([
        {"seed": s, "A": a, "B": b, "cell": f"A={str(a).lower()}, B={str(b).lower()}", "y": v, "used": True}
        for (s, a, b), v in y.items() if (a, b) != drop_cell
    ])


def test_simple_effects_by_hand():
    eff, seeds = stats.contrasts(small_factorial(), ["A", "B"], LEVELS, "y")
    simple = eff[eff["kind"] == "simple"].set_index(["factor", "at"])
    # A at B=true: seed 0: 0.70 - 0.55 = 0.15, seed 1: 0.60 - 0.46 = 0.14
    assert simple.loc[("A", "B=true"), "estimate"] == pytest.approx(0.145)
    assert simple.loc[("A", "B=false"), "estimate"] == pytest.approx(0.11)  # 0.10, 0.12
    assert simple.loc[("B", "A=true"), "estimate"] == pytest.approx(0.09)  # 0.10, 0.08
    assert simple.loc[("A", "B=true"), "contrast"] == "A: false → true"
    per = seeds[(seeds["kind"] == "simple") & (seeds["at"] == "B=true")].set_index("seed")["value"]
    assert per.to_dict() == {0: pytest.approx(0.15), 1: pytest.approx(0.14)}


def test_a_missing_cell_gives_main_effects_from_the_complete_sub_grid():
    eff, _ = stats.contrasts(small_factorial(drop_cell=(True, True)), ["A", "B"], LEVELS, "y")
    main = eff[eff["kind"] == "main"].set_index("factor")
    assert main.loc["A", "estimate"] == pytest.approx(0.11) and main.loc["A", "n"] == 2  # at B=false only
    assert main.loc["A", "scope"].startswith("at B=false only")
    assert main.loc["B", "estimate"] == pytest.approx(0.055)  # at A=false only: 0.05, 0.06
    assert math.isnan(eff.loc[eff["kind"] == "interaction", "estimate"].iloc[0])  # needs all four cells
    simple = eff[eff["kind"] == "simple"].set_index(["factor", "at"])
    assert math.isnan(simple.loc[("A", "B=true"), "estimate"]) and simple.loc[("A", "B=true"), "n"] == 0
    # A at B=false is the main effect of A (measured there only): one contrast, not two in the family
    assert ("A", "B=false") not in simple.index and ("B", "A=false") not in simple.index
    assert ("A", "B=true") in simple.index and ("B", "A=true") in simple.index
    assert stats.adjust(eff)["family_size"].max() == 2  # the two main effects (it was 4: each also as a simple effect)
    full, _ = stats.contrasts(small_factorial(), ["A", "B"], LEVELS, "y")
    assert (full["scope"] == "").all()


# ---------------------------------------------------------------- 4. data-quality guards, on records

HEADER = "seed,epoch,time_s,val_loss,val_acc\n"


def job(root: Path, name: str, metrics: str, seed=0, dropout=0.0, epochs=3, seeds=None, config=None) -> Path:
    """A job whose metrics.csv is exactly ``metrics`` (a few hand-written rows)."""
    cfg = {**BASE_CONFIG, "seed": seed, "model.dropout": dropout, "trainer.epochs": epochs, **(config or {})}
    path = write_job(root / name, cfg, [{"seed": s, "epoch": 0, "time_s": 0.0} for s in (seeds or [seed])],
                     seeds=seeds)
    (path / "metrics.csv").write_text(metrics)
    return path


def u_shaped(seed: int, acc_at_best: str = "0.6") -> str:
    """val_loss 1.0, 0.8, 0.7, 0.9: lowest at epoch 2 of 3 (not the last)."""
    return (f"{seed},0,0.0,1.0,0.3\n{seed},1,1.0,0.8,0.5\n{seed},2,2.0,0.7,{acc_at_best}\n"
            f"{seed},3,3.0,0.9,0.58\n")


def falling(seed: int) -> str:
    """val_loss falls to the last epoch: still improving."""
    return f"{seed},0,0.0,1.0,0.3\n{seed},1,1.0,0.8,0.5\n{seed},2,2.0,0.7,0.6\n{seed},3,3.0,0.6,0.62\n"


def test_a_copied_folder_does_not_change_n_or_the_intervals(tmp_path):
    for s in range(3):
        job(tmp_path / "sweep", f"a{s}", HEADER + u_shaped(s, f"0.6{s}"), seed=s)
        job(tmp_path / "sweep", f"b{s}", HEADER + u_shaped(s, f"0.5{s + 2}"), seed=s, dropout=0.5)
    once = stats.analyze(load.load_study([tmp_path / "sweep"]))
    shutil.copytree(tmp_path / "sweep", tmp_path / "copy")
    twice = stats.analyze(load.load_study([tmp_path / "sweep", tmp_path / "copy"]))
    assert twice.cells["best_val_acc_n"].tolist() == once.cells["best_val_acc_n"].tolist() == [3, 3]
    cols = ["estimate", "ci_lo_adj", "ci_hi_adj", "n", "p_adj"]
    pd.testing.assert_frame_equal(twice.effects[cols], once.effects[cols])
    assert twice.best_vs_runner_up["n"] == once.best_vs_runner_up["n"] == 3


def test_a_used_run_without_a_value_at_its_best_epoch_is_flagged_and_named(tmp_path):
    job(tmp_path, "ok0", HEADER + u_shaped(0), seed=0)
    job(tmp_path, "ok1", HEADER + u_shaped(1), seed=1)
    job(tmp_path, "hole", HEADER + u_shaped(2, acc_at_best=""), seed=2)  # val_acc empty at its best epoch
    a = stats.analyze(load.load_study([tmp_path]))
    runs = a.runs.set_index("run")
    assert runs.loc["hole:2", "used"] and runs.loc["hole:2", "lacking"] == "best_val_acc"
    assert (runs.loc[["ok0:0", "ok1:1"], "lacking"] == "").all()
    cell = a.cells.loc["all runs"]
    assert (cell["n_used"], cell["best_val_acc_n"], cell["final_val_acc_n"]) == (3, 2, 3)
    assert "best_val_acc missing in 1 used run (seed 2: hole:2): n = 2 of 3" in cell["caveats"]
    text = " ".join(render.findings(a))
    assert "hole:2 (best_val_acc)" in text
    header, rows = render.cell_rows(a)
    assert rows[0][2].endswith("(n=2)")  # the value shows its smaller n
    flagged = {r[0]: r for r in render.flagged_rows(a)[1]}
    assert "no value for best_val_acc" in flagged["hole:2"][6]


def test_an_older_run_without_gap_columns_is_flagged(tmp_path):
    gap_header = "seed,epoch,time_s,val_loss,val_acc,gap_loss\n"
    job(tmp_path, "new", gap_header + "".join(line + ",0.1\n" for line in u_shaped(0).splitlines()), seed=0)
    job(tmp_path, "old", HEADER + u_shaped(1), seed=1)
    cell = stats.analyze(load.load_study([tmp_path])).cells.loc["all runs"]
    assert cell["final_gap_loss_n"] == 1 and "final_gap_loss missing in 1 used run (seed 1: old:1)" in cell["caveats"]


def test_a_cell_whose_best_epoch_is_the_last_is_flagged_still_improving(tmp_path):
    for s in range(3):
        job(tmp_path, f"short{s}", HEADER + (falling(s) if s < 2 else u_shaped(s)), seed=s)  # 2 of 3 at the last
        job(tmp_path, f"long{s}", HEADER + (falling(s) if s < 1 else u_shaped(s)), seed=s, dropout=0.5)  # 1 of 3
    a = stats.analyze(load.load_study([tmp_path]))
    short, long = a.cells.loc["dropout=0"], a.cells.loc["dropout=0.5"]
    assert short["still_improving"] and short["n_best_at_last"] == 2
    assert "still improving: lowest val loss at the last epoch in 2 of 3 runs (train longer)" in short["caveats"]
    assert not long["still_improving"] and "still improving" not in long["caveats"]
    text = " ".join(render.findings(a))
    assert "Still improving at the last epoch" in text and "train longer" in text
    # A cell still improving is never called the weakest overfitting.
    assert "weakest in dropout=0 " not in text


def test_time_to_target_is_censored_k_of_n_and_a_median(tmp_path):
    # target 0.6: seed 0 reaches it at epoch 2, seed 1 at epoch 3, seed 2 never (0.58 max)
    rows = {0: HEADER + u_shaped(0), 1: HEADER + falling(1).replace("1,2,2.0,0.7,0.6", "1,2,2.0,0.7,0.55"),
            2: HEADER + u_shaped(2, "0.58").replace("2,3,3.0,0.9,0.58", "2,3,3.0,0.9,0.5")}
    for s, text in rows.items():
        job(tmp_path, f"j{s}", text, seed=s)
    a = stats.analyze(load.load_study([tmp_path]), target=0.6)
    cell = a.cells.loc["all runs"]
    assert cell["n_reached"] == 2 and cell["epochs_to_target_median"] == 3  # [2, 3, never]
    assert cell["seconds_to_target_median"] == 3.0
    header, rows = render.cell_rows(a)
    assert rows[0][header.index("epochs to target (median, k/n reached)")] == "3.0, 2/3 reached"
    assert "(median 3.0 epochs, 2/3 reached)" in " ".join(render.findings(a))


def test_time_with_replicas_is_per_seed_with_a_positive_interval(tmp_path):
    # Two jobs, each training seeds 0 and 1 together: metrics.csv has the job's clock for both seeds.
    for name, clock, dropout in (("a", 4.0, 0.0), ("b", 8.0, 0.0), ("c", 2.0, 0.5)):
        seed0 = 0 if name != "b" else 2
        text = HEADER + "".join(
            f"{s},{e},{clock * e / 3},{[1.0, 0.8, 0.7, 0.9][e]},0.5\n" for s in (seed0, seed0 + 1) for e in range(4))
        job(tmp_path, name, text, seed=seed0, seeds=[seed0, seed0 + 1], dropout=dropout,
            config={"trainer.replicas": 2})
    study = load.load_study([tmp_path])
    assert (study.runs["seeds_together"] == 2).all()
    last = study.epochs[study.epochs["epoch"] == 3].set_index("run")["time_s"]
    assert last["a:0"] == last["a:1"] == 2.0 and last["b:2"] == 4.0  # the job's clock / 2
    a = stats.analyze(study)
    cell = a.cells.loc["dropout=0"]
    assert cell["n_jobs"] == 2 and cell["final_time_s_n"] == 2  # two clocks, not four seeds
    assert cell["final_time_s_mean"] == 3.0
    # two clocks, 2 s and 4 s: the t interval 3 ± 12.7 (1 degree of freedom), cut at 0
    assert cell["final_time_s_ci_lo"] == 0.0 and cell["final_time_s_ci_hi"] == pytest.approx(3.0 + sps.t.ppf(0.975, 1))
    assert math.isnan(a.cells.loc["dropout=0.5", "final_time_s_ci_lo"])  # one job: one clock, no interval
    assert "Times are per seed" in " ".join(render.findings(a))


def one_untested_one_tested(outcome: str) -> pd.DataFrame:
    """Two main effects, adjusted: A from 1 shared seed (no test), B from 3 seeds."""
    rows = [{"outcome": outcome, "kind": "main", "factor": "A", "contrast": "A: 0 → 1", "at": "",
             "estimate": 0.05, "ci_lo": np.nan, "ci_hi": np.nan, "n": 1, "std": np.nan},
            {"outcome": outcome, "kind": "main", "factor": "B", "contrast": "B: 0 → 1", "at": "",
             "estimate": 0.01, "ci_lo": -0.2, "ci_hi": 0.22, "n": 3, "std": 0.1}]
    return stats.adjust(pd.DataFrame(rows))


def test_the_answer_says_not_tested_where_no_contrast_of_a_factor_had_a_test():
    eff = one_untested_one_tested("best_val_acc")
    text = stats.headline(eff, "best_val_acc", ["A", "B"])
    assert text == "A: not tested (1 seed shared by its cells); B 0 → 1: +1.0 pp [-23.8, +25.8], not resolved after Bonferroni correction"


def test_a_cell_that_never_learned_is_named_and_never_the_weakest_overfitting(tmp_path):
    for s in range(3):
        job(tmp_path, f"a{s}", HEADER + u_shaped(s), seed=s)
        job(tmp_path, f"b{s}", HEADER + "".join(f"{s},{e},{e},{1.0 + 0.01 * e},0.1\n" for e in range(4)),
            seed=s, dropout=0.5)
    a = stats.analyze(load.load_study([tmp_path]))
    assert a.cells.loc["dropout=0.5", "never_learned"] and not a.cells.loc["dropout=0", "never_learned"]
    assert "did not learn: lowest val loss at epoch 0 (the untrained model) in 3 of 3 runs" in a.cells.loc["dropout=0.5", "caveats"]
    text = " ".join(render.findings(a))
    assert "Did not learn (lowest validation loss at epoch 0, the untrained model, in most runs" in text
    assert "dropout=0.5 (rise" not in text and "Overfitting in dropout=0:" in text


def test_the_settings_table_leaves_out_keys_the_dataset_does_not_read(tmp_path):
    for s in range(2):
        job(tmp_path, f"a{s}", HEADER + u_shaped(s), seed=s,
            config={"data.n_features": 20, "data.n_classes": 5, "data.path": None, "optim.name": "adam", "optim.momentum": 0.9})
    a = stats.analyze(load.load_study([tmp_path]))
    header, rows = render.setting_rows(a)
    keys = dict(rows)
    assert keys["data (as trained)"] == "4000 train / 1000 val / 0 test examples, 40 features, 10 classes"
    assert keys["data.name"] == "mnist1d" and keys["optim.name"] == "adam"
    assert not {"data.n_features", "data.n_classes", "data.path", "optim.momentum"} & set(keys)


def test_a_contrast_without_a_test_says_so_in_the_forest_plot():
    from regbench.report import figures
    eff = one_untested_one_tested("y")
    ax = figures.plot_forest(eff, pd.DataFrame(columns=stats.SEED_COLUMNS), "y")
    texts = [t.get_text().strip() for t in ax.texts]
    assert texts.count("no test: 1 seed") == 1  # A only: B has its interval


def test_the_forest_plot_says_where_a_main_effect_on_part_of_the_grid_was_measured():
    """The effects table and the answer say "(at lr=0.05 only)"; the forest plot's label said nothing."""
    from regbench.report import figures
    eff = one_untested_one_tested("y")
    eff["scope"] = ["at lr=0.05 only (the other settings have no usable runs)", ""]
    ax = figures.plot_forest(eff, pd.DataFrame(columns=stats.SEED_COLUMNS), "y")
    labels = [t.get_text().strip() for t in ax.get_yticklabels()]
    assert "A: 0 → 1  (at lr=0.05 only)" in labels and "B: 0 → 1" in labels, labels


def test_divergence_per_cell_is_stated_beside_the_effects(tmp_path):
    from regbench.report.synth import write_sweep
    write_sweep(tmp_path, dropouts=(0.0, 0.5), seeds=(0, 1, 2), epochs=6, diagnostics=False,
                diverged=[(0.5, False, 1), (0.5, False, 2)])
    text = " ".join(render.findings(stats.analyze(load.load_study([tmp_path]))))
    assert "Diverged (runs per cell): dropout=0.5, batchnorm=false 2/3; none in " in text
    assert "Means and effects here are over the runs that did not diverge" in text


def fused_pair(root: Path, fused: bool, later: float = 3.0) -> None:
    """dropout 0 and 0.5, seeds 0-2; dropout 0.5 reaches 0.55 an epoch later (u_shaped against falling)
    and, in seconds, ``later`` s per epoch; ``fused``: the summaries say a fused group shared the clock."""
    from regbench.records import read_summary, write_summary
    for s in range(3):
        fast = job(root, f"a{s}", HEADER + u_shaped(s), seed=s)
        slow = job(root, f"b{s}", HEADER + "".join(f"{s},{e},{later * e},{1.0 - 0.1 * e},{[0.3, 0.4, 0.5, 0.6][e]}\n"
                                                    for e in range(4)), seed=s, dropout=0.5)
        if fused:
            for path in (fast, slow):
                write_summary(path, {**read_summary(path), "fused_group": {"jobs": 6, "seeds": 6}})


def test_cells_that_shared_a_fused_groups_clock_are_not_ranked_by_seconds(tmp_path):
    fused_pair(tmp_path / "alone", fused=False)
    text = " ".join(render.findings(stats.analyze(load.load_study([tmp_path / "alone"]), target=0.55)))
    assert "Fastest to validation accuracy ≥ 55%: dropout=0 (median 2.0 epochs" in text
    assert "in training time per seed: dropout=0 " in text and "fused groups" not in text
    fused_pair(tmp_path / "fused", fused=True)
    study = load.load_study([tmp_path / "fused"])
    assert study.runs["shared_clock"].all()
    text = " ".join(render.findings(stats.analyze(study, target=0.55)))
    assert "Fastest to validation accuracy ≥ 55%: dropout=0 (median 2.0 epochs" in text  # epochs still compare
    assert "in training time per seed" not in text
    assert "trained in fused groups" in text and "hydra/launcher=basic" in text
    # and the figures of seconds say so under them, which a figure of runs timed alone does not
    from regbench.report import figures

    def captions(root):
        a = stats.analyze(load.load_study([root]), target=0.55)
        styles = figures.cell_styles(a.cells[a.study.factors], a.study.levels, None, None)
        return {t.name: t.caption for t in figures.grid_tasks(a, styles, None)[0]}

    fused, alone = captions(tmp_path / "fused"), captions(tmp_path / "alone")
    for name in ("convergence", "time_to_target"):
        assert "not a comparison of speed" in fused[name] and "not a comparison of speed" not in alone[name]
    assert "The broad grey band is the target." in alone["convergence"]
    untargeted = stats.analyze(load.load_study([tmp_path / "alone"]), target=None)
    untargeted.target = None  # no target: no line, and the caption names none
    styles = figures.cell_styles(untargeted.cells[untargeted.study.factors], untargeted.study.levels, None, None)
    conv = next(t for t in figures.grid_tasks(untargeted, styles, None)[0] if t.name == "convergence")
    assert "grey band" not in conv.caption and conv.args[3] is None


def test_fused_jobs_of_several_seeds_get_one_note_on_times(tmp_path):
    """Two notes began "Times are per seed:" one after the other, each saying half."""
    from regbench.records import read_summary, write_summary
    for name, dropout in (("a", 0.0), ("b", 0.5)):
        text = HEADER + "".join(f"{s},{e},{e},{1.0 - 0.1 * e},0.5\n" for s in (0, 1) for e in range(4))
        path = job(tmp_path, name, text, seed=0, seeds=[0, 1], dropout=dropout, config={"trainer.replicas": 2})
        write_summary(path, {**read_summary(path), "fused_group": {"jobs": 2, "seeds": 4}})
    notes = [f for f in render.findings(stats.analyze(load.load_study([tmp_path]))) if "Times are per seed" in f]
    assert len(notes) == 1 and "fused groups" in notes[0] and "A job of R seeds (R = 2 here)" in notes[0], notes


def test_cells_that_tie_to_the_target_have_no_fastest_or_slowest(tmp_path):
    for s in range(3):  # both cells reach 55% at epoch 2 in every run
        job(tmp_path, f"a{s}", HEADER + u_shaped(s), seed=s)
        job(tmp_path, f"b{s}", HEADER + u_shaped(s, "0.61"), seed=s, dropout=0.5)
    text = " ".join(render.findings(stats.analyze(load.load_study([tmp_path]), target=0.55)))
    assert "Every cell reaches validation accuracy ≥ 55% alike: median 2.0 epochs, 3/3 reached" in text
    assert "Fastest to" not in text and "; slowest:" not in text


def test_the_epoch_of_lowest_val_loss_has_no_interval_past_the_epochs_trained(tmp_path):
    # lowest at epoch 3 (the last) in two runs, at 1 in the third: mean 2.33, t interval [-0.54, 5.2]
    for s, best in enumerate((3, 3, 1)):
        losses = [1.0, 0.8, 0.7, 0.6] if best == 3 else [1.0, 0.6, 0.7, 0.8]
        job(tmp_path, f"a{s}", HEADER + "".join(f"{s},{e},{e},{losses[e]},0.5\n" for e in range(4)), seed=s)
    (cell,) = (row for _, row in stats.analyze(load.load_study([tmp_path])).cells.iterrows())
    assert cell["best_epoch_mean"] == pytest.approx(7 / 3)
    assert cell["best_epoch_ci_lo"] == 0.0 and cell["best_epoch_ci_hi"] == 3.0


def test_cells_that_tie_for_fastest_are_all_named(tmp_path):
    """Three cells, two of them reaching the target at the same epoch in every
    run: "Fastest: dropout=0" named one of the tied pair (the first in order)."""
    for s in range(3):
        job(tmp_path, f"a{s}", HEADER + u_shaped(s), seed=s)
        job(tmp_path, f"b{s}", HEADER + u_shaped(s, "0.61"), seed=s, dropout=0.3)
        job(tmp_path, f"c{s}", HEADER + "".join(f"{s},{e},{e},1.0,{[0.3, 0.4, 0.5, 0.6][e]}\n" for e in range(4)),
            seed=s, dropout=0.5)
    text = " ".join(render.findings(stats.analyze(load.load_study([tmp_path]), target=0.55)))
    assert "Fastest to validation accuracy ≥ 55%: dropout=0; dropout=0.3 (tied: median 2.0 epochs, 3/3 reached each)" in text
    assert "; slowest: dropout=0.5 (median 3.0 epochs, 3/3 reached)" in text


def test_an_automatic_target_the_untrained_models_meet_is_dropped(tmp_path):
    # The weakest cell never gets better than its start (0.3 at epoch 0): nothing to time.
    for s in range(2):
        job(tmp_path, f"a{s}", HEADER + u_shaped(s), seed=s)
        job(tmp_path, f"b{s}", HEADER + "".join(f"{s},{e},{e},1.0,0.3\n" for e in range(4)), seed=s, dropout=0.5)
    a = stats.analyze(load.load_study([tmp_path]))
    assert a.target is None and "epochs_to_target" not in a.runs
    assert "Fastest" not in " ".join(render.findings(a))


def test_a_fused_job_is_charged_its_share_of_the_groups_clock(make_cfg, tmp_path, monkeypatch):
    from regbench import train
    from regbench.records import read_summary
    overrides = [["model.dropout=0", "seed=0"], ["model.dropout=0.3", "seed=1"], ["model.dropout=0.5", "seed=2"]]
    jobs = [(make_cfg(*o), tmp_path / str(i), o) for i, o in enumerate(overrides)]
    ticks = iter(range(10**6))
    monkeypatch.setattr(train.time, "perf_counter", lambda: 3.0 * next(ticks))  # every clock reading 3 s later
    train.run_fused_group(jobs)
    for i in range(3):
        summary = read_summary(tmp_path / str(i))
        assert summary["fused_group"] == {"jobs": 3, "seeds": 3}
        times = pd.read_csv(tmp_path / str(i) / "metrics.csv")["time_s"]
        # each epoch's training is timed as 3 s (two readings), shared by the group's 3 seeds: 1 s each
        assert np.diff(times.to_numpy()) == pytest.approx(1.0), times.tolist()


# ---------------------------------------------------------------- 7. direction, factors; 8. test beside val


def test_runtime_keys_never_become_factors(tmp_path):
    for i, extra in enumerate([{"trainer.diagnostics": True, "trainer.test": True, "threads": 1},
                               {"trainer.diagnostics": False, "trainer.test": False, "threads": 4}]):
        job(tmp_path, str(i), HEADER + u_shaped(i), seed=i, config={**extra, "trainer.progress": bool(i)})
    study = load.load_study([tmp_path])
    assert study.factors == [] and study.runs["used"].all()


def test_a_loss_metric_ranks_lowest_first(tmp_path):
    for s in range(2):
        job(tmp_path, f"a{s}", HEADER + u_shaped(s), seed=s)  # best val_loss 0.7
        job(tmp_path, f"b{s}", HEADER + u_shaped(s).replace(",0.7,", ",0.75,"), seed=s, dropout=0.5)
    a = stats.analyze(load.load_study([tmp_path]), metric="val_loss")
    assert a.ranked().index[0] == "dropout=0" and a.best_vs_runner_up["best"] == "dropout=0"
    assert a.best_vs_runner_up["estimate"] == pytest.approx(-0.05)


def test_test_accuracy_is_shown_beside_validation_with_the_selection_sentence(tmp_path):
    header = "seed,epoch,time_s,val_loss,val_acc,test_acc\n"
    for s in range(2):
        lines = [f"{line},{t}" for line, t in zip(u_shaped(s).splitlines(), ("0.3", "0.45", "0.55", "0.57"))]
        job(tmp_path, f"j{s}", header + "\n".join(lines) + "\n", seed=s)
    a = stats.analyze(load.load_study([tmp_path]))
    assert a.cells.loc["all runs", "best_test_acc_mean"] == pytest.approx(0.55)  # at the epoch of lowest val loss
    header, rows = render.cell_rows(a)
    assert header[2:4] == ["validation accuracy at lowest val loss", "test accuracy at the same epoch"]
    text = " ".join(render.findings(a))
    assert "biased upward" in text and "55.0" in text


def test_each_effects_table_says_whether_its_outcome_is_the_primary_one(tmp_path):
    a = analysis_of_factorial(tmp_path)
    titles = [t["title"] for t in render.effects_section(a, [])["tables"]]
    assert titles[0].endswith("(primary outcome)") and titles[0].startswith("validation accuracy at lowest val loss")
    assert len(titles) > 1 and all("secondary outcome, corrected within its own family" in t for t in titles[1:])
    assert "best_test_acc" not in a.effect_outcomes  # these records have no test split


def test_test_accuracy_at_the_val_chosen_epoch_is_an_effects_outcome(tmp_path):
    header = "seed,epoch,time_s,val_loss,val_acc,test_acc\n"
    for s in range(3):
        for name, dropout, bump in (("a", 0.0, 0.0), ("b", 0.5, 0.05)):
            rows = "".join(f"{s},{e},{e},{1.0 - 0.1 * e},{0.3 + 0.1 * e + bump},{0.31 + 0.1 * e + bump + 0.01 * s}\n"
                           for e in range(4))
            job(tmp_path, f"{name}{s}", header + rows, seed=s, dropout=dropout)
    a = stats.analyze(load.load_study([tmp_path]))
    assert a.effect_outcomes[:2] == ["best_val_acc", "best_test_acc"]
    row = a.effects[(a.effects["outcome"] == "best_test_acc") & (a.effects["kind"] == "main")].iloc[0]
    assert row["estimate"] == pytest.approx(0.05)  # test accuracy at epoch 3, each run's lowest val loss


def test_the_epoch_of_lowest_val_loss_and_the_rise_after_it_have_intervals_that_stay_positive(tmp_path):
    for s, (best_at, rise) in enumerate([(0, 0.5), (0, 0.4), (3, 0.0)]):
        losses = [1.0, 1.1, 1.2, 1.0 + rise] if best_at == 0 else [1.0, 0.9, 0.8, 0.7]
        job(tmp_path, f"a{s}", HEADER + "".join(f"{s},{e},{e},{v},0.5\n" for e, v in enumerate(losses)), seed=s)
    cell = stats.analyze(load.load_study([tmp_path])).cells.loc["all runs"]
    for col in ("best_epoch", "val_loss_rise"):
        assert 0 <= cell[f"{col}_ci_lo"] <= cell[f"{col}_mean"] <= cell[f"{col}_ci_hi"], col


def test_the_answer_gives_the_estimates_of_levels_not_resolved():
    """A factor of several levels none (or only some) of which is resolved: the
    answer said "no resolved effect" (or "other levels: no resolved effect"),
    hiding dropout 0.5's -10.4 pp."""
    rows = [{"outcome": "best_val_acc", "kind": "main", "factor": "D", "contrast": f"D: 0 → {p}", "at": "",
             "estimate": est, "ci_lo": lo, "ci_hi": hi, "n": 3, "std": 0.05}
            for p, est, lo, hi in ((0.1, 0.012, -0.01, 0.03), (0.5, -0.104, -0.2, -0.01), (0.3, 0.31, 0.3, 0.32))]
    eff = stats.adjust(pd.DataFrame(rows[:2]))
    assert stats.headline(eff, "best_val_acc", ["D"]) == (
        "D: no level resolved after Bonferroni correction (estimates from -10.4 pp to +1.2 pp)")
    eff = stats.adjust(pd.DataFrame(rows))
    text = stats.headline(eff, "best_val_acc", ["D"])
    assert text.startswith("D: 0 → 0.3 by +31.0 pp [") and text.endswith(
        "resolved after Bonferroni correction (other levels not resolved: estimates from -10.4 pp to +1.2 pp)"), text
    # a level whose cells share 1 seed is estimated, never tested: said so, not counted among "not resolved" alone
    one_seed = {**rows[0], "contrast": "D: 0 → 0.7", "estimate": -0.128, "ci_lo": np.nan, "ci_hi": np.nan, "n": 1,
                "std": np.nan}
    eff = stats.adjust(pd.DataFrame(rows[:2] + [one_seed]))
    assert stats.headline(eff, "best_val_acc", ["D"]) == (
        "D: no level resolved after Bonferroni correction (estimates from -12.8 pp to +1.2 pp; 1 of 3 not tested)")


def test_the_budget_caveat_counts_the_cells_with_usable_runs_as_such():
    """Two of four cells had no usable run (all diverged): "every cell was still
    improving" read as all four."""
    from types import SimpleNamespace

    cells = pd.DataFrame({"n_used": [3, 3, 0, 0], "still_improving": [True, True, False, False]}, index=list("abcd"))
    assert render._budget(SimpleNamespace(cells=cells)).startswith(" (every cell with usable runs was still improving")
    assert render._budget(SimpleNamespace(cells=cells.iloc[:2])).startswith(" (every cell was still improving")
    cells.loc["b", "still_improving"] = False
    assert render._budget(SimpleNamespace(cells=cells)).startswith(" (1 of 2 cells with usable runs were")


def test_the_unbiased_test_estimate_says_when_it_is_over_fewer_runs(tmp_path):
    """One run without a test value: the sentence gave the test accuracy over 2 runs beside a validation
    value over 3, without saying so (the cells table said n=2)."""
    import csv as _csv

    from regbench.report.synth import write_sweep
    root = write_sweep(tmp_path, dropouts=(0.0, 0.5), seeds=(0, 1, 2), epochs=4, diagnostics=False)
    for metrics in root.rglob("metrics.csv"):
        rows = list(_csv.DictReader(open(metrics)))
        for r in rows:  # the synthetic runs have no test split: seeds 1 and 2 get one, seed 0 none
            r["test_acc"] = "nan" if r["seed"] == "0" else r["val_acc"]
            r["test_loss"] = "nan" if r["seed"] == "0" else r["val_loss"]
        with open(metrics, "w", newline="") as fh:
            w = _csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    a = stats.analyze(load.load_study([root]))
    said = [f for f in render.findings(a) if "is the unbiased estimate" in f]
    assert len(said) == 1 and "(over 2 of its 3 runs), is the unbiased estimate." in said[0], render.findings(a)


def test_resolved_contrasts_on_two_seeds_carry_a_caution(tmp_path):
    """With 2 seeds a contrast has 1 degree of freedom: two seeds 0.125 pp apart made "resolved", identical
    ones "no test", one example further "resolved" again, and nothing on the page said how fragile that is."""
    from regbench.report.synth import write_sweep
    for seeds, cautioned in (((0, 1), True), ((0, 1, 2), False)):
        root = write_sweep(tmp_path / str(len(seeds)), dropouts=(0.0, 0.5), seeds=seeds, epochs=4, diagnostics=False)
        a = stats.analyze(load.load_study([root]))
        eff = a.effects[(a.effects["outcome"] == a.best_col) & a.effects["resolved"].astype(bool)]
        said = [f for f in render.findings(a) if "rest on 2 seeds" in f or "rests on 2 seeds" in f]
        assert bool(said) == (cautioned and len(eff) > 0), (seeds, said)
        if said:
            assert said[0].startswith(f"{len(eff)} resolved contrast") and "Add seeds before relying on" in said[0], said
