"""Every job of a command line is composed and checked before Hydra writes anything."""

import pytest

from regbench import records
from regbench.preflight import PreflightError, check

BAD = [
    (["model.dropuot=0.1"], "model.dropuot is not a config key; keys there: widths, activation,"),
    (["+model.dropuot=0.1"], "unknown config key model.dropuot (allowed in model: widths,"),
    (["model.dropout=abc"], "model.dropout: Value 'abc' of type 'str' could not be converted to Float"),
    (["model.batchnorm=maybe"], "model.batchnorm: Value 'maybe' is not a valid bool"),
    (["model.widths=[2.5]"], "model.widths[0]: Value '2.5'"),
    (["data=foo"], "data=foo: no such option; allowed: blobs, cifar10, digits,"),
    (["optim=rmsprop"], "optim=rmsprop: no such option; allowed: adam, adamw, sgd"),
    (["hydra/launcher=nope"], "hydra/launcher=nope: no such option; allowed: basic, joblib"),
    (["model.dropout=[0"], "cannot parse the overrides: no viable alternative at input '[0'"),
    (["model.dropout=0,0.5"], "model.dropout=0,0.5 sweeps over values: add -m"),
    (["-m", "model.dropout=0,1.0", "seed=0,1"], "model.dropout=1.0 is not allowed: must be in [0, 1) "
                                                "(probability of dropping a unit) (job model.dropout=1.0,seed=0)"),
    (["-m", "model.order=[linear,act]", "model.batchnorm=false,true"], "model.batchnorm=True is not allowed: needs a bn part"),
    (["+experiment=nope"], "experiment=nope: no such option; allowed: bn_dropout_position, dropout_rate,"),
    (["+experiment=dropout_vs_bn"], "this config defines a sweep (hydra.sweeper.params: model.dropout, model.batchnorm): add -m"),
    (["-m", "seed=range(0)"], "this sweep has no jobs"),
    (["hydra.mode=MULTIRUN", "model.dropout=0,1.0"], "model.dropout=1.0 is not allowed"),  # multirun without -m
    # a combination that only some of 68 jobs have is found too (seeds collapse: they never make a config invalid)
    (["-m", "model.order=[linear,act,bn,dropout],[linear,act]", "model.dropout=0,0.1", "seed=range(0,17)"],
     "needs a dropout part in model.order=['linear', 'act'] (or a rate of 0) (job model.order=[linear,act],model.dropout=0.1,seed=0)"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_command_lines_are_one_line(argv, message):
    with pytest.raises(PreflightError) as err:
        check(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_sweep_expands_to_its_jobs_and_flags_are_left_to_hydra():
    cfg, jobs = check(["-m", "model.dropout=0,0.5", "optim=glob(*,exclude=sgd)", "trainer.epochs=2"])
    assert len(jobs) == 4 and ["model.dropout=0.5", "optim=adamw", "trainer.epochs=2"] in jobs
    assert check(["--cfg", "job", "model.dropout=abc"]) is None  # Hydra prints/handles these itself


def test_a_run_folder_with_another_config_is_refused_before_hydra_writes(tmp_path):
    run_dir = tmp_path / "run"
    cfg, _ = check([f"hydra.run.dir={run_dir}"])
    from omegaconf import OmegaConf

    from regbench.preflight import _without_hydra

    run_dir.mkdir()
    flat = records.flatten(OmegaConf.to_container(_without_hydra(cfg), resolve=True))
    records.write_summary(run_dir, {"status": "completed", "config": flat})
    assert check([f"hydra.run.dir={run_dir}"]) is not None  # the same config: fine (the trainer skips it)
    with pytest.raises(PreflightError, match=r"holds a run with another config \(model.dropout: 0.0 -> 0.3\)"):
        check([f"hydra.run.dir={run_dir}", "model.dropout=0.3"])


def test_hydra_interpolations_and_user_config_dirs_are_accepted(tmp_path):
    assert check(["data.root=${hydra:runtime.cwd}/data", "hydra.run.dir=" + str(tmp_path / "r_${hydra:runtime.choices.data}")])
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      model.dropout: 0,0.2\n")
    cfg, jobs = check(["-m", f"hydra.searchpath=[file://{tmp_path}]", "+experiment=mine"])
    assert sorted(map(sorted, jobs)) == [["+experiment=mine", "model.dropout=0"], ["+experiment=mine", "model.dropout=0.2"]]



def test_groups_from_the_searchpath_and_run_dirs_named_from_overrides(tmp_path):
    (tmp_path / "sched").mkdir()
    (tmp_path / "sched" / "fast.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 2\n")
    for extra in ([], ["-m", "model.dropout=0,0.1"]):
        assert check([*extra, f"hydra.searchpath=[file://{tmp_path}]", "+sched=fast"])
    run_dir = "hydra.run.dir=" + str(tmp_path / "x${hydra.job.override_dirname}")
    cfg, _ = check([run_dir, "optim=sgd", "model.dropout=0.3"])
    assert cfg.hydra.run.dir.endswith("xmodel.dropout=0.3,optim=sgd")  # the folder Hydra will use


def test_a_folder_in_use_is_refused_up_front(tmp_path):
    holder = records.acquire_lock(tmp_path)
    try:
        with pytest.raises(PreflightError, match="is in use by process"):
            check([f"hydra.run.dir={tmp_path}"])
    finally:
        records.release_lock(holder)
