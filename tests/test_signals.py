"""Nothing breaks ugly: Ctrl-C, SIGTERM and SIGKILL end a sweep (basic or joblib)
in one line, with its jobs recorded ``interrupted``, no process left behind,
and a closed pipe is no error (regbench.signals)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY
from regbench import records

pytestmark = pytest.mark.slow

# Jobs long enough to be still training when the signal comes (hundreds of
# epochs of a few ms), short enough for a re-run to finish them quickly.
EPOCHS = 200
LONG = [*TINY, "data.n_samples=1000", f"trainer.epochs={EPOCHS}"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
STARTUP_S = 120  # a loaded 2-core machine can take a while to import torch in every worker


def train_args(sweep: Path, data_arg: str, *extra: str, dropout: str = "0,0.1,0.2") -> list[str]:
    return ["train", "-m", f"model.dropout={dropout}", *LONG, f"hydra.sweep.dir={sweep}", data_arg, *extra]


def start(args: list[str], cwd: Path, stdout, **kw) -> subprocess.Popen:
    """``regbench ARGS`` in its own process group, as a terminal starts a command."""
    kw.setdefault("start_new_session", True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "regbench", *args], cwd=cwd, env=env, stdout=stdout,
                            stderr=subprocess.STDOUT, **kw)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def summaries(sweep: Path) -> dict[str, dict]:
    """Job folder -> summary, for the jobs that recorded one."""
    if not sweep.is_dir():
        return {}
    return {j.name: records.read_summary(j) for j in sweep.iterdir() if (j / records.SUMMARY_FILE).exists()}


def statuses(sweep: Path) -> dict[str, str]:
    return {name: s["status"] for name, s in summaries(sweep).items()}


def training(sweep: Path, jobs: int):
    """True once ``jobs`` jobs are running and have each recorded a few epochs."""

    def check() -> bool:
        running = [s for s in summaries(sweep).values() if s["status"] == "running"]
        return sum(s.get("epochs_completed", 0) >= 3 for s in running) >= jobs

    return check


def assert_stopped(sweep: Path, before: dict[str, str]) -> None:
    """The jobs running when the signal came are recorded interrupted; no job started after it."""
    after = statuses(sweep)
    assert set(after) == set(before), (before, after)
    interrupted = {k for k, v in after.items() if v == "interrupted"}
    assert interrupted == {k for k, v in before.items() if v == "running"}, after


def assert_resumed(cli, args: list[str], sweep: Path, before: dict[str, str]) -> None:
    """The same command, right away: every interrupted job resumes and completes (no orphan holds its run.lock)."""
    res = cli(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert statuses(sweep) == {job: "completed" for job in before}
    for job in before:
        summary = records.read_summary(sweep / job)
        assert summary["resumed_after_epoch"] is not None and summary["epochs_completed"] == EPOCHS


# /proc, since psutil is not a dependency.


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after "(comm)" (which may hold spaces): state, ppid, pgrp, ..."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def members(pgid: int) -> list[int]:
    """The processes of a process group that have not exited (an orphan's zombie has)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and (fields := _stat(int(entry)))[0] != "Z" and int(fields[2]) == pgid:
                found.append(int(entry))
        except OSError:
            continue
    return found


def workers(pgid: int) -> list[int]:
    """joblib's loky workers in the group (not its resource trackers)."""
    found = []
    for pid in members(pgid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"LokyProcess" in fh.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def kill_all(proc: subprocess.Popen, *others: subprocess.Popen) -> None:
    """Whatever a failed test left running: the command's process group, workers included."""
    if members(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in (proc, *others):
        p.kill()
        p.wait()


# ---------------------------------------------------------------- an interrupt inside torch.save


def test_an_interrupt_while_a_checkpoint_is_written_stays_an_interrupt(tmp_path, monkeypatch):
    """Ctrl-C lands inside torch.save about as often as saving takes of an epoch
    (observed: a job of the joblib test below recorded ``failed``). It must stay
    an interrupt, and the previous checkpoint must stay whole."""
    import torch

    from regbench import train

    path = tmp_path / records.CHECKPOINT_FILE
    train.save_checkpoint(path, {"epoch": 1, "w": torch.zeros(1000)})

    class CutShort(io.FileIO):
        writes = 0

        def write(self, data):
            CutShort.writes += 1
            if CutShort.writes == 3:  # part of the new checkpoint is written
                raise KeyboardInterrupt
            return super().write(data)

    monkeypatch.setattr(train, "open", lambda file, mode: CutShort(file, "w"), raising=False)
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint(path, {"epoch": 2, "w": torch.ones(1000)})
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [records.CHECKPOINT_FILE]


# ---------------------------------------------------------------- basic launcher


def test_ctrl_c_stops_a_sweep_piped_to_tee(cli, tmp_path):
    """``regbench train -m ... 2>&1 | tee log`` and Ctrl-C: tee dies with the same
    SIGINT, so the line about the interrupted job meets a closed pipe. That must
    neither count as a failed job (the sweep would go on silently) nor print a traceback."""
    sweep = tmp_path / "sweep"
    # One pipeline, one process group, as a shell makes it (a group can only be
    # joined from within its session, hence no new session here).
    args = train_args(sweep, cli.data_arg)
    proc = start(args, tmp_path, subprocess.PIPE, start_new_session=False, preexec_fn=os.setpgrp)
    tee = subprocess.Popen(["tee", str(tmp_path / "log")], stdin=proc.stdout, stdout=subprocess.DEVNULL,
                           preexec_fn=lambda: os.setpgid(0, proc.pid))
    proc.stdout.close()  # tee holds the only reading end: when it dies, the pipe is closed
    try:
        # The default launcher trains the 3 jobs at once, perhaps in 2 processes that start apart:
        # wait for all of them, or a job whose process was slower looks as if it started after the signal.
        wait_for(training(sweep, 3), STARTUP_S, "the 3 jobs to train")
        before = statuses(sweep)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert tee.wait(timeout=10) != 0  # it died of the Ctrl-C
    finally:
        kill_all(proc, tee)
    assert_stopped(sweep, before)
    assert "Traceback" not in (tmp_path / "log").read_text()


def test_sigterm_stops_a_basic_sweep_in_one_line(cli, tmp_path):
    sweep = tmp_path / "sweep"
    with open(tmp_path / "log", "w") as log:
        proc = start(train_args(sweep, cli.data_arg, "hydra/launcher=basic"), tmp_path, log)
    try:
        wait_for(training(sweep, 1), STARTUP_S, "the first job to train")
        before = statuses(sweep)
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=60)
        assert code == 143, (code, before, statuses(sweep), (tmp_path / "log").read_text()[-4000:])
    finally:
        kill_all(proc)
    assert_stopped(sweep, before)
    out = (tmp_path / "log").read_text()
    (job,) = before
    said = [line for line in out.splitlines() if "interrupted" in line]
    kept = records.read_summary(sweep / job)["checkpoint_epoch"]  # trainer.save_every_s=0: one after every epoch
    assert said == [f"regbench train: interrupted; records kept in {sweep / job}; the same command resumes it from epoch {kept}"], out
    assert "Traceback" not in out


def test_an_interrupted_single_run_says_how_to_resume_it_in_its_own_folder(cli, tmp_path):
    """A single run's folder is named by the clock (hydra.run.dir's ${now:...}):
    "the same command resumes it" was said, and the same command started a new
    run in a new folder. The line names the folder to add; with it, the run resumes."""
    args = ["train", *LONG, "trainer.save_every_s=0", cli.data_arg]
    with open(tmp_path / "log", "w") as log:
        proc = start(args, tmp_path, log)
    try:
        found = lambda: [s for j in (tmp_path / "outputs" / "runs").glob("*/*") for s in summaries(j.parent).values()]  # noqa: E731
        wait_for(lambda: any(s["status"] == "running" and s.get("epochs_completed", 0) >= 3 for s in found()), STARTUP_S,
                 "the run to train")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        kill_all(proc)
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*")
    kept = records.read_summary(run_dir)["checkpoint_epoch"]
    said = [line for line in (tmp_path / "log").read_text().splitlines() if line.startswith("regbench train: interrupted")]
    assert said == [f"regbench train: interrupted; records kept in {run_dir}; the same command with "
                    f"hydra.run.dir={run_dir} resumes it from epoch {kept}"], said
    res = cli(*args, f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.stdout + res.stderr
    summary = records.read_summary(run_dir)
    assert summary["status"] == "completed" and summary["resumed_after_epoch"] == kept


def test_an_interrupted_job_without_a_checkpoint_is_not_said_to_resume(tmp_path):
    """Ctrl-C before the first checkpoint (trainer.save_every_s=60): "the same command resumes it" was said, and the
    same command started it over."""
    from regbench import signals

    records.write_summary(tmp_path, {"status": "interrupted", "checkpoint_epoch": None})
    assert signals.resume_note(str(tmp_path)) == ("; no checkpoint was saved yet (every trainer.save_every_s), so the "
                                                  "same command starts it over")
    (tmp_path / records.CHECKPOINT_FILE).write_bytes(b"")
    records.write_summary(tmp_path, {"status": "interrupted", "checkpoint_epoch": 7})
    assert signals.resume_note(str(tmp_path)) == "; the same command resumes it from epoch 7"


def test_closed_stdout_is_no_error(cli, tmp_path):
    """``regbench plan ... | head -1``: the reader goes away before plan prints.
    Buffered stdout (no PYTHONUNBUFFERED) meets it only in the last flush, where
    Python would print "Exception ignored ... BrokenPipeError"."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    for buffering in ({}, {"PYTHONUNBUFFERED": "1"}):
        proc = subprocess.Popen(
            [sys.executable, "-m", "regbench", "plan", "model.dropout=0,0.1,0.2", *TINY, cli.data_arg],
            cwd=tmp_path, env={**env, **buffering}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        proc.stdout.close()  # no reader at all
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 141, err  # 128 + SIGPIPE, as a C program's
        assert "Traceback" not in err and "BrokenPipeError" not in err, err


# ---------------------------------------------------------------- joblib launcher


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_joblib_sweep_stops_its_workers_in_one_line(cli, tmp_path, how):
    """Ctrl-C reaches the whole process group; SIGTERM only the regbench
    process, which passes the stop on. Either way each worker records its job
    ``interrupted`` and exits before regbench says one line and exits 130
    (143 after SIGTERM)."""
    sweep = tmp_path / "sweep"
    with open(tmp_path / "log", "w") as log:
        proc = start(train_args(sweep, cli.data_arg, *JOBLIB), tmp_path, log)
    try:
        wait_for(training(sweep, 2), STARTUP_S, "both workers to train")
        assert len(workers(proc.pid)) == 2
        before = statuses(sweep)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == (130 if how == "ctrl-c" else 143)  # 128 + the signal, as a shell reports it
        wait_for(lambda: not members(proc.pid), 10, "every process of the sweep to exit")
    finally:
        kill_all(proc)
    assert_stopped(sweep, before)  # the third job, already sent to a worker, never started
    out = (tmp_path / "log").read_text()
    assert out.rstrip().splitlines()[-1] == f"regbench train: interrupted; records kept in {sweep}; the same command resumes it", out
    assert sum("interrupted" in line for line in out.splitlines()) == 1, out
    assert "Traceback" not in out and "leaked" not in out, out
    for job in before:
        assert records.folder_in_use(sweep / job) is None


def test_killed_joblib_parent_leaves_no_worker_and_the_rerun_resumes(cli, tmp_path):
    """SIGKILL to regbench: its workers, orphaned, notice within a poll, record
    their jobs ``interrupted`` and exit, rather than train on while holding
    their run.lock, so that running the sweep again right away resumes them."""
    sweep = tmp_path / "sweep"
    args = train_args(sweep, cli.data_arg, *JOBLIB, dropout="0,0.1")
    with open(tmp_path / "log", "w") as log:
        proc = start(args, tmp_path, log)
    try:
        wait_for(training(sweep, 2), STARTUP_S, "both workers to train")
        orphans = workers(proc.pid)
        assert len(orphans) == 2
        before = statuses(sweep)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # Far sooner than the hundreds of epochs left in their jobs.
        wait_for(lambda: not set(orphans) & set(members(proc.pid)), 5, "the orphaned workers to exit")
        wait_for(lambda: not members(proc.pid), 10, "every process of the sweep to exit")
    finally:
        kill_all(proc)
    assert_stopped(sweep, before)

    assert_resumed(cli, args, sweep, before)


# ---------------------------------------------------------------- fused launcher (the default)

# two groups (BatchNorm off / on) training at once in two workers forked from
# the warm process (regbench.warm): regbench -> warm process -> workers
FUSED = ["model.batchnorm=false,true", "hydra.launcher.processes=2"]


def fused_workers(pid: int) -> list[int]:
    """The worker processes: the children of the regbench process's one child, the warm process."""
    def children(p: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            return []

    return [w for z in children(pid) for w in children(z)]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigkill-parent"])
def test_fused_sweep_stops_its_workers_in_one_line(cli, tmp_path, how):
    """Ctrl-C reaches the whole process group; SIGTERM only the regbench
    process, which passes it to the warm process, which passes it to the
    workers; a SIGKILLed regbench process leaves the warm process to stop
    them. Each way every job training is recorded ``interrupted`` and no
    process is left; after the SIGKILL the same command resumes the jobs at once
    (no orphan holds their run.lock)."""
    sweep = tmp_path / "sweep"
    args = train_args(sweep, cli.data_arg, *FUSED, dropout="0,0.1")
    with open(tmp_path / "log", "w") as log:
        proc = start(args, tmp_path, log)
    try:
        wait_for(training(sweep, 4), STARTUP_S, "both groups to train")
        assert len(fused_workers(proc.pid)) == 2
        before = statuses(sweep)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=60) == 130
        elif how == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 143  # it was 130, Ctrl-C's
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        wait_for(lambda: not members(proc.pid), 15, "every process of the sweep to exit")
    finally:
        kill_all(proc)
    assert set(before.values()) == {"running"} and len(before) == 4, before
    assert_stopped(sweep, before)
    out = (tmp_path / "log").read_text()
    assert "Traceback" not in out and "leaked" not in out, out
    if how != "sigkill-parent":
        assert out.rstrip().splitlines()[-1] == f"regbench train: interrupted; records kept in {sweep}; the same command resumes it", out
        assert sum("interrupted" in line for line in out.splitlines()) == 1, out
        return  # resuming after an interrupt: tests/test_fused.py, test_sweep.py
    assert_resumed(cli, args, sweep, before)


def test_a_ctrl_c_whose_keyboardinterrupt_was_swallowed_still_stops_the_command():
    """Ctrl-C early in `regbench train` raised KeyboardInterrupt where something swallowed it (2 of 64 tries
    trained to the end, exit 0) or replaced it with another error (4 of 64: a traceback). The flag stays."""
    from regbench import signals as sig
    from regbench.train import Interrupted, _stop_if_signalled

    with sig.early_handlers():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass  # swallowed, as a finalizer or an import's cleanup would
        assert sig.signalled()
        with pytest.raises(Interrupted):
            _stop_if_signalled()  # the training loop's check between epochs
        with pytest.raises(KeyboardInterrupt):
            with sig.stop_handlers():  # the sweep's handlers: it stops before Hydra runs a job
                pass
    assert not sig.signalled() and signal.getsignal(signal.SIGINT) is not sig._early


def test_an_error_after_ctrl_c_is_the_interrupt_not_a_traceback(monkeypatch, capsys):
    from regbench import cli

    def dispatch(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise AttributeError("'NoneType' object has no attribute '_invalidate_flags_cache'") from None

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    assert cli.main(["train"]) == 130
    assert capsys.readouterr().err == "regbench train: interrupted\n"
