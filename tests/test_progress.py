"""The epoch bar: its label, and where it shows (a terminal, a notebook; not a pipe)."""

import sys
import types

import pytest

from regbench import progress


@pytest.mark.parametrize("overrides, seeds, expected", [
    ([["model.dropout=0.3", "seed=2"]], [[2]], "model.dropout=0.3,seed=2"),
    ([["model.dropout=0.3", "device=cpu", "threads=1", "data.root=/data"]], [[0]], "model.dropout=0.3"),  # runtime knobs left out
    ([["model.dropout=0.3", "report.at_end=true", "logger=tensorboard", "+logger.mlflow.experiment_name=x"]], [[0]],
     "model.dropout=0.3"),  # and the runtime subtrees: the report, the trackers
    ([[]], [[0]], "seed 0"),
    ([[]], [[3, 4, 5]], "seeds 3..5"),
    ([["model.batchnorm=true"]], [[0, 1]], "model.batchnorm=true (seeds 0..1)"),
    ([["model.batchnorm=true", "seed=0"], ["model.batchnorm=true", "seed=1"], ["model.batchnorm=true", "seed=2"]],
     [[0], [1], [2]], "3 jobs (model.batchnorm=true)"),
    ([["model.dropout=0", "seed=0"], ["model.dropout=0.5", "seed=1"]], [[0], [1]], "2 jobs"),
])
def test_label_names_the_job_by_its_overrides(overrides, seeds, expected):
    assert progress.label(overrides, seeds) == expected


def test_a_long_label_is_cut():
    text = progress.label([[f"model.widths=[{','.join(['512'] * 40)}]"]], [[0]])
    assert len(text) == progress.LABEL_CHARS and text.endswith("...")


def fake_kernel(monkeypatch, kernel: bool):
    """sys.modules as inside a Jupyter kernel (or a terminal IPython when kernel=False)."""
    shell = types.SimpleNamespace(kernel=object() if kernel else None)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", ipython)


def test_notebook_detection(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not progress.in_notebook()
    fake_kernel(monkeypatch, kernel=False)
    assert not progress.in_notebook()  # IPython in a terminal: its stderr is the terminal's
    fake_kernel(monkeypatch, kernel=True)
    assert progress.in_notebook()


def test_bar_shows_in_a_notebook_and_not_in_a_pipe(monkeypatch, capsys):
    assert not sys.stderr.isatty()  # pytest captures: a pipe, as in CI
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    bar = progress.EpochBar(3, 0, enabled=True, desc="x")
    assert bar._bar.disable
    bar.close()
    fake_kernel(monkeypatch, kernel=True)
    bar = progress.EpochBar(3, 0, enabled=True, desc="model.dropout=0.3")
    assert not bar._bar.disable
    bar.close()
    bar = progress.EpochBar(3, 0, enabled=False, desc="x")  # trainer.progress=false wins
    assert bar._bar.disable
    bar.close()


def test_the_python_api_shows_a_labelled_bar_in_a_notebook(monkeypatch, capsys, tmp_path, data_root):
    import regbench
    from conftest import TINY

    fake_kernel(monkeypatch, kernel=True)
    regbench.run(["model.dropout=0.3", *TINY, f"data.root={data_root}"], tmp_path / "nb")
    err = capsys.readouterr().err
    assert "model.dropout=0.3,data=blobs" in err and "2/2" in err  # tqdm's text bar, as a kernel without ipywidgets shows it

    monkeypatch.delitem(sys.modules, "ipykernel")
    regbench.run([*TINY, f"data.root={data_root}", "seed=1"], tmp_path / "pipe")
    assert "2/2" not in capsys.readouterr().err
