"""Run records: the contract between training and reporting.

This module is the only code that ``regbench.train`` and ``regbench.report``
share, so it imports neither torch nor plotting code. A job directory holds::

    .hydra/config.yaml   Hydra's composed config (plus overrides.yaml, hydra.yaml)
    metrics.csv          one row per (seed, epoch); appended and flushed every epoch
    summary.json         status, flat config, best/final values; written atomically
    checkpoint.pt        latest training state (written by train, never read here)

Epoch 0 is the evaluation of the freshly initialised model, before any step:
its ``train_loss``/``train_acc`` are empty.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

SCHEMA_VERSION = 1

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
# Written by a sweep job that could not start (bad value, missing data, a folder
# holding another config) when it must not overwrite the records already there.
ERROR_FILE = "last_error.json"
LOCK_FILE = "run.lock"  # flock'ed by the process training in this folder; holds its host and pid
# Where flock is not supported (some network file systems): a file created with
# O_EXCL that holds host and pid, removed when the run ends.
EXCL_LOCK_FILE = "run.lock.excl"

# Run statuses. ``diverged`` is a legitimate outcome (loss became NaN/inf or
# exceeded trainer.diverge_loss), not a crash.
RUNNING, COMPLETED, DIVERGED, FAILED, INTERRUPTED = (
    "running",
    "completed",
    "diverged",
    "failed",
    "interrupted",
)
STATUSES = (RUNNING, COMPLETED, DIVERGED, FAILED, INTERRUPTED)

# Config keys that say how or where a run executes, never what it computes: a
# job folder may be resumed with other values of these, they are left out of
# job folder names (conf/config.yaml mirrors this list) and they never define a
# report cell.
RUNTIME_KEYS = (
    "device",
    "threads",
    "data.root",
    "data.download",
    "trainer.progress",
    "trainer.checkpoint",
    "trainer.save_every_s",
    "trainer.eval_batch_size",
)
# Whole subtrees that are runtime too: experiment trackers (the `logger` group)
# mirror the records and change nothing in them; `report` writes a report of
# them when the jobs end.
RUNTIME_PREFIXES = ("logger.", "report.")


# Keys read only by some settings: (the key that decides, the values that read it).
# The report's settings table leaves them out where no run reads them; `regbench
# train` warns when one is set on the command line and no job would read it.
USED_ONLY_WITH = {
    "data.n_samples": ("data.name", ("blobs", "teacher")),
    "data.n_features": ("data.name", ("blobs", "teacher")),
    "data.n_classes": ("data.name", ("blobs", "teacher")),
    "data.noise": ("data.name", ("blobs", "teacher")),
    "data.path": ("data.name", ("file",)),
    "data.target": ("data.name", ("file",)),
    "data.loader": ("data.name", ("callable",)),
    "data.download": ("data.name", ("mnist", "fashion_mnist", "kmnist", "cifar10")),
    # sets without an official test split (a file's or a loader's own x_test too: that is known only once read)
    "data.test_fraction": ("data.name", ("digits", "blobs", "teacher", "file", "callable")),
    "optim.momentum": ("optim.name", ("sgd",)),
    "optim.nesterov": ("optim.name", ("sgd",)),
    "optim.step_size": ("optim.schedule", ("step",)),
    "optim.gamma": ("optim.schedule", ("step",)),
}


def plural(n: int, word: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def is_runtime_key(key: str) -> bool:
    """A flat config key that says how a run executes or is mirrored (RUNTIME_KEYS, RUNTIME_PREFIXES)."""
    return key in RUNTIME_KEYS or key == "logger" or key.startswith(RUNTIME_PREFIXES)


def job_overrides(overrides) -> list[str]:
    """A job's overrides as typed, without the runtime ones (device, report.at_end, ...)."""
    return [o for o in overrides if not is_runtime_key(o.lstrip("+~").partition("=")[0])]

# Columns every metrics.csv starts with, in this order. A run may append more
# (diagnostics); readers ignore what they do not know.
BASE_COLUMNS = (
    "seed",  # run seed (a job training several seeds has rows for each)
    "epoch",  # 0 = before training; 1..trainer.epochs
    "step",  # optimizer steps taken so far
    "time_s",  # training wall time so far, seconds (evaluation excluded)
    "lr",  # learning rate used during this epoch
    "train_loss",  # mean loss over the epoch's batches, train mode (dropout on)
    "train_acc",  # accuracy over the epoch's batches, train mode
    "fit_loss",  # whole training set, eval mode (the clean fit)
    "fit_acc",
    "val_loss",
    "val_acc",
    "test_loss",  # empty when the dataset has no test split configured
    "test_acc",
    "gap_loss",  # val_loss - fit_loss (generalization gap)
    "gap_acc",  # fit_acc - val_acc (positive when overfitting)
)
# Diagnostics written by the trainer when they apply.
GRAD_NORM = "grad_norm"  # mean over the epoch's steps of the global gradient L2 norm
# With data.label_noise > 0: accuracy on the training examples whose label was
# corrupted, measured against the corrupted label (memorization) and against
# the original clean label.
NOISY_FIT_ACC = "noisy_fit_acc"
NOISY_CLEAN_ACC = "noisy_clean_acc"


def _cell(value: Any) -> Any:
    """CSV cell: None -> empty; floats in full precision (repr round-trips)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


class MetricsWriter:
    """Appends rows to ``metrics.csv`` and flushes after every row.

    The header is written only when the file is new, so a resumed run keeps
    appending to the same table. Columns are fixed by the first writer.
    """

    def __init__(self, path: str | os.PathLike, columns: Iterable[str]):
        self.path = Path(path)
        self.columns = list(columns)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns)
        if new:
            self._writer.writeheader()
            self._fh.flush()

    def write(self, *rows: Mapping[str, Any]) -> None:
        """Append rows and flush: a killed process keeps every row written
        (the OS has it); no fsync per epoch, which would cost more than the epoch."""
        for row in rows:
            unknown = set(row) - set(self.columns)
            if unknown:
                raise ValueError(f"metrics row has columns not in the header: {sorted(unknown)}")
            self._writer.writerow({k: _cell(row.get(k)) for k in self.columns})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: store them as strings so the file stays valid.
    Compare a config with one read back from JSON through this, too."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write JSON to a temp file in the same folder, then rename over ``path``.

    A reader (or a kill -9) never sees a half-written file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(json_safe(data), fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; records are for everyone
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_summary(job_dir: str | os.PathLike, summary: Mapping[str, Any]) -> None:
    write_json_atomic(Path(job_dir) / SUMMARY_FILE, {"schema_version": SCHEMA_VERSION, **summary})


def read_summary(job_dir: str | os.PathLike) -> dict[str, Any]:
    """summary.json as a dict; ValueError when it holds something else (``[]``, ``null``)."""
    with open(Path(job_dir) / SUMMARY_FILE) as fh:
        summary = json.load(fh)
    if not isinstance(summary, dict):
        raise ValueError(f"summary.json holds a {type(summary).__name__}, not a mapping")
    return summary


def has_config(summary: Mapping[str, Any]) -> bool:
    """Whether a summary.json that parses is a run's record: regbench always
    writes the run's config into it. One without is damaged (the trainer sets
    it aside and trains afresh; status calls it unreadable), not another
    config's run."""
    return isinstance(summary.get("config"), dict)


def fingerprint(config: Mapping[str, Any]) -> str:
    """A short hash of a flat config's result-relevant keys (RUNTIME_KEYS left
    out): a checkpoint carries it, so a resume never loads another config's state."""
    relevant = {k: v for k, v in json_safe(dict(config)).items() if not is_runtime_key(k)}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class DamagedRecord(ValueError):
    """metrics.csv cannot be trusted to resume from; the message says why."""


def read_metrics_upto(path: str | os.PathLike, last: Mapping[int, int],
                      upto: str = "the checkpoint") -> tuple[list[str], list[dict[str, Any]]]:
    """The header and rows of a metrics.csv that a resume keeps, verified.

    ``last`` maps each seed to the last epoch it must have (the checkpoint's;
    ``upto`` names where that epoch comes from in the error).
    Only newline-terminated lines are read (a kill can cut the last line inside
    a number); rows past a seed's last epoch are ignored (written after the
    checkpoint, before a kill). Every kept row must parse completely, and each
    seed must have exactly one row for every epoch 0..last[seed]: otherwise
    DamagedRecord, and nothing is trusted. Rows come back as numbers (None for
    an empty cell), in file order.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DamagedRecord("metrics.csv is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRecord(f"metrics.csv is unreadable ({exc})") from None
    lines = text[: text.rfind("\n") + 1].splitlines()
    if not lines or not lines[0].strip():
        raise DamagedRecord("metrics.csv has no header")
    header = next(csv.reader([lines[0]]))
    missing = [c for c in BASE_COLUMNS[:3] if c not in header]
    if missing:
        raise DamagedRecord(f"metrics.csv's header lacks {', '.join(missing)}")
    ints = {"seed", "epoch", "step"}
    seen: dict[int, list[int]] = {s: [] for s in last}
    rows = []
    for number, fields in enumerate(csv.reader(lines[1:]), start=2):
        raw = dict(zip(header, fields))
        try:
            seed, epoch = int(raw.get("seed", "")), int(raw.get("epoch", ""))
        except ValueError:
            raise DamagedRecord(f"metrics.csv line {number} has no valid seed and epoch") from None
        if seed not in last:
            raise DamagedRecord(f"metrics.csv line {number} is for seed {seed}, which this job does not train")
        if epoch > last[seed]:
            continue  # recorded after the checkpoint: trained again on resume
        if len(fields) != len(header):
            raise DamagedRecord(f"metrics.csv line {number} has {len(fields)} cells for {len(header)} columns")
        try:
            row = {k: None if v == "" else int(v) if k in ints else float(v) for k, v in raw.items()}
        except ValueError:
            raise DamagedRecord(f"metrics.csv line {number} holds a value that is not a number") from None
        seen[seed].append(epoch)
        rows.append(row)
    for seed, epochs in seen.items():
        if epochs != list(range(last[seed] + 1)):
            have = epochs
            lacking = sorted(set(range(last[seed] + 1)) - set(epochs))
            what = f"lacks epoch{'s' if len(lacking) > 1 else ''} {_span(lacking)}" if lacking else f"has epochs {_span(have)} out of order or twice"
            raise DamagedRecord(f"metrics.csv {what} of seed {seed} ({upto} is at epoch {last[seed]})")
    return header, rows


def _span(values: list[int]) -> str:
    """[3, 4, 5, 6] -> '3-6'; [2, 5] -> '2, 5' (first few only)."""
    if values and values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}-{values[-1]}"
    return ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")


def set_aside(folder: str | os.PathLike, names: Iterable[str], label: str, reason: str = "") -> Optional[Path]:
    """Move the files ``names`` that exist in ``folder`` into a new
    ``.<label>-<UTC time>/`` beside them (never deleted: a person may want
    them), with ``reason`` in its reason.txt. Returns that folder, or None when
    none of the files existed. Hidden, so :func:`find_job_dirs` does not take
    it for a job."""
    folder = Path(folder)
    present = [n for n in names if (folder / n).exists()]
    if not present:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = folder / f".{label}-{stamp}"
    target.mkdir()
    if reason:
        (target / "reason.txt").write_text(reason + "\n")
    for name in present:
        os.replace(folder / name, target / name)
    return target


def remove_stale_temp_files(folder: str | os.PathLike) -> None:
    """Temp files a killed writer left (``.summary.json.*.tmp``, ``checkpoint.tmp``):
    never read, only clutter. Call only while holding the folder's lock."""
    folder = Path(folder)
    for pattern in (".*.tmp", "*.tmp"):
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"dropout": 0.3}}`` -> ``{"model.dropout": 0.3}``.

    Lists stay values (``model.widths: [100, 100]``), so a flat config keeps
    one key per schema field.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def find_job_dirs(*roots: str | os.PathLike) -> list[Path]:
    """Every job directory under ``roots``: a folder with ``summary.json``, or
    with ``.hydra/config.yaml`` and ``metrics.csv`` (a run killed before its
    first summary), not inside a hidden folder. Sorted, without duplicates."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        candidates = [root] + [p.parent for p in root.rglob(SUMMARY_FILE)]
        candidates += [p.parent for p in root.rglob(METRICS_FILE)]
        for d in candidates:
            if any(part.startswith(".") for part in d.relative_to(root).parts):
                continue  # records set aside (.corrupt-*, .failed-*) are not jobs
            if (d / SUMMARY_FILE).is_file() or (
                (d / ".hydra" / "config.yaml").is_file() and (d / METRICS_FILE).is_file()
            ):
                found.add(d.resolve())
    return sorted(found)


def done_records_damaged(job_dir: Path, summary: dict, seeds) -> Optional[str]:
    """Why a completed (or diverged) job's metrics.csv lacks what its summary
    reports (every epoch up to each seed's final one), or None. None too where
    the summary does not say (no per-seed finals: an older regbench)."""
    per_seed = summary.get("per_seed")
    try:
        last = {int(s): int(per_seed[str(s)]["final"]["epoch"]) for s in seeds}
    except (KeyError, TypeError, ValueError):
        return None
    try:
        read_metrics_upto(Path(job_dir) / METRICS_FILE, last, upto="its summary's last epoch")
    except DamagedRecord as exc:
        return str(exc)
    return None


def config_diff(old: dict, new: dict, defaults: Optional[dict] = None) -> list[str]:
    """``key: old -> new`` for each result-relevant flat key that differs; a key
    ``old`` lacks is no difference where ``new`` gives it its default in
    ``defaults`` (a key regbench gained after ``old`` was recorded)."""
    new = json_safe(new)  # inf/nan as they read back from JSON
    defaults = json_safe(defaults or {})
    keys = sorted(k for k in set(old) | set(new) if not is_runtime_key(k))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)
            and not (k not in old and k in defaults and new.get(k) == defaults[k])]


def config_conflict(folder: Path, old: dict, new: dict, defaults: Optional[dict] = None) -> Optional[str]:
    """Why ``folder``, holding a run of flat config ``old``, cannot take a run of
    ``new`` (a result-relevant key differs), or None. ``defaults`` (the
    schema's, regbench.config.flat_defaults): a key ``old`` lacks is no
    difference where ``new`` gives it its default, as a key added to regbench
    after that run was recorded does (else every earlier sweep was refused)."""
    diff = config_diff(old, new, defaults)
    if not diff:
        return None
    return (f"{folder} holds a run with another config ({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}): "
            "use another hydra.run.dir / hydra.sweep.dir, or remove that folder")


class FolderInUse(RuntimeError):
    """Another live process is training in this folder."""


def acquire_lock(folder: Path):
    """Claim ``folder`` for this process until :func:`release_lock`: a second
    ``regbench train`` into the same folder while the first still runs would
    resume from a stale checkpoint and rewrite the files the first one is
    appending to.

    An exclusive ``flock`` on ``run.lock``, held for the whole run: the kernel
    drops it when the process ends however it ends (kill -9 included), so a
    lock is never stale, and pids are never guessed at. The file holds the
    holder's host and pid for the message. Where the file system refuses
    flock, an O_EXCL lock file (:func:`_exclusive_file_lock`) stands in.
    Returns a handle, or None where ``fcntl`` does not exist (no locking there)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None

    path = Path(folder) / LOCK_FILE
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise FolderInUse(_in_use(folder)) from None
    except OSError:  # ENOLCK, EOPNOTSUPP...: this file system has no flock
        fh.close()
        return _exclusive_file_lock(Path(folder))
    if (Path(folder) / EXCL_LOCK_FILE).exists():  # a process on a host without flock may hold it
        try:
            _check_exclusive_file_lock(Path(folder))
        except FolderInUse:
            fh.close()
            raise
    fh.seek(0)
    fh.truncate()
    json.dump(_holder(), fh)
    fh.flush()
    return fh


def _holder() -> dict[str, Any]:
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _check_exclusive_file_lock(folder: Path) -> None:
    """Raise FolderInUse when ``run.lock.excl`` names a live holder; remove it when
    its holder is a process of this host that no longer exists (a kill -9)."""
    path = folder / EXCL_LOCK_FILE
    try:
        holder = json.loads(path.read_text())
        host, pid = holder["host"], int(holder["pid"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        host, pid = None, None  # half-written by a process killed while creating it
    if host == _holder()["host"] and pid is not None and not _alive(pid):
        path.unlink(missing_ok=True)
        return
    if host is None:
        raise FolderInUse(
            f"{folder} has an unreadable {EXCL_LOCK_FILE}: if no regbench process is training there, "
            "remove that file and run this command again"
        )
    raise FolderInUse(_in_use(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exclusive_file_lock(folder: Path) -> Path:
    """The lock where flock is missing: create ``run.lock.excl`` with O_EXCL, or
    raise FolderInUse. A stale file of a dead process on this host is taken over;
    one from another host cannot be checked and is reported."""
    path = folder / EXCL_LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _check_exclusive_file_lock(folder)  # raises, or removes a stale file
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(_holder(), fh)
        return path
    raise FolderInUse(_in_use(folder))


def release_lock(handle) -> None:
    """run.lock stays: unlinking it could let a process that has just opened it
    lock an inode nobody else sees. The O_EXCL stand-in is removed."""
    if handle is None:
        return
    if isinstance(handle, Path):
        handle.unlink(missing_ok=True)
        return
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def folder_in_use(folder: Path) -> Optional[str]:
    """Why ``folder`` cannot be trained in now (another process holds its lock), or None."""
    folder = Path(folder)
    if not (folder / LOCK_FILE).exists() and not (folder / EXCL_LOCK_FILE).exists():
        return None
    try:
        release_lock(acquire_lock(folder))
    except FolderInUse as exc:
        return str(exc)
    except OSError:
        return None
    return None


def _in_use(folder: Path) -> str:
    who = "another process"
    for name in (EXCL_LOCK_FILE, LOCK_FILE):
        try:
            holder = json.loads((Path(folder) / name).read_text())
            who = f"process {holder['pid']} on {holder['host']}"
            break
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return f"{folder} is in use by {who}: wait for it to finish or stop it, then run this command again (it resumes)"


# ---------------------------------------------------------------- running a job again


def hydra_quoted(value: str) -> str:
    """``value`` as Hydra's override grammar reads it back unchanged: as it is
    where it holds only characters an unquoted value may (a clock-named
    folder), else quoted. Unquoted, ``proj (copy)`` or ``josé`` did not parse,
    and a comma made a sweep."""
    if re.fullmatch(r"[A-Za-z0-9_/.\-:+@%~]+", value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rerun_command(folder: str | os.PathLike, clock_named: bool) -> str:
    """How to run a job again in ``folder`` (to resume it): "the same
    command", or, for a single run whose folder is named by the clock
    (``hydra.run.dir`` holds ``${now:...}``, as by default), the same command
    with that folder named: the same command alone would start a new run in
    a new folder."""
    if not clock_named:
        return "the same command"
    import shlex

    arg = f"hydra.run.dir={hydra_quoted(str(folder))}"
    if arg.endswith("'") and not re.search(r"[$`\"\\!]", arg):  # one pair of shell quotes, not '"'"' chains
        return f'the same command with "{arg}"'
    return f"the same command with {shlex.quote(arg)}"


def run_dir_by_clock(folder: str | os.PathLike) -> bool:
    """Whether the single run in ``folder`` had its folder named by the clock
    (its ``.hydra/hydra.yaml`` keeps ``hydra.run.dir`` unresolved)."""
    try:
        with open(Path(folder) / ".hydra" / "hydra.yaml") as fh:
            text = fh.read()
    except OSError:
        return False
    import yaml

    try:
        raw = ((yaml.safe_load(text) or {}).get("hydra") or {}).get("run", {}).get("dir", "")
    except (yaml.YAMLError, AttributeError):
        return False
    return "${now:" in str(raw)
