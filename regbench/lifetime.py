"""Objects that live as long as their process, kept out of the cycle collector.

CPython's full collection walks every tracked object, and it runs each time
the objects that survived collections grow by a quarter. A process that
imports torch (about 230k objects) or composes a sweep's configs (Hydra and
OmegaConf nodes, about 3k a job) pays for it several times over, and finds
nothing to free: a 50-run sweep's processes spent 1.3-1.9 CPU-s in full
collections, each 0.2-0.35 s once torch or the configs were there, and a
single run about 0.2 s (docs/speed.md). Such objects are frozen
(:func:`gc.freeze`) once made: later collections skip them, and a process
forked after (a sweep's workers) does not write to their pages when it
collects. A frozen object is still freed when its last reference goes, but
cyclic garbage that is frozen (a config tree no longer used: its nodes point
to their parents) stays until the process ends or :func:`release`; so only
what is made once per process is frozen for good (:func:`imported`), and a
sweep's configs only until the next sweep or batch of the same process
(:func:`keep`, :func:`release`). This module imports nothing but the
standard library.
"""

from __future__ import annotations

import gc
import importlib
import sys
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

_kept = False  # keep() froze objects that may turn into garbage later


@contextmanager
def importing() -> Iterator[None]:
    """Import in the block with no collection, then freeze what is alive:
    an import's objects live as long as its process. For a block that runs
    once per process (see :func:`imported`)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def imported(name: str) -> ModuleType:
    """``importlib.import_module(name)``, under :func:`importing` the first
    time only: a later call freezes nothing (a job run in the same process
    as the one before would otherwise freeze that job's garbage)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    with importing():
        return importlib.import_module(name)


def keep() -> None:
    """Freeze what is alive now: where a process has made what it keeps to
    the end of a sweep (its composed configs, its JobReturns) and makes
    little after. Undone by :func:`release`."""
    global _kept
    gc.freeze()
    _kept = True


def release() -> None:
    """Let the collector walk again what :func:`keep` froze (and, since it
    cannot tell them apart, the frozen imports): called as a sweep, or an
    Optuna search's next batch, begins in a process that froze the last one's
    configs, so that those are freed once unused."""
    global _kept
    if _kept:
        gc.unfreeze()
        _kept = False
