"""The Python API, as a notebook uses it: compose, run, load, report."""

import subprocess
import sys
import types

import pytest

import regbench
from conftest import TINY


def test_compose_run_load_report(tmp_path, data_root):
    overrides = [*TINY, f"data.root={data_root}", "trainer.epochs=2"]
    cfg = regbench.compose([*overrides, "model.dropout=0.3"])
    assert cfg.model.dropout == 0.3 and cfg.trainer.epochs == 2 and "hydra" not in cfg
    first = regbench.run(cfg, tmp_path / "runs" / "a", progress=False)
    assert first["status"] == "completed" and first["config"]["model.dropout"] == 0.3
    assert regbench.run(cfg, tmp_path / "runs" / "a", progress=False)["skipped"]  # a job folder, as in the CLI
    regbench.run([*overrides, "model.dropout=0", "seed=1"], tmp_path / "runs" / "b", progress=False)

    study = regbench.load(tmp_path / "runs")
    assert len(study.runs) == 2 and set(study.runs["seed"]) == {0, 1}
    assert sorted(study.epochs.groupby("run")["epoch"].max()) == [2, 2]
    assert study.factors == ["model.dropout"] and len(study.cells) == 2
    assert {"best_val_acc_mean", "best_val_acc_n"} <= set(study.cells.columns)

    html = regbench.report([tmp_path / "runs"], tmp_path / "report")
    assert html.name == "report.html" and html.is_file() and (tmp_path / "report" / "cells.csv").is_file()


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"model.dropout=1.5 is not allowed: must be in \[0, 1\)"):
        regbench.compose(["model.dropout=1.5"])
    with pytest.raises(ValueError, match="model.dropuot is not a config key"):
        regbench.compose(["model.dropuot=0.1"])
    with pytest.raises(ValueError, match="no run records under"):
        regbench.report([tmp_path], tmp_path / "out")
    # each of these left the API's promise: usage and SystemExit, ReportError, FileExistsError, Hydra's "Ambiguous value"
    with pytest.raises(ValueError, match="unrecognized arguments: --bogus; allowed: --out, --metric"):
        regbench.report([tmp_path], tmp_path / "out", "--bogus")
    with pytest.raises(ValueError, match="nowhere: no such folder"):
        regbench.load(tmp_path / "nowhere")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="a_file exists and is not a folder"):
        regbench.run(["data=blobs"], tmp_path / "a_file")
    with pytest.raises(ValueError, match=r"model.dropout=0,0.5 sweeps over values: compose\(\) makes one config"):
        regbench.compose(["model.dropout=0,0.5"])
    with pytest.raises(ValueError, match="model.batchnorm=2 is not allowed: model.batchnorm is true or false"):
        regbench.compose(["model.batchnorm=2"])
    # the CLI refuses it; compose() gave MNIST-1D's config without a word
    with pytest.raises(ValueError, match="data.path=/tmp/x.csv is read only by data=file, and these jobs train data.name=mnist1d"):
        regbench.compose(["data.path=/tmp/x.csv"])


def test_a_config_that_defines_a_sweep_is_refused_not_run_as_one_default_job(tmp_path):
    """+experiment=dropout_vs_bn (hydra.sweeper.params) composed to one default job, its sweep dropped silently."""
    sweep = r"this config defines a sweep \(hydra.sweeper.params: model.dropout, model.batchnorm\): compose\(\) makes one config; "
    with pytest.raises(ValueError, match=sweep + r"run the sweep with regbench train -m \+experiment=dropout_vs_bn, or give "
                                               r"model.dropout, model.batchnorm one value each, one config per call"):
        regbench.compose(["+experiment=dropout_vs_bn"])
    with pytest.raises(ValueError, match=r"hydra.sweeper.params: model.dropout, optim.lr, model.batchnorm\): .* regbench "
                                         r"train -m \+search=dropout_lr trainer.epochs=1, or give model.dropout, optim.lr"):
        regbench.run(["+search=dropout_lr", "trainer.epochs=1"], tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"or give model.batchnorm one value, one config per call"):
        regbench.compose(["+experiment=dropout_vs_bn", "model.dropout=0.1"])
    cfg = regbench.compose(["+experiment=dropout_vs_bn", "model.dropout=0.1", "model.batchnorm=true"])  # one of its jobs
    assert cfg.model.dropout == 0.1 and cfg.model.batchnorm and cfg.trainer.replicas == 5 and "hydra" not in cfg


def test_report_refuses_an_out_option_and_run_a_missing_folder(tmp_path):
    """report(paths, out, "-o", other) wrote into other and returned out/report.html, which did not exist;
    run(cfg, None) was a bare TypeError."""
    for options in (["-o", "other"], ["--out=other"], ["-oother"], ["--out", "other"], ["-qo", "other"]):
        with pytest.raises(ValueError, match=r"^-o/--out other in the options: report\(\) writes into its out argument; "
                                             r"choose the folder there: report\(paths, out, \*options\)$"):
            regbench.report([tmp_path], tmp_path / "out", *options)
    assert not (tmp_path / "other").exists() and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"out_dir is required: a folder path \(str or pathlib.Path\) to train the job "
                                         r"in, not None"):
        regbench.run(["data=blobs"], None)



def test_import_regbench_is_instant():
    code = "import sys, regbench; assert callable(regbench.run); print('torch' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False False", out.stdout + out.stderr


def test_help_on_the_report_package_says_how_to_call_it():
    """Once regbench.report (the package) is imported, the name is the package,
    callable as the verb: its help, which was the pipeline's alone, says how."""
    import regbench
    import regbench.report  # noqa: F401  (binds the name to the package)

    assert isinstance(regbench.report, types.ModuleType) and callable(regbench.report)
    assert "regbench.report(paths, out, *options) -> Path of report.html" in regbench.report.__doc__


def test_load_names_its_own_argument_for_mixed_datasets(tmp_path, data_root):
    """From Python, load() refusing runs of two datasets said "pass --allow-mixed", the command's flag."""
    common = [*[a for a in TINY if not a.startswith("data")], f"data.root={data_root}", "trainer.epochs=1"]
    regbench.run([*common, "data=blobs"], tmp_path / "runs" / "a", progress=False)
    regbench.run([*common, "data=teacher"], tmp_path / "runs" / "b", progress=False)
    with pytest.raises(ValueError, match=r"report one dataset at a time, or pass allow_mixed=True$"):
        regbench.load(tmp_path / "runs")
    assert len(regbench.load(tmp_path / "runs", allow_mixed=True).runs) == 2
