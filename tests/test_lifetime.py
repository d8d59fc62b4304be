"""regbench.lifetime: what a process keeps to its end is frozen out of the
cycle collector, which is on again afterwards."""

from __future__ import annotations

import gc

from regbench import lifetime


def test_what_is_imported_is_frozen_and_the_collector_runs_again():
    before = gc.get_freeze_count()
    try:
        with lifetime.importing():
            assert not gc.isenabled()
            made = [{"node": i} for i in range(1000)]  # an import's dicts, say
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(made)
    finally:
        gc.unfreeze()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        with lifetime.importing():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_keep_freezes_what_is_alive():
    try:
        kept = [[i] for i in range(1000)]
        lifetime.keep()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


def test_a_job_runs_with_its_imports_frozen_and_the_collector_on(monkeypatch):
    """``regbench train``'s task imports torch and the training code frozen:
    a single run's full collections (0.2 s each once torch is there) skip them."""
    from regbench import cli, train

    monkeypatch.setattr(train, "main", lambda cfg: (gc.isenabled(), gc.get_freeze_count()))
    try:
        enabled, frozen = cli.task(None)
        assert enabled
        assert frozen > 50_000
    finally:
        gc.unfreeze()
