"""Check a ``train`` / ``plan`` command line before Hydra runs it.

Hydra writes ``.hydra/`` into the run folder before the task starts, and a
sweep launches its jobs one by one, so a bad value found by the task comes
too late: after Hydra has overwritten an earlier run's record, or after other
jobs of the sweep have trained. :func:`check` composes the config of every job
the command will run (the same composition Hydra does), applies the schema's
range checks, and refuses a run folder that holds another config: one line
naming what is wrong and what is allowed, before anything is written.

It imports neither torch nor the trainer, so ``plan`` stays fast.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from . import records
from .config import ConfigError, RegbenchConfig, register_configs, validate

# Flags that make Hydra do something other than run jobs (help, printing the
# config, completion, another config source): left to Hydra, unchecked.
MULTIRUN_FLAGS = ("-m", "--multirun")
SEED = re.compile(r"seed=-?\d+")
MAX_SETTINGS = 256  # distinct settings of a sweep composed up front (about 60 ms each)


class PreflightError(Exception):
    """One line: what is wrong and what is allowed."""


def _first_line(text) -> str:
    """The first non-empty line; when it only announces what follows ("...:"), the reason too."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return str(text)
    cause = getattr(text, "__cause__", None)
    if lines[0].endswith(":"):
        more = lines[1] if len(lines) > 1 else (_first_line(cause) if cause is not None else "")
        return f"{lines[0]} {more}".strip()
    return lines[0]


def describe(exc: Exception, loader=None) -> str:
    """Hydra's composition errors, as one line."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(exc, OverrideParseException):
        return f"cannot parse the overrides: {_first_line(exc)} (see https://hydra.cc/docs/advanced/override_grammar/basic/)"
    if isinstance(exc, MissingConfigException):
        # "In 'config': Could not find 'data/foo'" + the available options
        text = str(exc)
        missing = text.split("Could not find '", 1)[-1].split("'", 1)[0]
        group, _, option = missing.rpartition("/")
        options = []
        if group and loader is not None:
            try:
                options = loader.get_group_options(group)
            except Exception:
                options = []
        allowed = f"; allowed: {', '.join(options)}" if options else ""
        return f"{group}={option}: no such option{allowed}" if group else _first_line(text)
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    if key:
        msg = _first_line(getattr(cause, "msg", "") or str(cause))
        if "not in '" in msg and "Key '" in msg:  # a misspelled key
            schema = _schema_of(key.rpartition(".")[0])
            allowed = f"; keys there: {', '.join(f.name for f in dataclasses.fields(schema))}" if schema else ""
            return f"{key} is not a config key{allowed}"
        return f"{key}: {msg}"
    return _first_line(exc)


def _schema_of(path: str) -> Optional[type]:
    schema: Any = RegbenchConfig
    for part in [p for p in path.split(".") if p]:
        fields = {f.name: f for f in dataclasses.fields(schema)}
        f = fields.get(part)
        if f is None or f.default_factory is dataclasses.MISSING or not dataclasses.is_dataclass(f.default_factory):
            return None
        schema = f.default_factory
    return schema


def _without_hydra(cfg: DictConfig) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def existing_run_conflict(run_dir: Path, cfg: DictConfig) -> Optional[str]:
    """The refusal the trainer would give for a folder holding another config, or None."""
    try:
        summary = records.read_summary(run_dir)
    except (OSError, ValueError):
        return None
    return records.config_conflict(run_dir, summary.get("config", {}), records.flatten(OmegaConf.to_container(cfg, resolve=True)))


def _device_unavailable(device: str) -> Optional[str]:
    """The trainer's refusal of a device this machine lacks (imports torch only for cuda/mps)."""
    if device in ("auto", "cpu"):
        return None
    from .train import resolve_device

    try:
        resolve_device(device)
    except ConfigError as exc:
        return str(exc)
    return None


def check(argv: list[str], command: str = "train") -> Optional[tuple[DictConfig, list[list[str]]]]:
    """Compose and check what ``regbench <command> argv`` will run.

    Returns (base config with Hydra's node, the jobs as override lists), or
    None when the command line is left to Hydra (help, --cfg, completion,
    another config source, or a sweeper other than the basic one). Raises
    PreflightError with one line. What it cannot decide here (an
    interpolation that needs the running job, settings beyond the first
    MAX_SETTINGS) it leaves to the trainer, which checks every job again
    when it starts. The caller calls :func:`reset` when done with the config.
    """
    if any(a.startswith("-") and a not in MULTIRUN_FLAGS for a in argv):
        return None
    args = [a for a in argv if a not in MULTIRUN_FLAGS]
    register_configs()
    return _check(args, command, any(a in MULTIRUN_FLAGS for a in argv))


def reset() -> None:
    """Forget the HydraConfig that :func:`check` set (so ``${hydra:...}`` values
    resolve while its caller still uses the config); Hydra sets its own per job."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


def _job_folders(base: DictConfig, jobs: list[list[str]]) -> list[Path]:
    from .sweep import job_folder, names_job_folders

    if not names_job_folders(base):
        return []
    sweep_dir = Path(base.hydra.sweep.dir)
    return [sweep_dir / job_folder(base, job) for job in jobs]


def _check(args: list[str], command: str, flag_multirun: bool):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf.errors import InterpolationResolutionError

    from .sweep import expand_jobs

    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        try:
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(args)
            fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
            base = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        except Exception as exc:
            raise PreflightError(describe(exc, loader)) from None
        HydraConfig.instance().set_config(copy.deepcopy(base))  # ${hydra:...} interpolations resolve as in the job
        multirun = command == "plan" or flag_multirun or base.hydra.mode == RunMode.MULTIRUN
        sweeps = [o for o in parsed if o.is_sweep_override()]
        if not multirun and sweeps:
            o = sweeps[0]
            raise PreflightError(
                f"{o.input_line} sweeps over values: add -m to run one job per value "
                f"(a list is written {o.get_key_element()}=[...])"
            )
        if not multirun and OmegaConf.select(base, "hydra.sweeper.params"):
            keys = ", ".join(base.hydra.sweeper.params)
            raise PreflightError(f"this config defines a sweep (hydra.sweeper.params: {keys}): add -m to run it")
        if not OmegaConf.select(base, "hydra.sweeper._target_", default="").endswith("BasicSweeper"):
            return None  # e.g. Optuna: its search space is not a list of jobs
        with open_dict(base):
            base.hydra.overrides.task = [o.input_line for o in parsed if not o.is_hydra_override()]
        try:
            jobs = expand_jobs(base) if multirun else [list(base.hydra.overrides.task)]
        except Exception as exc:
            raise PreflightError(describe(exc, loader)) from None
        if not jobs:
            raise PreflightError("this sweep has no jobs: a range() or glob() in it is empty")
        hydra_fixed = [o.input_line for o in parsed if o.is_hydra_override() and not o.is_sweep_override()]
        if multirun:
            # One exact composition per distinct setting: a seed never makes a config
            # invalid, so jobs that differ only in an integer seed are checked once.
            distinct: dict[tuple, list[str]] = {}
            for job in jobs:
                distinct.setdefault(tuple(o for o in job if not SEED.fullmatch(o)), job)
            settings = list(distinct.values())[:MAX_SETTINGS]  # beyond that, each job checks itself when it starts
            folders = _job_folders(base, jobs)
        else:
            settings, folders = [None], []
        for job in settings:
            where = f" (job {','.join(job)})" if job is not None and len(jobs) > 1 else ""
            try:
                cfg = base if job is None else compose(config_name="config", overrides=hydra_fixed + job)
                validate(cfg)
                refusal = _device_unavailable(str(cfg.device))
                if not refusal and job is None:
                    run_dir = Path(cfg.hydra.run.dir)
                    refusal = records.folder_in_use(run_dir) or existing_run_conflict(run_dir, _without_hydra(cfg))
            except ConfigError as exc:
                raise PreflightError(f"{exc}{where}") from None
            except InterpolationResolutionError:
                continue  # needs the running job (e.g. ${hydra:runtime.output_dir}): the trainer checks it
            except Exception as exc:
                raise PreflightError(f"{describe(exc, loader)}{where}") from None
            if refusal:
                raise PreflightError(f"{refusal}{where}")
        for folder in folders:
            refusal = records.folder_in_use(folder)
            if refusal:
                raise PreflightError(refusal)
    return base, jobs
