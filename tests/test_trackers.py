"""Trackers (the logger group) and `regbench export`, read back with the real
libraries: tensorboard's EventAccumulator and mlflow's MlflowClient."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from conftest import TINY

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 opens file: stores only on request


def metrics_rows(job: Path) -> list[dict]:
    with open(job / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def tb_scalars(seed_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(seed_dir))
    acc.Reload()
    return acc, {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def assert_tb_matches_csv(job: Path, seed_dir: Path, seed: int) -> dict:
    """Every metrics.csv column of the seed, at every epoch, equals the event value (float32)."""
    acc, scalars = tb_scalars(seed_dir)
    rows = [r for r in metrics_rows(job) if int(r["seed"]) == seed]
    assert rows
    for row in rows:
        for col, text in row.items():
            if col in ("seed", "epoch") or text == "":
                continue
            assert scalars[col][int(row["epoch"])] == pytest.approx(float(text), rel=1e-6, abs=1e-6), (col, row["epoch"])
    steps = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}  # repeats kept
    for col in rows[0]:
        if col not in ("seed", "epoch") and rows[0][col] != "":
            assert sorted(steps[col]) == [int(r["epoch"]) for r in rows], col  # each epoch once
    return scalars


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# A process that asks regbench for the MLflow experiment "sweep" in a file
# store, at the same moment as another (each waits for the other's "ready"),
# with the store's lookup slowed so that both look before either makes it.
_EXPERIMENT = """
import os, sys, time
from pathlib import Path
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
from mlflow.tracking import MlflowClient
from regbench.trackers import _experiment_id
root, me = Path(sys.argv[1]), sys.argv[2]
client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
lookup = client.get_experiment_by_name
client.get_experiment_by_name = lambda name: (lookup(name), time.sleep(0.5))[0]
(root / f"ready-{me}").touch()
while len(list(root.glob("ready-*"))) < 2:
    time.sleep(0.005)
print(_experiment_id(client, "sweep"))
"""


def test_workers_that_start_together_share_one_mlflow_experiment(tmp_path):
    """The groups of a fused sweep start at once in worker processes, and each
    asks for the sweep's experiment. MLflow's file store does not refuse a
    second experiment of a name: two workers that both found none made two,
    and the sweep's runs were split between them (seen as 3 of 4 runs in the
    experiment). One process at a time now looks and makes it."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-c", _EXPERIMENT, str(tmp_path), me], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for me in "ab"]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = {o.strip().splitlines()[-1] for o, _ in outs}
    client = mlflow_client((tmp_path / "mlruns").as_uri())
    named = [e for e in client.search_experiments() if e.name == "sweep"]
    assert len(ids) == 1 and len(named) == 1, (ids, named)


def test_tensorboard_replicas_every_column_hparams_and_best(make_cfg, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from regbench.train import run

    job = tmp_path / "job"
    summary = run(make_cfg("logger=tensorboard", "trainer.replicas=2", "seed=3", "model.batchnorm=true"), job, show_progress=False)
    assert summary["status"] == "completed"
    for seed in (3, 4):
        seed_dir = job / "tensorboard" / f"seed={seed}"
        scalars = assert_tb_matches_csv(job, seed_dir, seed)
        best = summary["per_seed"][str(seed)]["best"]
        assert scalars["summary/best_val_acc"][2] == pytest.approx(best["val_acc"], rel=1e-6)
        assert scalars["summary/best_epoch"][2] == best["epoch"]
        acc, _ = tb_scalars(seed_dir)
        content = acc.PluginTagToContent("hparams")
        start = [plugin_data_pb2.HParamsPluginData.FromString(v) for v in content.values()]
        hp = next(d.session_start_info.hparams for d in start if d.HasField("session_start_info"))
        assert hp["model.batchnorm"].number_value == 1  # torch writes booleans as numbers
        assert hp["seed"].number_value == 3 and hp["optim.name"].string_value == "adam"


def test_fused_sweep_mlflow_then_export_to_tensorboard_and_mlflow(cli, tmp_path):
    sweep, uri = tmp_path / "sweep", (tmp_path / "mlruns").as_uri()
    args = ["train", "-m", "model.dropout=0,0.5", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}", cli.data_arg,
            "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "hydra.launcher.processes=2"]
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert "jobs (2 seeds) as one vectorized model" in out and "WARNING" not in out, out[-3000:]  # the fused path (two groups, one per core)
    jobs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(jobs) == 4 and not any("logger" in j.name for j in jobs)  # a runtime key: not in folder names
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name("sweep")  # the sweep folder's name
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        seed = summary["seeds"][0]
        (r,) = [r for r in runs if r.data.tags["records"] == str(job)]
        assert r.data.tags["seed"] == str(seed) and r.data.tags["status"] == "completed" and r.info.status == "FINISHED"
        assert r.data.params["model.dropout"] == str(summary["config"]["model.dropout"])
        assert r.data.metrics["best_val_acc"] == pytest.approx(summary["best"]["val_acc"])
        assert r.data.metrics["best_epoch"] == summary["best"]["epoch"]
        rows = metrics_rows(job)
        for col in ("val_acc", "train_loss", "fit_loss", "grad_norm"):
            history = {m.step: m.value for m in client.get_metric_history(r.info.run_id, col)}
            expect = {int(row["epoch"]): float(row[col]) for row in rows if row[col] != ""}
            assert history == pytest.approx(expect), col
            assert len(client.get_metric_history(r.info.run_id, col)) == len(expect)

    # The same command again: logger keys stay out of folder names, every job is skipped, no run is added
    again = cli(*args)
    assert again.returncode == 0 and "4 skipped" in again.stdout + again.stderr, again.stdout[-1500:]
    assert len(client.search_runs([exp.experiment_id])) == 4

    # export the finished sweep: TensorBoard event files equal metrics.csv
    tb = tmp_path / "tb"
    res = cli("export", str(sweep), "--to", "tensorboard", "-o", str(tb))
    assert res.returncode == 0 and res.stdout.startswith("exported 4 runs of 4 jobs to tensorboard"), res.stdout + res.stderr
    for job in jobs:
        scalars = assert_tb_matches_csv(job, tb / "sweep" / job.name / f"seed={json.loads((job / 'summary.json').read_text())['seeds'][0]}",
                                        json.loads((job / "summary.json").read_text())["seeds"][0])
        assert "summary/best_val_acc" in scalars

    # export to a fresh MLflow store; exporting twice adds nothing
    uri2 = (tmp_path / "mlruns2").as_uri()
    res = cli("export", str(sweep), "--to", "mlflow", "--tracking-uri", uri2, "--experiment", "ablation")
    assert res.returncode == 0 and res.stdout.startswith("exported 4 runs of 4 jobs to mlflow"), res.stdout + res.stderr
    from regbench.export import export

    again = export([str(sweep)], "mlflow", tracking_uri=uri2, experiment="ablation")  # again, in this process: nothing added
    assert again.startswith("exported 0 runs of 0 jobs") and "skipped 4: " in again and "(already exported to experiment ablation)" in again, again
    client2 = mlflow_client(uri2)
    runs2 = client2.search_runs([client2.get_experiment_by_name("ablation").experiment_id])
    assert len(runs2) == 4
    for r in runs2:
        job = Path(r.data.tags["records"])
        summary = json.loads((job / "summary.json").read_text())
        assert r.data.metrics["best_val_acc"] == pytest.approx(summary["best"]["val_acc"])
        assert r.data.metrics["best_epoch"] == summary["best"]["epoch"]
        assert [m.step for m in client2.get_metric_history(r.info.run_id, "val_loss")] == [0, 1, 2]
        assert len(client2.get_metric_history(r.info.run_id, "best_val_acc")) == 1  # the second export logged it again
        assert r.data.tags["status"] == "completed"


def test_export_errors_are_one_line(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile.txt").write_text("")
    for args, text in [
        (["empty", "--to", "mlflow"], "regbench export: error: no run records under empty"),
        (["afile.txt", "--to", "mlflow"], "regbench export: error: afile.txt: a file, not a folder"),
        (["empty"], "regbench export: error: the following arguments are required: --to"),  # argparse's usage too: 3 lines
        (["empty", "--to", "wandb"], "regbench export: error: --to 'wandb' is not allowed: one of tensorboard, mlflow"),
        (["nowhere", "--to", "mlflow"], "regbench export: error: nowhere: no such folder"),
    ]:
        res = cli("export", *args)
        assert res.returncode == 2 and res.stderr.strip() == text + res.stderr.strip()[len(text):], res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith(text), res.stderr


def test_a_failing_logger_warns_once_and_costs_nothing(make_cfg, tmp_path, caplog, monkeypatch):
    from regbench.train import run

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # tensorboard not installed
    caplog.set_level(logging.WARNING)
    job = tmp_path / "job"
    cfg = make_cfg("logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={(blocker / 'mlruns').as_uri()}", "trainer.replicas=2")
    summary = run(cfg, job, show_progress=False)
    assert summary["status"] == "completed"
    assert len(metrics_rows(job)) == 2 * 3  # 2 seeds x epochs 0..2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # one per logger for the job, none per epoch
    assert "logger=tensorboard is off" in warnings[0] and "pip install 'regbench[tensorboard]'" in warnings[0]
    assert "logger=mlflow is off" in warnings[1] and "Not a directory" in warnings[1]
    assert all("\n" not in w for w in warnings)


def test_a_tracking_server_that_is_down_is_one_warning_at_once(make_cfg, tmp_path, caplog, monkeypatch):
    """MLflow's client retried a server that refuses connections for about 4 minutes before the warning."""
    import socket
    import time

    from regbench.train import run

    pytest.importorskip("mlflow")
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # behind a proxy the probe is left to MLflow's client
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    summary = run(make_cfg("logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}"), tmp_path / "job",
                  show_progress=False)
    assert summary["status"] == "completed" and time.monotonic() - start < 120  # MLflow's retries: ~250 s
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"the MLflow tracking server http://127.0.0.1:{port} cannot be reached" in warnings[0]


def test_resumed_job_logs_each_epoch_once(make_cfg, tmp_path, monkeypatch):
    """Interrupted after epoch 1's checkpoint (epoch 2's rows already logged):
    the resumed job goes on in the same MLflow run and TensorBoard folder."""
    from regbench import train

    uri = (tmp_path / "mlruns").as_uri()
    cfg = make_cfg("logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", "trainer.epochs=3")
    job = tmp_path / "job"
    save = train.JobRun.save

    def stop_at_2(self, epoch, learner, offset):
        if epoch == 2:
            raise train.Interrupted("test")
        save(self, epoch, learner, offset)

    monkeypatch.setattr(train.JobRun, "save", stop_at_2)
    with pytest.raises(train.Interrupted):
        train.run(cfg, job, show_progress=False)
    client = mlflow_client(uri)
    (r,) = client.search_runs([client.get_experiment_by_name("regbench").experiment_id])
    assert r.data.tags["status"] == "interrupted" and r.info.status == "KILLED"
    monkeypatch.setattr(train.JobRun, "save", save)
    summary = train.run(cfg, job, show_progress=False)
    assert summary["status"] == "completed" and summary["resumed_after_epoch"] == 1
    (r,) = client.search_runs([client.get_experiment_by_name("regbench").experiment_id])
    assert r.data.tags["status"] == "completed" and r.info.status == "FINISHED"
    rows = metrics_rows(job)
    history = client.get_metric_history(r.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    assert {m.step: m.value for m in history} == pytest.approx({int(x["epoch"]): float(x["val_loss"]) for x in rows})
    assert_tb_matches_csv(job, job / "tensorboard" / "seed=0", 0)


def test_a_read_that_meets_another_workers_write_is_tried_again(tmp_path, monkeypatch):
    """MLflow's file store can find a metric file another worker process made
    but has not written yet; the search is tried again, and an interrupt is not swallowed."""
    from regbench import trackers

    monkeypatch.setattr(trackers, "READ_RETRIES", (0.0, 0.0))
    out = tmp_path / "job"
    out.mkdir()
    tracker = trackers.MlflowTracker(None, out, {"seed": 0}, [0], experiment="e")
    tracker.client = mlflow_client((tmp_path / "mlruns").as_uri())
    tracker.experiment_id = trackers._experiment_id(tracker.client, "e")
    real, calls = tracker.client.search_runs, []

    def racy(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("Metric 'final_val_acc' is malformed. No data found.")
        return real(*args, **kw)

    monkeypatch.setattr(tracker.client, "search_runs", racy)
    tracker.begin([])
    assert len(calls) == 2 and len(tracker.runs) == 1
    tracker.close({"status": "completed", "per_seed": {}})
    monkeypatch.setattr(tracker.client, "search_runs", lambda *a, **k: (_ for _ in ()).throw(ValueError("still")))
    with pytest.raises(ValueError, match="still"):  # a store that stays broken: the error, after the tries
        tracker._find(0)
    stops = []

    def interrupted(*args, **kw):
        stops.append(1)
        raise trackers.Interrupted("stop")

    monkeypatch.setattr(tracker.client, "search_runs", interrupted)
    with pytest.raises(trackers.Interrupted):
        tracker._find(0)
    assert len(stops) == 1  # Ctrl-C / SIGTERM stops at once


@pytest.mark.parametrize("args, text", [
    (["logger=neptune"], "regbench train: error: logger=neptune: no such option; allowed: many_loggers, mlflow, tensorboard"),
    (["logger=[tensorboard,neptune]"], "regbench train: error: logger=neptune: no such option; allowed: many_loggers, mlflow, tensorboard"),
    (["logger.mlflow.tracking_uri=file:///x"], "regbench train: error: logger.mlflow.tracking_uri: the mlflow logger is off; select it too: logger=mlflow"),
    (["logger=tensorboard", "logger.tensorboard.savedir=x"], "regbench train: error: logger.tensorboard.savedir is not a config key"),
])
def test_bad_logger_values_are_refused_before_anything_runs(cli, tmp_path, args, text):
    res = cli("train", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 2 and res.stderr.startswith(text) and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "run").exists()


def tb_steps(seed_dir: Path) -> dict[str, list[int]]:
    """Every scalar tag's steps as TensorBoard shows them, repeats kept."""
    acc, _ = tb_scalars(seed_dir)
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("first", ["before the end", "cut after 10 values", "cut after 35 values", "no rows"])
def test_a_tensorboard_export_made_before_the_run_ended_gets_the_rest_when_exported_again(make_cfg, tmp_path, monkeypatch, first):
    """An export cut short (Ctrl-C, a full disk: here after K values, mid-epoch)
    or made while the run was still training left event files with some of the
    epochs; every later export skipped the folder ("event files already in"),
    so TensorBoard showed the partial run for good. Now the epochs the files
    lack are added with the summary as it is now, each epoch once and the old
    summary values hidden; a complete folder is left alone."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    from regbench.export import export
    from regbench.train import run

    full = tmp_path / "b" / "job"
    run(make_cfg("trainer.epochs=4", "seed=3"), full, show_progress=False)
    ended = tmp_path / "ended"  # its records at the end, put back after the first export
    shutil.copytree(full, ended)
    earlier = full  # the same job (its folder: the export names it) as the first export saw it
    tb, seed_dir = tmp_path / "tb", tmp_path / "tb" / "job" / "seed=3"
    if first in ("before the end", "no rows"):  # training: metrics.csv every epoch, summary.json at saves (behind it)
        lines = (full / "metrics.csv").read_text().splitlines(keepends=True)
        (earlier / "metrics.csv").write_text("".join(lines[:4] if first == "before the end" else lines[:1]))
        summary = json.loads((full / "summary.json").read_text())
        summary["status"] = summary["per_seed"]["3"]["status"] = "running"
        summary["per_seed"]["3"]["epochs_completed"] = 1 if first == "before the end" else 0
        (earlier / "summary.json").write_text(json.dumps(summary))
        assert export([str(earlier)], "tensorboard", output=str(tb)).startswith("exported 1 run of 1 job")
    else:
        k, count, add = int(first.split()[2]), [0], SummaryWriter.add_scalar

        def cut(self, *args, **kwargs):
            count[0] += 1
            if count[0] > k:
                self.flush()
                raise KeyboardInterrupt
            return add(self, *args, **kwargs)

        monkeypatch.setattr(SummaryWriter, "add_scalar", cut)
        with pytest.raises(KeyboardInterrupt):
            export([str(earlier)], "tensorboard", output=str(tb))
        monkeypatch.setattr(SummaryWriter, "add_scalar", add)
    shutil.rmtree(full)
    shutil.copytree(ended, full)  # the run went on to its end

    assert export([str(full)], "tensorboard", output=str(tb)).startswith("exported 1 run of 1 job")
    steps = tb_steps(seed_dir)
    assert all(v == sorted(set(v)) for v in steps.values()), steps  # each epoch once
    assert steps["summary/best_val_acc"] == [4] and steps["val_loss"] == [0, 1, 2, 3, 4], steps  # the old summary hidden
    scalars = assert_tb_matches_csv(full, seed_dir, 3)  # every column's value at every epoch
    best = json.loads((full / "summary.json").read_text())["per_seed"]["3"]["best"]["val_acc"]
    assert scalars["summary/best_val_acc"][4] == pytest.approx(best)

    files = sorted(seed_dir.iterdir())
    line = export([str(full)], "tensorboard", output=str(tb))
    assert line.startswith("exported 0 runs of 0 jobs") and "(already exported to" in line, line
    assert sorted(seed_dir.iterdir()) == files  # nothing written


@pytest.mark.parametrize("epochs", [4, 2])
def test_two_jobs_of_one_folder_name_are_two_tensorboard_runs(make_cfg, tmp_path, epochs):
    """Two jobs whose folders share a name in different places (x1/same, x3/same)
    were exported into one TensorBoard folder, DIR/same: the second one's later
    epochs added to the first's curves as if the first had gone on, or, with as
    many epochs, skipped as "already exported to DIR/same", which it never was.
    The second now gets a folder of its own, said in one line; each is found
    again by the records its folder names, so exporting again adds nothing. A
    folder exported by an older regbench (no marker) is still taken as the job's."""
    from regbench.export import EXPORTED_FROM, export
    from regbench.train import run

    x1, x3 = tmp_path / "x1" / "same", tmp_path / "x3" / "same"
    run(make_cfg("trainer.epochs=2"), x1, show_progress=False)
    run(make_cfg(f"trainer.epochs={epochs}", "optim.lr=0.01"), x3, show_progress=False)
    tb = tmp_path / "tb"
    closing = f"exported 1 run of 1 job to tensorboard (tensorboard --logdir {tb})"
    assert export([str(x1)], "tensorboard", output=str(tb)) == closing
    line = export([str(x3)], "tensorboard", output=str(tb))
    assert line.splitlines() == [closing, f"{x3} exported to {tb / 'same-2'}: {tb / 'same'} holds another job's export"], line
    assert sorted(p.name for p in tb.iterdir()) == ["same", "same-2"]
    for job, folder, last in ((x1, tb / "same", 2), (x3, tb / "same-2", epochs)):
        assert [p.name for p in folder.glob("seed=*")] == ["seed=0"]
        assert tb_steps(folder / "seed=0")["val_loss"] == list(range(last + 1))  # its own epochs, each once
        assert_tb_matches_csv(job, folder / "seed=0", 0)  # its own values
        assert (folder / EXPORTED_FROM).read_text().strip() == str(job.resolve())

    def files():
        return sorted(str(p.relative_to(tb)) for p in tb.rglob("*"))

    there = files()
    for job, name in ((x1, "same"), (x3, "same-2"), (x3, "same-2"), (x1, "same")):
        line = export([str(job)], "tensorboard", output=str(tb))
        assert line == f"exported 0 runs of 0 jobs to tensorboard (tensorboard --logdir {tb}); skipped 1: {job} (already exported to {tb / name})", line
    assert files() == there  # nothing written

    (tb / "same" / EXPORTED_FROM).unlink()  # as an older regbench left it: the job's, as before (and marked now)
    for job, name in ((x3, "same-2"), (x1, "same")):
        assert export([str(job)], "tensorboard", output=str(tb)).endswith(f"(already exported to {tb / name})")
    assert files() == there


def test_a_job_whose_summary_cannot_be_read_is_skipped_and_named(make_cfg, tmp_path):
    """`report` warns of it and `status` says unreadable; export exported it as
    status "unknown" (MLflow: FINISHED) without a word."""
    from regbench.export import export
    from regbench.train import run

    for name in ("good", "damaged"):
        run(make_cfg("seed=0"), tmp_path / "s" / name, show_progress=False)
    (tmp_path / "s" / "damaged" / "summary.json").write_text("")
    line = export([str(tmp_path / "s")], "tensorboard", output=str(tmp_path / "tb"))
    assert line.startswith("exported 1 run of 1 job") and "skipped 1: " in line, line
    assert f"{tmp_path / 's' / 'damaged'} (summary.json unreadable: JSONDecodeError" in line, line
    assert not (tmp_path / "tb" / "s" / "damaged").exists()


@pytest.mark.parametrize("to", ["tensorboard", "mlflow"])
def test_export_with_nothing_it_can_export_is_one_line_exit_2_and_writes_nothing(make_cfg, tmp_path, capsys, to):
    """A single run whose summary.json was cut, or a folder of stray files and a
    summary.json of `{}`: export printed "exported 0 runs of 0 jobs ...; skipped 1"
    and exited 0 (MLflow: an empty store made), where `regbench report` refuses
    the same folders with exit 2. Now one line naming each job and why, exit 2,
    nothing written; with one job it can export, the rest are skipped and named as before."""
    from regbench.cli import main
    from regbench.train import run

    good, cut, empty, binary = (tmp_path / n for n in ("good", "cut", "empty", "binary"))
    run(make_cfg("seed=0"), good, show_progress=False)
    for job in (cut, binary):
        run(make_cfg("seed=0"), job, show_progress=False)
    text = (cut / "summary.json").read_text()
    (cut / "summary.json").write_text(text[: len(text) // 2])
    (binary / "metrics.csv").write_bytes(bytes(range(128, 256)) * 8)  # not text: it aborted the whole export
    empty.mkdir()
    (empty / "summary.json").write_text("{}")
    (empty / "notes.txt").write_text("stray")
    (empty / "plot.png").write_bytes(b"\x89PNG")

    def export(*paths, out):
        where = ["-o", str(out)] if to == "tensorboard" else ["--tracking-uri", out.as_uri()]
        code = main(["export", *map(str, paths), "--to", to, *where])
        res = capsys.readouterr()
        return code, res.out, res.err

    needs = "; a job exports from a readable summary.json naming its seeds, or from metrics.csv rows\n"
    for paths, why in (([cut], [f"{cut} (summary.json unreadable: JSONDecodeError: "]),
                       ([empty], [f"{empty} (nothing recorded: no metrics.csv and summary.json names no seeds)"]),
                       ([binary], [f"{binary} (metrics.csv unreadable: UnicodeDecodeError: "]),
                       ([cut, empty, binary], [f"{cut} (summary.json unreadable: JSONDecodeError: ",
                                               f"{empty} (nothing recorded: ", f"{binary} (metrics.csv unreadable: "])):
        out = tmp_path / "out"
        code, stdout, err = export(*paths, out=out)
        assert code == 2 and stdout == "" and err.count("\n") == 1, (code, stdout, err)
        start = (f"regbench export: error: nothing to export under {', '.join(map(str, paths))} (nothing written): "
                 + ("its run record skipped: " if len(paths) == 1 else f"all {len(paths)} run records skipped: "))
        assert err.startswith(start) and err.endswith(needs), err
        assert all(w in err for w in why) and err.index(why[0]) <= err.index(why[-1]), err
        assert not out.exists(), sorted(out.rglob("*"))  # no folder under -o, no MLflow store
    for job in (cut, empty, binary):
        assert not (job / "tensorboard").exists() and not (job / "mlruns").exists()

    # one job it can export: exit 0, the others skipped and named, the readable one exported
    code, stdout, err = export(cut, empty, binary, good, out=tmp_path / "out")
    assert code == 0 and err == "", err
    assert stdout.startswith(f"exported 1 run of 1 job to {to}") and "; skipped 3: " in stdout, stdout
    assert f"{cut} (summary.json unreadable: JSONDecodeError" in stdout and f"{binary} (metrics.csv unreadable: " in stdout, stdout
    assert f"{empty} (nothing recorded: no metrics.csv and summary.json names no seeds)" in stdout, stdout
    if to == "tensorboard":
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good"]
        assert_tb_matches_csv(good, tmp_path / "out" / "good" / "seed=0", 0)
    else:
        client = mlflow_client((tmp_path / "out").as_uri())
        (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert r.data.tags["records"] == str(good)
    # exported before: nothing added, and not an error (the same export again is done, exit 0)
    code, stdout, err = export(good, out=tmp_path / "out")
    assert code == 0 and stdout.startswith("exported 0 runs of 0 jobs") and "(already exported to " in stdout, (stdout, err)


def test_a_writer_that_purges_makes_a_file_read_after_the_ones_there(tmp_path):
    """TensorBoard reads event files in name order: time (seconds), host, pid,
    a per-process counter. One made in the same second as the newest there
    could sort before it (counter 10 before 9), and its purge_step hid nothing:
    an export test could fail by chance. The second is waited out instead."""
    import time

    from regbench.trackers import TensorBoardTracker

    tracker = TensorBoardTracker(None, tmp_path, {}, [0], root=tmp_path / "tb")
    folder = tracker.seed_dir(0)
    folder.mkdir(parents=True)
    there = folder / f"events.out.tfevents.{int(time.time()):010d}.zzzz.99999.9"  # sorts after anything made this second
    there.write_bytes(b"")
    writer = tracker._writer(0, purge_step=1)
    writer.close()
    assert sorted(p.name for p in folder.iterdir())[-1] != there.name


def test_export_to_a_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    """-o naming a file printed NotADirectoryError's traceback; -o /proc/x a raw FileNotFoundError."""
    from regbench.export import export_main

    (tmp_path / "cmp.py").write_text("")
    for out, says in ((tmp_path / "cmp.py", f"{tmp_path / 'cmp.py'} exists and is not a folder"),
                      (tmp_path / "cmp.py" / "tb", f"{tmp_path / 'cmp.py'} exists and is not a folder")):
        assert export_main([str(tmp_path), "--to", "tensorboard", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == f"regbench export: error: -o {out}: {says}; give a folder for the event files\n", err


def test_an_export_of_a_job_still_training_says_it_is_partial(make_cfg, tmp_path):
    """Exported while its process still held the folder, a job reached the
    tracker with its epochs so far and the line said only "exported 1 run":
    nothing told the user that run was partial, or that the same command
    adds the rest."""
    from regbench import records
    from regbench.export import export
    from regbench.train import run

    job = tmp_path / "job"
    run(make_cfg("trainer.epochs=2"), job, show_progress=False)
    holder = records.acquire_lock(job)  # as the training process holds it
    try:
        line = export([str(job)], "tensorboard", output=str(tmp_path / "tb"))
    finally:
        records.release_lock(holder)
    assert line.startswith("exported 1 run of 1 job") and f"1 job still training, exported up to its latest epoch ({job})" in line, line
    line = export([str(job)], "tensorboard", output=str(tmp_path / "tb2"))
    assert "still training" not in line, line
