"""Sweeps that finish: kill and re-run, failure isolation, launchers, plan/status."""

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY
from regbench import cli as regbench_cli
from regbench import records
from regbench.sweep import job_dirname, job_state

pytestmark = pytest.mark.slow


def epochs_of(job: Path) -> list[int]:
    return [int(r["epoch"]) for r in csv.DictReader(open(job / records.METRICS_FILE))]


def metrics_without_time(job: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(open(job / records.METRICS_FILE))]


def test_job_dirname():
    assert job_dirname("model.dropout=0.5,seed=1") == "model.dropout=0.5,seed=1"
    assert job_dirname("") == "default"
    assert job_dirname("data.root=/a/b") == "data.root=%2Fa%2Fb"
    long = job_dirname("x=" + "1" * 300)
    assert len(long) <= 180 and long != job_dirname("x=" + "1" * 299)


def test_sigkilled_sweep_rerun_completes_every_epoch_exactly_once(cli, tmp_path):
    """Hydra's one-at-a-time launcher (a fused group: tests/test_fused.py)."""
    sweep = tmp_path / "sweep"
    epochs = 40
    args = ["train", "-m", "model.dropout=0,0.5", "seed=0,1", *TINY, "data.n_samples=1000", "hydra/launcher=basic",
            f"trainer.epochs={epochs}", f"hydra.sweep.dir={sweep}", cli.data_arg]
    proc = subprocess.Popen([sys.executable, "-m", "regbench", *args], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once the second job is part way through
        started = sorted(sweep.glob("*/metrics.csv"))
        if len(started) >= 2 and len(started[1].read_text().splitlines()) > 5:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    states = {p.name: job_state(p) for p in sweep.iterdir() if p.is_dir()}
    # its summary still says "running", but nothing holds its run.lock: status calls it dead
    dead = [s for s in states.values() if s[0] == "dead"]
    assert dead and any(s[0] == "completed" for s in states.values()), states  # the kill landed mid-sweep
    assert dead[0][1] >= 1  # its summary says how far it got (written every epoch)
    assert records.read_summary(next(p for p in sweep.iterdir() if job_state(p)[0] == "dead"))["status"] == "running"

    status = cli("status", str(sweep))
    assert status.returncode == 0 and "4 jobs" in status.stdout and "dead" in status.stdout
    assert "running" not in status.stdout and "the same command resumes it from its checkpoint, or starts it over where none was saved" in status.stdout

    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "4 jobs: " in res.stdout and "skipped" in res.stdout and "failed" not in res.stdout
    # one line per finished job, with an ETA until the last
    done = [line.split("[INFO] - ", 1)[1] for line in (res.stdout + res.stderr).splitlines() if "[regbench.sweep][INFO] - [" in line]
    assert [d.split("]")[0] for d in done] == ["[1/4", "[2/4", "[3/4", "[4/4"], done
    assert "skipped (already completed)" in done[0] and "ETA" in done[0] and "ETA" not in done[-1], done
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(jobs) == 4
    plan = cli("plan", *args[1:])  # plan names the very folders the launcher made
    assert plan.returncode == 0 and "4 jobs (4 completed)" in plan.stdout, plan.stdout + plan.stderr
    resumed = 0
    for job in jobs:
        assert records.read_summary(job)["status"] == "completed"
        assert epochs_of(job) == list(range(epochs + 1))
        resumed += records.read_summary(job).get("resumed_after_epoch") is not None
    assert resumed >= 1

    # the same sweep never interrupted gives the same numbers
    straight = tmp_path / "straight"
    res = cli(*[a if not a.startswith("hydra.sweep.dir") else f"hydra.sweep.dir={straight}" for a in args])
    assert res.returncode == 0
    for job in jobs:
        assert metrics_without_time(job) == metrics_without_time(straight / job.name)


def test_diverged_and_failed_jobs_do_not_stop_the_sweep(cli, tmp_path):
    sweep = tmp_path / "sweep"
    (tmp_path / "no_data.py").write_text("def get():\n    raise FileNotFoundError('no data here')\n")  # fails once called
    res = cli("train", "-m", "data=blobs,callable", "data.loader=no_data:get", "optim=sgd", "optim.lr=0.01,1e8", *TINY[1:],
              f"hydra.sweep.dir={sweep}")
    assert res.returncode == 1, res.stderr
    last, hint = res.stdout.strip().splitlines()[-2:]
    assert "4 jobs: 1 completed, 1 diverged, 2 failed; failed: " in last
    assert hint.startswith("next: run the same command again to resume or retry the 2 unfinished jobs")
    named = last.split("; failed: ")[1].split()
    assert len(named) == 2 and all("data=callable" in n for n in named)
    job = lambda data, lr: next(p for p in sweep.iterdir() if f"data={data}," in p.name and f"optim.lr={lr}," in p.name)
    assert records.read_summary(job("blobs", "100000000.0"))["status"] == "diverged"
    failed = records.read_summary(job("callable", "0.01"))
    assert failed["status"] == "failed" and "raised FileNotFoundError: no data here" in failed["error"]


def test_joblib_sweep_with_two_workers(cli, tmp_path):
    sweep = tmp_path / "sweep"
    tiny = [a for a in TINY if not a.startswith("threads=")]  # threads=0: the launcher chooses
    res = cli("train", "-m", "model.dropout=0,0.5", "seed=0,1", *tiny, f"hydra.sweep.dir={sweep}", cli.data_arg,
              "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert res.returncode == 0, res.stderr
    assert "4 jobs: 4 completed" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == f"next: regbench report {sweep}"
    assert "epoch 1/2" not in res.stdout  # workers print one line per job, not per epoch
    # [k/N] per finished job, counted across the workers (a file in the sweep folder)
    done = re.findall(r"\[regbench\.sweep\]\[INFO\] - \[(\d)/4\] \S+ completed in", res.stdout + res.stderr)
    assert sorted(done) == ["1", "2", "3", "4"], res.stdout
    assert "data.root=" not in "".join(re.findall(r"\[\d/4\] \S+ completed", res.stdout + res.stderr))  # runtime: not the job's name
    summaries = [records.read_summary(p) for p in sweep.iterdir() if p.is_dir()]
    assert all(s["status"] == "completed" for s in summaries)
    # summary.json records the threads a worker really used: jobs x threads <= cores
    assert all(s["config"]["threads"] == 0 and s["threads"] == max(1, (os.cpu_count() or 1) // 2) for s in summaries)


def test_submitit_local_sweep(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    res = cli("train", "-m", "model.batchnorm=false,true", *TINY, f"hydra.sweep.dir={sweep}", cli.data_arg,
              "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    assert res.returncode == 0, res.stderr
    assert "2 jobs: 2 completed" in res.stdout


def test_stored_experiment_plan_and_unknown_name(cli, tmp_path):
    res = cli("plan", "+experiment=dropout_vs_bn")
    assert res.returncode == 0, res.stderr
    assert "outputs/sweeps/dropout_vs_bn: 8 jobs (8 to run)" in res.stdout and "missing" not in res.stdout
    assert "model.batchnorm=True,model.dropout=0.3\n" in res.stdout
    res = cli("train", "-m", "+experiment=nope")
    assert res.returncode == 2
    assert res.stderr.startswith("regbench train: error: experiment=nope: no such option; allowed: ")
    assert "dropout_vs_bn" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_sweep_folder_with_another_sweep_is_refused(cli, tmp_path):
    sweep = tmp_path / "sweep"
    base = ["train", "-m", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}", cli.data_arg]
    assert cli(*base).returncode == 0
    before = sorted(p.name for p in sweep.iterdir())
    res = cli(*base, "optim.lr=0.1")
    assert res.returncode == 2
    assert "holds a sweep with another base config (optim.lr: 0.001 -> 0.1)" in res.stderr
    assert sorted(p.name for p in sweep.iterdir()) == before  # nothing added, nothing lost


@pytest.mark.parametrize("choice,extra", [("hydra/launcher=submitit_slurm", "regbench[slurm]"), ("hydra/sweeper=optuna", "regbench[optuna]")])
def test_missing_plugin_names_the_extra(monkeypatch, capsys, choice, extra):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert regbench_cli.main(["train", "-m", choice]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"regbench train: error: {choice} needs a Hydra plugin that is not installed: pip install '{extra}'"


def test_overlapping_seed_ranges_are_refused(cli, tmp_path):
    res = cli("train", "-m", "seed=0,1", "trainer.replicas=2", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}", cli.data_arg)
    assert res.returncode == 2
    assert "seed 1 would be trained twice in one setting (by the jobs seed=0,trainer.replicas=2 and seed=1,trainer.replicas=2)" in res.stderr
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").iterdir())


@pytest.mark.parametrize("sweep, says", [
    # two folders, model.dropout=0 and model.dropout=0.0: one run trained twice and counted twice
    ("model.dropout=0,0.0", "jobs model.dropout=0 and model.dropout=0.0 are one setting written two ways: seed 0 would "
                            "be trained twice; give each value once"),
    ("trainer.epochs=2,02", "jobs trainer.epochs=2 and trainer.epochs=02 are one setting written two ways"),
    # Hydra reads 0.30 as 0.3: the same job twice, which said "(by the jobs the defaults and the defaults)"
    ("model.dropout=0.30,0.3", "the job model.dropout=0.3 is listed twice (a value given twice); give each value once"),
    ("model.dropout_layers=[0,0.2],[0.0,0.2]", "jobs model.dropout_layers=[0,0.2] and model.dropout_layers=[0.0,0.2] are "
                                               "one setting written two ways"),
    # folders of their own (${hydra.job.num}) for a runtime key: it said "jobs  and  are one setting written two ways"
    ("threads=1,2", "jobs threads=1 and threads=2 differ only in threads, which says how a job runs"),
])
def test_one_setting_written_twice_is_refused(make_cfg, sweep, says):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from regbench.sweep import overlapping_seeds

    (parsed,) = OverridesParser.create().parse_overrides([sweep])
    jobs = [[f"{parsed.key_or_group}={v}"] for v in parsed.sweep_string_iterator()]  # as Hydra's sweeper expands them
    cfg = make_cfg()
    assert says in (overlapping_seeds(cfg, jobs) or ""), overlapping_seeds(cfg, jobs)
    assert overlapping_seeds(cfg, [jobs[0]]) is None


def test_a_job_that_cannot_start_is_counted_failed_without_touching_its_records(tmp_path):
    import json
    import time as _time

    from omegaconf import OmegaConf

    from regbench import sweep as sweep_mod

    job = tmp_path / "model.dropout=0.5"
    job.mkdir()
    records.write_summary(job, {"status": "completed", "epochs_completed": 2})
    cb = sweep_mod.SweepCallback()
    cb.jobs, cb.started = [job.name], _time.time() + 0.0
    _time.sleep(0.01)
    records.write_json_atomic(job / records.ERROR_FILE, {"status": "failed", "error": "data missing"})
    cb.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert sweep_mod.last_counts == {"failed": [job.name]}
    assert json.loads((job / records.SUMMARY_FILE).read_text())["status"] == "completed"


def test_glob_sweep_is_planned_and_its_status_lists_the_jobs_not_started(cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "optim=glob(*,exclude=sgd)", *TINY, f"hydra.sweep.dir={sweep}", cli.data_arg]
    plan = cli("plan", *args)
    assert plan.returncode == 0, plan.stderr
    assert "2 jobs (2 to run)" in plan.stdout and "  optim=adam\n" in plan.stdout and "  optim=adamw\n" in plan.stdout
    # what every job's folder name has is said once, above the rows (they wrapped at 80 columns)
    (shared,) = [line for line in plan.stdout.splitlines() if line.startswith("  every job's folder name also has: ")]
    assert "data=blobs" in shared.split(": ", 1)[1].split(",") and plan.stdout.count("data=blobs") == 1
    res = cli("train", *args)
    assert res.returncode == 0 and "2 jobs: 2 completed" in res.stdout, res.stdout + res.stderr
    (sweep / next(p.name for p in sweep.iterdir() if "optim=adamw," in p.name) / records.SUMMARY_FILE).unlink()
    status = cli("status", str(sweep))  # expands multirun.yaml's glob: the emptied job is listed as missing
    assert status.returncode == 0 and "note" not in status.stdout
    assert "2 jobs (1 completed, 1 missing)" in status.stdout, status.stdout


def test_a_sweep_with_its_own_subdir_is_counted_from_its_folders(cli, tmp_path):
    sweep = tmp_path / "sweep"
    res = cli("train", "-m", "model.dropout=0,0.5", *TINY, cli.data_arg, "hydra.sweep.subdir=${hydra.job.num}",
              f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0 and "2 jobs: 2 completed" in res.stdout, res.stdout + res.stderr
    status = cli("status", str(sweep))
    assert "2 jobs (2 completed)" in status.stdout and "missing" not in status.stdout


def test_status_says_what_a_resume_keeps_of_a_job_stopped_part_way(make_cfg, tmp_path):
    """`status` showed "interrupted 47/300" for a job whose resume started over (no checkpoint yet)."""
    from regbench import train
    from regbench.plan import table

    job = tmp_path / "sweep" / "j"
    train.run(make_cfg("trainer.epochs=3"), job, show_progress=False)
    summary = records.read_summary(job)
    assert summary["checkpoint_epoch"] == 3  # the last save
    assert "checkpoint at" not in table(tmp_path / "sweep", ["j"])  # completed: nothing to say
    # as a summary reads after Ctrl-C at epoch 3 with the last checkpoint at epoch 1
    records.write_summary(job, {**summary, "status": "interrupted", "checkpoint_epoch": 1})
    line = table(tmp_path / "sweep", ["j"]).splitlines()[1]
    assert line.split()[:2] == ["interrupted", "3/3"] and line.endswith(
        "j  (checkpoint at epoch 1: the same command resumes from there)"), line
    (job / records.CHECKPOINT_FILE).unlink()
    assert table(tmp_path / "sweep", ["j"]).splitlines()[1].endswith("(no checkpoint yet: the same command starts it over)")


@pytest.mark.parametrize("damage", ["truncate", "cut mid-line", "garbage"])
def test_a_completed_job_whose_metrics_were_damaged_is_trained_again_not_skipped(make_cfg, tmp_path, damage):
    from regbench import train

    cfg = make_cfg("trainer.epochs=3")
    first = train.run(cfg, tmp_path / "j", show_progress=False)
    metrics = tmp_path / "j" / records.METRICS_FILE
    good = metrics.read_text()
    lines = good.splitlines(keepends=True)
    metrics.write_text({"truncate": "".join(lines[:2]), "cut mid-line": good[: len(good) - 7],
                        "garbage": "".join(lines[:3]) + "x,y,z\n" + "".join(lines[4:])}[damage])
    from regbench.plan import table
    assert "metrics.csv " in table(tmp_path, ["j"]) and "the same command trains it again" in table(tmp_path, ["j"])
    # counted as damaged, not "1 job (1 completed)" beside a note that it will be trained again
    assert table(tmp_path, ["j"]).splitlines()[0].endswith("1 job (1 damaged)")
    again = train.run(cfg, tmp_path / "j", show_progress=False)
    assert not again.get("skipped") and again["status"] == "completed"
    assert "trains it again" not in table(tmp_path, ["j"]) and table(tmp_path, ["j"]).splitlines()[0].endswith("1 job (1 completed)")
    assert metrics_without_time(tmp_path / "j") == [{k: v for k, v in r.items() if k != "time_s"}
                                                    for r in csv.DictReader(io.StringIO(good))]  # the same numbers again
    (aside,) = [p for p in (tmp_path / "j").iterdir() if p.name.startswith(".corrupt-")]
    assert (aside / records.METRICS_FILE).exists()  # the damaged file kept, not deleted
    assert train.run(cfg, tmp_path / "j", show_progress=False)["skipped"]  # and now it is whole
    assert first["status"] == "completed"


def test_a_run_recorded_before_a_config_key_existed_is_still_this_config(make_cfg, tmp_path):
    """A key added to regbench after a run was recorded: at its default, the run is the same config (every earlier
    sweep was refused as 'another config'); at another value, it is not."""
    from regbench import train

    cfg = make_cfg("trainer.epochs=2")
    train.run(cfg, tmp_path / "j", show_progress=False)
    summary = records.read_summary(tmp_path / "j")
    assert summary["config"]["model.bn_eps"] == 1e-5  # the schema's default
    older = {k: v for k, v in summary["config"].items() if k != "model.bn_eps"}
    records.write_summary(tmp_path / "j", {**summary, "config": older})
    assert train.run(cfg, tmp_path / "j", show_progress=False)["skipped"]
    with pytest.raises(train.ConfigError, match=r"holds a run with another config \(model.bn_eps: None -> 0.001\)"):
        train.run(make_cfg("trainer.epochs=2", "model.bn_eps=1e-3"), tmp_path / "j", show_progress=False)



def test_a_sweep_recorded_before_a_config_key_existed_is_resumed_not_refused(cli, tmp_path):
    """sweep.json's base config is compared as a job's config is: a key it lacks is no difference at its default."""
    import json

    grid = ["-m", "seed=0,1", *TINY, cli.data_arg, f"hydra.sweep.dir={tmp_path / 's'}"]
    assert cli("train", *grid).returncode == 0
    manifest = tmp_path / "s" / "sweep.json"
    older = json.loads(manifest.read_text())
    del older["base"]["trainer.diverge_loss"]  # as a regbench without that key wrote it
    manifest.write_text(json.dumps(older))
    for job in (tmp_path / "s").iterdir():
        if (job / records.SUMMARY_FILE).exists():
            summary = records.read_summary(job)
            del summary["config"]["trainer.diverge_loss"]
            records.write_summary(job, summary)
    again = cli("train", *grid)
    assert again.returncode == 0 and "2 jobs: 2 skipped" in again.stdout, again.stdout + again.stderr
    changed = cli("train", *grid, "trainer.diverge_loss=100")
    assert changed.returncode == 2 and "another base config (trainer.diverge_loss: None -> 100.0)" in changed.stderr


def test_a_job_refused_beside_its_earlier_records_is_failed_in_its_line_too(cli, tmp_path):
    """A completed job whose recorded config differs (a hand-edited summary.json) is refused; its progress
    line said "skipped (already completed)" while the closing count said failed."""
    import json

    grid = ["-m", "model.dropout=0,0.5", *TINY, f"hydra.sweep.dir={tmp_path / 'sw'}"]
    assert cli("train", *grid).returncode == 0
    (job,) = [p for p in (tmp_path / "sw").iterdir() if "model.dropout=0," in p.name]
    summary = json.loads((job / "summary.json").read_text())
    summary["config"]["data.n_features"] = 3
    (job / "summary.json").write_text(json.dumps(summary))
    res = cli("train", *grid)
    assert res.returncode == 1 and "1 skipped, 1 failed" in res.stdout
    # the line names the job by what sets it apart (model.dropout=0): TINY's overrides are every job's
    line = next(line for line in (res.stdout + res.stderr).splitlines() if "] [" in line and "model.dropout=0 " in line)
    assert "data=blobs" not in line
    assert line.rstrip().endswith("failed") or " failed;" in line, line
    assert json.loads((job / "summary.json").read_text())["status"] == "completed"  # left as it was


def test_the_next_commands_are_quoted_for_the_shell(tmp_path):
    """A sweep folder with a space or parentheses: `next: regbench report PATH`
    pasted into a shell named another folder, or was a syntax error."""
    import shlex

    from regbench.sweep import format_counts

    folder = tmp_path / "my runs (v2)"
    done = format_counts({"completed": ["a"]}, folder)
    assert done.splitlines()[-1] == f"next: regbench report {shlex.quote(str(folder))}"
    assert shlex.split(done.splitlines()[-1].removeprefix("next: ")) == ["regbench", "report", str(folder)]
    undone = format_counts({"completed": ["a"], "failed": ["b"]}, folder)
    assert f"`regbench status {shlex.quote(str(folder))}` shows each" in undone


@pytest.mark.parametrize("args,says", [
    ([], "regbench status: error: the following arguments are required: sweep_dir (see regbench status --help)"),
    (["nowhere"], "regbench status: error: nowhere: no such folder"),
    (["afile.txt"], "regbench status: error: afile.txt: a file, not a folder"),
])
def test_status_refusals_are_one_line(cli, tmp_path, args, says):
    """argparse printed its usage first (2-4 lines); a missing folder was "is not a folder"."""
    (tmp_path / "afile.txt").write_text("")
    res = cli("status", *args)
    assert res.returncode == 2 and res.stderr == says + "\n", res.stderr


def test_status_of_a_running_job_counts_the_epochs_its_metrics_hold(make_cfg, tmp_path):
    """summary.json is written at checkpoints (trainer.save_every_s), metrics.csv
    every epoch: a sweep's job at epoch 123 showed `running 0/200`."""
    from regbench import train
    from regbench.plan import table

    job = tmp_path / "sweep" / "j"
    train.run(make_cfg("trainer.epochs=3"), job, show_progress=False)
    summary = records.read_summary(job)
    records.write_summary(job, {**summary, "status": "running", "epochs_completed": 0})  # as at its first save
    with open(job / records.METRICS_FILE, "a") as fh:
        fh.write("0,4,")  # a row cut short by a kill: not counted
    line = table(tmp_path / "sweep", ["j"]).splitlines()[1]
    assert line.split()[:2] == ["dead", "3/3"], line  # its process is gone (the lock is free)


def test_status_says_a_note_many_jobs_share_once(make_cfg, tmp_path):
    """An interrupted 16-job sweep repeated "(no checkpoint yet: the same command starts it over)" 16 times."""
    from regbench import train
    from regbench.plan import table

    for k in range(4):
        job = tmp_path / "sweep" / f"j{k}"
        train.run(make_cfg("trainer.epochs=2", f"seed={k}"), job, show_progress=False)
        records.write_summary(job, {**records.read_summary(job), "status": "interrupted"})
        (job / records.CHECKPOINT_FILE).unlink()
    lines = table(tmp_path / "sweep", [f"j{k}" for k in range(4)]).splitlines()
    assert [line.endswith("  [1]") for line in lines[1:5]] == [True] * 4, lines
    assert lines[5] == "[1] no checkpoint yet: the same command starts it over", lines
    assert sum("no checkpoint yet" in line for line in lines) == 1


def test_status_of_a_single_run_calls_it_a_run(cli, tmp_path):
    """It said "sweep r1: 1 job" of a run's own folder."""
    assert cli("train", *TINY, f"hydra.run.dir={tmp_path / 'r1'}", cli.data_arg).returncode == 0
    res = cli("status", str(tmp_path / "r1"))
    assert res.returncode == 0 and res.stdout.startswith(f"run {tmp_path / 'r1'}: 1 job (1 completed)\n"), res.stdout


def test_jobs_another_process_is_training_are_not_called_ours(tmp_path):
    """Two identical sweeps started at once: the second said "[3/4] ... running in 0.0 s" and "failed" of jobs it
    never touched, and "run the same command again to resume or retry the 4 unfinished jobs" while the first
    was training them."""
    from regbench.sweep import JobProgress, format_counts

    held, fresh = tmp_path / "held", tmp_path / "fresh"
    held.mkdir()
    fresh.mkdir()
    records.write_summary(held, {"status": "running"})
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from regbench import records; "
                               f"h1 = records.acquire_lock(__import__('pathlib').Path({str(held)!r})); "
                               f"h2 = records.acquire_lock(__import__('pathlib').Path({str(fresh)!r})); "
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        progress = JobProgress(2)
        progress.t0 = 0
        lines = progress.finished([("a", str(held)), ("b", str(fresh))])  # fresh: locked, no summary yet
        assert [line.split(" ", 2)[2] for line in lines] == ["not started: another process is training it"] * 2, lines
    finally:
        holder.kill()
        holder.wait()
    text = format_counts({"completed": ["x"], "running": ["a", "b"], "failed": ["c"]}, tmp_path)
    assert text.splitlines()[1] == (f"next: 2 jobs are training in another process: let it finish (`regbench status "
                                    f"{tmp_path}` shows each), then run the same command again for the other 1 "
                                    "unfinished job")


def test_status_of_an_interrupted_single_run_names_its_folder_to_resume(tmp_path):
    """`regbench status` of a single run in its clock-named folder said "the same command resumes from
    there"; the same command starts a new run in a new folder."""
    from regbench.sweep import resume_note

    run = tmp_path / "outputs" / "runs" / "2026-12-03" / "16-36-19.566257"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  run:\n    dir: outputs/runs/${now:%Y-%m-%d}/${now:%H-%M-%S.%f}\n")
    records.write_summary(run, {"status": "interrupted", "checkpoint_epoch": 2})
    (run / records.CHECKPOINT_FILE).write_bytes(b"")
    assert resume_note(run, "interrupted", 3, single=True) == (
        f"  (checkpoint at epoch 2: the same command with hydra.run.dir={run.resolve()} resumes from there)")
    assert resume_note(run, "interrupted", 3) == "  (checkpoint at epoch 2: the same command resumes from there)"  # a sweep's job
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  run:\n    dir: {run}\n")  # a folder the user named
    assert resume_note(run, "interrupted", 3, single=True) == "  (checkpoint at epoch 2: the same command resumes from there)"
    # its checkpoint at its last epoch (nothing to train again): how to resume it still needs saying
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  run:\n    dir: outputs/runs/${now:%H-%M-%S.%f}\n")
    assert resume_note(run, "interrupted", 2, single=True) == f"  (the same command with hydra.run.dir={run.resolve()} resumes it)"


def test_a_summary_without_its_config_is_damaged_to_status_and_preflight(tmp_path):
    """`{"status": "completed"}` (no config, which regbench always writes): status said completed and a single
    run there was refused as "another config ... or remove that folder", while the trainer sets it aside."""
    from regbench.preflight import check

    run = tmp_path / "run"
    run.mkdir()
    records.write_summary(run, {"status": "completed"})
    assert job_state(run)[0] == "unreadable"
    assert check([f"hydra.run.dir={run}", "trainer.epochs=1"])  # no refusal: the run sets it aside and trains
    records.write_summary(run, {"status": "completed", "config": {"trainer.epochs": 5}})
    assert job_state(run)[0] == "completed"


def test_a_sweep_over_two_files_is_not_said_to_have_changed_its_data(tmp_path):
    """data.path=a.npz,b.npz ended with "the file or loader changed between runs of the sweep": only one
    file's two contents are that."""
    from regbench.sweep import data_mix

    for name, path, fp in (("a", "/d/a.npz", "1111"), ("b", "/d/b.npz", "2222"), ("c", "/d/a.npz", "3333")):
        (tmp_path / name).mkdir()
        records.write_summary(tmp_path / name, {"status": "completed", "config": {}, "data": {"name": "file", "path": path,
                                                                                             "fingerprint": fp}})
    assert data_mix(tmp_path, ["a", "b"]) is None
    said = data_mix(tmp_path, ["a", "b", "c"])
    assert said.startswith("these jobs trained on different contents of one file or loader (/d/a.npz: 1 job on its "
                           "contents 1111, 1 job on its contents 3333)"), said
