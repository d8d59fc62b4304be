"""``report.at_end=true``: the report of a sweep (or run), written when its jobs end.

``regbench train -m ... report.at_end=true`` writes ``<sweep folder>/report``
as ``regbench report <sweep folder> <report.options>`` would, once the jobs
have ended. The report runs in a process forked when the sweep starts
(:class:`PendingReport`, from regbench.sweep's callback), which imports
pandas, SciPy, matplotlib and the report's modules, draws a little text
(the fonts) and compiles the page templates while the jobs are launched and
train, and then waits for the folder. A report command typed after the
sweep spends those imports on the clock (docs/speed.md: in the 12-run
sweep the report after the last job took 2.4 s, against 3.3-3.6 s for
`regbench report` typed afterwards).

When to import: the fused launcher's sweep process composes every job and
plans the groups while its warm process (regbench.warm) imports torch: both
cores are busy, and a third process importing as well slowed the import the
first group waits for. So under that launcher the report process waits until
the launcher has handed out the groups (:func:`begin_imports`; the sweep
process then sits idle) and imports on the core it leaves. Under any other
launcher, and for a single run, it imports at once.

This module imports nothing of the report until it is in that process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Optional

from .. import lifetime


GO = b"go"  # the line that lets a report process import (before the command line, which does too)
_waiting: list["PendingReport"] = []  # this process's report processes not yet told to import


def begin_imports() -> None:
    """Let every report process of this process that waits for it import now
    (the fused launcher, once its groups are handed out)."""
    for pending in list(_waiting):
        pending.begin()


class PendingReport:
    """A forked process, ready to write a report. :meth:`write` hands it the
    command line and waits for its exit code; :meth:`cancel` lets it go
    without a report (it also ends by itself when this process ends).
    ``wait``: it imports only once :meth:`begin` (or :func:`begin_imports`)
    says so, or when the command line comes."""

    def __init__(self, wait: bool = False) -> None:
        read, self._write = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # else the child would print what is buffered here again
        self.pid = os.fork()
        if self.pid == 0:  # the report process
            os.close(self._write)
            code = 1
            try:
                code = _serve(read)
            except Exception as exc:  # os._exit below would end the process without a word
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                print(f"regbench report: error: {type(exc).__name__}: {first}", file=sys.stderr)
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except Exception:  # a console that went away
                        pass
                os._exit(code)
        os.close(read)
        _waiting.append(self)
        if not wait:
            self.begin()

    def begin(self) -> None:
        """Tell the report process to import now (once)."""
        if self in _waiting:
            _waiting.remove(self)
            if self._write >= 0:
                try:
                    os.write(self._write, GO + b"\n")
                except OSError:  # it died; write() will say so
                    pass

    def write(self, argv: list[str]) -> Optional[int]:
        """The report of ``argv`` (``regbench report``'s arguments): its exit
        code, or None where the report process is gone (the caller writes it
        itself)."""
        if self in _waiting:
            _waiting.remove(self)
        try:
            os.write(self._write, json.dumps(argv).encode() + b"\n")
        except OSError:  # it died before it was asked
            self.cancel()
            return None
        os.close(self._write)
        self._write = -1
        try:
            status = self._wait()
        except KeyboardInterrupt:
            self._stop()
            raise
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        return code if code is not None and code >= 0 else None

    def cancel(self) -> None:
        if self in _waiting:
            _waiting.remove(self)
        if self._write >= 0:
            os.close(self._write)  # it reads the end of the pipe and exits
            self._write = -1
        self._wait()

    def _stop(self, grace_s: float = 1.0) -> None:
        """This process was interrupted while the report was being written. A
        terminal's Ctrl-C reaches the report process too (one process group):
        it says "interrupted" and ends; a signal to this process alone does
        not, so after ``grace_s`` it is ended (SIGTERM, silently)."""
        import time

        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.02)
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self._wait()

    def _wait(self) -> Optional[int]:
        try:
            return os.waitpid(self.pid, 0)[1]
        except ChildProcessError:
            return None


def _lines(fd: int):
    """The lines written to ``fd``, without their newline, until its end."""
    data = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        data += chunk
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            yield line


def _import_report() -> None:
    """What the report process is for: the report's modules imported, the
    fonts warmed up, the page templates compiled."""
    try:
        with lifetime.importing():
            from . import cli, figures, render  # noqa: F401

        figures.warm_up()
        render.warm_up()
    except Exception:  # the report will meet it again and say what it is
        pass


def _stop_quietly(signum, frame) -> None:
    """SIGTERM from the sweep process (:meth:`PendingReport._stop`): end as
    Ctrl-C would, so that what the report wrote aside is removed (by default
    SIGTERM ended the process there and then, leaving it), without the
    report's "interrupted" line: the sweep says why it stopped."""
    from .. import signals

    signals.mute(sys.stderr)
    raise KeyboardInterrupt


def _serve(fd: int) -> int:
    """The report process: wait for the go (or the command line), import and
    warm up, then wait for the command line and write its report; exit quietly
    when none comes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # while it waits, Ctrl-C is the sweep's to report
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the sweep process's handler (regbench.signals), inherited
    lines = _lines(fd)
    line = next(lines, None)
    if line is None:
        return 0  # the sweep ended without a report (interrupted, or no longer wanted)
    # The command line is awaited while this thread imports: the end of the
    # pipe before it (the sweep interrupted, or gone) ends this process at
    # once, not after the imports.
    command: list[bytes] = []

    def wait_for_command() -> None:
        nxt = next(lines, None) if line == GO else line
        if nxt is None:
            os._exit(0)
        command.append(nxt)

    waiter = threading.Thread(target=wait_for_command, daemon=True, name="report-command")
    waiter.start()
    _import_report()
    waiter.join()
    argv = json.loads(command[0])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_quietly)  # the sweep stops its report: cleaned up (the report's staging folder)
    from . import cli

    return cli.main(argv)
