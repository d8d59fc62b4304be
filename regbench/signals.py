"""Ctrl-C, SIGTERM, a dead parent and a closed pipe end a run or a sweep in one line.

Three places take part:

- the ``regbench`` process (:func:`stop_handlers`, around the Hydra app in
  ``cli.train``): on Ctrl-C or SIGTERM it passes SIGINT on to a launcher's
  worker processes and waits until they have recorded their current job as
  ``interrupted`` and exited, then stops. Without the wait, joblib answers the
  KeyboardInterrupt by SIGKILLing its workers, maybe before they have written
  their summary; without passing it on, a SIGTERM would reach no worker;
- a joblib worker (:func:`watch_parent`, called by ``train.main`` as each job
  starts): it stops at the first SIGINT or SIGTERM and never starts another
  job after it, and a thread interrupts the job as Ctrl-C would once the
  parent is gone (SIGKILL, a crash). An orphan would otherwise train every job
  already sent to it while holding their ``run.lock``;
- the end of an interrupted job (:func:`interrupted`): a worker process exits
  right there (its parent says the one line), else one line and exit 130.

:func:`say` writes that line even when stderr is a pipe whose reader died with
the same Ctrl-C (``regbench train ... 2>&1 | tee log``): an exception there
would count as a failed job, and the sweep would go on. This module imports no
torch.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

class Interrupted(Exception):
    """SIGTERM (or SIGINT) arrived in a training loop: stop after recording, keep
    the checkpoint. Code that catches Exception around a side task (a tracker)
    must let it through."""


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C (a worker's exit: its parent reads no more)
RESUME = "; the same command resumes it"  # after "records kept in ...": what to do next
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader went away, nothing went wrong here

# How long the regbench process waits for its workers to record their jobs
# (a summary.json each) before the launcher kills them; a second Ctrl-C stops waiting.
WORKER_GRACE_S = 10.0
# How often a worker looks for its parent, and how long an orphan may take to
# record its job before it exits regardless.
POLL_S = 0.1
ORPHAN_GRACE_S = 10.0


# ---------------------------------------------------------------- closed pipes


def mute(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null: its reader is gone, and
    whatever is still buffered (flushed again at exit) must not raise
    "Exception ignored ... BrokenPipeError" (the Python docs' recipe for SIGPIPE)."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):  # replaced (pytest's capture) or closed: nothing to point
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def flush_or_mute(*streams) -> None:
    """Flush stdout and stderr now, so that a closed pipe is met here rather
    than by the interpreter's last flush."""
    for stream in streams or (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            mute(stream)
        except OSError:
            pass


def say(line: str, stream=None) -> None:
    """One line on stderr (or ``stream``); nothing, and no exception, when it is a closed pipe."""
    stream = stream or sys.stderr
    try:
        print(line, file=stream, flush=True)
    except (BrokenPipeError, ValueError):
        mute(stream)
    except OSError:
        pass


# ---------------------------------------------------------------- the regbench process


_stopping = False
# A SIGINT/SIGTERM reached the regbench process. The KeyboardInterrupt a handler
# raises is lost where it lands in code that swallows it (a finalizer, an import
# cleanup): Ctrl-C 0.4-0.5 s after start was ignored in 2 of 64 tries, and in 4
# another error replaced it (a traceback). The flag is what stays true.
_signalled = False
_first = 0  # the first SIGINT/SIGTERM that reached this process, for its exit status (0: none seen)


def signalled() -> bool:
    """Whether Ctrl-C or SIGTERM reached this (the regbench) process."""
    return _signalled


def note(signum: int) -> None:
    """A handler of this process took ``signum``: the first one sets :func:`exit_status`."""
    global _first
    if not _first:
        _first = int(signum)


def exit_status() -> int:
    """What a process stopped by a signal reports, as a shell does: 128 + the
    first SIGINT/SIGTERM it took (130 for Ctrl-C, 143 for SIGTERM); 130 when
    none was seen (a KeyboardInterrupt of Python's own handler)."""
    return 128 + (_first or signal.SIGINT)


_owner = 0  # the process early_handlers was entered in


def _early(signum, frame) -> None:
    global _signalled
    if os.getpid() != _owner:  # a forked child that kept this handler: the defaults it had before
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt
    _signalled = True
    note(signum)
    raise KeyboardInterrupt


@contextmanager
def _handling(handler) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside; the previous handlers come
    back after (tests call ``cli.main`` in pytest's own process). Outside the
    main thread, signals are left alone."""
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def early_handlers() -> Iterator[None]:
    """From a command's first line: Ctrl-C and SIGTERM raise KeyboardInterrupt
    and are remembered (:func:`signalled`), until :func:`stop_handlers` or the
    trainer take over."""
    global _signalled, _owner, _first
    _signalled, _owner, _first = False, os.getpid(), 0
    try:
        with _handling(_early):
            yield
    finally:
        _signalled = False


def _stop(signum, frame) -> None:
    """Ctrl-C or SIGTERM in the regbench process: KeyboardInterrupt, once the
    launcher's workers (if any) have recorded their jobs and exited."""
    global _stopping, _signalled
    _signalled = True
    note(signum)
    if _stopping:  # a second Ctrl-C: stop waiting
        raise KeyboardInterrupt
    _stopping = True
    # A terminal's Ctrl-C reaches the workers too (one process group), a SIGTERM
    # or a `kill -INT` only this process. A worker takes the first SIGINT and
    # ignores the rest (_interrupt), so passing it on is safe either way.
    for worker in multiprocessing.active_children():
        try:
            os.kill(worker.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + WORKER_GRACE_S
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    raise KeyboardInterrupt


@contextmanager
def stop_handlers() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the regbench process through :func:`_stop` while
    inside; the previous handlers come back after."""
    global _stopping
    if _signalled:  # it came before these handlers, and its KeyboardInterrupt went astray
        raise KeyboardInterrupt
    _stopping = False
    try:
        with _handling(_stop):
            yield
    finally:
        _stopping = False


# ---------------------------------------------------------------- a launcher's worker process


_worker = False  # watch_parent found this process to be a launcher's worker
_told_to_stop = False  # a worker got SIGINT/SIGTERM, or lost its parent


def in_worker() -> bool:
    return _worker


def watch_parent() -> None:
    """At the start of each job in a launcher's worker process (joblib's loky
    workers are multiprocessing children; with ``n_jobs=1`` joblib runs the jobs
    in the main process, where this does nothing).

    Once per process: SIGINT and SIGTERM stop the worker (the first one only,
    so that a second cannot cut the recording of the first short), and a daemon
    thread interrupts the job when the parent is gone. A worker told to stop
    between two jobs gets the next one from its launcher all the same: it exits
    here, before touching that job's folder."""
    global _worker
    if multiprocessing.parent_process() is None:
        return
    if _told_to_stop:
        _exit(EXIT_INTERRUPTED)
    if _worker:
        return
    _worker = True
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _interrupt)
    except ValueError:  # not the main thread: the default SIGINT handler stays
        pass
    # Bars are off in workers, and tqdm's default lock is a named semaphore
    # that a worker ended by os._exit or SIGKILL leaks: the resource tracker
    # would report "leaked semaphore objects" after the sweep has ended.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    threading.Thread(target=_watch, args=(multiprocessing.parent_process().pid,), daemon=True).start()


def told_to_stop() -> bool:
    """Whether this worker got SIGINT/SIGTERM (or lost its parent)."""
    return _told_to_stop


def exit_worker() -> None:
    """End a worker told to stop outside a job's training (unpickling a group's
    configs, setting up its folders), where an interrupt raised in library code
    printed a traceback, or another error it caused. Its jobs that wrote no
    record are ``missing``: the same command trains them."""
    _exit(EXIT_INTERRUPTED)


def _interrupt(signum, frame) -> None:
    global _told_to_stop
    if _told_to_stop:
        return
    _told_to_stop = True
    raise KeyboardInterrupt  # in a job: train records it interrupted, then `interrupted` ends the process


def _watch(parent_pid: int) -> None:
    # A process whose parent died is adopted (by init or a subreaper): its
    # parent pid changes, whichever way the parent ended, SIGKILL included.
    while os.getppid() == parent_pid:
        time.sleep(POLL_S)
    # As Ctrl-C would. A real signal, so that it also wakes a main thread
    # that is waiting for its next job.
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(ORPHAN_GRACE_S)
    # Still here: stopped outside a job, where nothing needs recording, and
    # no parent is left to take results.
    _exit(EXIT_INTERRUPTED)


def _exit(code: int) -> None:
    logging.shutdown()  # the job's train.log
    flush_or_mute()
    os._exit(code)


# ---------------------------------------------------------------- the end of an interrupted job


def interrupted(where: str, command: str = "the same command") -> None:
    """A job recorded itself ``interrupted``: end the process with 130 (143 after SIGTERM).

    A worker exits right here, without returning to its launcher, which would
    hand it the next job; the regbench process says the one line for the whole
    sweep. Otherwise one line names the records, and SystemExit carries the
    exit status (:func:`exit_status`) through Hydra."""
    if in_worker():
        _exit(EXIT_INTERRUPTED)
    kept = os.path.exists(os.path.join(where, "summary.json"))  # interrupted before its first record: say nothing of records
    say("regbench train: interrupted" + (f"; records kept in {where}{resume_note(where, command)}" if kept else ""))
    sys.exit(exit_status())


def resume_note(where: str, command: str = "the same command") -> str:
    """What ``command`` (the same command, or the same command with the run's
    folder named, where a single run's folder is named by the clock) does with
    a job interrupted in ``where``: resume from its checkpoint, or start over
    where none was saved yet (one is saved every ``trainer.save_every_s``;
    "resumes it" was said of a job stopped before its first)."""
    if not os.path.exists(os.path.join(where, "checkpoint.pt")):
        return "; no checkpoint was saved yet (every trainer.save_every_s), so the same command starts it over"
    try:
        with open(os.path.join(where, "summary.json")) as fh:
            epoch = json.load(fh).get("checkpoint_epoch")
    except (OSError, ValueError, AttributeError):
        epoch = None
    resumes = f"; {command} resumes it"
    return f"{resumes} from epoch {epoch}" if isinstance(epoch, int) and not isinstance(epoch, bool) else resumes
