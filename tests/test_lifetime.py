"""regbench.lifetime: what a process keeps to its end is frozen out of the
cycle collector, which is on again afterwards; what a sweep keeps is let go
when the next sweep or batch of the same process begins."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from regbench import lifetime


@pytest.fixture(autouse=True)
def unfrozen():
    yield
    gc.unfreeze()
    lifetime._kept = False


def test_what_is_imported_is_frozen_and_the_collector_runs_again():
    before = gc.get_freeze_count()
    with lifetime.importing():
        assert not gc.isenabled()
        made = [{"node": i} for i in range(1000)]  # an import's dicts, say
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(made)


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        with lifetime.importing():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_module_is_imported_frozen_the_first_time_only(tmp_path, monkeypatch):
    (tmp_path / "regbench_lifetime_probe.py").write_text("NODES = [[i] for i in range(1000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "regbench_lifetime_probe", raising=False)
    module = lifetime.imported("regbench_lifetime_probe")
    assert len(module.NODES) == 1000
    frozen = gc.get_freeze_count()
    assert frozen >= 1000
    gc.unfreeze()
    assert lifetime.imported("regbench_lifetime_probe") is module
    assert gc.get_freeze_count() == 0  # imported already: nothing frozen (a later job's garbage would be)


def test_what_a_sweep_keeps_is_let_go_by_the_next():
    lifetime.release()  # nothing kept: nothing to undo
    kept = [[i] for i in range(1000)]
    lifetime.keep()
    assert gc.get_freeze_count() >= len(kept)
    lifetime.release()
    assert gc.get_freeze_count() == 0


def test_a_job_imports_the_trainer_frozen_once():
    """``regbench train``'s task imports torch and the training code frozen
    (a run's full collections, 0.2 s each once torch is there, skip them),
    and a second job in the same process (Hydra's basic launcher) freezes
    nothing more. In a fresh process: here the trainer is imported already.
    The freezes are counted (the frozen count itself drops as frozen
    temporaries are freed)."""
    code = (
        "import gc\n"
        "from regbench import cli, lifetime\n"
        "freezes = []\n"
        "real_freeze = gc.freeze\n"
        "gc.freeze = lambda: (freezes.append(1), real_freeze())[1]\n"
        "real = lifetime.imported\n"
        "def spy(name):\n"
        "    module = real(name)\n"
        "    module.main = lambda cfg: (gc.isenabled(), gc.get_freeze_count(), len(freezes))\n"
        "    return module\n"
        "lifetime.imported = spy\n"
        "print(*cli.task(None), *cli.task(None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    enabled, frozen, freezes, enabled_again, _, freezes_again = out.stdout.split()
    assert enabled == enabled_again == "True"
    assert int(frozen) > 50_000
    assert freezes == freezes_again == "1"


def test_the_train_command_imports_hydra_frozen(tmp_path):
    """The sweep process's Hydra and OmegaConf (its full collections walked
    them while it composed the jobs): frozen as `regbench train` imports
    them, before preflight (here, a refused dropout rate: exit 2)."""
    code = "import gc\nfrom regbench import cli\nprint(cli.main(['train', 'model.dropout=1.5']), gc.get_freeze_count())\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    code, frozen = out.stdout.split()[-2:]
    assert code == "2"
    assert int(frozen) > 10_000
