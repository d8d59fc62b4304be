import csv
import json
import math
import os
import socket
import subprocess
import sys

import pytest

from regbench import records


def test_metrics_writer_header_once_and_rows_flushed(tmp_path):
    path = tmp_path / "metrics.csv"
    w = records.MetricsWriter(path, ["seed", "epoch", "val_loss", "test_loss"])
    w.write({"seed": 0, "epoch": 0, "val_loss": 0.5, "test_loss": None})
    # readable while the writer is still open: every row is flushed
    assert path.read_text().splitlines() == ["seed,epoch,val_loss,test_loss", "0,0,0.5,"]
    w.close()
    with records.MetricsWriter(path, ["seed", "epoch", "val_loss", "test_loss"]) as w2:  # a resumed run appends
        w2.write({"seed": 0, "epoch": 1, "val_loss": 1 / 3})
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert float(rows[1]["val_loss"]) == 1 / 3  # full precision round-trips


def test_metrics_writer_rejects_unknown_columns(tmp_path):
    with records.MetricsWriter(tmp_path / "m.csv", ["epoch"]) as w, pytest.raises(ValueError):
        w.write({"epoch": 0, "nope": 1})


def test_summary_is_atomic_and_json_safe(tmp_path):
    records.write_summary(tmp_path, {"status": "completed", "final": {"val_loss": math.nan, "x": math.inf}})
    data = records.read_summary(tmp_path)
    assert data["schema_version"] == records.SCHEMA_VERSION
    assert data["final"] == {"val_loss": "nan", "x": "inf"}
    # a write that fails half-way leaves the previous summary and no temp file
    with pytest.raises(TypeError):
        records.write_summary(tmp_path, {"status": "failed", "bad": object()})
    assert records.read_summary(tmp_path)["status"] == "completed"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    json.loads((tmp_path / "summary.json").read_text())


def test_flatten():
    assert records.flatten({"model": {"dropout": 0.3, "widths": [1, 2]}, "seed": 0}) == {
        "model.dropout": 0.3,
        "model.widths": [1, 2],
        "seed": 0,
    }


def test_find_job_dirs(tmp_path):
    a = tmp_path / "sweep" / "0"
    b = tmp_path / "sweep" / "1"
    c = tmp_path / "other" / "killed"
    noise = tmp_path / "sweep" / "notes"
    for d in (a, b, c / ".hydra", noise):
        d.mkdir(parents=True)
    records.write_summary(a, {"status": "completed"})
    records.write_summary(b, {"status": "failed"})
    (c / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (c / "metrics.csv").write_text("seed,epoch\n")
    (noise / "metrics.csv").write_text("no config, not a job\n")
    assert records.find_job_dirs(tmp_path) == sorted(p.resolve() for p in (a, b, c))
    assert records.find_job_dirs(a) == [a.resolve()]


def write_rows(path, lines, end="\n"):
    path.write_text("\n".join(["seed,epoch,step,val_loss", *lines]) + end)


def test_metrics_upto_keeps_exactly_the_checkpointed_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    write_rows(path, ["0,0,0,2.5", "1,0,0,2.4", "0,1,6,1.25", "1,1,6,inf", "0,2,12,1.0", "0,3,18,0.9"], end="")
    # seed 1 diverged at epoch 1; rows past the checkpoint (epoch 2) do not count; the
    # last line has no newline (cut by a kill) and is never read
    header, rows = records.read_metrics_upto(path, {0: 2, 1: 1})
    assert header == ["seed", "epoch", "step", "val_loss"]
    assert [(r["seed"], r["epoch"], r["val_loss"]) for r in rows] == [
        (0, 0, 2.5), (1, 0, 2.4), (0, 1, 1.25), (1, 1, float("inf")), (0, 2, 1.0)]
    assert isinstance(rows[0]["step"], int)


@pytest.mark.parametrize(
    "lines, end, message",
    [
        (["0,0,0,2.5", "0,1,6,1.2"], "", "lacks epoch 1 of seed 0"),  # the checkpoint's row cut inside a number
        (["0,0,0,2.5", "0,1,6,1.2x"], "\n", "line 3 holds a value that is not a number"),
        (["0,0,0,2.5", "0,1,6"], "\n", "line 3 has 3 cells for 4 columns"),
        (["0,0,0,2.5", "2,0,0,2.5", "0,1,6,1.2"], "\n", "seed 2, which this job does not train"),
        (["0,1,6,1.2"], "\n", "lacks epoch 0 of seed 0"),
    ],
)
def test_metrics_upto_refuses_what_it_cannot_trust(tmp_path, lines, end, message):
    path = tmp_path / "metrics.csv"
    write_rows(path, lines, end)
    with pytest.raises(records.DamagedRecord, match=message):
        records.read_metrics_upto(path, {0: 1})


def test_fingerprint_ignores_runtime_keys_only():
    base = {"model.dropout": 0.2, "seed": 0, "threads": 0, "device": "auto", "trainer.diverge_loss": float("inf")}
    assert records.fingerprint(base) == records.fingerprint({**base, "threads": 2, "device": "cpu"})
    assert records.fingerprint(base) != records.fingerprint({**base, "model.dropout": 0.5})
    assert records.fingerprint(base) != records.fingerprint({**base, "seed": 1})


def test_without_flock_an_exclusive_lock_file_stands_in(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    held = records.acquire_lock(tmp_path)
    assert (tmp_path / records.EXCL_LOCK_FILE).exists()
    with pytest.raises(records.FolderInUse, match=rf"in use by process {os.getpid()} on "):
        records.acquire_lock(tmp_path)
    assert records.folder_in_use(tmp_path) is not None
    records.release_lock(held)
    assert not (tmp_path / records.EXCL_LOCK_FILE).exists() and records.folder_in_use(tmp_path) is None
    # a holder killed with -9 leaves its file: a dead pid of this host is taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / records.EXCL_LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    records.release_lock(records.acquire_lock(tmp_path))
    # a holder on another host cannot be checked from here: refused, not stolen
    (tmp_path / records.EXCL_LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(records.FolderInUse, match="process 1 on elsewhere"):
        records.acquire_lock(tmp_path)
