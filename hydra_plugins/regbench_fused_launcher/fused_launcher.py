"""regbench's default multirun launcher: a sweep's jobs that share tensor shapes
and code path train in one process as one vectorized model.

Jobs are grouped by their whole config except what the vectorized model varies
per replica (``seed``, ``trainer.replicas``, ``model.dropout``,
``model.dropout_layers``, ``model.input_dropout``, ``data.label_noise``, and on
CPU or CUDA ``optim.lr`` and ``optim.weight_decay``) and
the per-job runtime knobs (``trainer.progress``, ``trainer.checkpoint``,
``trainer.save_every_s``), so
BatchNorm on/off, widths, order, activation, the optimizer and its other settings,
dataset and split, batch size, epochs... each make their own groups. A group is
split when its replicas exceed ``max_replicas`` or its memory estimate
(``regbench.config.memory_estimate``) exceeds ``memory_budget_gb`` (default:
half of the memory the device has free), and cut into parts where groups
of unequal work would leave a core idle (``balance_groups``). Each job keeps its own folder,
``.hydra/`` files, records, lock and status (``regbench.train.run_group``); its
numbers do not depend on its group.

Per job, ``set_up_job`` (Hydra's ``run_job`` with fewer copies of the config)
sets up the folder and ``.hydra/`` files and calls ``on_job_start`` before the group trains; ``on_job_end`` is called with
the job's real return value after the group has trained. ``hydra/launcher=basic``
gives Hydra's one-job-at-a-time launcher back. This module imports no torch.
"""

# no `from __future__ import annotations`: Hydra scans plugins with exec_module,
# outside sys.modules, where dataclasses cannot resolve string annotations
import copy
import functools
import logging
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, env_override, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

# Varied per replica inside one vectorized model, or honoured per job.
PER_REPLICA = ("seed", "trainer.replicas", "model.dropout", "model.dropout_layers", "model.input_dropout", "data.label_noise")
# Per replica too where torch has fused optimizer kernels (CPU, CUDA): one kernel
# call per distinct (lr, weight decay) over those replicas (regbench.optim).
PER_REPLICA_OPTIM = ("optim.lr", "optim.weight_decay")
AUTO_PROCESSES = 8  # most worker processes `processes: null` starts (more cores: more threads each)
WORKER_BYTES = 2**30  # memory set aside per worker process (torch, its data, its group) when choosing how many
PER_JOB = ("trainer.progress", "trainer.checkpoint", "trainer.save_every_s")
MIN_CHUNK_JOBS = 6  # fewest jobs balance_groups leaves in a part of a group


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.regbench_fused_launcher.fused_launcher.FusedLauncher"
    max_replicas: int = 64  # most replicas (seeds of all jobs) in one vectorized model
    memory_budget_gb: Optional[float] = None  # most memory all groups training at once may take (estimate); null = half of what is free
    # groups training at once, each in its own worker process with cores/processes
    # threads; null = one per CPU core on CPU, at most 8 and 1 per GiB free (a group
    # is split in two while there are fewer groups than processes), 1 on a GPU
    processes: Optional[int] = None
    # fork the workers from a process that imported torch while the sweep was
    # being composed (regbench.warm), not from the regbench process; read from
    # the command line, before Hydra composes: hydra.launcher.warm=false
    warm: bool = True


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="regbench")


def group_key(task_cfg: DictConfig) -> str:
    """What must be equal for two jobs to train as one vectorized model."""
    from regbench import records

    flat = records.flatten(OmegaConf.to_container(task_cfg, resolve=True))
    device = str(flat.get("device", "auto"))
    free = PER_REPLICA + PER_JOB + (PER_REPLICA_OPTIM if device in ("auto", "cpu") or device.startswith("cuda") else ())
    return repr(sorted((k, repr(v)) for k, v in flat.items() if k not in free))


def job_cost(task_cfg: DictConfig) -> Tuple[int, int]:
    """(bytes a job adds to its group, bytes of the shared data), estimated."""
    from regbench.config import memory_estimate

    try:
        est = memory_estimate(task_cfg)
    except Exception:  # a config the job itself will refuse: costs nothing here
        return 0, 0
    if est is None:  # data=callable: its size is known only once called; the replica cap still bounds the group
        return 0, 0
    return est["params"] + est["activations"], est["data"]


def plan_groups(cfgs: List[DictConfig], max_replicas: int, budget: Optional[float]) -> List[List[int]]:
    """Job indices grouped by :func:`group_key` in sweep order, each group capped."""
    by_key: Dict[str, List[int]] = {}
    for i, c in enumerate(cfgs):
        by_key.setdefault(group_key(c), []).append(i)
    groups = []
    for members in by_key.values():
        current, replicas, cost, data = [], 0, 0, 0
        for i in members:
            r = max(1, int(OmegaConf.select(cfgs[i], "trainer.replicas", default=1) or 1))
            add, d = job_cost(cfgs[i])
            if current and (replicas + r > max_replicas or (budget is not None and cost + add + max(data, d) > budget)):
                groups.append(current)
                current, replicas, cost, data = [], 0, 0, 0
            current.append(i)
            replicas, cost, data = replicas + r, cost + add, max(data, d)
        groups.append(current)
    return sorted(groups, key=lambda g: g[0])


class _Progress:
    """One line per finished job (regbench.sweep.JobProgress); a group's jobs end together."""

    def __init__(self, n: int, names: List[str]):
        from regbench.sweep import JobProgress

        self.lines, self.names = JobProgress(n), names

    def done(self, group: List[int], rets: List[JobReturn], left_s: Optional[float] = None) -> None:
        folders = [OmegaConf.select(r.hydra_cfg, "hydra.runtime.output_dir", default=None) if r.hydra_cfg is not None else None
                   for r in rets]
        for line in self.lines.finished([(self.names[i], f) for i, f in zip(group, folders)], left_s):
            log.info(line)


def _log_to_every_job(rets: List[JobReturn]) -> List[logging.Handler]:
    """A file handler per job after the first, beside the first job's own
    (Hydra's job_logging config has one file, in the first job's folder)."""
    root = logging.getLogger()
    first = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    if not first:
        return []
    template = first[0]
    name = Path(template.baseFilename).name
    added = []
    for ret in rets[1:]:
        folder = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir", default=None) if ret.hydra_cfg is not None else None
        if folder is None:
            continue
        try:
            handler = logging.FileHandler(Path(folder) / name)
        except OSError:  # the job's own records will say what is wrong with its folder
            continue
        handler.setFormatter(template.formatter)
        handler.setLevel(template.level)
        for f in template.filters:
            handler.addFilter(f)
        root.addHandler(handler)
        added.append(handler)
    return added


class _StartOnly:
    """Callbacks during the set-up pass: on_job_start now, on_job_end after training."""

    def __init__(self, callbacks):
        self.callbacks = callbacks

    def __getattr__(self, name):
        if name == "on_job_end":
            return lambda *a, **kw: None
        return getattr(self.callbacks, name)


def _compose_each_job_once(loader) -> None:
    """Make ``loader.load_sweep_config`` cheaper for a sweep's jobs.

    Hydra's sweepers compose every job to check it (``validate_batch_is_legal``),
    then the launcher composes it again: about 60 ms a job on 2 cores, twice,
    3 s each time for a 50-job sweep before anything trains. Two savings:

    - the config the check composed is handed to the launch (once: the launch
      changes it);
    - a job whose overrides differ from an already composed job's only in the
      values of plain keys (``seed=3`` against ``seed=2``, ``model.dropout=0.5``
      against ``0.3``: the same keys in the same order, no config group, no
      ``+``/``~``, no ``hydra.`` key, no dict value) is that config, copied,
      with those values set the way Hydra sets them (its
      ``_apply_overrides_to_config``) and its ``hydra.overrides.task`` and
      ``hydra.job.override_dirname`` made for its own overrides.
      tests/test_fused.py checks such configs equal Hydra's own composition.
    """
    if getattr(loader, "_regbench_once", False):
        return
    compose = loader.load_sweep_config
    kept: Dict[Tuple[int, Tuple[str, ...]], DictConfig] = {}
    templates: Dict[Tuple[int, Tuple[str, ...]], Tuple[List[str], DictConfig, bytes]] = {}

    def load_sweep_config(master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key in kept:
            return kept.pop(key)  # the second ask (the launch) takes the config the first (the check) made
        shape = (id(master_config), tuple(o.partition("=")[0] for o in sweep_overrides))
        cfg = None
        if shape in templates:
            template_overrides, template, pickled = templates[shape]
            cfg = derive_sweep_config(template_overrides, template, list(sweep_overrides), master_config, pickled)
        if cfg is None:
            cfg = compose(master_config=master_config, sweep_overrides=list(sweep_overrides))
            template = copy.deepcopy(cfg)
            try:
                pickled = pickle.dumps(template, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - a value that does not pickle: deepcopy each job's config instead
                pickled = b""
            templates[shape] = (list(sweep_overrides), template, pickled)
        kept[key] = cfg
        return cfg

    loader.load_sweep_config = load_sweep_config
    # A launch has taken its batch's configs: whatever is left was composed by
    # the launch itself (Optuna's sweeper checks no batch first) and is in use
    # now. Kept, it was handed to a later trial with the same overrides: the
    # same object, read-only by then (a traceback), or twice in one batch.
    loader._regbench_forget = kept.clear
    loader._regbench_once = True


def derive_sweep_config(template_overrides: List[str], template: DictConfig, overrides: List[str],
                        master_config: DictConfig, pickled: bytes = b"") -> Optional[DictConfig]:
    """``overrides``' config from ``template`` (composed for ``template_overrides``),
    or None when they differ in more than plain values (see _compose_each_job_once).
    ``pickled``: the template pickled, copied by unpickling (0.8 against 3.6 ms
    a copy for deepcopy, for the default config; the same nodes, flags and
    types, tests/test_fused.py)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    from regbench.sweep import parsed_overrides

    try:
        mine, theirs = parsed_overrides(overrides), parsed_overrides(template_overrides)
    except Exception:
        return None
    keys = [o.key_or_group for o in mine]
    if len(set(keys)) != len(keys) or keys != [o.key_or_group for o in theirs]:
        return None
    from regbench.preflight import with_values_set

    changed = [a for a, b in zip(mine, theirs) if a.input_line != b.input_line]
    cfg = with_values_set(changed, template, template, lambda: _copy_of(template, pickled))
    if cfg is None:
        return None
    task = [o for o in mine if not o.is_hydra_override()]
    with open_dict(cfg.hydra):
        cfg.hydra.overrides.task = [o.input_line for o in task]
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task,
            kv_sep=cfg.hydra.job.config.override_dirname.kv_sep,
            item_sep=cfg.hydra.job.config.override_dirname.item_sep,
            exclude_keys=cfg.hydra.job.config.override_dirname.exclude_keys,
        )
    OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
    return cfg


def _copy_of(template: DictConfig, pickled: bytes) -> DictConfig:
    """A fresh copy of ``template``: unpickled from ``pickled`` where given, else deepcopied."""
    if pickled:
        try:
            return pickle.loads(pickled)
        except Exception:  # noqa: BLE001 - a value that pickles but does not unpickle: copy it the slow way
            pass
    return copy.deepcopy(template)


def split_for_processes(groups: List[List[int]], processes: int) -> List[List[int]]:
    """Halve the largest group (by jobs) while there are fewer groups than
    processes: two half-groups training at once on two cores beat one group
    with two threads (small MLPs use a second thread poorly). A job's numbers
    do not depend on its group."""
    groups = [list(g) for g in groups]
    while len(groups) < processes:
        largest = max(groups, key=len)
        if len(largest) < 2:
            break
        groups.remove(largest)
        half = (len(largest) + 1) // 2
        groups += [largest[:half], largest[half:]]
    return sorted(groups, key=lambda g: g[0])


def makespan(works: List[float], processes: int) -> float:
    """When the last of ``processes`` workers ends if each, when free, takes the
    next of ``works`` longest first (what :meth:`FusedLauncher._launch_parallel` does)."""
    loads = [0.0] * max(1, processes)
    for w in sorted(works, reverse=True):
        loads[loads.index(min(loads))] += w
    return max(loads)


def balance_groups(groups: List[List[int]], cfgs: List[DictConfig], processes: int, min_jobs: int = MIN_CHUNK_JOBS) -> List[List[int]]:
    """Cut every group into the same number of parts (2, 3, ...) where that
    lets the processes end closer together: without it, a BatchNorm group and
    a group without BatchNorm of 25 jobs each keep one core idle for the last
    sixth of the sweep (the BN one is about 1.2x slower), and cut in halves
    they end together. A part keeps at least ``min_jobs`` jobs (a group of 6
    or more trains as fast per job as one of 25 on one thread; of 3, about 15%
    slower). Parts are contiguous runs of their group's jobs, so the plan
    depends only on the jobs, and a job's numbers do not depend on its group
    (regbench.train.run_group). Kept: the plan whose makespan (by
    :func:`group_work`) is at least 3% shorter than the best with fewer parts."""
    if processes < 2 or not groups:
        return groups
    best, best_span = groups, makespan([group_work(cfgs, g) for g in groups], processes)
    for parts in range(2, 5):
        plan = []
        for g in groups:
            k = max(1, min(parts, len(g) // min_jobs))
            size, extra = divmod(len(g), k)
            start = 0
            for j in range(k):
                end = start + size + (1 if j < extra else 0)
                plan.append(g[start:end])
                start = end
        span = makespan([group_work(cfgs, g) for g in plan], processes)
        if span < 0.97 * best_span:
            best, best_span = plan, span
    return sorted(best, key=lambda g: g[0])


def estimate_left(works: List[float], started: Dict[int, float], ended: Dict[int, float], processes: int,
                  now: float) -> Optional[float]:
    """Seconds until the last group ends, for the closing lines' ETA, or None
    before any group has ended. Groups end in batches on several processes,
    so the count of finished jobs over the time gone (a sequential sweep's
    ETA) is far off: after the first of four 12-job parts it said 21 s where
    5 s were left. Here the groups that ended give the seconds per unit of
    :func:`group_work`; a running group has its estimate less the time it has
    run left, and the groups not started go, longest first, to whichever
    process is free first (as the workers take them)."""
    done = [k for k in ended if k in started]
    spent, work = sum(ended[k] - started[k] for k in done), sum(works[k] for k in done)
    if work <= 0 or spent <= 0:
        return None
    per_work = spent / work
    free = sorted(max(0.0, works[k] * per_work - (now - started[k])) for k in started if k not in ended)
    free += [0.0] * max(0, processes - len(free))
    for k in range(len(works)):  # `works` is in launch order
        if k not in started:
            i = free.index(min(free))
            free[i] += works[k] * per_work
    return max(free) if free else 0.0


def _numbers(nums: List[int]) -> str:
    """``#0-3 #8 #10-11``: job numbers, runs of consecutive ones as ranges."""
    nums, runs = sorted(nums), []
    for n in nums:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return " ".join(f"#{a}" if a == b else f"#{a}-{b}" for a, b in runs)


def group_work(cfgs: List[DictConfig], group: List[int]) -> float:
    """Rough relative cost of a group, to start the longest first."""
    work = 0.0
    for i in group:
        c = cfgs[i]
        r = max(1, int(OmegaConf.select(c, "trainer.replicas", default=1) or 1))
        bn = bool(OmegaConf.select(c, "model.batchnorm", default=False)) or any(OmegaConf.select(c, "model.bn_layers", default=None) or [])
        work += r * int(OmegaConf.select(c, "trainer.epochs", default=1) or 1) * (1.3 if bn else 1.0)
    return work


def on_cpu(device: str) -> bool:
    from regbench.preflight import GPU_NODES

    return device == "cpu" or (device == "auto" and not any(os.path.exists(p) for p in GPU_NODES))


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class FusedLauncher(Launcher):
    def __init__(self, max_replicas: int = 64, memory_budget_gb: Optional[float] = None, processes: Optional[int] = None,
                 warm: bool = True) -> None:
        super().__init__()
        self.warm = warm
        self.max_replicas = max(1, int(max_replicas))
        self.memory_budget_gb = memory_budget_gb
        self.processes = processes
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        _compose_each_job_once(hydra_context.config_loader)

    def _budget(self, cfg: DictConfig) -> Optional[float]:
        if self.memory_budget_gb is not None:
            return float(self.memory_budget_gb) * 2**30
        from regbench.preflight import memory_available

        here = memory_available(str(cfg.device), gpu=False)
        return here[0] / 2 if here else None

    def _n_processes(self, cfg: DictConfig) -> int:
        import multiprocessing

        if "fork" not in multiprocessing.get_all_start_methods():  # Windows: the groups train one after another
            return 1
        if self.processes is not None:
            return max(1, int(self.processes))
        if not on_cpu(str(cfg.device)):
            return 1
        from regbench.preflight import cpu_memory_available

        # each worker imports torch (about 0.5 GiB resident), and groups cut much
        # smaller than a few jobs lose what vectorizing gains: at most AUTO_PROCESSES
        free = cpu_memory_available()
        by_memory = max(1, int(free // WORKER_BYTES)) if free else AUTO_PROCESSES
        return max(1, min(usable_cores(), AUTO_PROCESSES, by_memory))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Train the batch; a job whose overrides repeat an earlier one's in
        the batch (an Optuna search that asks for the same trial twice) is
        that job: trained once, each of them given its result. Trained
        twice, the two wanted one folder at once and one of them failed."""
        unique: Dict[Tuple[str, ...], int] = {}
        for overrides in job_overrides:
            unique.setdefault(tuple(overrides), len(unique))
        if len(unique) == len(job_overrides):
            return self._launch_batch(job_overrides, initial_job_idx)
        log.info(f"{len(job_overrides) - len(unique)} of {len(job_overrides)} jobs repeat another job of this batch: "
                 "trained once, each given its result")
        runs = self._launch_batch([list(o) for o in unique], initial_job_idx)
        return [runs[unique[tuple(o)]] for o in job_overrides]

    def _launch_batch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        from regbench import lifetime

        lifetime.release()  # the configs an earlier launch of this process kept (an Optuna search's last batch)
        loader = self.hydra_context.config_loader
        sweep_cfgs, task_cfgs = [], []
        for idx, overrides in enumerate(job_overrides):
            sc = loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
            with open_dict(sc):
                sc.hydra.job.id = sc.hydra.job.num = initial_job_idx + idx
            sweep_cfgs.append(sc)
            tc = OmegaConf.masked_copy(sc, [k for k in sc.keys() if k != "hydra"])
            task_cfgs.append(tc)
        getattr(loader, "_regbench_forget", lambda: None)()
        if not task_cfgs:
            return []
        lifetime.keep()  # the configs live to the sweep's end: its full collections skip them
        processes = self._n_processes(task_cfgs[0])
        budget = self._budget(task_cfgs[0])
        if budget is not None:
            budget /= processes  # the groups that train at once share the memory
        groups = split_for_processes(plan_groups(task_cfgs, self.max_replicas, budget), processes)
        if processes > 1:
            groups = balance_groups(groups, task_cfgs, processes)
        processes = min(processes, len(groups))
        at_once = f", {processes} at a time in worker processes" if processes > 1 else ""
        log.info(f"Launching {len(job_overrides)} job{'s' if len(job_overrides) != 1 else ''} as {len(groups)} vectorized group{'s' if len(groups) != 1 else ''}{at_once}")
        from regbench.sweep import job_name, shared_overrides

        tasks = [filter_overrides(list(sc.hydra.overrides.task)) for sc in sweep_cfgs]
        shared = shared_overrides(tasks)  # trainer.epochs=8 on every line said nothing
        self._progress = _Progress(len(job_overrides), [job_name(t, shared) for t in tasks])
        runs: List[Optional[JobReturn]] = [None] * len(job_overrides)
        from regbench import warm as warm_mod
        from regbench.report import at_end

        warm = warm_mod.take() if self.warm else None  # torch already imported there (regbench.warm)
        # the sweep is composed: a report.at_end report process may import now, on the core this process leaves
        at_end.begin_imports()
        if processes > 1 or warm is not None:
            order = sorted(range(len(groups)), key=lambda k: -group_work(task_cfgs, groups[k]))  # longest first
            works = [group_work(task_cfgs, groups[k]) for k in order]
            self.started, self.ended = {}, {}
            for k, rets in self._launch_parallel([groups[k] for k in order], sweep_cfgs, initial_job_idx, processes, warm):
                for i, ret in zip(groups[order[k]], rets):
                    runs[i] = ret
                self._progress.done(groups[order[k]], rets, estimate_left(works, self.started, self.ended, processes, time.time()))
            never = [i for i, r in enumerate(runs) if r is None]  # every worker ended before it took their group
            if never:
                log.error(f"the worker processes ended before {len(never)} jobs started; they did not run")
                for i in never:
                    runs[i] = self._lost(sweep_cfgs[i], None)
        else:
            for group in groups:
                rets = self._launch_group([sweep_cfgs[i] for i in group], initial_job_idx + group[0])
                for i, ret in zip(group, rets):
                    runs[i] = ret
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                self._progress.done(group, rets)
        return runs  # type: ignore[return-value]

    def _launch_parallel(self, groups: List[List[int]], sweep_cfgs: List[DictConfig], first_idx: int, processes: int, warm=None):
        """Train ``groups`` in ``processes`` forked workers, each taking the next
        group when it is free; yields (group index, its JobReturns) as they end.

        The workers are forked from this process, which has not imported torch
        (Hydra's and regbench's config code only), so each starts clean and
        imports torch once, at the same time as the others. Ctrl-C and SIGTERM
        reach them through regbench.signals (as joblib's workers); a worker
        that dies takes only its current group's jobs with it (``dead`` in
        ``regbench status``), the others go on.

        With a warm process (``warm``, regbench.warm: forked as the command
        began, torch imported while the sweep was being composed) the workers
        are forked from it instead, and it reports each one's end."""
        import multiprocessing
        import queue as queue_mod

        from regbench import lifetime

        threads = max(1, usable_cores() // processes)
        workers: list = []
        # The warm process gets each group's configs as a pickle of its own, which
        # only the worker that takes the group unpickles: one pickle of all the
        # configs (880 kB for the 50-run ablation, their Hydra nodes included) was
        # unpickled by the warm process before it forked a worker (0.24 s of
        # the sweep's start, with the report process importing beside it).
        blobs = None
        if warm is not None:
            try:
                blobs = [pickle.dumps([sweep_cfgs[i] for i in g], protocol=pickle.HIGHEST_PROTOCOL) for g in groups]
            except Exception:  # noqa: BLE001 - anything unpicklable: the workers are forked from here instead
                warm = None
        if warm is not None and warm.submit(_warm_worker, (self.config, self.hydra_context.callbacks, groups, blobs,
                                                           first_idx, processes, threads)):
            tasks, results = warm.tasks, warm.results
        else:
            warm = None
            ctx = multiprocessing.get_context("fork")
            tasks, results = ctx.Queue(), ctx.Queue()
            group_cfgs = [[sweep_cfgs[i] for i in g] for g in groups]  # forked: shared, not copied
            workers = [ctx.Process(target=self._worker, args=(groups, group_cfgs, first_idx, tasks, results, threads), daemon=False)
                       for _ in range(processes)]
        for k in range(len(groups)):
            tasks.put(k)
        for _ in range(processes):
            tasks.put(None)  # one stop per worker: a worker never mistakes a slow queue for an empty one
        for w in workers:
            w.start()
        tasks_left = len(groups)
        current: Dict[int, int] = {}  # worker pid -> the group it trains
        folders: Dict[int, List[str]] = {}  # group -> its job folders, once set up
        early: Dict[int, List[JobReturn]] = {}  # group -> its JobReturns as set up, before it trains

        def lost(pid: int, code) -> Tuple[int, List[JobReturn]]:
            k = current.pop(pid)
            log.error(f"a worker process ended ({code}) while training {len(groups[k])} jobs; they are left as they are")
            return k, [self._lost(sweep_cfgs[i], f) for i, f in zip(groups[k], folders.get(k, [None] * len(groups[k])))]

        try:
            while tasks_left:
                try:
                    msg = results.get(timeout=0.5)
                except queue_mod.Empty:
                    for w in workers:  # a worker that died (killed, out of memory) while training a group
                        if not w.is_alive() and w.pid in current:
                            tasks_left -= 1
                            yield lost(w.pid, w.exitcode)
                    if warm is not None and not warm.alive() and results.empty():
                        for pid in list(current):  # the warm process died, and its workers stop with it
                            tasks_left -= 1
                            yield lost(pid, "its parent, the warm process, ended")
                        break
                    if warm is None and not any(w.is_alive() for w in workers) and results.empty():
                        break
                    continue
                kind, pid, k, payload = msg
                if kind == "start":
                    current[pid] = k
                    self.started[k] = time.time()
                    continue
                if kind == "folders":
                    folders[k], blob = payload
                    early[k] = pickle.loads(blob)
                    lifetime.keep()  # kept to the sweep's end, as the configs
                    continue
                if kind == "exit":  # from the warm process: one of its workers ended
                    if pid in current:
                        tasks_left -= 1
                        yield lost(pid, payload)
                    continue
                current.pop(pid, None)
                tasks_left -= 1
                self.ended[k] = time.time()
                rets = early.pop(k)
                for ret, (status, value) in zip(rets, payload):
                    ret.status, ret.return_value = status, value
                yield k, rets
        finally:
            for w in workers:
                w.join(timeout=None if tasks_left == 0 else 0.1)

    def _lost(self, sc: DictConfig, folder: Optional[str]) -> JobReturn:
        """A job whose worker died: no objective, as for a job that failed (the
        sweep goes on; its closing count and `regbench status` say `dead`)."""
        runtime = OmegaConf.create({"hydra": {"runtime": {"output_dir": folder}}})
        ret = JobReturn(overrides=list(sc.hydra.overrides.task), cfg=sc, hydra_cfg=runtime)
        ret.status = JobStatus.COMPLETED
        ret.return_value = None
        return ret

    def _worker(self, groups, group_cfgs, first_idx, tasks, results, threads: int) -> None:
        """Take groups off ``tasks`` and train them. ``group_cfgs[k]``: group
        k's sweep configs, or a pickle of them (from the warm process)."""
        import os as _os

        from regbench import signals

        signals.watch_parent()  # Ctrl-C/SIGTERM record the group interrupted; a dead parent stops it
        import torch

        torch.set_num_threads(threads)  # a job's own `threads` (> 0) still wins (JobRun.open)
        try:
            while True:
                k = tasks.get()
                if k is None:
                    break
                results.put(("start", _os.getpid(), k, None))
                group = groups[k]
                # The group's JobReturns go to the sweep process as soon as its jobs
                # are set up (pickled here, before training changes anything), and
                # when it ends only each job's status and return value: pickling and
                # unpickling 13 jobs' configs at the end took 0.05-0.2 s of the
                # sweep's last seconds, with the other core idle.
                prepared = lambda dirs, rets, k=k: results.put(
                    ("folders", _os.getpid(), k, (dirs, pickle.dumps(rets, protocol=pickle.HIGHEST_PROTOCOL))))
                cfgs = group_cfgs[k]
                if isinstance(cfgs, bytes):
                    cfgs = pickle.loads(cfgs)
                rets = self._launch_group(cfgs, first_idx + group[0], prepared)
                results.put(("done", _os.getpid(), k, [(ret.status, ret.return_value) for ret in rets]))
        except BaseException:
            # Ctrl-C before a group's jobs train (unpickling their configs, writing
            # their .hydra/): a traceback, or the error the interrupt left behind in
            # OmegaConf. Nothing is recorded yet; the sweep process says the one line.
            if signals.told_to_stop():
                signals.exit_worker()
            raise
        results.close()
        results.join_thread()

    def _launch_group(self, sweep_cfgs: List[DictConfig], first_idx: int, prepared_hook=None) -> List[JobReturn]:
        from regbench import lifetime

        train = lifetime.imported("regbench.train")  # torch and the trainer, frozen where first imported here

        assert self.hydra_context is not None
        prepared: List[Tuple[DictConfig, str, List[str]]] = []

        def prepare(task_cfg: DictConfig) -> None:
            hc = HydraConfig.get()
            prepared.append((task_cfg, hc.runtime.output_dir, list(hc.overrides.task)))

        context = HydraContext(config_loader=self.hydra_context.config_loader, callbacks=_StartOnly(self.hydra_context.callbacks))
        # one line a group, not one a job (each job has its own line when it ends): 50 jobs filled 100 lines
        from regbench.progress import label

        what = label([filter_overrides(list(sc.hydra.overrides.task)) for sc in sweep_cfgs], [[0]] * len(sweep_cfgs))
        # a group's jobs by Hydra's numbers: the parts of one setting cut for the processes had one label
        log.info(f"\ta group of {what}, {_numbers([int(sc.hydra.job.num) for sc in sweep_cfgs])}" if len(sweep_cfgs) > 1
                 else f"\t#{sweep_cfgs[0].hydra.job.num} : {what}")
        rets = [set_up_job(context.callbacks, prepare, sc) for sc in sweep_cfgs]  # folders, .hydra/ files, on_job_start
        if prepared_hook is not None:
            prepared_hook([out for _, out, _ in prepared], rets)
        # the group trains with the first job's logging and Hydra config; every
        # job's own log file (train.log) gets the group's lines too. Each job's
        # Hydra config is the one set_up_job made for it (HydraConfig's own, its
        # node's parent the job's config): set_config would copy the node again,
        # 0.04 s at the end of each 12-job group of the 50-run ablation.
        HydraConfig.instance().cfg = rets[0].hydra_cfg
        configure_log(sweep_cfgs[0].hydra.job_logging, sweep_cfgs[0].hydra.verbose)
        extra = _log_to_every_job(rets)
        try:
            values = train.run_fused_group(prepared, launcher="fused")
        finally:
            root = logging.getLogger()
            for handler in extra:
                root.removeHandler(handler)
                handler.close()
        for sc, ret, value in zip(sweep_cfgs, rets, values):
            ret.return_value = value
            ret.status = JobStatus.COMPLETED
            HydraConfig.instance().cfg = ret.hydra_cfg
            self.hydra_context.callbacks.on_job_end(config=sc, job_return=ret)
        return rets


def set_up_job(callbacks, task_function: TaskFunction, config: DictConfig) -> JobReturn:
    """Hydra's ``run_job`` for one job of a sweep (``hydra.sweep.dir`` /
    ``hydra.sweep.subdir``) as a group sets its jobs up before training them:
    the folder, HydraConfig, ``.hydra/config.yaml``, ``hydra.yaml`` and
    ``overrides.yaml``, ``on_job_start`` and ``on_job_end`` around
    ``task_function`` (which only notes the job), and the JobReturn, all as
    Hydra makes them (tests/test_fused.py compares the files and fields).

    With fewer copies of the config: run_job copies the whole config, Hydra's
    node included, four times a job, and configures the logging for each;
    this takes about half the time (scripts/bench_job_setup.py: 1.6-1.8x on
    this 2-core machine). Here Hydra's node
    is copied once (HydraConfig's own copy, which the JobReturn keeps: nothing
    changes it afterwards), the task config is a copy without it, and the
    logging is configured once for the group rather than per job; the files
    are written by :func:`to_yaml` (14.4 -> 10.4 ms a job, best of 6 rounds
    of 13 jobs)."""
    orig_hydra_cfg = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        output_dir = os.path.abspath(os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                                                  str(OmegaConf.select(config, "hydra.sweep.subdir"))))
        hydra_cfg = HydraConfig.instance().cfg
        for node in (config.hydra.runtime, hydra_cfg.hydra.runtime):
            with read_write(node), open_dict(node):
                node.output_dir = output_dir
        hydra_node = config._get_node("hydra")
        task_cfg = copy.deepcopy(config, memo={id(hydra_node): hydra_node})  # shares Hydra's node, then drops it
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret = JobReturn()
        ret.cfg, ret.hydra_cfg = task_cfg, hydra_cfg
        ret.overrides = OmegaConf.to_container(config.hydra.overrides.task)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        chdir = hydra_cfg.hydra.job.chdir
        ret.working_dir = output_dir if chdir else os.getcwd()  # the task only notes the job: no need to go there
        if config.hydra.output_subdir is not None:
            hydra_output = Path(output_dir) / str(config.hydra.output_subdir)
            hydra_output.mkdir(parents=True, exist_ok=True)
            for cfg, name in ((task_cfg, "config.yaml"), (hydra_cfg, "hydra.yaml"), (config.hydra.overrides.task, "overrides.yaml")):
                (hydra_output / name).write_text(to_yaml(cfg), encoding="utf-8")
        with env_override(hydra_cfg.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:  # noqa: BLE001 - as run_job: the job failed, the sweep goes on
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = orig_hydra_cfg


@functools.lru_cache(maxsize=None)
def _c_dumper():
    """OmegaConf's YAML dumper on libyaml's emitter, or None without libyaml."""
    import yaml
    from omegaconf._utils import OmegaConfDumper

    if not getattr(yaml, "__with_libyaml__", False):
        return None

    class Dumper(yaml.CDumper):
        pass

    Dumper.add_representer(str, OmegaConfDumper.str_representer)
    return Dumper


def to_yaml(cfg) -> str:
    """``OmegaConf.to_yaml(cfg)``, the same text, with PyYAML's C emitter
    where it has one: 2-3x faster (3-4 against 6-10 ms for a job's whole
    config), the three files of each job a group writes before it trains
    (tests/test_fused.py compares the text with OmegaConf's)."""
    import yaml

    dumper = _c_dumper()
    if dumper is None:
        return OmegaConf.to_yaml(cfg)
    container = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    return yaml.dump(container, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=dumper)


def _warm_worker(config: DictConfig, callbacks, groups, group_cfgs, first_idx, tasks, results, threads: int) -> None:
    """A worker forked from regbench.warm's process, which has torch imported
    but none of the regbench process's Hydra state: the launcher's config and
    callbacks come pickled; Hydra's logging, resolvers and job callbacks are
    set up here as Hydra set them up there."""
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    launcher = FusedLauncher()
    launcher.config = config
    launcher.hydra_context = HydraContext(config_loader=None, callbacks=callbacks)  # run_job uses only the callbacks
    launcher._worker(groups, group_cfgs, first_idx, tasks, results, threads)
