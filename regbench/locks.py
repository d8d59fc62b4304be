"""One process of this machine at a time: a named lock that the processes
of a sweep (the fused launcher's workers, joblib's) and commands typed side
by side share. Imports nothing heavy."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from typing import Iterator, Optional


@contextlib.contextmanager
def one_at_a_time(key: str, waiting: Optional[str] = None, log: Optional[logging.Logger] = None) -> Iterator[None]:
    """Held by one process at a time for ``key``: an flock on an empty file
    named after ``key`` in the temporary folder (left there for the next
    time), so it serializes the processes that share a temporary folder
    (TMPDIR). ``waiting``: what to log when another process holds it. Where
    flock or the file cannot be had (no fcntl, a temporary folder that cannot
    be written), it runs unlocked, and says so where ``log`` is given."""
    fd = None
    try:
        import fcntl

        name = f"regbench-{hashlib.sha1(key.encode()).hexdigest()[:16]}.lock"
        fd = os.open(os.path.join(tempfile.gettempdir(), name), os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting and log is not None:
                log.info(waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError) as exc:
        if log is not None:
            log.info(f"without a lock ({exc}): {key}")
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # and with it the lock
