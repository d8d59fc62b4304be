"""regbench's default multirun launcher: a sweep's jobs that share tensor shapes
and code path train in one process as one vectorized model.

Jobs are grouped by their whole config except what the vectorized model varies
per replica (``seed``, ``trainer.replicas``, ``model.dropout``,
``model.dropout_layers``, ``model.input_dropout``, ``data.label_noise``) and
the per-job runtime knobs (``trainer.progress``, ``trainer.checkpoint``), so
BatchNorm on/off, widths, order, activation, optimizer and its settings,
dataset and split, batch size, epochs... each make their own groups. A group is
split when its replicas exceed ``max_replicas`` or its memory estimate
(``regbench.config.memory_estimate``) exceeds ``memory_budget_gb`` (default:
half of the memory the device has free). Each job keeps its own folder,
``.hydra/`` files, records, lock and status (``regbench.train.run_group``); its
numbers do not depend on its group.

Per job, Hydra's ``run_job`` sets up the folder and ``.hydra/`` files and
calls ``on_job_start`` before the group trains; ``on_job_end`` is called with
the job's real return value after the group has trained. ``hydra/launcher=basic``
gives Hydra's one-job-at-a-time launcher back. This module imports no torch.
"""

# no `from __future__ import annotations`: Hydra scans plugins with exec_module,
# outside sys.modules, where dataclasses cannot resolve string annotations
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

# Varied per replica inside one vectorized model, or honoured per job.
PER_REPLICA = ("seed", "trainer.replicas", "model.dropout", "model.dropout_layers", "model.input_dropout", "data.label_noise")
PER_JOB = ("trainer.progress", "trainer.checkpoint")


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.regbench_fused_launcher.fused_launcher.FusedLauncher"
    max_replicas: int = 64  # most replicas (seeds of all jobs) in one vectorized model
    memory_budget_gb: Optional[float] = None  # most memory one group may take (estimate); null = half of what is free


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="regbench")


def group_key(task_cfg: DictConfig) -> str:
    """What must be equal for two jobs to train as one vectorized model."""
    from regbench import records

    flat = records.flatten(OmegaConf.to_container(task_cfg, resolve=True))
    return repr(sorted((k, repr(v)) for k, v in flat.items() if k not in PER_REPLICA + PER_JOB))


def job_cost(task_cfg: DictConfig) -> Tuple[int, int]:
    """(bytes a job adds to its group, bytes of the shared data), estimated."""
    from regbench.config import memory_estimate

    try:
        est = memory_estimate(task_cfg)
    except Exception:  # a config the job itself will refuse: costs nothing here
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


class _StartOnly:
    """Callbacks during the set-up pass: on_job_start now, on_job_end after training."""

    def __init__(self, callbacks):
        self.callbacks = callbacks

    def __getattr__(self, name):
        if name == "on_job_end":
            return lambda *a, **kw: None
        return getattr(self.callbacks, name)


class FusedLauncher(Launcher):
    def __init__(self, max_replicas: int = 64, memory_budget_gb: Optional[float] = None) -> None:
        super().__init__()
        self.max_replicas = max(1, int(max_replicas))
        self.memory_budget_gb = memory_budget_gb
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _budget(self, cfg: DictConfig) -> Optional[float]:
        if self.memory_budget_gb is not None:
            return float(self.memory_budget_gb) * 2**30
        from regbench.preflight import memory_available

        here = memory_available(str(cfg.device), gpu=False)
        return here[0] / 2 if here else None

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        loader = self.hydra_context.config_loader
        sweep_cfgs, task_cfgs = [], []
        for idx, overrides in enumerate(job_overrides):
            sc = loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sc):
                sc.hydra.job.id = sc.hydra.job.num = initial_job_idx + idx
            sweep_cfgs.append(sc)
            tc = OmegaConf.masked_copy(sc, [k for k in sc.keys() if k != "hydra"])
            task_cfgs.append(tc)
        budget = self._budget(task_cfgs[0]) if task_cfgs else None
        groups = plan_groups(task_cfgs, self.max_replicas, budget)
        log.info(f"Launching {len(job_overrides)} jobs as {len(groups)} vectorized group{'s' if len(groups) != 1 else ''}")
        runs: List[Optional[JobReturn]] = [None] * len(job_overrides)
        for group in groups:
            for i, ret in zip(group, self._launch_group([sweep_cfgs[i] for i in group], initial_job_idx + group[0])):
                runs[i] = ret
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs  # type: ignore[return-value]

    def _launch_group(self, sweep_cfgs: List[DictConfig], first_idx: int) -> List[JobReturn]:
        from regbench import train

        assert self.hydra_context is not None
        prepared: List[Tuple[DictConfig, str, List[str]]] = []

        def prepare(task_cfg: DictConfig) -> None:
            hc = HydraConfig.get()
            prepared.append((task_cfg, hc.runtime.output_dir, list(hc.overrides.task)))

        context = HydraContext(config_loader=self.hydra_context.config_loader, callbacks=_StartOnly(self.hydra_context.callbacks))
        for sc in sweep_cfgs:
            log.info(f"\t#{sc.hydra.job.num} : {' '.join(filter_overrides(list(sc.hydra.overrides.task)))}")
        rets = []
        for sc in sweep_cfgs:  # folders, .hydra/ files, on_job_start: as Hydra does for each job
            rets.append(run_job(hydra_context=context, task_function=prepare, config=sc,
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
        # the group trains with the first job's logging (its train.log) and Hydra config
        HydraConfig.instance().set_config(rets[0].hydra_cfg)
        configure_log(sweep_cfgs[0].hydra.job_logging, sweep_cfgs[0].hydra.verbose)
        values = train.run_fused_group(prepared, launcher="fused")
        for sc, ret, value in zip(sweep_cfgs, rets, values):
            ret.return_value = value
            ret.status = JobStatus.COMPLETED
            HydraConfig.instance().set_config(ret.hydra_cfg)
            self.hydra_context.callbacks.on_job_end(config=sc, job_return=ret)
        return rets
