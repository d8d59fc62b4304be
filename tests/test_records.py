import csv
import json
import math

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
