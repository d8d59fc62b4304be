"""Objects that live as long as their process, kept out of the cycle collector.

CPython's full collection walks every tracked object, and it runs each time
the objects that survived collections grow by a quarter. A process that
imports torch (about 230k objects) or composes a sweep's configs (Hydra and
OmegaConf nodes, about 3k a job) pays for it several times over, and finds
nothing to free: a 50-run sweep's processes spent 1.3-1.9 CPU-s in full
collections, each 0.2-0.35 s once torch or the configs were there, and a
single run about 0.2 s (README "Speed"). Such objects are frozen
(:func:`gc.freeze`) once made: later
collections skip them, they are still freed when their last reference goes,
and a process forked after (a sweep's workers) does not write to their pages
when it collects. This module imports nothing.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def importing() -> Iterator[None]:
    """Import in the block with no collection, then freeze what was made:
    an import's objects live as long as its process."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def keep() -> None:
    """Freeze what is alive now: call where a process has made what it keeps
    to its end (a sweep's composed configs) and makes little after."""
    gc.freeze()
