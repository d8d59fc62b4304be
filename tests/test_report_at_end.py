"""report.at_end=true: `regbench train` writes the report of its sweep or run
when the jobs end, as `regbench report <folder> <report.options>` would."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from conftest import TINY
from regbench import records
from regbench.report import at_end, options


def test_a_sweep_writes_its_report_when_its_jobs_end(cli, tmp_path):
    sweep = tmp_path / "sweep"
    r = cli("train", "-m", *TINY, cli.data_arg, "model.dropout=0,0.5", "seed=0,1", f"hydra.sweep.dir={sweep}",
            "report.at_end=true", "report.options=[--formats,png,--metric,val_loss]")
    assert r.returncode == 0, r.stderr
    assert "4 jobs: 4 completed" in r.stdout
    assert "next: regbench report" not in r.stdout  # the report's own lines follow instead
    assert f"wrote {sweep / 'report' / 'report.html'}" in r.stdout
    assert "best val_loss" in r.stdout  # report.options reached the report
    # the report keys make no job different: the folders are named as without them
    folders = [p.name for p in sweep.iterdir() if p.is_dir() and p.name != "report"]
    assert len(folders) == 4 and not any("report" in f for f in folders), folders
    # the same tables as `regbench report` typed afterwards
    again = cli("report", str(sweep), "-o", str(tmp_path / "typed"), "--metric", "val_loss", "-q")
    assert again.returncode == 0, again.stderr
    for table in ("runs.csv", "cells.csv", "effects.csv"):
        a, b = (pd.read_csv(d / table) for d in (sweep / "report", tmp_path / "typed"))
        pd.testing.assert_frame_equal(a, b)


def test_a_single_run_writes_its_report(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, cli.data_arg, f"hydra.run.dir={run}", "report.at_end=true", "report.options=[-q]")
    assert r.returncode == 0, r.stderr
    assert (run / "report" / "report.html").is_file()
    assert "wrote" not in r.stdout  # -q


def test_a_sweep_under_hydras_basic_launcher_writes_its_report(cli, tmp_path):
    """Without the fused launcher nothing tells the report process to import
    (at_end.begin_imports): it imports at once, and the report is written."""
    sweep = tmp_path / "sweep"
    r = cli("train", "-m", *TINY, cli.data_arg, "seed=0,1", "hydra/launcher=basic", f"hydra.sweep.dir={sweep}",
            "report.at_end=true", "report.options=[-q]")
    assert r.returncode == 0, r.stderr
    assert "2 jobs: 2 completed" in r.stdout
    assert (sweep / "report" / "report.html").is_file()


@pytest.mark.parametrize("given, says", [
    ("report.options=[--formatz,png]", "unrecognized arguments: --formatz png; allowed: --out, --metric"),
    ("report.options=[--formats,gif]", "unknown format 'gif'; allowed: png, svg, pdf"),
    ("report.options=[--target]", "argument --target: expected one argument"),
    ("report.options=[--help]", "not a report"),
    ('report.options="--formats png"', "a list of `regbench report` options"),
    # known before training too (the report refused them after every job had trained)
    ("report.options=[--target,60]", "--target 60: accuracies are fractions in [0, 1]; did you mean 0.6?"),
    ("report.options=[-o,afile.txt]", "-o afile.txt: a file, not a folder"),
    ("report.options=[no/such/sweep]", "no/such/sweep: no such folder"),
    ("report.options=[-o," + "x" * 300 + "/rep]", "a name in it is longer than the file system allows"),  # silent exit 1
])
def test_bad_report_options_are_refused_before_anything_starts(cli, tmp_path, given, says):
    sweep = tmp_path / "sweep"
    (tmp_path / "afile.txt").write_text("")  # relative to the folder the command is typed in
    r = cli("train", "-m", *TINY, cli.data_arg, "seed=0,1", f"hydra.sweep.dir={sweep}", "report.at_end=true", given)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench train: error: report.options"), r.stderr
    assert says in lines[0]
    assert not sweep.exists()


def test_a_report_that_fails_after_the_sweep_sets_the_exit_code(cli, tmp_path):
    sweep = tmp_path / "sweep"
    r = cli("train", "-m", *TINY, cli.data_arg, "seed=0,1", f"hydra.sweep.dir={sweep}", "report.at_end=true",
            "report.options=[--metric,nope]")
    assert r.returncode == 2
    assert "2 jobs: 2 completed" in r.stdout
    assert "regbench report: error: --metric nope: no such column in metrics.csv" in r.stderr
    assert all((d / records.SUMMARY_FILE).is_file() for d in sweep.iterdir() if d.is_dir())  # the records stay


def test_report_keys_are_runtime_keys():
    assert records.is_runtime_key("report.at_end") and records.is_runtime_key("report.options")
    assert options.refusal(["--metric", "val_loss", "--formats", "png,svg", "-q"]) is None


def test_a_pending_report_waits_for_its_folder_and_ends_without_one(tmp_path):
    pending = at_end.PendingReport()
    pending.cancel()  # no folder comes: it ends, quietly
    with pytest.raises(ChildProcessError):
        os.waitpid(pending.pid, os.WNOHANG)  # reaped: nothing is left behind
    pending = at_end.PendingReport()
    assert pending.write([str(tmp_path / "nothing-here"), "-q"]) == 2  # its exit code: no runs under that folder


def test_a_drawing_worker_ends_when_its_report_process_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = (  # two figures, each drawn for a minute: one here, one in a drawing worker
        "import os, time\n"
        "from regbench.report import figures\n"
        "def draw():\n"
        "    os.write(1, f'{os.getpid()}\\n'.encode())  # one write: two processes' lines do not interleave\n"
        "    time.sleep(60)\n"
        "figures.run_tasks([figures.Task(f'f{i}', '', '', draw, ()) for i in range(2)], '.', ['png'], jobs=2)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    drawing = {int(proc.stdout.readline()) for _ in range(2)}
    assert proc.pid in drawing and len(drawing) == 2
    worker = (drawing - {proc.pid}).pop()
    os.kill(proc.pid, signal.SIGKILL)  # as a report process killed mid-drawing
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{worker}/stat") as fh:
                if fh.read().rpartition(")")[2].split()[0] == "Z":
                    return  # ended, not yet reaped (by pid 1, its parent now)
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the idle drawing worker outlived its report process")


def test_a_waiting_report_process_imports_only_when_told(tmp_path):
    """Under the fused launcher the report process imports (matplotlib and
    the rest) only once the sweep is composed (at_end.begin_imports), not
    while the sweep process composes and the warm process imports torch."""
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from regbench.report import at_end\n"
        "assert 'matplotlib' not in sys.modules\n"
        "def loaded(pid):\n"
        "    return 'ft2font' in open(f'/proc/{pid}/maps').read()\n"
        "p = at_end.PendingReport(wait=True)\n"
        "time.sleep(1.5)\n"
        "print('before', loaded(p.pid), flush=True)\n"
        "at_end.begin_imports()\n"
        "deadline = time.monotonic() + 60\n"
        "while not loaded(p.pid) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('after', loaded(p.pid), flush=True)\n"
        "print('code', p.write([sys.argv[1], '-q']), flush=True)\n"
    )
    if not os.path.exists(f"/proc/{os.getpid()}/maps"):
        pytest.skip("no /proc here")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "nothing-here")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["before", "False", "after", "True", "code", "2"], r.stdout + r.stderr


def test_a_report_process_ends_at_once_when_the_sweep_ends_during_its_imports(monkeypatch):
    """Ctrl-C soon after the launch: the report process, still importing,
    ends with the sweep instead of finishing its imports first (nothing of
    the command is left running)."""
    import time

    monkeypatch.setattr(at_end, "_import_report", lambda: time.sleep(60))  # imports that take a minute
    pending = at_end.PendingReport()
    time.sleep(0.2)  # it has the go and is "importing"
    t0 = time.monotonic()
    pending.cancel()  # the end of the pipe, as when the sweep process ends; returns once it has exited
    assert time.monotonic() - t0 < 30  # not the minute of imports


@pytest.mark.parametrize("metric,target,says", [
    ("val_acc", 0.6, None), ("val_acc", 60, "accuracies are fractions in [0, 1]; did you mean 0.6?"),
    ("gap_acc", -0.05, None),  # fit - val: refused as "accuracies are fractions in [0, 1]"
    ("gap_acc", -5, "accuracy gaps are differences of fractions, in [-1, 1]; did you mean -0.05?"),
    ("val_loss", 0.9, None), ("val_loss", -1, "losses are cross-entropies, >= 0"), ("gap_loss", -0.2, None),
])
def test_a_target_is_checked_against_what_its_metric_can_be(metric, target, says):
    why = options.target_refusal(metric, target)
    assert why == (None if says is None else f"--target {target:g}: {says}")


_TERMINATED = """
import os, signal, sys
from regbench.report import at_end, cli, render
signal.signal(signal.SIGTERM, at_end._stop_quietly)  # as the report process sets it once its command line came
def terminated(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # the sweep stops its report while it writes
render.write_markdown = terminated
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_report_the_sweep_stops_leaves_nothing_half_written(tmp_path):
    """SIGTERM (the sweep interrupted while its report.at_end report writes)
    ended the report process at once: the hidden folder of what it had
    written, and the report folder it had made, stayed."""
    import subprocess
    import sys

    from regbench.report.synth import write_sweep

    sweep = write_sweep(tmp_path / "s", dropouts=(0.0, 0.5), batchnorms=(False,), seeds=(0, 1), epochs=3, diagnostics=False)
    res = subprocess.run([sys.executable, "-c", _TERMINATED, str(sweep), "-q", "-j", "1"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 130 and res.stderr == "", res.stderr
    assert not (sweep / "report").exists()
