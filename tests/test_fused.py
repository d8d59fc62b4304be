"""Fused sweeps: the default launcher trains a sweep's jobs that share shapes as
one vectorized model, and every job's records are the job's own."""

import csv
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY
from regbench import records, train
from test_train import interrupt_at, read_metrics, without_time

NO_BN_TOL = 1e-5


def rows(job: Path) -> list[dict]:
    return without_time(list(csv.DictReader(open(job / records.METRICS_FILE))))


def jobs_of(sweep: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sweep.glob("*/summary.json")}


def assert_close(a: list[dict], b: list[dict], tol: float, where=None, bn: bool = False):
    """Equal to ``tol`` (absolute); with BatchNorm (float sums reordered under
    vmap), 1e-3 relative and accuracies within two examples of a tiny split."""
    assert len(a) == len(b), where
    for x, y in zip(a, b):
        for k in x:
            if bn and "/" in k:  # diagnostics (percentiles, variance shift) of BN models are not compared
                continue
            if x[k] != y[k]:
                close = pytest.approx(float(y[k]), abs=0.05 if k.endswith("acc") else 1e-3, rel=1e-3) if bn else \
                    pytest.approx(float(y[k]), abs=tol)
                assert float(x[k]) == close, (where, x["epoch"], k)


@pytest.mark.slow
def test_a_fused_sweep_writes_each_jobs_own_records(cli, tmp_path, make_cfg):
    """The natural sweep (dropout x BN x seeds) through the real CLI: one group
    per BN setting, per-job folders with .hydra/, the closing count, status, and
    each job's numbers those of the job trained alone (to 1e-5 without BN)."""
    grid = ["model.dropout=0,0.3", "model.batchnorm=false,true", "seed=0,1", *TINY, cli.data_arg, "hydra.launcher.processes=2"]
    fused = cli("train", "-m", *grid, f"hydra.sweep.dir={tmp_path / 'fused'}")
    assert fused.returncode == 0, fused.stderr
    log = fused.stdout + fused.stderr
    assert "Launching 8 jobs as 2 vectorized groups" in log
    # one line a group at its launch, not one a job (each job has its line when it ends): 50 jobs filled 100 lines
    assert log.count("a group of 4 jobs (model.batchnorm=") == 2 and "#0 :" not in log, log
    # each names its jobs by Hydra's numbers: the parts of one setting cut for the processes had one label
    groups = sorted(line.rsplit(", ", 1)[1] for line in log.splitlines() if "a group of 4 jobs" in line)
    assert groups == ["#0-1 #4-5", "#2-3 #6-7"], log
    assert "8 jobs: 8 completed" in fused.stdout
    # one line per finished job, named by its overrides, with an ETA until the last
    done = [line.split("[HYDRA] ", 1)[1] for line in log.splitlines() if "[HYDRA] [" in line]
    assert [d.split("]")[0] for d in done] == [f"[{k}/8" for k in range(1, 9)], done
    assert all(" completed in " in d for d in done) and "ETA" in done[0] and "ETA" not in done[-1], done
    assert any(d.startswith("[1/8] model.dropout=0") and "seed=" in d for d in done[:4]), done
    # named as its folder is: without the runtime overrides every job shares (data.root, threads, ...)
    assert not any("data.root=" in d or "threads=" in d for d in done), done
    a = jobs_of(tmp_path / "fused")
    assert len(a) == 8
    for name in a:
        assert (a[name] / ".hydra" / "overrides.yaml").exists()
        summary = records.read_summary(a[name])
        assert summary["status"] == "completed" and len(summary["seeds"]) == 1
    for bn in ("false", "true"):
        overrides = [f"model.batchnorm={bn}", "model.dropout=0.3", "seed=1"]
        train.run(make_cfg(*overrides), tmp_path / f"alone_{bn}", show_progress=False)
        (name,) = [n for n in a if f"batchnorm={bn.title()}" in n and "dropout=0.3" in n and "seed=1" in n]
        assert_close(rows(a[name]), rows(tmp_path / f"alone_{bn}"), NO_BN_TOL, name, bn=bn == "true")
    status = cli("status", str(tmp_path / "fused"))
    assert status.returncode == 0 and "8 completed" in status.stdout, status.stdout


def test_groups_that_change_on_resume_give_the_same_records(make_cfg, tmp_path, monkeypatch):
    """Two jobs interrupted together; one resumes alone, the other beside a new
    job that starts from scratch: every record equals the straight run's."""
    common = ["model.batchnorm=false", "trainer.epochs=5", "optim.schedule=cosine"]
    settings = [["model.dropout=0.3", "seed=0"], ["model.dropout=0.1", "seed=1"], ["model.dropout=0", "seed=2"]]
    job = lambda i, where: (make_cfg(*common, *settings[i]), tmp_path / where / str(i), settings[i])
    straight = train.run_group([job(i, "straight") for i in range(3)])
    assert [s["status"] for s in straight] == ["completed"] * 3
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run_group([job(0, "resumed"), job(1, "resumed")])
    for i in (0, 1):
        assert records.read_summary(tmp_path / "resumed" / str(i))["status"] == "interrupted"
        assert len(read_metrics(tmp_path / "resumed" / str(i))) == 3  # epochs 0..2
    (alone,) = train.run_group([job(0, "resumed")])
    assert alone["resumed_after_epoch"] == 2
    mixed = train.run_group([job(2, "resumed"), job(1, "resumed")])  # a fresh job and a resumed one
    assert mixed[1]["resumed_after_epoch"] == 2 and mixed[0]["resumed_after_epoch"] is None
    for i in range(3):
        assert_close(rows(tmp_path / "resumed" / str(i)), rows(tmp_path / "straight" / str(i)), NO_BN_TOL, i)


def test_a_diverging_or_failing_job_does_not_stop_its_group(make_cfg, tmp_path, monkeypatch):
    common = ["model.batchnorm=false", "trainer.epochs=3"]
    jobs = [
        (make_cfg(*common, "seed=0", "trainer.diverge_loss=1e-3"), tmp_path / "diverges", []),
        (make_cfg(*common, "seed=1"), tmp_path / "fine", []),
    ]
    # one job's records stop taking writes after its first epoch; the others go on
    real = train.JobRun.save

    def full_disk(self, epoch, learner, offset):
        if self.out.name == "full":
            raise OSError(28, "No space left on device")
        return real(self, epoch, learner, offset)

    monkeypatch.setattr(train.JobRun, "save", full_disk)
    jobs.append((make_cfg(*common, "seed=2"), tmp_path / "full", []))
    out = train.run_group(jobs)
    assert out[0]["status"] == "diverged" and out[1]["status"] == "completed"
    assert isinstance(out[2], train.RecordsUnwritable)
    assert records.read_summary(tmp_path / "full")["status"] == "interrupted"
    (alone,) = train.run_group([(make_cfg(*common, "seed=1"), tmp_path / "fine_alone", [])])
    assert_close(rows(tmp_path / "fine"), rows(tmp_path / "fine_alone"), NO_BN_TOL)


def test_groups_split_by_shape_and_cap():
    from omegaconf import OmegaConf

    from hydra_plugins.regbench_fused_launcher.fused_launcher import plan_groups

    def cfg(**kw):
        base = {"seed": 0, "model": {"dropout": 0.0, "batchnorm": False, "widths": [16]}, "trainer": {"replicas": 1, "epochs": 2},
                "data": {"label_noise": 0.0}}
        for k, v in kw.items():
            node = base
            *path, last = k.split("__")
            for p in path:
                node = node[p]
            node[last] = v
        return OmegaConf.create(base)

    cfgs = [cfg(seed=s, model__dropout=d, model__batchnorm=bn) for bn in (False, True) for d in (0.0, 0.5) for s in (0, 1, 2)]
    cfgs.append(cfg(model__widths=[32]))
    cfgs.append(cfg(data__label_noise=0.2, trainer__replicas=2))
    groups = plan_groups(cfgs, max_replicas=64, budget=None)
    assert groups == [[0, 1, 2, 3, 4, 5, 13], [6, 7, 8, 9, 10, 11], [12]]
    from hydra_plugins.regbench_fused_launcher.fused_launcher import split_for_processes

    # fewer groups than processes: the largest is halved until each process has one
    assert split_for_processes([[0, 1, 2, 3, 4], [5, 6]], 2) == [[0, 1, 2, 3, 4], [5, 6]]
    assert split_for_processes([[0, 1, 2, 3, 4]], 2) == [[0, 1, 2], [3, 4]]
    assert split_for_processes([[0, 1, 2, 3], [4]], 4) == [[0], [1], [2, 3], [4]]
    assert split_for_processes([[0], [1]], 4) == [[0], [1]]  # single jobs are not split
    capped = plan_groups(cfgs, max_replicas=4, budget=None)
    assert all(sum(int(cfgs[i].trainer.replicas) for i in g) <= 4 for g in capped)
    assert sorted(i for g in capped for i in g) == list(range(len(cfgs)))


def test_unequal_groups_are_cut_so_the_processes_end_together():
    from omegaconf import OmegaConf

    from hydra_plugins.regbench_fused_launcher.fused_launcher import balance_groups, group_work, makespan

    def jobs(n, bn, epochs=50):
        return [OmegaConf.create({"model": {"batchnorm": bn}, "trainer": {"epochs": epochs, "replicas": 1}}) for _ in range(n)]

    span = lambda cfgs, groups: makespan([group_work(cfgs, g) for g in groups], 2)
    # 25 jobs with BatchNorm (about 1.3x the work) and 25 without, on two cores:
    # whole, one core idles while the BN group ends; in halves, both end together
    cfgs = jobs(25, False) + jobs(25, True)
    whole = [list(range(25)), list(range(25, 50))]
    cut = balance_groups(whole, cfgs, 2)
    assert [len(g) for g in cut] == [13, 12, 13, 12]
    assert sorted(i for g in cut for i in g) == list(range(50))
    assert all(g == list(range(g[0], g[-1] + 1)) for g in cut), "parts are contiguous runs of a group's jobs"
    assert span(cfgs, cut) <= 0.9 * span(cfgs, whole)
    assert span(cfgs, cut) <= 1.01 * sum(group_work(cfgs, g) for g in whole) / 2
    # equal groups, one process, or groups too small to cut (parts of 6 jobs at least): as they were
    assert balance_groups([list(range(25)), list(range(25, 50))], jobs(50, False), 2) == [list(range(25)), list(range(25, 50))]
    assert balance_groups(whole, cfgs, 1) == whole
    small = jobs(6, False, 20) + jobs(6, True, 20)
    assert balance_groups([list(range(6)), list(range(6, 12))], small, 2) == [list(range(6)), list(range(6, 12))]


def test_the_eta_counts_the_groups_still_training_and_waiting():
    """The 50-run ablation as 4 parts on 2 processes: when the first BatchNorm
    part (12 jobs) ends after 6.2 s, about 5.3 s are left (the other BN part
    nearly done, two parts without BN to go), not the 19 s that 12 of 50 jobs
    in 6.2 s would say."""
    from hydra_plugins.regbench_fused_launcher.fused_launcher import estimate_left

    works = [13 * 1.3, 12 * 1.3, 13.0, 12.0]  # in launch order, longest first
    assert estimate_left(works, {0: 0.0, 1: 0.0}, {}, 2, 3.0) is None  # nothing ended yet: no estimate
    left = estimate_left(works, {0: 0.0, 1: 0.0, 2: 6.2}, {1: 6.2}, 2, 6.2)
    per_work = 6.2 / (12 * 1.3)
    assert left == pytest.approx(max(13 * per_work, 13 * 1.3 * per_work - 6.2 + 12 * per_work))
    assert 5.0 < left < 5.5
    assert estimate_left(works, {k: 0.0 for k in range(4)}, {k: 6.0 for k in range(4)}, 2, 12.0) == 0.0


@pytest.mark.slow
def test_kill_9_mid_group_then_rerun_resumes_every_job_exactly(cli, tmp_path, make_cfg):
    # 20 epochs: the group may train as 2 processes that start apart (a loaded machine); the first must
    # not finish before the second has trained a few epochs (at 10 it did, in a CI run)
    grid = ["model.dropout=0,0.3", "seed=0,1", "model.batchnorm=false", *TINY, cli.data_arg,
            "data.n_samples=3000", "trainer.epochs=20"]
    sweep = tmp_path / "killed"
    # its own process group: the kill takes the regbench process and its worker
    # processes at once, mid-epoch, as the OOM killer or a lost node would
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "train", "-m", *grid, f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        done = [len(read_metrics(j)) for j in jobs_of(sweep).values() if (j / records.METRICS_FILE).exists()]
        if len(done) == 4 and min(done) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = {n: len(read_metrics(j)) for n, j in jobs_of(sweep).items()}
    assert killed_at and max(killed_at.values()) < 21, killed_at  # stopped mid-way
    again = cli("train", "-m", *grid, f"hydra.sweep.dir={sweep}")
    assert again.returncode == 0 and "4 jobs: 4 completed" in again.stdout, again.stdout + again.stderr
    a = jobs_of(sweep)
    assert len(a) == 4
    settings = [(d, s) for d in ("0", "0.3") for s in (0, 1)]
    straight = train.run_group([(make_cfg("model.batchnorm=false", "data.n_samples=3000", "trainer.epochs=20",
                                          f"model.dropout={d}", f"seed={s}"), tmp_path / f"straight{d}_{s}", [])
                                for d, s in settings])
    assert all(o["status"] == "completed" for o in straight)
    for d, s in settings:
        (name,) = [n for n in a if f"model.dropout={d}," in n and f"seed={s}," in n]
        assert records.read_summary(a[name])["resumed_after_epoch"] is not None
        assert_close(rows(a[name]), rows(tmp_path / f"straight{d}_{s}"), NO_BN_TOL, name)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
def test_groups_train_at_once_in_workers_and_a_dead_worker_costs_only_its_group(cli, tmp_path):
    """processes=2: two groups train in two worker processes at once, forked
    from the warm process (regbench.warm), the regbench process's one child. A
    worker killed mid-group leaves its jobs `dead` (the same command resumes
    them); the other group completes, and the sweep says so and exits 1. One
    process (processes=1) trains the same sweep, one group after the other."""
    grid = ["model.dropout=0,0.3", "model.batchnorm=false,true", *TINY, cli.data_arg, "data.n_samples=3000",
            "trainer.epochs=30", "hydra.launcher.processes=2"]
    sweep = tmp_path / "two"
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "train", "-m", *grid, f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline:
        warm = _children(proc.pid)
        workers = [w for z in warm for w in _children(z)]
        done = [len(read_metrics(j)) for j in jobs_of(sweep).values() if (j / records.METRICS_FILE).exists()]
        if len(workers) == 2 and len(done) == 4 and min(done) >= 3:
            break
        time.sleep(0.05)
    assert len(warm) == 1 and len(workers) == 2, "two worker processes, children of the warm process, train at once"
    os.kill(workers[0], signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "a worker process ended (-9) while training 2 jobs" in out
    assert "4 jobs: 2 completed, 2 dead" in out, out
    again = cli("train", "-m", *grid, f"hydra.sweep.dir={sweep}")
    assert again.returncode == 0 and "4 jobs: 2 completed, 2 skipped" in again.stdout, again.stdout + again.stderr
    # the group whose jobs all completed before is skipped, not announced as training (it said so of both groups)
    assert (again.stdout + again.stderr).count("training 2 jobs (2 seeds) as one vectorized model") == 1, again.stdout
    one = cli("train", "-m", *grid[:-1], "trainer.epochs=2", "hydra.launcher.processes=1", f"hydra.sweep.dir={tmp_path / 'one'}")
    assert one.returncode == 0 and "as 2 vectorized groups\n" in one.stdout + one.stderr
    assert "4 jobs: 4 completed" in one.stdout


def test_a_worker_killed_before_its_jobs_record_anything_leaves_the_sweep_undone(cli, tmp_path):
    """Out of memory while a group loads its data: no job wrote a record. The sweep
    said `2 missing`, `next: regbench report` and exited 0."""
    (tmp_path / "oom.py").write_text("import os, signal\ndef load():\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    res = cli("train", "-m", "data=callable", "data.loader=oom:load", "model.dropout=0,0.5", *TINY[1:], "hydra.sweep.dir=sw")
    assert res.returncode == 1 and "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    last, hint = res.stdout.strip().splitlines()[-2:]
    assert last.endswith("2 jobs: 2 missing")
    assert hint.startswith("next: run the same command again to resume or retry the 2 unfinished jobs")


def _node_metadata(cfg) -> dict:
    """Every node's metadata (flags, object and reference types, key, optional), by path."""
    from omegaconf import DictConfig, ListConfig

    out = {"": (cfg._metadata.flags, cfg._metadata.object_type, cfg._metadata.ref_type)}

    def walk(node, path):
        keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
        for k in keys:
            child = node._get_node(k)
            m = child._metadata
            out[f"{path}{k}"] = (m.flags, getattr(m, "object_type", None), m.ref_type, m.optional, m.key)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_missing() and not child._is_none() \
                    and not child._is_interpolation():
                walk(child, f"{path}{k}.")

    walk(cfg, "")
    return out


@pytest.mark.parametrize("template,job", [
    (["seed=0", "model.dropout=0.3"], ["seed=4", "model.dropout=0.5"]),
    (["model.dropout=0", "model.batchnorm=false", "seed=0", "trainer.epochs=50"],
     ["model.dropout=0.1", "model.batchnorm=true", "seed=3", "trainer.epochs=50"]),
    (["model.widths=[100,100]", "optim.lr=1e-3"], ["model.widths=[32]", "optim.lr=0.01"]),
    (["data.label_noise=0", "model.dropout_layers=null"], ["data.label_noise=0.2", "model.dropout_layers=[0.1,0.5]"]),
])
def test_a_job_config_derived_from_a_composed_one_is_hydras_own(template, job):
    """The fused launcher composes a sweep's jobs that differ only in plain
    values from one composed job (hydra_plugins/regbench_fused_launcher):
    the result must be exactly what Hydra composes for the job."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from hydra_plugins.regbench_fused_launcher.fused_launcher import derive_sweep_config
    from regbench.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["hydra.sweep.dir=/tmp/x"], RunMode.MULTIRUN)
        base = loader.load_sweep_config(master, template)
        composed = loader.load_sweep_config(master, job)
        # the template copied by deepcopy, and by unpickling (what the launcher does)
        for derived in (derive_sweep_config(template, base, job, master),
                        derive_sweep_config(template, base, job, master, pickle.dumps(base))):
            assert derived is not None
            assert OmegaConf.to_container(derived, resolve=False) == OmegaConf.to_container(composed, resolve=False)
            assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(composed)
            assert _node_metadata(derived) == _node_metadata(composed)  # flags (struct, readonly), types, keys
        # not plain values: a config group, an addition, another set of keys
        for other in (["seed=4", "data=digits"], ["seed=4", "+model.extra=1"], ["model.dropout=0.5"]):
            tmpl = ["seed=0", "data=mnist1d"] if "data=digits" in other else ["seed=0", "+model.extra=2"] if "+model.extra=1" in other else template
            if len(other) == len(tmpl):
                try:
                    base = loader.load_sweep_config(master, tmpl)
                except Exception:
                    continue
                assert derive_sweep_config(tmpl, base, other, master) is None, other
            else:
                assert derive_sweep_config(template, loader.load_sweep_config(master, template), other, master) is None
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("chdir", [False, True])
def test_a_group_sets_its_jobs_up_as_hydras_run_job(tmp_path, monkeypatch, chdir):
    """The fused launcher sets a group's jobs up with fewer copies of the
    config than Hydra's run_job (set_up_job): the same folder, the same
    .hydra/ files byte for byte, the same JobReturn, the same callbacks."""
    import copy as copy_mod

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job, setup_globals
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf

    from hydra import initialize_config_module
    from hydra_plugins.regbench_fused_launcher.fused_launcher import set_up_job
    from regbench.config import register_configs

    class Calls:
        def __init__(self):
            self.seen = []

        def on_job_start(self, config, **kw):
            self.seen.append(("start", OmegaConf.to_yaml(config)))

        def on_job_end(self, config, job_return, **kw):
            self.seen.append(("end", job_return.status, job_return.return_value))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REGBENCH_TEST_ENV", "before")
    register_configs()
    setup_globals()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", [f"hydra.sweep.dir={tmp_path / 'sweep'}", f"hydra.job.chdir={chdir}",
                                                      "+hydra.job.env_set.REGBENCH_TEST_ENV=during"], RunMode.MULTIRUN)
        job = loader.load_sweep_config(master, ["model.dropout=0.3", "seed=2"])
        seen_env, out = [], {}
        task = lambda cfg: seen_env.append((os.environ["REGBENCH_TEST_ENV"], HydraConfig.get().runtime.output_dir)) or 7
        for name, run in (("hydra", lambda c, cb: run_job(hydra_context=HydraContext(config_loader=None, callbacks=cb), task_function=task,
                                                             config=c, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")),
                          ("fused", lambda c, cb: set_up_job(cb, task, c))):
            calls = Calls()
            before = HydraConfig.instance().cfg
            ret = run(copy_mod.deepcopy(job), calls)
            assert HydraConfig.instance().cfg is before
            folder = Path(ret.hydra_cfg.hydra.runtime.output_dir)
            files = {p.name: p.read_bytes() for p in (folder / ".hydra").iterdir()}
            out[name] = (ret, files, calls.seen, folder, os.getcwd())
            assert files.keys() == {"config.yaml", "hydra.yaml", "overrides.yaml"}
            for p in (folder / ".hydra").iterdir():
                p.unlink()
    GlobalHydra.instance().clear()
    (a, fa, ca, da, cwa), (b, fb, cb, db, cwb) = out["hydra"], out["fused"]
    assert da == db and fa == fb and cwa == cwb == str(tmp_path)
    assert seen_env == [("during", str(da))] * 2 and os.environ["REGBENCH_TEST_ENV"] == "before"
    assert ca == cb and ca[-1] == ("end", a.status, 7)
    assert OmegaConf.to_yaml(a.cfg) == OmegaConf.to_yaml(b.cfg) and OmegaConf.is_struct(a.cfg) == OmegaConf.is_struct(b.cfg)
    assert OmegaConf.get_type(a.cfg) is OmegaConf.get_type(b.cfg)
    assert OmegaConf.to_yaml(a.hydra_cfg) == OmegaConf.to_yaml(b.hydra_cfg)
    assert (a.overrides, a.working_dir, a.status, a.return_value, a.task_name) == \
           (b.overrides, b.working_dir, b.status, b.return_value, b.task_name)
    assert "hydra" not in b.cfg and "hydra" in job  # the job's own config keeps Hydra's node


@pytest.mark.parametrize("optim", [["optim=adamw"], ["optim=sgd", "optim.nesterov=true"]])
def test_jobs_that_differ_in_lr_and_weight_decay_train_as_one_group_with_their_own_numbers(make_cfg, tmp_path, optim):
    """optim.lr and optim.weight_decay vary per replica (one fused kernel call
    per distinct pair): each job's rows, lr column included, equal the job
    trained alone (to 1e-5 without BatchNorm), also after a resume."""
    common = [*optim, "model.batchnorm=false", "model.dropout=0.2", "trainer.epochs=4", "optim.schedule=cosine"]
    settings = [["optim.lr=0.01", "optim.weight_decay=0", "seed=0"], ["optim.lr=0.05", "optim.weight_decay=0.01", "seed=1"],
                ["optim.lr=0.01", "optim.weight_decay=0.01", "seed=2"], ["optim.lr=0.05", "optim.weight_decay=0", "seed=0"]]
    from hydra_plugins.regbench_fused_launcher.fused_launcher import group_key, plan_groups

    cfgs = [make_cfg(*common, *s) for s in settings]
    assert len({group_key(c) for c in cfgs}) == 1 and plan_groups(cfgs, 64, None) == [[0, 1, 2, 3]]
    out = train.run_group([(c, tmp_path / "group" / str(i), []) for i, c in enumerate(cfgs)])
    assert all(o["status"] == "completed" for o in out)
    for i, c in enumerate(cfgs):
        train.run_group([(c, tmp_path / "alone" / str(i), [])])
        assert_close(rows(tmp_path / "group" / str(i)), rows(tmp_path / "alone" / str(i)), NO_BN_TOL, settings[i])
    lrs = [float(r["lr"]) for r in rows(tmp_path / "group" / "1")]
    assert lrs[0] == lrs[1] == 0.05 > lrs[2] > lrs[-1]  # its own lr, on its own cosine schedule
    # interrupted together, resumed in another grouping: the same records
    interrupt_at_epoch = 3
    from test_train import interrupt_at

    import _pytest.monkeypatch

    mp = _pytest.monkeypatch.MonkeyPatch()
    try:
        interrupt_at(mp, interrupt_at_epoch)
        with pytest.raises(KeyboardInterrupt):
            train.run_group([(c, tmp_path / "resumed" / str(i), []) for i, c in enumerate(cfgs)])
    finally:
        mp.undo()
    again = train.run_group([(cfgs[i], tmp_path / "resumed" / str(i), []) for i in (3, 1)])  # two of them, in another order
    assert all(o["resumed_after_epoch"] == interrupt_at_epoch - 1 for o in again)
    for i in (3, 1):
        assert_close(rows(tmp_path / "resumed" / str(i)), rows(tmp_path / "alone" / str(i)), NO_BN_TOL, settings[i])


def test_worker_processes_follow_cores_and_memory_with_a_cap(monkeypatch):
    """processes: null starts one worker per core on CPU, at most 8 and one per
    GiB free; one on a GPU; the user's number otherwise."""
    from omegaconf import OmegaConf

    import regbench.preflight
    from hydra_plugins.regbench_fused_launcher import fused_launcher as fl

    cpu = OmegaConf.create({"device": "cpu"})
    monkeypatch.setattr(regbench.preflight, "cpu_memory_available", lambda: 64 * 2**30)
    for cores, expected in ((1, 1), (2, 2), (6, 6), (64, 8)):
        monkeypatch.setattr(fl, "usable_cores", lambda c=cores: c)
        assert fl.FusedLauncher()._n_processes(cpu) == expected
    monkeypatch.setattr(regbench.preflight, "cpu_memory_available", lambda: 3.5 * 2**30)
    assert fl.FusedLauncher()._n_processes(cpu) == 3  # 64 cores, 3.5 GiB free
    assert fl.FusedLauncher()._n_processes(OmegaConf.create({"device": "cuda"})) == 1
    assert fl.FusedLauncher(processes=5)._n_processes(OmegaConf.create({"device": "cuda"})) == 5


ROUNDED = ("train_loss", "fit_loss", "val_loss", "test_loss", "gap_loss", "grad_norm")  # sums over other layouts


def rounded(key: str) -> bool:
    """Columns a group computes with other kernels or sums in another order: the
    losses, the gradient norm, and the pre-activation percentiles (the group's
    evaluation forward is one batched matmul: 3e-8 apart on digits)."""
    return key in ROUNDED or key.startswith("preact_")


def test_without_batchnorm_a_fused_job_trains_to_the_same_bits_as_alone(make_cfg, tmp_path):
    """Training itself is exactly the job's own: the optimizer updates each
    replica's slice (its scalar tail as alone), the head's gradients are taken
    in nn.Linear's layouts. Only the losses, the gradient norm and the
    pre-activation percentiles (:func:`rounded`) may differ, by float rounding."""
    common = ["model.batchnorm=false", "trainer.epochs=8", "model.dropout_layers=[0.3,0]"]
    settings = [["seed=0", "data.label_noise=0.2"], ["seed=1", "model.dropout_layers=[0,0]"], ["seed=2"]]
    group = train.run_group([(make_cfg(*common, *s), tmp_path / "group" / str(i), s) for i, s in enumerate(settings)])
    assert [g["status"] for g in group] == ["completed"] * 3
    for i, s in enumerate(settings):
        train.run(make_cfg(*common, *s), tmp_path / "alone" / str(i), show_progress=False)
        a, b = rows(tmp_path / "group" / str(i)), rows(tmp_path / "alone" / str(i))
        assert len(a) == len(b) == 9
        for x, y in zip(a, b):
            assert {k: v for k, v in x.items() if not rounded(k)} == {k: v for k, v in y.items() if not rounded(k)}, (s, x["epoch"])
            for k in filter(rounded, x):
                if x[k] != y[k]:
                    assert float(x[k]) == pytest.approx(float(y[k]), abs=1e-6), (s, x["epoch"], k)


AWKWARD = ["yes", "no", "true", "null", "~", "1.5", "1e5", "0o17", "0x1F", ".inf", "", "a: b", "x: y", "#c", "line1\nline2",
           "tab\there", "日本語 é", "x" * 200, " lead", "trail ", "'quoted'", '"dq"', "- dash", "[1, 2]", "{a: 1}", "%pct", "@at", "`bt`"]


def test_a_groups_yaml_files_are_omegaconfs_text(make_cfg):
    """set_up_job writes each job's .hydra files with PyYAML's C emitter where
    there is one (2-3x faster than OmegaConf.to_yaml): the text is the same,
    for a composed config and for strings YAML would read as something else."""
    import yaml
    from omegaconf import OmegaConf

    from hydra_plugins.regbench_fused_launcher.fused_launcher import _c_dumper, to_yaml

    assert (_c_dumper() is not None) == bool(yaml.__with_libyaml__)
    cfg = make_cfg("+experiment=label_noise_dropout", "model.widths=[8,16,32]", "optim=sgd", tiny=False)
    awkward = OmegaConf.create({"values": AWKWARD, "keyed": {f"k{i}": v for i, v in enumerate(AWKWARD)},
                                "numbers": [0, -1, 1.5, 1e-12, float("inf"), True, None], "interp": "${values}"})
    overrides = OmegaConf.create([f"+s{i}={v!r}" for i, v in enumerate(AWKWARD)])
    for node in (cfg, cfg.model, awkward, overrides):
        assert to_yaml(node) == OmegaConf.to_yaml(node)


def test_a_worker_told_to_stop_before_its_group_trains_ends_without_a_traceback(monkeypatch):
    """Ctrl-C while a worker unpickled its group's configs or set up their folders: the interrupt raised inside
    OmegaConf printed "Process ForkProcess-1:2: Traceback ..." (5 of 8 tries at the group's start), or the
    ConfigKeyError it left behind. Told to stop, the worker now ends quietly; not told, an error still propagates."""
    import queue

    from hydra_plugins.regbench_fused_launcher.fused_launcher import FusedLauncher

    from regbench import signals

    class Results:
        def put(self, item):
            pass

        def close(self):
            pass

        def join_thread(self):
            pass

    class Broken:
        def _launch_group(self, *args):
            raise KeyError("'NoneType' object has no attribute '_invalidate_flags_cache'")  # what the interrupt left

    def run_worker():
        import torch

        threads = torch.get_num_threads()  # the worker sets its own: this process's comes back
        tasks = queue.Queue()
        tasks.put(0)
        try:
            FusedLauncher._worker(Broken(), [[0]], [[]], 0, tasks, Results(), 1)
        finally:
            torch.set_num_threads(threads)

    ended = []
    monkeypatch.setattr(signals, "exit_worker", lambda: ended.append(True) or (_ for _ in ()).throw(SystemExit(130)))
    with pytest.raises(KeyError):  # not told to stop: a real error is not hidden
        run_worker()
    assert not ended
    monkeypatch.setattr(signals, "_told_to_stop", True)
    with pytest.raises(SystemExit):
        run_worker()
    assert ended == [True]
