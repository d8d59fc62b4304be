"""A warm process for a sweep's workers: torch imported while the sweep is composed.

``regbench train -m`` spends its first second or two composing and checking
the sweep (preflight, Hydra, the sweeper), and the fused launcher's worker
processes then spend as long again importing torch before the first group
trains. :func:`start`, called as the command begins, forks one process that
imports torch (and regbench's training code) at the same time, on another
core. The launcher hands it the groups (:meth:`Warm.submit`); it forks the
workers, which start with torch already imported, and reports each worker's
end to the launcher (``("exit", pid, exitcode)`` on the results queue) so
that a worker killed mid-group costs only its group, as with workers forked
from the regbench process.

Only a fork of a process that has not run any torch operation is safe (no
OpenMP pool, no CUDA context yet): the warm process imports and never
computes. Ctrl-C and SIGTERM reach it from the regbench process
(:func:`regbench.signals.stop_handlers` passes SIGINT to its children); it
passes them on to its workers and waits for them to record their jobs. A warm
process nobody asked for (a refused command, another launcher, every job
done) is ended by :func:`close`. This module imports no torch.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from typing import Any, Callable, Optional

from . import lifetime, signals

_warm: Optional["Warm"] = None


class Warm:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_main, args=(child, self._conn, self.tasks, self.results),
                                   name="regbench-warm", daemon=False)
        self.process.start()
        child.close()
        self.submitted = False

    def submit(self, work: Callable[..., None], args: tuple) -> bool:
        """Have the warm process fork ``workers`` processes that each run
        ``work(*args, tasks, results, threads)``. False (nothing sent) when it
        is gone or ``args`` do not pickle (a user's callback object): the
        launcher forks its workers itself then."""
        if self.submitted or not self.process.is_alive():
            return False
        try:
            payload = pickle.dumps((work, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - anything unpicklable: fall back, do not fail the sweep
            return False
        try:
            self._conn.send_bytes(payload)
        except OSError:
            return False
        self.submitted = True
        return True

    def alive(self) -> bool:
        return self.process.is_alive()

    def close(self) -> None:
        """End it: at once when it has no work (nothing to record), else wait
        for it (its workers have reported by then)."""
        if not self.submitted and self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self._conn.close()
        except OSError:
            pass
        # with work: its workers have reported, or were told to stop and had
        # their grace (signals.WORKER_GRACE_S); never wait on it forever
        self.process.join(timeout=2 * signals.WORKER_GRACE_S if self.submitted else 5)
        if self.process.is_alive():
            self.process.kill()  # its workers notice their parent is gone and stop (signals.watch_parent)
            self.process.join(timeout=5)
        for q in (self.tasks, self.results):
            q.close()
            q.cancel_join_thread()


def wanted(argv: list[str]) -> bool:
    """Whether ``regbench train argv`` is a multirun that the fused launcher
    runs (the default; another launcher named on the command line, help,
    ``--cfg`` or completion have no use for a warm process)."""
    from .cli import MULTIRUN_FLAGS

    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    if not any(a in MULTIRUN_FLAGS for a in argv):
        return False
    if any(a.startswith("-") and a not in MULTIRUN_FLAGS for a in argv):
        return False
    launcher = [a.split("=", 1)[1] for a in argv if a.lstrip("+~").startswith("hydra/launcher=")]
    off = [a for a in argv if a.lstrip("+~").startswith("hydra.launcher.warm=") and a.split("=", 1)[1].lower() == "false"]
    return all(v == "fused" for v in launcher) and not off


def start(argv: list[str]) -> None:
    """Fork the warm process if ``argv`` will want one."""
    global _warm
    if _warm is None and wanted(argv):
        _warm = Warm()


def take() -> Optional[Warm]:
    """The warm process, once (a second launch in the same command, e.g. an
    Optuna search's next batch, forks its workers itself)."""
    global _warm
    warm = _warm if _warm is not None and not _warm.submitted and _warm.alive() else None
    return warm


def close() -> None:
    global _warm
    if _warm is not None:
        _warm.close()
        _warm = None


# ---------------------------------------------------------------- the warm process itself

_workers: list = []
_stop = False


def _on_signal(signum, frame) -> None:
    """Before any work: nothing to record, leave quietly. With workers: pass
    the first signal on to them (they record their jobs and exit)."""
    global _stop
    if not _workers:
        os._exit(signals.EXIT_INTERRUPTED)
    if _stop:
        return
    _stop = True
    for w in _workers:
        if w.is_alive():
            try:
                os.kill(w.pid, signal.SIGINT)
            except ProcessLookupError:
                pass


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(signals.POLL_S)
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the workers record their jobs


def _main(conn, parent_end, tasks, results) -> None:
    parent_end.close()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        # what a worker imports before its first group trains; frozen, so that
        # the workers' collections skip it (regbench.lifetime)
        with lifetime.importing():
            import torch  # noqa: F401
            from hydra.core.utils import run_job  # noqa: F401

            from . import train  # noqa: F401
    except BaseException:  # noqa: BLE001 - a failed import here is the worker's to report, where it would happen anyway
        pass
    try:
        payload = conn.recv_bytes()
    except (EOFError, OSError):  # the command ended without a launch
        os._exit(0)
    work, args = pickle.loads(payload)
    *args, processes, threads = args
    ctx = multiprocessing.get_context("fork")
    for _ in range(processes):
        w = ctx.Process(target=_worker, args=(work, (*args, tasks, results, threads)), daemon=False)
        w.start()
        _workers.append(w)
    if _stop:  # a signal came while they started
        for w in _workers:
            if w.is_alive():
                os.kill(w.pid, signal.SIGINT)
    pending = list(_workers)
    deadline = None
    while pending:
        ended = multiprocessing.connection.wait([w.sentinel for w in pending], timeout=0.5)
        for w in [w for w in pending if w.sentinel in ended]:
            w.join()
            results.put(("exit", w.pid, None, w.exitcode))
            pending.remove(w)
        if _stop and deadline is None:
            deadline = time.monotonic() + signals.WORKER_GRACE_S
        if deadline is not None and time.monotonic() > deadline:
            for w in pending:
                w.kill()
    results.close()
    results.join_thread()
    os._exit(0)


def _worker(work, args) -> None:
    # a worker of its own: default signal handling until the job sets its own
    # (signals.watch_parent, whose parent is this warm process)
    _workers.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)
    work(*args)
