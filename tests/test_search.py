"""Optuna searches: the stored search (conf/search/), the study it keeps, and
each trial linked to the records of its job."""

import math
from pathlib import Path

import pytest

from conftest import TINY
from regbench import records
from regbench.cli import OPTUNA_SWEEPER, sweeper_overrides

optuna = pytest.importorskip("optuna", reason="the optuna extra is not installed")


def objective(summary: dict) -> float:
    from regbench.train import _objective  # what the job returned to the sweeper

    return _objective(summary)


def check_trials(study, n: int) -> None:
    """Every trial finished, names an existing job folder, and its value is that job's objective."""
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials()
    assert len(trials) == n
    folders = set()
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE, t
        folder = Path(t.user_attrs["records"])
        assert folder.is_absolute() and (folder / records.SUMMARY_FILE).is_file(), t.user_attrs
        summary = records.read_summary(folder)
        assert t.user_attrs["status"] == summary["status"] == "completed"
        assert math.isclose(t.value, objective(summary), rel_tol=1e-12)
        for key, value in t.params.items():  # the folder is this trial's, not a neighbour's
            assert summary["config"][key] == value, (key, value, summary["config"][key])
        folders.add(folder)
    assert len(folders) == n


def plain(res) -> None:
    out = res.stdout + res.stderr
    assert "\x1b[" not in out  # no colour codes in a pipe (Optuna's colorlog handler)
    assert "alembic" not in out  # sqlite storage's migration tool stays quiet
    assert "Traceback" not in out


@pytest.mark.slow
def test_stored_search_keeps_a_study_linked_to_the_records(cli, tmp_path):
    sweep = tmp_path / "search"
    res = cli("train", "-m", "+search=dropout_lr", "hydra.sweeper.n_trials=3", *TINY,
              f"hydra.sweep.dir={sweep}", cli.data_arg)
    assert res.returncode == 0, res.stdout + res.stderr
    plain(res)
    assert "Directions: ['maximize']" in res.stdout
    assert "3 jobs: 3 completed" in res.stdout
    study = optuna.load_study(study_name="dropout_lr", storage=f"sqlite:///{sweep / 'optuna.db'}")
    check_trials(study, 3)
    assert set(study.best_trial.params) == {"model.dropout", "optim.lr", "model.batchnorm"}
    # the search's name stays out of the job folder names, as +experiment does
    assert not any("search" in p.name for p in sweep.iterdir())

    # the same command again runs only what is missing of n_trials: one more trial
    res = cli("train", "-m", "+search=dropout_lr", "hydra.sweeper.n_trials=4", *TINY,
              f"hydra.sweep.dir={sweep}", cli.data_arg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "has 3 completed trials of n_trials=4: 1 to go" in res.stdout
    check_trials(optuna.load_study(study_name="dropout_lr", storage=f"sqlite:///{sweep / 'optuna.db'}"), 4)


@pytest.mark.slow
def test_plain_optuna_sweeper_maximizes_and_links_trials(cli, tmp_path):
    """The user types hydra/sweeper=optuna and no direction: regbench's objective
    is an accuracy, so the study maximizes."""
    db = tmp_path / "study.db"
    res = cli("train", "-m", "hydra/sweeper=optuna", "model.dropout=interval(0,0.5)", "hydra.sweeper.n_trials=2",
              f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=plain", *TINY,
              f"hydra.sweep.dir={tmp_path / 'sweep'}", cli.data_arg)
    assert res.returncode == 0, res.stdout + res.stderr
    plain(res)
    check_trials(optuna.load_study(study_name="plain", storage=f"sqlite:///{db}"), 2)


@pytest.mark.slow
def test_a_search_that_asks_for_the_same_trial_again_gives_each_its_value(cli, tmp_path):
    """A space of one value: every trial is the same job. Two in one batch were
    both sent to its folder at once (one failed: "in use by process"); a later
    batch got the config object an earlier launch had used, read-only by then
    (a traceback from the launcher, in 3 of 4 searches over a small choice())."""
    db = tmp_path / "study.db"
    res = cli("train", "-m", "hydra/sweeper=optuna", "model.dropout=choice(0.1)", "hydra.sweeper.n_trials=4",
              "hydra.sweeper.n_jobs=2", f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=same", *TINY,
              f"hydra.sweep.dir={tmp_path / 'sweep'}", cli.data_arg)
    assert res.returncode == 0, res.stdout + res.stderr
    plain(res)
    assert "1 of 2 jobs repeat another job of this batch: trained once, each given its result" in res.stdout + res.stderr
    trials = optuna.load_study(study_name="same", storage=f"sqlite:///{db}").get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    (folder,) = {t.user_attrs["records"] for t in trials}
    summary = records.read_summary(Path(folder))
    assert summary["status"] == "completed" and {t.value for t in trials} == {objective(summary)}


def test_sweeper_overrides_keep_what_the_user_says():
    assert sweeper_overrides(["model.dropout=0.1"]) == []
    assert sweeper_overrides(["-m", "hydra/sweeper=basic"]) == []
    assert sweeper_overrides(["-m", "hydra/sweeper=optuna"]) == [
        f"hydra.sweeper._target_={OPTUNA_SWEEPER}", "hydra.sweeper.direction=maximize"]
    assert sweeper_overrides(["-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=minimize"]) == [
        f"hydra.sweeper._target_={OPTUNA_SWEEPER}"]


def test_the_sweeper_class_is_one_hydra_can_instantiate():
    """hydra.sweeper._target_ must name a plugin Hydra knows (an editable
    install's hydra_plugins cannot be listed: register_configs adds it)."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from regbench.config import register_configs

    register_configs()
    cls = Plugins.instance().class_name_to_class[OPTUNA_SWEEPER]
    assert issubclass(cls, Sweeper) and f"{cls.__module__}.{cls.__name__}" == OPTUNA_SWEEPER


@pytest.mark.parametrize("search, says", [
    ("model.dropuot=interval(0,0.5)", "model.dropuot is not a config key"),
    ("model.dropout=interval(0.5,1.5)", "model.dropout=1.5 is not allowed: must be in [0, 1)"),
    ("model.activation=choice(relu,foo)", "model.activation='foo' is not allowed"),
    ("model.dropout=interval(0.5,0.1)", "model.dropout=interval(0.5,0.1): an interval runs from its lower end to its "
                                        "higher one, e.g. interval(0.1,0.5)"),
    # Hydra makes an interval's ends floats: the hint names the integer form
    ("trainer.batch_size=interval(32,256)", "trainer.batch_size: Value '32.0' of type 'float' could not be converted to "
                                            "Integer (in the search trainer.batch_size=interval(32,256)); an integer key "
                                            "takes int(interval(32,256)), or range(...) or choice(...)"),
])
def test_a_search_space_with_a_bad_key_or_value_is_one_line_before_any_trial(cli, tmp_path, search, says):
    sweep = tmp_path / "sweep"
    res = cli("train", "-m", "hydra/sweeper=optuna", search, "hydra.sweeper.n_trials=1", *TINY,
              f"hydra.sweep.dir={sweep}", cli.data_arg)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith(f"regbench train: error: {says}") and res.stderr.count("\n") == 1, res.stderr
    assert search in res.stderr and not sweep.exists()


@pytest.mark.parametrize("setting, says", [
    ("hydra.sweeper.direction=sideways", "hydra.sweeper.direction=sideways is not allowed: maximize (regbench's objective, "
                                         "validation accuracy) or minimize"),
    ("hydra.sweeper.storage=sqlite:////proc/study.db", "hydra.sweeper.storage=sqlite:////proc/study.db: the study's "
                                                       "database cannot be written (cannot create a file in /proc"),
])
def test_a_search_the_sweeper_would_crash_on_is_one_line(cli, tmp_path, setting, says):
    """Optuna raised these after Hydra had set up the sweep: 22- and 127-line tracebacks."""
    res = cli("train", "-m", "hydra/sweeper=optuna", "model.dropout=interval(0,0.5)", "hydra.sweeper.n_trials=1", setting,
              *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}", cli.data_arg)
    assert res.returncode == 2 and res.stderr.startswith(f"regbench train: error: {says}") and res.stderr.count("\n") == 1
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("trials", ["0", "-1"])
def test_a_search_of_no_trials_is_one_line(cli, tmp_path, trials):
    res = cli("train", "-m", "hydra/sweeper=optuna", "model.dropout=interval(0,0.5)", f"hydra.sweeper.n_trials={trials}",
              *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}", cli.data_arg)
    assert res.returncode == 2 and res.stderr == f"regbench train: error: hydra.sweeper.n_trials={trials} is not allowed: an integer >= 1\n"


@pytest.mark.slow
def test_a_search_whose_trials_all_diverge_ends_cleanly(cli, tmp_path):
    """A diverged job returns NaN, which Optuna's tell() refuses: the trial is
    told FAIL, keeps its records, and the search still ends with its count."""
    db = tmp_path / "study.db"
    res = cli("train", "-m", "hydra/sweeper=optuna", "model.dropout=interval(0,0.5)", "hydra.sweeper.n_trials=1",
              "trainer.diverge_loss=0.001", f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=d",
              *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}", cli.data_arg)
    assert res.returncode == 0, res.stdout + res.stderr  # diverged is an outcome, not a failure
    plain(res)
    assert "1 job: 1 diverged" in res.stdout and "no best trial" in res.stdout
    (trial,) = optuna.load_study(study_name="d", storage=f"sqlite:///{db}").get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["status"] == "diverged"
    assert records.read_summary(trial.user_attrs["records"])["status"] == "diverged"


@pytest.mark.parametrize("direction", [[], ["hydra.sweeper.direction=minimize"]])
def test_plan_of_an_optuna_search_says_what_plan_lists(cli, tmp_path, direction):
    """`plan` of the command line train -m takes: Optuna's own default
    direction (an enum) read "direction=Direction.minimize is not allowed:
    maximize ... or minimize"."""
    res = cli("plan", "hydra/sweeper=optuna", "model.dropout=interval(0,0.5)", *direction, f"hydra.sweep.dir={tmp_path / 's'}")
    assert res.returncode == 2 and res.stderr.startswith("regbench plan: error: plan lists the jobs of Hydra's basic sweeper"), res.stderr
    assert not (tmp_path / "s").exists()


def test_a_search_for_the_lowest_accuracy_is_a_warning(cli, tmp_path):
    """direction=minimize is allowed, but it searches for the worst runs: said so before the first trial."""
    res = cli("train", "-m", "hydra/sweeper=optuna", "model.dropout=interval(0,0.5)", "hydra.sweeper.n_trials=1",
              "hydra.sweeper.direction=minimize", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}", cli.data_arg)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.startswith("regbench train: warning: hydra.sweeper.direction=minimize searches for the lowest "
                                 "validation accuracy"), res.stderr[:500]
