"""The warm process (regbench.warm): forked as ``regbench train -m`` begins, it
imports torch while the sweep is composed; the fused launcher's workers are
forked from it. It must never outlive a command that did not use it."""

from __future__ import annotations

import os

import pytest

from regbench import cli, warm


@pytest.mark.parametrize("argv,want", [
    (["-m", "seed=0,1"], True),
    (["--multirun", "seed=0,1", "hydra/launcher=fused"], True),
    (["seed=0"], False),  # a single run trains in this process
    (["-m", "seed=0,1", "hydra/launcher=basic"], False),
    (["-m", "seed=0,1", "hydra/launcher=joblib"], False),
    (["-m", "seed=0,1", "--cfg", "job"], False),
    (["-m", "--help"], False),
    (["-m", "seed=0,1", "hydra.launcher.warm=false"], False),
    (["-m", "seed=0,1", "hydra.launcher.warm=true"], True),
])
def test_which_commands_start_a_warm_process(argv, want):
    assert warm.wanted(argv) is want


def test_the_warm_process_is_forked_before_hydra_is_imported(tmp_path):
    """The warm process's import of torch is the first group's wait: it is
    forked as the command begins, not after the ~0.15 s of importing Hydra
    and OmegaConf that composing the sweep needs (the sweep process does that
    meanwhile, on the other core)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from regbench import cli, warm\n"
        "def fake():\n"
        "    print(sorted(m for m in ('hydra', 'omegaconf', 'torch') if m in sys.modules))\n"
        "    raise SystemExit(0)\n"
        "warm.Warm = fake\n"
        "cli.main(['train', '-m', 'seed=0,1'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_a_warm_process_nobody_used_ends_with_the_command(monkeypatch, tmp_path, data_root):
    """A refused sweep (a dropout rate of 1.5) ends its warm process at once:
    nothing of it is left to import torch on after the command has returned."""
    started: list[warm.Warm] = []
    real = warm.Warm

    def recording() -> warm.Warm:
        started.append(real())
        return started[-1]

    monkeypatch.setattr(warm, "Warm", recording)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["train", "-m", "model.dropout=0,1.5", f"data.root={data_root}"])
    assert code == 2
    assert len(started) == 1
    process = started[0].process
    assert not process.is_alive() and process.exitcode is not None
    assert warm.take() is None
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)


def test_the_warm_process_serves_one_launch(monkeypatch):
    """An Optuna search launches batch after batch: the first batch's workers
    come from the warm process, later ones are forked by the launcher."""
    w = warm.Warm()
    monkeypatch.setattr(warm, "_warm", w)
    try:
        assert warm.take() is w
        assert w.submit(print, ("never run", 0, 1)) is True  # 0 workers: nothing runs
        assert warm.take() is None
        assert w.submit(print, ("twice", 0, 1)) is False
    finally:
        warm.close()
    assert not w.process.is_alive()


def test_unpicklable_work_is_not_sent(monkeypatch):
    """A user's Hydra callback that does not pickle: the launcher forks its
    workers itself rather than failing the sweep."""
    w = warm.Warm()
    try:
        assert w.submit(lambda: None, ()) is False
        assert not w.submitted
    finally:
        w.close()
    assert not w.process.is_alive()


def _collector_state(tasks, results, threads) -> None:  # a warm worker's work (module level: it is pickled)
    import gc
    import sys

    results.put((gc.isenabled(), gc.get_freeze_count(), "torch" in sys.modules))


def test_the_workers_start_with_the_imports_frozen_and_the_collector_on():
    """The warm process's imports (torch: about 230k objects) are frozen
    (regbench.lifetime), so a worker's full collections do not walk them:
    each took 0.2-0.3 s of a 50-run sweep's worker before."""
    w = warm.Warm()
    try:
        assert w.submit(_collector_state, (1, 1)) is True
        enabled, frozen, torch_imported = w.results.get(timeout=120)
        assert enabled and torch_imported
        assert frozen > 50_000
        assert w.results.get(timeout=60)[0] == "exit"
    finally:
        w.close()
