"""Check a ``train`` / ``plan`` command line before Hydra runs it.

Hydra writes ``.hydra/`` into the run folder before the task starts, and a
sweep launches its jobs one by one, so a bad value found by the task comes
too late: after Hydra has overwritten an earlier run's record, or after other
jobs of the sweep have trained. :func:`check` composes the config of every job
the command will run (the same composition Hydra does), applies the schema's
range checks, and refuses, in one line naming what is wrong and what is
allowed, before anything is written:

- a run or sweep folder that cannot be made or written (empty, a file, on a
  read-only file system, not writable), or that holds another config;
- a ``data.root`` that a dataset must be generated or downloaded into and
  that cannot be written (one that already holds the files is only read);
- a job that cannot fit in the memory the device has free (an estimate,
  ``config.memory_estimate``);
- a sweep whose jobs would share a folder (they differ only in a key left out
  of job folder names, e.g. ``threads``).
- an Optuna search space with an unknown key, or a choice or an interval's
  end that the schema refuses.

It imports neither torch nor the trainer (except for a ``device`` of cuda or
mps, which it must look for), so ``plan`` stays fast.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf, open_dict

from . import records
from .cli import MULTIRUN_FLAGS
from .config import DATASET_FILES, ConfigError, RegbenchConfig, memory_estimate, register_configs, report_refusal, schema_fields, \
    validate

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


def _quote_hint(args: list[str]) -> str:
    """A value with spaces that the shell split into several words: the words
    after the first have no ``=``. Say how to quote the whole override."""
    words = list(args or [])
    for i, word in enumerate(words):
        if "=" in word or word.startswith("~"):
            continue
        end = i
        while end + 1 < len(words) and "=" not in words[end + 1]:
            end += 1
        if i > 0 and "=" in words[i - 1]:
            return f"; {word!r} is not key=value: a value with spaces must be quoted as one word, e.g. '{' '.join(words[i - 1 : end + 1])}'"
        return f"; {word!r} is not key=value (every override is key=value; quote a value with spaces)"
    for word in words:  # Hydra's grammar reads an unquoted value in ASCII only: hydra.run.dir=/data/é
        key, _, value = word.partition("=")
        if value and not value.isascii() and value[:1] not in "'\"":
            # each element of a sweep (a,b) or a list ([a,b]) quoted on its own: the whole quoted is one string
            quoted = "".join(part if part.isascii() or part[:1] in "'\"" else f'"{part}"'
                             for part in re.split(r"([,\[\]])", value))
            return (f"; {word}: a value with characters beyond ASCII must be quoted for Hydra, "
                    f"e.g. '{key}={quoted}' (the inner quotes reach Hydra)")
    return ""


def describe(exc: Exception, loader=None, args: Optional[list[str]] = None) -> str:
    """Hydra's composition errors, as one line (``args``: the overrides, for hints)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if isinstance(exc, OverrideParseException):
        lines = [line.strip() for line in str(exc).splitlines()]
        lines = [line for line in lines if line and line.strip("^ ") and not line.startswith("See https://")]
        text = ": ".join(lines[:2]) if lines and lines[0].startswith("Error parsing override") else (lines or [str(exc)])[0]
        return f"cannot parse the overrides: {text}{_quote_hint(args)} (see https://hydra.cc/docs/advanced/override_grammar/basic/)"
    if isinstance(exc, ConfigCompositionException) and "No match in the defaults list" in str(exc):
        # `experiment=x`: a group that the primary config does not list can only be added, with +
        text = str(exc)
        group = text.split("Could not override '", 1)[-1].split("'", 1)[0]
        add = re.search(r"use (\+\S+)", text)
        plus = add.group(1) if add else f"+{group}=..."
        return f"{plus[1:]}: {group} is not in the config's defaults list, so it cannot be overridden; add it with {plus}"
    unselected = _unselected_logger(exc, args)
    if unselected:
        return unselected
    if isinstance(exc, MissingConfigException) or "Could not load '" in str(exc):
        # "In 'config': Could not find 'data/foo'" + the available options;
        # "Could not load 'logger/foo'" for an option in a list (logger=[tensorboard,foo])
        text = str(exc)
        missing = re.split(r"Could not (?:find|load) '", text, maxsplit=1)[-1].split("'", 1)[0]
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
        if key == "report.options" and "is not a ListConfig" in msg:
            return f"{key}: a list of `regbench report` options, e.g. report.options=[--metric,val_loss,--formats,png]"
        return f"{key}: {msg}"
    return _first_line(exc)


def _unselected_logger(exc: Exception, args: Optional[list[str]]) -> Optional[str]:
    """``logger.mlflow.tracking_uri=...`` without ``logger=mlflow``: OmegaConf
    cannot set a key inside a logger that is off (null) and says only
    "Unexpected type for root: NoneType"."""
    if "Unexpected type for root" not in str(exc):
        return None
    for arg in args or []:
        key = arg.lstrip("+~").split("=", 1)[0]
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "logger":
            return (f"{key}: the {parts[1]} logger is off; select it too: logger={parts[1]} {arg} "
                    "(several: logger=[tensorboard,mlflow])")
    return None


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
    if not records.has_config(summary):  # damaged: the trainer sets it aside (it said "remove that folder")
        return None
    from .config import flat_defaults

    return records.config_conflict(run_dir, summary.get("config", {}), records.flatten(OmegaConf.to_container(cfg, resolve=True)),
                                   flat_defaults())


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


# ------------------------------------------------------------- folders


def _why_not_writable(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"{folder} is on a read-only file system"
    except (OSError, AttributeError):
        pass
    return f"{folder} is not writable by this user"


def cannot_make(path: Path) -> Optional[str]:
    """Why a folder could not be created at ``path`` (or, where it exists, written
    into), or None. Reads only: access(2) on the nearest folder that exists (it
    also sees a read-only mount, even for root); where the folder is new, a probe
    folder made and removed there at once (some file systems, such as /proc, refuse
    new entries whatever the mode says)."""
    path = Path(os.path.abspath(path))
    existing = path
    while not os.path.lexists(existing):
        existing = existing.parent
    if not os.path.isdir(existing):
        return f"{existing} exists and is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return _why_not_writable(existing)
    if existing != path:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".regbench-probe-", dir=existing))
        except OSError as exc:
            return f"cannot create a folder in {existing} ({exc.strerror or exc})"
    return None


# What Hydra and the trainer write into an existing run folder (besides new files).
RUN_FILES = (".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log", records.METRICS_FILE)


def folder_refusal(key: str, value: Any, job: bool = False) -> Optional[str]:
    """Why the folder ``key=value`` (hydra.run.dir, hydra.sweep.dir; with ``job``,
    an existing job folder of that sweep dir) cannot take records, or None."""
    text = str(value)
    if not text.strip():
        return (f"{key}={text!r} is not allowed: an empty folder would put the records into the current folder; "
                f"give a folder, e.g. {key}=outputs/NAME")
    why = cannot_make(Path(text))
    if why is None and os.path.isdir(text):
        for name in RUN_FILES:
            p = Path(text) / name
            if os.path.lexists(p) and not os.access(p, os.W_OK | (os.X_OK if p.is_dir() else 0)):
                why = _why_not_writable(p)
                break
    if why is None:
        return None
    if job:
        return f"the job folder {text} cannot take the records: {why}; make it writable, or choose another {key}"
    return f"{key}={text} cannot take the records: {why}; choose a writable folder for {key}"


# What marks a folder as regbench's: Hydra's .hydra/ (written as a job starts),
# a summary, a lock, what regbench set aside; a sweep's manifest and Hydra's multirun.yaml.
RUN_MARKS = (".hydra", records.SUMMARY_FILE, "run.lock")
SWEEP_MARKS = ("sweep.json", "multirun.yaml")
ASIDE = (".corrupt-", ".unfinished-", ".failed-", ".other-data-", ".regbench")


def launcher_refusal(base: DictConfig) -> Optional[str]:
    """Why the launcher's settings (regbench's fused launcher, joblib's) cannot
    run a sweep, or None: a value the launcher would crash on, or one that would
    silently switch fusion off."""
    target = str(OmegaConf.select(base, "hydra.launcher._target_", default="") or "")
    launcher = base.hydra.launcher

    def bad(key: str, allowed: str) -> str:
        return f"hydra.launcher.{key}={OmegaConf.select(launcher, key)!r} is not allowed: {allowed}"

    def number(key: str):
        value = OmegaConf.select(launcher, key, default=None)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    if target.endswith("FusedLauncher"):
        if number("max_replicas") is None or number("max_replicas") < 1:
            return bad("max_replicas", "an integer >= 1 (the most seeds in one vectorized model)")
        budget = OmegaConf.select(launcher, "memory_budget_gb", default=None)
        if budget is not None and not (number("memory_budget_gb") is not None and 0 < budget < float("inf")):
            return bad("memory_budget_gb", "a number of GB > 0, or null for half of the memory that is free")
        procs = OmegaConf.select(launcher, "processes", default=None)
        if procs is not None and (number("processes") is None or procs < 1):
            return bad("processes", "an integer >= 1, or null for one per core as memory allows")
    elif "joblib" in target.lower():
        jobs = OmegaConf.select(launcher, "n_jobs", default=None)
        if jobs is not None and (number("n_jobs") is None or jobs == 0):
            return bad("n_jobs", "an integer >= 1, or negative for all cores but |n|-1 (joblib's convention)")
    return None


def foreign_folder_refusal(key: str, value: Any, sweep: bool = False) -> Optional[str]:
    """Why ``key=value``, an existing folder that holds files but no regbench
    run (or sweep), is not used: the records would go in among someone else's
    files (``hydra.run.dir=/`` wrote a run into /, and a folder's own
    metrics.csv was set aside as damaged records). None for a new, empty or
    regbench folder."""
    folder = Path(str(value))
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None  # new (or unreadable: folder_refusal says so)
    marks = SWEEP_MARKS if sweep else RUN_MARKS
    if not names or any(n in marks or n.startswith(ASIDE) for n in names):
        return None
    if sweep and any(os.path.lexists(folder / n / m) for n in names for m in RUN_MARKS):
        return None  # job folders: a sweep regbench's manifest does not know yet (or copied together)
    if not sweep and any(n in SWEEP_MARKS for n in names):  # a sweep's folder given as a single run's
        return (f"{key}={value} is a sweep's folder (it holds {', '.join(n for n in names if n in SWEEP_MARKS)}): a "
                f"single run needs a folder of its own; give a new or empty folder for {key}, or train the sweep with -m "
                "hydra.sweep.dir=... to add jobs to it")
    shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
    what = "sweep (no sweep.json or multirun.yaml)" if sweep else "run (no .hydra/ or summary.json)"
    return (f"{key}={value} holds files that are not a regbench {what}: {shown}; "
            f"give a new or empty folder for {key}")


def data_root_refusal(d) -> Optional[str]:
    """Why ``data.root`` cannot hold ``data`` (a DataConfig), or None. Only a set
    that will be written into it is checked: mnist1d (generated and cached there)
    or a torchvision set with data.download=true, and only when its files are not
    there yet; a read-only root that holds them (a shared cache) is fine. A
    torchvision set that is not there with data.download=false is refused too
    (what to put where), before Hydra writes the run folder."""
    if d.name not in DATASET_FILES:
        return None  # made in code: touches no files
    sub, files = DATASET_FILES[d.name]
    root = Path(os.path.expanduser(str(d.root)))
    folder = root / sub
    if all(os.path.isfile(folder / f) for f in files):
        return None
    legacy = folder.parent / "processed"  # torchvision's pre-0.9 MNIST cache, still read
    if sub.endswith("/raw") and all(os.path.isfile(legacy / f) for f in ("training.pt", "test.pt")):
        return None
    if d.name != "mnist1d" and not d.download:  # the loader would say this once Hydra had written the run folder
        return (f"data={d.name}: dataset not found in {folder} and data.download=false; put {', '.join(files)} there"
                + (" (unpacked)" if d.name != "cifar10" else " (the python version, cifar-10-python.tar.gz, unpacked)")
                + f", or set data.root to the folder that holds {sub}, or data.download=true")
    # torchvision downloads CIFAR-10's archive into data.root itself, the MNIST files into <Class>/raw
    why = cannot_make(root if d.name == "cifar10" else folder)
    if why is not None:
        how = "generated" if d.name == "mnist1d" else "downloaded"
        return (f"data.root={d.root} cannot take data={d.name}: {why}; it is {how} into data.root on first use "
                f"and {folder} does not hold it yet: set data.root to a writable folder, or to one that holds "
                f"{sub}/{', '.join(files)}")
    return download_refusal(d.name, folder, files)


DOWNLOAD_REACH_TIMEOUT_S = 3.0  # per server


def download_refusal(name: str, folder: Path, files: tuple) -> Optional[str]:
    """A set to be downloaded (``config.DOWNLOAD_URLS``) none of whose servers
    can be reached (offline, a compute node without internet): why, before
    anything is written. Else each job of a sweep made its folder, tried, and
    failed with the same error. None where one server answers; behind an
    HTTP(S) proxy, where the proxy does (regbench.reach)."""
    from .config import DOWNLOAD_URLS
    from .reach import unreachable

    urls = DOWNLOAD_URLS.get(name, ())
    archives = [folder / f"{f}.gz" for f in files] if name != "cifar10" else [folder.parent / "cifar-10-python.tar.gz"]
    if all(os.path.isfile(a) for a in archives):
        return None  # torchvision checks and unpacks what was downloaded before, offline too
    reasons = []
    for url in urls:
        why = unreachable(url, DOWNLOAD_REACH_TIMEOUT_S)
        if why is None:
            return None
        reasons.append(f"{urlsplit(url).hostname}: {why}")
    if not reasons:
        return None
    return (f"data={name}: dataset not found in {folder} and it cannot be downloaded: "
            f"{'; '.join(reasons)}; put {', '.join(files)} there"
            + (" (IDX format; the original .gz files are also accepted)" if name != "cifar10"
               else f" (the python version, cifar-10-python.tar.gz, unpacked; or the archive itself in {folder.parent})")
            + ", or set data.root to the folder that holds them")


# ------------------------------------------------------------- memory


def _gb(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _cgroup_room() -> Optional[int]:
    """Bytes left under this process's cgroup memory limit (a container's), or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, where = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base, names = Path("/sys/fs/cgroup") / where.lstrip("/"), ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / where.lstrip("/")
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        try:
            limit, usage = ((base / n).read_text().strip() for n in names[:2])
            if limit == "max" or int(limit) >= 2**60:
                continue
            stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines() if " " in line)
            working = int(usage) - int(stat.get(names[2], 0))  # page cache that can be dropped is free
            return max(int(limit) - working, 0)
        except (OSError, ValueError):
            continue
    return None


def cpu_memory_available() -> Optional[int]:
    """MemAvailable (/proc/meminfo), or less under a cgroup limit; None when unknown."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


GPU_NODES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def memory_available(device: str, gpu: bool = True) -> Optional[tuple[int, str]]:
    """(bytes free, where) on the device a job with ``device`` trains on, or None
    when it cannot be told without importing torch (device=auto on a machine
    with a GPU driver), or at all (mps). ``gpu``: ask CUDA (which makes a CUDA
    context in this process, as the trainer will)."""
    if device == "cpu" or (device == "auto" and not any(os.path.exists(p) for p in GPU_NODES)):
        avail = cpu_memory_available()
        return (avail, "cpu") if avail is not None else None
    if gpu and device.startswith("cuda") and "torch" in sys.modules:  # imported by the device check
        torch = sys.modules["torch"]
        try:
            index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            free, _ = torch.cuda.mem_get_info(index)
        except Exception:
            return None
        return free, f"cuda:{index}"
    return None


def memory_refusal(cfg, gpu: bool = True) -> Optional[str]:
    """Why one job of ``cfg`` cannot fit in the memory its device has free, or None."""
    here = memory_available(str(cfg.device), gpu)
    if here is None:
        return None
    avail, where = here
    est = memory_estimate(cfg)
    if est is None or est["total"] <= avail:
        return None
    m, t = cfg.model, cfg.trainer
    lead = {
        "params": f"model.widths={list(m.widths)} with trainer.replicas={t.replicas}",
        "activations": (f"trainer.batch_size={t.batch_size} with model.widths={list(m.widths)} and trainer.replicas={t.replicas}"
                        if est["train_batch"] >= est["eval_batch"] else
                        f"trainer.eval_batch_size={t.eval_batch_size} with model.widths={list(m.widths)}"),
        "data": f"data={cfg.data.name}",
    }[max(("params", "activations", "data"), key=lambda k: est[k])]
    name = cfg.optim.name
    state = f", 2 {name} buffers" if name in ("adam", "adamw") else (", momentum" if cfg.optim.momentum > 0 else "")
    per = 4 if name in ("adam", "adamw") else (3 if state else 2)
    replicas = f" x {t.replicas} replicas" if t.replicas > 1 else ""
    return (f"{lead} needs about {_gb(est['total'])} of memory (parameters {_gb(est['params'])}: {est['n_params']:,}"
            f"{replicas} x {per} for weights, gradients{state}; activations {_gb(est['activations'])}; "
            f"data {_gb(est['data'])}); {_gb(avail)} is available on {where}")


# ------------------------------------------------------------- sweeps


def _parsed_value(text: Optional[str]) -> Any:
    """A typed value as Hydra reads it ('"a b"' and "'a b'" are one string; 0 and 0.0 one number), for comparing."""
    if text is None:
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .sweep import same_value

    try:
        value = OverridesParser.create().parse_overrides([f"k={text}"])[0].value()
    except Exception:
        return same_value(text)
    return repr(value) if isinstance(value, (list, dict)) else same_value(str(value))


def _as_dict(job: list[str]) -> dict[str, str]:
    return dict(o.lstrip("+~").split("=", 1) if "=" in o else (o.lstrip("+~"), "") for o in job)


def shared_folders(jobs: list[list[str]], folders: list[Path], typed: Optional[dict[str, str]] = None) -> Optional[str]:
    """Jobs of a sweep that differ only in keys left out of job folder names
    (records.RUNTIME_KEYS, via override_dirname.exclude_keys) would share one
    folder: the second finds the first's records. Why, or None. ``typed``:
    key -> the sweep override as the user wrote it, for the message."""
    seen: dict[Path, list[str]] = {}
    for job, folder in zip(jobs, folders):
        first = seen.setdefault(folder, job)
        if first is job:
            continue
        a, b = _as_dict(first), _as_dict(job)
        keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
        if not keys:
            continue  # the same job listed twice: it runs once, then is skipped
        key = keys[0]
        values = list(dict.fromkeys(_as_dict(j).get(key, "(unset)") for j in jobs))
        swept = (typed or {}).get(key) or f"{key}={','.join(values)}"
        why = ("says how a job runs, not what it computes, so it is left out of job folder names"
               if records.is_runtime_key(key) else
               "is left out of job folder names (hydra.job.config.override_dirname.exclude_keys)")
        plus = re.match(r"\+*", swept).group(0)  # +experiment=... is written with its +
        slug = lambda text: re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
        return (f"{swept}: {key} {why}, and jobs that differ only in it would share one folder "
                f"({folder.name}); run one value per sweep, each in its own folder "
                f"(e.g. {plus}{key}={values[0]} hydra.sweep.dir=outputs/sweep_{slug(key)}_{slug(values[0])})")
    return None


SINGLE_CHOICE = {"data": "dataset", "model": "model", "optim": "optimizer"}  # groups of which a job takes one option


def _bool_keys() -> tuple[set[str], set[str]]:
    """Dotted keys of the schema's booleans, and of its lists of booleans."""
    kinds = {key: str(f.type).replace(" ", "") for key, f, _ in schema_fields()}
    return ({k for k, t in kinds.items() if t == "bool"},
            {k for k, t in kinds.items() if t in ("List[bool]", "Optional[List[bool]]")})


def _values(override) -> list:
    """The values an override sets: one, or each of a sweep's (none for a glob)."""
    try:
        return list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    except Exception:  # a glob over a group's options needs the config loader: nothing typed to check here
        return []


def override_value_refusal(parsed: list) -> Optional[str]:
    """What OmegaConf would take without a word: a boolean given as anything
    but true/false (``model.batchnorm=2`` or ``=yes`` read as true), or a list
    of options of a group a job takes one of (``data=[digits,blobs]`` merged
    the two datasets' keys and trained blobs). Why, or None."""
    scalars, lists = _bool_keys()
    interpolation = lambda v: isinstance(v, str) and v.startswith("${")  # noqa: E731
    for o in parsed:
        if o.is_delete() or o.is_hydra_override():
            continue
        key = o.key_or_group.lstrip("+~")
        values = _values(o)
        if key in SINGLE_CHOICE and o.package is None:
            chosen = next((v for v in values if isinstance(v, list)), None)
            if chosen is not None:
                names = [str(v) for v in chosen] or ["..."]
                return (f"{o.input_line}: a job trains on one {SINGLE_CHOICE[key]} ({key}={names[0]}); to train one job "
                        f"on each, sweep over them: regbench train -m {key}={','.join(names)}")
        if key in scalars:
            bad = next((v for v in values if not isinstance(v, bool) and not interpolation(v)), None)
            if bad is not None:
                quoted = isinstance(bad, str) and bad.lower() in ("true", "false")
                return (f"{o.input_line} is not allowed: {key} is true or false (got "
                        + (f"the string {bad!r}: write it without quotes)" if quoted else f"{bad!r})"))
        elif key in lists:
            for v in values:
                items = v if isinstance(v, list) else [] if v is None or interpolation(v) else [v]
                bad = next((x for x in items if not isinstance(x, bool) and not interpolation(x)), None)
                if bad is not None or not (v is None or isinstance(v, list) or interpolation(v)):
                    return (f"{o.input_line} is not allowed: {key} is a list of true/false, one per hidden layer "
                            f"(e.g. {key}=[true,false]; got {bad if bad is not None else v!r})")
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


def unused_settings(base: DictConfig, jobs: list[list[str]], parsed: list) -> list[str]:
    """A value typed on the command line that no job reads (``data=digits
    data.n_classes=3`` trains digits' 10 classes): one sentence each, for a
    warning. A sweep over datasets that reads it in some jobs says nothing.
    A path or loader of the user's own data that no job reads is refused
    (PreflightError): those jobs would train another dataset instead."""
    group_of = {"data.name": "data", "optim.name": "optim"}  # the group option that sets the deciding key
    said = []

    def value(job: list[str], key: str) -> str:  # a job's value as typed, else the base's
        return _as_dict(job).get(key, str(OmegaConf.select(base, key)))

    for o in parsed:
        key = o.key_or_group.lstrip("+~")
        if key == "report.options" and not o.is_hydra_override():  # read only by the report the sweep writes
            at_end = {str(_as_dict(job).get("report.at_end", OmegaConf.select(base, "report.at_end"))).lower()
                      for job in jobs or [[]]}
            if "true" not in at_end:
                said.append(f"{o.input_line} has no effect without report.at_end=true (the report written when "
                            "the jobs end); for a report typed later, give the options to `regbench report`")
            continue
        if o.is_hydra_override():
            continue
        if key in ("model.bn_momentum", "model.bn_eps"):  # read by BatchNorm layers only
            if not any(value(job, "model.batchnorm").lower() == "true" or "true" in value(job, "model.bn_layers").lower()
                       for job in jobs or [[]]):
                said.append(f"{o.input_line} has no effect without BatchNorm: only model.batchnorm=true (or "
                            "model.bn_layers with a true) reads it")
            continue
        if key == "model.activation":  # read by the act part of model.order, and by an init's gain
            if not any("act" in value(job, "model.order") or value(job, "model.init") != "default" for job in jobs or [[]]):
                said.append(f"{o.input_line} has no effect: model.order has no act part (and model.init=default "
                            "takes no gain from it)")
            continue
        rule = records.USED_ONLY_WITH.get(key)
        if rule is None:
            continue
        decider, readers = rule
        values = set()
        for job in jobs or [[]]:
            typed = _as_dict(job)
            where = group_of.get(decider, decider)
            values.add(typed[where] if where in typed else str(OmegaConf.select(base, decider)))
        if not values & set(readers):
            if key in REFUSED_UNREAD:  # the user's own data, and another dataset would be trained on instead
                raise PreflightError(f"{o.input_line} is read only by data={readers[0]}, and these jobs train "
                                     f"{decider}={','.join(sorted(values))}; add data={readers[0]} to train on it")
            said.append(f"{o.input_line} has no effect with {decider}={','.join(sorted(values))}: only "
                        f"{', '.join(readers)} read it")
    return said


# Settings that name the user's own data: given without data=file / data=callable,
# a sweep trained the default dataset instead (with a warning), exit 0.
REFUSED_UNREAD = ("data.path", "data.loader")


def _job_folders(base: DictConfig, jobs: list[list[str]]) -> list[Path]:
    from .sweep import job_folder, names_job_folders

    sweep_dir = Path(base.hydra.sweep.dir)
    if not names_job_folders(base):
        return _own_subdirs(base, jobs, sweep_dir)
    return [sweep_dir / job_folder(base, job) for job in jobs]


def _own_subdirs(base: DictConfig, jobs: list[list[str]], sweep_dir: Path) -> list[Path]:
    """Each job's folder under a user's own ``hydra.sweep.subdir``, resolved as
    Hydra will (``hydra.job.num``, ``hydra.job.override_dirname`` and the
    job's own values set; a job with a config group's choice, ``data=digits``,
    composed once per such choice); [] where one cannot be known before the
    job runs."""
    from hydra import compose
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.hydra_config import HydraConfig

    from .sweep import parsed_overrides

    od = base.hydra.job.config.override_dirname
    raw = str(OmegaConf.to_container(base.hydra.sweep, resolve=False).get("subdir"))
    only_job_keys = set(re.findall(r"\$\{([^}]*)\}", raw)) <= {"hydra.job.num", "hydra.job.id", "hydra.job.override_dirname"}
    groups = set(OmegaConf.select(base, "hydra.runtime.choices", default={}) or {})
    composed: dict[tuple, DictConfig] = {}  # per set of overrides that are no plain value (data=digits): Hydra's composition
    folders = []
    try:
        for num, job in enumerate(jobs):
            parsed = parsed_overrides(list(job))
            cfg = with_values_set(parsed, base, base)  # the job's config, where its overrides are plain values
            if cfg is None and only_job_keys:
                cfg = copy.deepcopy(base)
            elif cfg is None:  # a group's choice (data=digits): composed as Hydra will, its plain values set after
                other = tuple(o.input_line for o in parsed if not sets_a_value(o, base, groups))
                if other not in composed:
                    one = compose(config_name="config", overrides=list(other), return_hydra_config=True)
                    choices = one.hydra.runtime.choices  # ${hydra:runtime.choices.data}: the job's own
                    with open_dict(one):
                        one.hydra = copy.deepcopy(base.hydra)
                        one.hydra.runtime.choices = choices
                    composed[other] = one
                cfg = with_values_set([o for o in parsed if o.input_line not in other], composed[other], composed[other])
                if cfg is None:
                    return []
            with open_dict(cfg):
                cfg.hydra.job.num = num
                cfg.hydra.job.override_dirname = get_overrides_dirname(parsed, list(od.exclude_keys), od.item_sep, od.kv_sep)
            HydraConfig.instance().set_config(cfg)
            folders.append(sweep_dir / str(cfg.hydra.sweep.subdir))
    except Exception:  # an interpolation only the running job has: Hydra makes it
        return []
    finally:
        HydraConfig.instance().set_config(copy.deepcopy(base))
    return folders


def own_subdir_refusal(base: DictConfig, jobs: list[list[str]], folders: list[Path]) -> Optional[str]:
    """A user's ``hydra.sweep.subdir`` that gives two jobs one folder (the second
    overwrote the first's .hydra/ record, or never trained), or puts a job at the
    sweep folder itself or outside it. Why, or None."""
    from .sweep import names_job_folders

    if names_job_folders(base) or not folders:
        return None
    raw = OmegaConf.to_container(base.hydra.sweep, resolve=False).get("subdir")
    sweep_dir = Path(os.path.abspath(base.hydra.sweep.dir))
    fix = "leave hydra.sweep.subdir unset (job folders named from their overrides), or use ${hydra.job.num}"
    varying = {k for k in {k for j in jobs for k in _as_dict(j)} if len({_as_dict(j).get(k) for j in jobs}) > 1}
    label = lambda job: ",".join(o for o in job if o.lstrip("+~").split("=", 1)[0] in varying) or ",".join(job) or "(no overrides)"  # noqa: E731
    seen: dict[str, list[str]] = {}
    for job, folder in zip(jobs, folders):
        where = Path(os.path.abspath(folder))
        if where == sweep_dir or sweep_dir not in where.parents:
            place = "the sweep folder itself" if where == sweep_dir else f"outside the sweep folder {base.hydra.sweep.dir}"
            return f"hydra.sweep.subdir={raw} puts job {label(job)} at {folder}, {place}: each job needs its own folder in it; {fix}"
        first = seen.setdefault(str(where), job)
        if first is not job:
            return (f"hydra.sweep.subdir={raw} gives jobs {label(first)} and {label(job)} one folder ({folder}): the second "
                    f"would overwrite the first's records; {fix}")
    for job, folder in zip(jobs, folders):  # an earlier sweep's job there (${hydra.job.num} after values were added)
        try:
            there = records.read_summary(folder).get("overrides")
        except (OSError, ValueError):
            continue
        if not isinstance(there, list):
            continue
        old, new = _as_dict(records.job_overrides(map(str, there))), _as_dict(records.job_overrides(job))
        differ = [k for k in dict.fromkeys([*new, *old]) if _parsed_value(old.get(k)) != _parsed_value(new.get(k))]
        if differ:
            was = ", ".join(f"{k}={old[k]}" if k in old else f"no {k}" for k in differ[:3])
            return (f"hydra.sweep.subdir={raw} puts job {label(job)} in {folder}, which holds the records of another "
                    f"job ({was}): a folder named by the job's place in the sweep gets another job when values are "
                    "added or reordered; train into a new hydra.sweep.dir, or leave hydra.sweep.subdir unset (job "
                    "folders named from their overrides, which a sweep run again finds)")
    return None


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
        except Exception as exc:
            raise PreflightError(describe(exc, loader, args)) from None
        refusal = override_value_refusal(parsed)
        if refusal:
            raise PreflightError(refusal)
        try:
            fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
            base = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        except Exception as exc:
            raise PreflightError(describe(exc, loader, args)) from None
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
        refusal = launcher_refusal(base) if multirun else None
        if refusal:
            raise PreflightError(refusal)
        if not OmegaConf.select(base, "hydra.sweeper._target_", default="").endswith("BasicSweeper"):
            if multirun and "optuna" in str(OmegaConf.select(base, "hydra.sweeper._target_", default="")).lower():
                _check_search_space(base, parsed, loader, args, command)
            return None  # its search space is not a list of jobs
        with open_dict(base):
            base.hydra.overrides.task = [o.input_line for o in parsed if not o.is_hydra_override()]
        try:
            jobs = expand_jobs(base) if multirun else [list(base.hydra.overrides.task)]
        except Exception as exc:
            raise PreflightError(describe(exc, loader, args)) from None
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
            typed = {f"{k}": f"{k}={v}" for k, v in (OmegaConf.select(base, "hydra.sweeper.params") or {}).items()}
            typed.update({o.get_key_element().lstrip("+~"): o.input_line for o in sweeps})
            refusal = own_subdir_refusal(base, jobs, folders) or shared_folders(jobs, folders, typed)
            if refusal:
                raise PreflightError(refusal)
            try:  # plan only reads (it may look at an archived, read-only sweep), but says what train would refuse
                where = str(base.hydra.sweep.dir)
                refusal = foreign_folder_refusal("hydra.sweep.dir", where, sweep=True)
                if command == "train":
                    refusal = folder_refusal("hydra.sweep.dir", where) or refusal
                elif os.path.lexists(where) and not os.path.isdir(where):
                    refusal = f"hydra.sweep.dir={where} is a file, not a sweep folder"
            except InterpolationResolutionError:
                refusal = None  # needs the running app: Hydra makes it
            if refusal:
                raise PreflightError(refusal)
            if command == "train":
                refusal = refusal or next(
                    (r for f in folders if os.path.isdir(f) for r in [folder_refusal("hydra.sweep.dir", f, job=True)] if r), None
                )
                if refusal:
                    raise PreflightError(refusal)
        else:
            settings, folders = [None], []
        task = OmegaConf.masked_copy(base, [k for k in base.keys() if k != "hydra"]) if multirun else None
        refusal = report_refusal(base)  # once: every job of the sweep shares its report
        if refusal:
            raise PreflightError(refusal)
        for job in settings:
            where = f" (job {','.join(job)})" if job is not None and len(jobs) > 1 else ""
            try:
                cfg = base if job is None else (derive_setting(task, base, job)
                                                or compose(config_name="config", overrides=hydra_fixed + job))
                validate(cfg)
                refusal = _device_unavailable(str(cfg.device)) or memory_refusal(cfg, gpu=command == "train")
                if not refusal and command == "train":
                    refusal = _resolved_or_none(data_root_refusal, cfg.data)
                if not refusal and job is None:
                    run_dir = Path(cfg.hydra.run.dir)
                    refusal = (
                        (folder_refusal("hydra.run.dir", cfg.hydra.run.dir) if command == "train" else None)
                        or foreign_folder_refusal("hydra.run.dir", cfg.hydra.run.dir)
                        or (records.folder_in_use(run_dir) if command == "train" else None)
                        or existing_run_conflict(run_dir, _without_hydra(cfg))
                    )
            except ConfigError as exc:
                raise PreflightError(f"{exc}{where}") from None
            except InterpolationResolutionError:
                continue  # needs the running job (e.g. ${hydra:runtime.output_dir}): the trainer checks it
            except Exception as exc:
                raise PreflightError(f"{describe(exc, loader, args)}{where}") from None
            if refusal:
                raise PreflightError(f"{refusal}{where}")
        for folder in folders if command == "train" else []:  # plan lists a job in training as running
            refusal = records.folder_in_use(folder)
            if refusal:
                raise PreflightError(refusal)
        for warning in unused_settings(base, jobs if multirun else [], parsed):
            print(f"regbench {command}: warning: {warning}", file=sys.stderr)
    return base, jobs


def derive_setting(task: DictConfig, base: DictConfig, job: list[str]) -> Optional[DictConfig]:
    """The config ``compose(overrides=job)`` would give, made from ``task`` (the
    sweep's base config without its Hydra node, composed once) by setting the
    values ``job`` sweeps, as Hydra sets a plain override (its
    ``_apply_overrides_to_config``): about 5 against 60-70 ms a setting. None
    where that is not the same as composing (an override that is not
    :func:`sets_a_value`, or a value the schema refuses): compose it, and let
    Hydra word the error.
    tests/test_preflight.py checks derived settings equal composed ones."""
    from .sweep import parsed_overrides

    fixed = set(base.hydra.overrides.task)
    try:
        swept = parsed_overrides([o for o in job if o not in fixed])
    except Exception:
        return None
    return with_values_set(swept, task, base)


def with_values_set(overrides: list, cfg: DictConfig, choices_from: DictConfig,
                    fresh_copy: Optional[Callable[[], DictConfig]] = None) -> Optional[DictConfig]:
    """A copy of the composed ``cfg`` with the parsed ``overrides`` applied as
    Hydra applies plain values (``_apply_overrides_to_config``); None unless
    every one :func:`sets_a_value` (``choices_from``: the config whose
    ``hydra.runtime.choices`` name the config groups) and the schema takes it.
    ``fresh_copy``: makes the copy (default ``copy.deepcopy(cfg)``). Shared by
    :func:`derive_setting` and the fused launcher's ``derive_sweep_config``."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    groups = set(OmegaConf.select(choices_from, "hydra.runtime.choices", default={}) or {})
    if not all(sets_a_value(o, cfg, groups) for o in overrides):
        return None
    out = fresh_copy() if fresh_copy is not None else copy.deepcopy(cfg)
    try:
        ConfigLoaderImpl._apply_overrides_to_config(overrides, out)
    except Exception:
        return None
    return out


def sets_a_value(override, cfg: DictConfig, groups: set) -> bool:
    """Whether Hydra applies ``override`` to a composed ``cfg`` as a plain value:
    no config group (``groups``: the config's group choices), no ``+``/``~`` or
    package, no sweep, no ``hydra.`` key, no dict value, and a key ``cfg`` has
    that holds no node. Such overrides can be set on a copy of a composed config
    (``_apply_overrides_to_config``) instead of composing again: here, and in
    the fused launcher (``derive_sweep_config``)."""
    key = override.key_or_group
    if override.is_add() or override.is_delete() or override.is_force_add() or override.package is not None \
            or override.is_sweep_override():
        return False
    if key.startswith("hydra.") or "/" in key or key in groups or isinstance(override.value(), dict):
        return False
    found = OmegaConf.select(cfg, key, default=_ABSENT)
    return found is not _ABSENT and not isinstance(found, DictConfig)


_ABSENT = object()


def _search_values(override) -> list[str]:
    """What an Optuna search may give one key: each choice, an interval's or a
    range's ends (an interval's upper end is tried too: a value the schema
    refuses there would be proposed some day)."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer

    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    if isinstance(value, RangeSweep):
        items = list(override.sweep_iterator(transformer=Transformer.encode))
        return [str(items[0]), str(items[-1])] if items else []
    return [str(v) for v in override.sweep_iterator(transformer=Transformer.encode)]


def _check_search_space(base: DictConfig, parsed: list, loader, args: list[str], command: str = "train") -> None:
    """An Optuna search, before its first trial: every key it searches exists,
    and each choice and each end of an interval passes the schema's checks
    (one composition per value, the other keys at their defaults)."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra.core.override_parser.types import IntervalSweep

    for key in ("n_trials", "n_jobs"):
        value = OmegaConf.select(base, f"hydra.sweeper.{key}", default=None)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise PreflightError(f"hydra.sweeper.{key}={value!r} is not allowed: an integer >= 1")
    direction = OmegaConf.select(base, "hydra.sweeper.direction", default=None)
    for d in (list(direction) if isinstance(direction, (list, tuple)) or type(direction).__name__ == "ListConfig" else [direction]):
        if str(getattr(d, "name", d)).lower() not in ("minimize", "maximize", "none"):  # optuna's conf holds an enum
            raise PreflightError(f"hydra.sweeper.direction={d} is not allowed: maximize (regbench's objective, "
                                 "validation accuracy) or minimize")
        if str(getattr(d, "name", d)).lower() == "minimize" and command == "train":  # allowed, but it finds the worst
            print("regbench train: warning: hydra.sweeper.direction=minimize searches for the lowest validation "
                  "accuracy (regbench's objective: the accuracy at the epoch of lowest validation loss); maximize "
                  "finds the best", file=sys.stderr)
    storage = str(OmegaConf.select(base, "hydra.sweeper.storage", default=None) or "")
    if storage.startswith("sqlite:///") and storage != "sqlite:///:memory:":
        db = Path(storage[len("sqlite:///"):])
        why = f"{db} is a folder" if db.is_dir() else None
        if why is None and not (db.is_file() and os.access(db, os.W_OK)):
            why = cannot_make(db.parent)
            if why is None and db.parent.is_dir():
                try:  # a probe file: some file systems (/proc) refuse new files whatever access(2) says
                    fd, probe = tempfile.mkstemp(prefix=".regbench-probe-", dir=db.parent)
                    os.close(fd)
                    os.unlink(probe)
                except OSError as exc:
                    why = f"cannot create a file in {db.parent} ({exc.strerror or exc})"
        if why:
            raise PreflightError(f"hydra.sweeper.storage={storage}: the study's database cannot be written ({why}); "
                                 "give a writable path, e.g. hydra.sweeper.storage=sqlite:///outputs/optuna.db")
    params = [f"{k}={v}" for k, v in (OmegaConf.select(base, "hydra.sweeper.params") or {}).items()]
    searched = OverridesParser.create(config_loader=loader).parse_overrides(params)
    searched += [o for o in parsed if o.is_sweep_override() and not o.is_hydra_override()]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    for override in searched:
        key = override.get_key_element()
        written = override.input_line or f"{key}={override.get_value_string()}"
        value = override.value()
        if isinstance(value, IntervalSweep) and not value.start < value.end:
            raise PreflightError(f"{written}: an interval runs from its lower end to its higher one, "
                                 f"e.g. interval({min(value.start, value.end)},{max(value.start, value.end)})")
        for value in _search_values(override):
            try:
                validate(compose(config_name="config", overrides=[*fixed, f"{key}={value}"]))
            except ConfigError as exc:
                raise PreflightError(f"{exc} (a value the search {written} may propose)") from None
            except Exception as exc:
                why, hint = describe(exc, loader, args), ""
                if isinstance(interval := override.value(), IntervalSweep) and "converted to Integer" in why:
                    lo, hi = (int(v) if float(v).is_integer() else v for v in (interval.start, interval.end))
                    hint = f"; an integer key takes int(interval({lo},{hi})), or range(...) or choice(...)"
                raise PreflightError(f"{why} (in the search {written}){hint}") from None


def _resolved_or_none(check_one, node):
    """``check_one(node)``, or None when a value in it needs the running job."""
    from omegaconf.errors import InterpolationResolutionError

    try:
        return check_one(node)
    except InterpolationResolutionError:
        return None
