"""Fault injection at the CLI: damaged records, full disks, dead processes,
duplicate seeds. Each case runs the real `regbench` in a subprocess and checks
the exit code, that no traceback reaches the user, and that records written
before the fault are still there, unchanged or set aside whole."""

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TINY
from regbench import records

pytestmark = pytest.mark.slow


def epochs_of(job: Path) -> list[int]:
    return [int(r["epoch"]) for r in csv.DictReader(open(job / records.METRICS_FILE))]


def without_time(text: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(text.splitlines())]


def no_traceback(res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr


def error_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]


@pytest.fixture
def tmpfs(tmp_path):
    """A 128 KiB file system that fills up mid-run (root only: it mounts a tmpfs)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("this sandbox cannot mount a tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_stops_the_run_in_one_line_and_the_same_command_resumes(cli, tmp_path, tmpfs):
    run_dir = tmpfs / "run"
    args = ["train", *TINY, "trainer.epochs=300", f"hydra.run.dir={run_dir}", cli.data_arg]
    res = cli(*args)
    no_traceback(res)
    assert res.returncode == 2
    (line,) = error_lines(res)
    assert line.startswith(f"regbench train: error: cannot write the records in {run_dir}: No space left on device")
    assert "run the same command again to resume" in line
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))  # no half-written file left
    summary = records.read_summary(run_dir)
    assert summary["status"] in ("interrupted", "running") and summary["status"] != "completed"
    stopped_at = len(epochs_of(run_dir)) - 1
    kept = (run_dir / records.METRICS_FILE).read_text().splitlines(keepends=True)
    status = cli("status", str(run_dir))
    no_traceback(status)
    assert status.returncode == 0 and ("interrupted" in status.stdout or "dead" in status.stdout)
    assert "  ." not in status.stdout and str(run_dir) in status.stdout  # a single run is named by its path

    subprocess.run(["mount", "-o", "remount,size=16m", str(tmpfs)], check=True)
    res = cli(*args)
    no_traceback(res)
    assert res.returncode == 0, res.stderr
    assert records.read_summary(run_dir)["status"] == "completed"
    assert records.read_summary(run_dir)["resumed_after_epoch"] is not None
    assert epochs_of(run_dir) == list(range(301))
    # the rows recorded before the disk filled up are still there, as they were
    assert (run_dir / records.METRICS_FILE).read_text().splitlines(keepends=True)[: stopped_at] == kept[: stopped_at]


def test_a_job_with_damaged_records_starts_afresh_saying_so_once(cli, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", *TINY, "trainer.epochs=4", f"hydra.run.dir={run_dir}", cli.data_arg]
    assert cli(*args).returncode == 0
    straight = (run_dir / records.METRICS_FILE).read_text()
    # as a kill at epoch 3 and a metrics.csv cut inside the epoch-2 row would leave it
    summary = records.read_summary(run_dir)
    records.write_summary(run_dir, {**summary, "status": "interrupted"})
    cut = straight[: straight.index("\n0,2,") + 10]
    (run_dir / records.METRICS_FILE).write_text(cut)
    res = cli(*args)
    no_traceback(res)
    assert res.returncode == 0
    warnings = [line for line in res.stdout.splitlines() if "starting afresh" in line]
    assert len(warnings) == 1 and "metrics.csv lacks epochs 2-4 of seed 0" in warnings[0]
    assert without_time((run_dir / records.METRICS_FILE).read_text()) == without_time(straight)  # trained again
    (aside,) = run_dir.glob(".corrupt-*")
    assert (aside / records.METRICS_FILE).read_text() == cut
    # the report reads the job once (the set-aside copy is no job) and uses it
    report = cli("report", str(run_dir), "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    (run,) = csv.DictReader(open(tmp_path / "report" / "runs.csv"))
    assert run["used"] == "True" and run["status"] == "completed"


def test_status_and_train_survive_a_summary_that_is_not_a_record(cli, tmp_path):
    contents = ["[]", "null", '{"status": "completed", "config": [']
    for i, content in enumerate(contents):
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / records.SUMMARY_FILE).write_text(content)
    status = cli("status", str(tmp_path))
    no_traceback(status)
    assert status.returncode == 0 and "3 jobs (3 unreadable)" in status.stdout and "sets it aside" in status.stdout
    run_dir = tmp_path / "run0"
    res = cli("train", *TINY, f"hydra.run.dir={run_dir}", cli.data_arg)
    no_traceback(res)
    assert res.returncode == 0 and records.read_summary(run_dir)["status"] == "completed"
    (aside,) = run_dir.glob(".corrupt-*")
    assert (aside / records.SUMMARY_FILE).read_text() == contents[0]


def test_a_sweep_that_trains_a_seed_twice_is_refused(cli, tmp_path):
    sweep = tmp_path / "sweep"
    res = cli("train", "-m", "seed=0,2", "trainer.replicas=1,2", *TINY, f"hydra.sweep.dir={sweep}", cli.data_arg)
    no_traceback(res)
    assert res.returncode == 2
    (line,) = error_lines(res)
    assert "seed 0 would be trained twice in one setting" in line
    assert not sweep.exists() or not any(sweep.rglob(records.SUMMARY_FILE))
