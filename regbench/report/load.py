"""Walk folders of run records into two tidy tables.

``runs``: one row per run = (job, seed): where it lives, its status, flags,
and its flat config. ``epochs``: one row per (run, epoch) with every metric
column of ``metrics.csv``. A *cell* is a setting of the config keys that vary
across the loaded runs (the *factors*); seeds are replicates.

A defective record never stops the report: it is listed as unreadable with
the reason, and the rest is reported.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from regbench.records import (
    COMPLETED,
    DIVERGED,
    FAILED,
    INTERRUPTED,
    METRICS_FILE,
    RUNNING,
    RUNTIME_KEYS,
    SUMMARY_FILE,
    find_job_dirs,
    flatten,
    is_runtime_key,
    read_summary,
)

# Config keys that say how or where a run was executed, never what was
# studied: they do not define a cell even when they differ between runs.
# trainer.replicas changes how seeds are run (vectorized), not what a run is: its
# records are per seed, like those of separate runs. Whether diagnostics or the
# test split were recorded, and progress bars, threads and the device, change
# what is written or how fast, never what is learned.
NON_CELL_KEYS = frozenset({"seed", "trainer.replicas", "trainer.diagnostics", "trainer.test", "trainer.progress",
                           "threads", "device", *RUNTIME_KEYS})
UNKNOWN = "unknown"  # a job killed before it wrote its first summary.json
EXCLUDED_STATUSES = (DIVERGED, FAILED)  # listed, never averaged in
# metrics.csv columns that index a row rather than measure something.
INDEX_COLUMNS = ("seed", "epoch", "step")
# Metrics whose blow-up marks a diverged run even if its status says otherwise.
LOSS_COLUMNS = ("fit_loss", "val_loss")
# Statuses of a run that has not finished (killed, or still training): its
# epochs are listed, never averaged in with finished runs.
UNFINISHED_STATUSES = (RUNNING, INTERRUPTED)
UNFINISHED = "unfinished"  # the left_out reason of such a run, and of one with fewer epochs than planned
# The left_out reason of a run whose metrics.csv lacks an epoch before its last
# recorded one (rows lost, a file cut and appended to): its final and best
# values cannot be trusted, whatever epoch it reached.
GAP = "missing epochs"
# The left_out reason of a run with the same cell and seed as a run already in
# the statistics (a copied folder, a seed trained alone and as a replica):
# counted once, never as another replicate.
DUPLICATE = "duplicate"
TIME_COLUMN = "time_s"  # metrics.csv: training time so far (s); divided per seed on reading
PLANNED_EPOCHS = "trainer.epochs"  # config key: the epochs a run is meant to train
# Joins config keys that are confounded (they change together across the
# runs) into one combined factor: ``model.dropout & trainer.epochs``.
COMBINED_SEP = " & "


class ReportError(Exception):
    """A user mistake or input that cannot be reported: one line, no traceback."""


@dataclass
class Study:
    runs: pd.DataFrame  # one row per (job, seed); see RUN_COLUMNS
    epochs: pd.DataFrame  # one row per (run, epoch), complete rows only
    factors: list[str]  # config keys that vary (confounded ones combined, see ``confounded``): they define the cells
    levels: dict[str, list]  # factor -> its values, sorted (first = reference)
    constants: dict[str, Any]  # config shared by every run
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (job, reason)
    root: Path | None = None  # job names are relative to this folder
    # Combined factor -> the config keys it stands for, when keys are
    # confounded (their observed combinations do not form a grid).
    confounded: dict[str, list[str]] = field(default_factory=dict)

    @property
    def used(self) -> pd.DataFrame:
        """Runs that enter means: finished (a row for every epoch 0..planned,
        not running or interrupted), not diverged/failed, finite losses, and
        one run per (cell, seed)."""
        return self.runs[self.runs["used"]]

    @property
    def metric_columns(self) -> list[str]:
        """Numeric metrics.csv columns a user may name with --metric."""
        return [
            c
            for c in self.epochs.columns
            if c not in (*INDEX_COLUMNS, "run", "cell", *self.factors) and pd.api.types.is_numeric_dtype(self.epochs[c])
        ]


# ---------------------------------------------------------------- formatting


def fmt_value(value: Any) -> str:
    """A config value as a person types it in an override: true, 0.3, linear-bn."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return str(value)


def finite(v: Any) -> bool:
    """A number that can be printed: not None, NaN or inf."""
    try:
        return v is not None and not pd.isna(v) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def unit(col: str) -> tuple[float, int, str]:
    """(scale, decimals, unit) of a column: accuracies in percent, seconds in s."""
    base = col.removeprefix("best_").removeprefix("final_")
    if base.endswith("acc"):
        return 100.0, 1, "%"
    if "epoch" in col:
        return 1.0, 1, ""
    if col.startswith("seconds") or col.endswith("time_s"):
        return 1.0, 2, " s"
    return 1.0, 3, ""


def fmt_num(v: Any, col: str) -> str:
    """A value with its unit: ``89.1%``, ``12.3`` (epochs), ``0.43 s``, ``0.397``."""
    if not finite(v):
        return "–"
    scale, dec, u = unit(col)
    return f"{v * scale:.{dec}f}{u}"


def _signed(x: float, dec: int) -> str:
    """``x`` with its sign and ``dec`` decimals, or up to two more where that
    would print a value that is not 0 as ``-0.0``/``+0.0`` (an interval's end
    beside 0 says on which side it is: [-11.8, -0.03], not [-11.8, -0.0])."""
    for d in range(dec, dec + 3):
        if round(x, d) != 0:
            return f"{x:+.{d}f}"
    return f"{x:+.{dec + 2}f}" if x != 0 else f"{x:+.{dec}f}"


def fmt_diff(v: Any, col: str) -> str:
    """A signed difference; of accuracies in percentage points."""
    if not finite(v):
        return "–"
    scale, dec, u = unit(col)
    return f"{_signed(v * scale, dec)}{' pp' if u == '%' else u}"


def fmt_bounds(lo: Any, hi: Any, col: str) -> str:
    """An interval of a difference without its unit (the estimate before it has it): ``[+3.6, +6.3]``."""
    if not (finite(lo) and finite(hi)):
        return ""
    scale, dec, _ = unit(col)
    return f"[{_signed(lo * scale, dec)}, {_signed(hi * scale, dec)}]"


def fmt_p(p: Any, alpha: float = 0.05) -> str:
    """``0.031``, ``< 0.001``; ``–`` without a test. Never rounded across
    ``alpha``: a resolved p of 0.0499 is ``0.0499``, not ``0.050`` beside
    "resolved"."""
    if not finite(p):
        return "–"
    if p < 0.001:
        return "< 0.001"
    for decimals in (3, 4, 5):
        text = f"{p:.{decimals}f}"
        if (float(text) < alpha) == (p < alpha):
            return text
    return f"< {alpha:g}"


def is_combined(factor: str) -> bool:
    """A factor that stands for several confounded config keys."""
    return COMBINED_SEP in factor


def short_names(factors: list[str]) -> dict[str, str]:
    """``model.dropout`` -> ``dropout`` where the last part is unambiguous;
    a combined factor ``model.dropout & trainer.epochs`` -> ``dropout & epochs``."""
    keys = list(dict.fromkeys(k for f in factors for k in f.split(COMBINED_SEP)))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    one = {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}
    return {f: COMBINED_SEP.join(one[k] for k in f.split(COMBINED_SEP)) for f in factors}


def setting_text(factor: str, value: Any, short: str) -> str:
    """``dropout=0.3``; a combined factor's value already reads ``dropout=0.3, epochs=5``."""
    return str(value) if is_combined(factor) else f"{short}={fmt_value(value)}"


def confounding_notes(study: "Study") -> list[str]:
    """One sentence per combined factor: which keys are confounded and what
    that means for the reader."""
    notes = []
    for name, keys in study.confounded.items():
        short = short_names(keys)
        names = [short[k] for k in keys]
        listed = ", ".join(names[:-1]) + " and " + names[-1]
        notes.append(
            f"{listed} are confounded: they change together in these runs ({len(study.levels[name])} observed "
            f"combinations, not a grid), so each combination is one cell and no separate effect of "
            f"{' or '.join(names)} can be estimated."
        )
    return notes


def cell_labels(keys: pd.DataFrame, factors: list[str]) -> pd.Series:
    """One readable label per row of factor values: ``dropout=0.3, batchnorm=true``."""
    if not factors:
        return pd.Series("all runs", index=keys.index, dtype=object)
    short = short_names(factors)
    parts = [
        keys[f].astype(str) if is_combined(f) else short[f] + "=" + keys[f].map(fmt_value).astype(str)
        for f in factors
    ]
    label = parts[0]
    for p in parts[1:]:
        label = label + ", " + p
    return label.astype(object)


def _normalize(value: Any) -> Any:
    """Make config values hashable and comparable: lists compare as ``a-b-c``."""
    if isinstance(value, (list, tuple)):
        return "-".join(fmt_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _default_first(factor: str, levels: list) -> list:
    """A factor's levels in order, the first the baseline every effect is read
    against: numbers ascending (dropout 0 first); other values sorted, but the
    config's own default first where the runs have it (model.order's
    linear-bn-act-dropout, not the alphabetically first linear-act-bn-dropout)."""
    if all(isinstance(v, (bool, int, float, np.number, np.bool_)) for v in levels):
        return levels
    from ..config import flat_defaults

    default = _normalize(flat_defaults().get(factor))
    return [default, *[v for v in levels if v != default]] if default in levels else levels


def _sort_key(value: Any) -> tuple:
    # Numbers (and bools) in numeric order before strings; missing values last.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, "")
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return (0, float(value))
    return (1, str(value))


# ---------------------------------------------------------------- reading one job


MAX_LISTED = 3  # malformed metrics.csv lines named in a note; the rest are counted


def _is_na(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell))


def _bad_cell(cell: Any) -> bool:
    """A metrics.csv cell that is neither empty (read as NaN) nor a number."""
    if _is_na(cell):
        return False
    try:
        float(cell)
    except (TypeError, ValueError):
        return True
    return False


def _read_metrics(path: Path) -> tuple[pd.DataFrame | None, list[str], bool]:
    """Complete rows of one metrics.csv, notes about what was dropped, truncated?

    A killed writer can leave a last line without its newline (possibly cut
    inside a number), so only newline-terminated lines are trusted. A line
    with the wrong number of fields, a cell that is not a number, a seed that
    is not a whole number or an epoch that is not one >= 0 is dropped and
    named (by its line number) in a note; the rest of the record is read.
    Dropped rows leave their epochs missing, which :func:`_add_usage` reports.
    """
    if not path.is_file():
        return None, [], False
    text = path.read_text()
    truncated = bool(text) and not text.endswith("\n")
    if truncated:
        text = text[: text.rfind("\n") + 1]
    lines = text.splitlines()
    if not lines:
        return None, ["metrics.csv is empty"], truncated
    header = lines[0]
    n_sep = header.count(",")
    columns = header.split(",")
    for required in ("seed", "epoch"):
        if required not in columns:
            raise ValueError(f"metrics.csv has no {required!r} column")
    dropped: list[tuple[int, str]] = []  # (line number in the file, why)
    good: list[str] = []
    numbers: list[int] = []  # line number of each good line
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if line.count(",") != n_sep:
            dropped.append((number, "wrong number of fields"))
        else:
            good.append(line)
            numbers.append(number)
    body = io.StringIO("\n".join([header, *good]))
    try:
        # float for every column: fast C parsing; a cell that is no number fails it.
        df = pd.read_csv(body, dtype=float)
    except ValueError:
        # Find the rows with cells that are no number, drop them, keep the rest.
        body.seek(0)
        raw = pd.read_csv(body, dtype=str)
        bad = raw.map(_bad_cell)
        for i in np.flatnonzero(bad.any(axis=1).to_numpy()):
            col = bad.columns[bad.iloc[i].to_numpy()][0]
            dropped.append((numbers[i], f"{raw[col].iat[i]!r} in {col}"))
        keep = ~bad.any(axis=1).to_numpy()
        df = raw[keep].astype(float)
        numbers = [n for n, k in zip(numbers, keep) if k]
    df = df.reset_index(drop=True)
    # numpy, not DataFrame operations, for the common case of clean rows in
    # order: pandas' per-call overhead was most of the time of reading 50 files.
    index = df[["seed", "epoch"]].to_numpy()
    whole = (np.isfinite(index) & (index == np.round(index))).all(axis=1) & (index[:, 1] >= 0)
    for i in np.flatnonzero(~whole):
        seed, epoch = ("empty" if math.isnan(v) else fmt_value(v) for v in index[i])
        dropped.append((numbers[i], f"seed {seed}, epoch {epoch}"))
    if not whole.all():
        df = df[whole]
    df[["seed", "epoch"]] = df[["seed", "epoch"]].astype(int)
    seed, epoch = df["seed"].to_numpy(), df["epoch"].to_numpy()
    if not ((seed[1:] > seed[:-1]) | ((seed[1:] == seed[:-1]) & (epoch[1:] > epoch[:-1]))).all():
        # A resumed run may re-record an epoch: the later row wins.
        df = df.drop_duplicates(["seed", "epoch"], keep="last").sort_values(["seed", "epoch"])
    notes = []
    if dropped:
        dropped.sort()
        listed = "; ".join(f"line {n}: {why}" for n, why in dropped[:MAX_LISTED])
        more = f"; {len(dropped) - MAX_LISTED} more" if len(dropped) > MAX_LISTED else ""
        notes.append(f"metrics.csv: {len(dropped)} malformed row{'s' if len(dropped) > 1 else ''} dropped "
                     f"({listed}{more})")
    return df, notes, truncated


def _read_job(job: Path, name: str) -> tuple[list[dict], pd.DataFrame | None]:
    """Run rows (one per seed) and the job's metrics. Raises on a corrupt record."""
    notes: list[str] = []
    if (job / SUMMARY_FILE).is_file():
        summary = read_summary(job)
        if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
            raise ValueError("summary.json has no 'config' mapping")
        config = dict(summary["config"])
    else:
        summary = {}
        tree = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        if not isinstance(tree, dict):
            raise ValueError(".hydra/config.yaml is not a mapping")
        config = flatten(tree)
        notes.append("no summary.json (status unknown)")
    config = {k: _normalize(v) for k, v in config.items() if not k.startswith("hydra")}

    metrics, metric_notes, truncated = _read_metrics(job / METRICS_FILE)
    notes += metric_notes
    if truncated:
        notes.append("metrics.csv truncated: last incomplete line ignored")

    seeds = list(summary.get("seeds") or ([config["seed"]] if "seed" in config else []))
    if metrics is not None:
        seeds += [s for s in metrics["seed"].unique().tolist() if s not in seeds]
    if not seeds:
        raise ValueError("no seed in summary.json, config or metrics.csv")
    # Seeds trained together as one vectorized model share one clock: metrics.csv
    # gives each of them the job's training time (see :func:`load_study`).
    together = len(summary.get("seeds") or []) or config.get("trainer.replicas") or len(seeds)
    together = max(1, int(together)) if isinstance(together, (int, float, np.integer)) else len(seeds)
    status = summary.get("status", UNKNOWN)
    seed_status = summary.get("seed_status") or {}
    data = summary.get("data") or {}
    overrides = summary.get("overrides")
    if not isinstance(overrides, list) and (job / ".hydra" / "overrides.yaml").is_file():
        try:
            overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        except yaml.YAMLError:  # the experiment's name only labels the report: never fatal
            overrides = None
    started = summary.get("started_at")
    error = summary.get("error")
    rows = [
        {
            "run": f"{name}:{int(seed)}",
            "job": name,
            "seed": int(seed),
            # a job that stopped (interrupted) leaves its live seeds `running`: the job's status is theirs
            "status": str(status if seed_status.get(str(seed), RUNNING) == RUNNING else seed_status[str(seed)]),
            "truncated": truncated,
            "note": "; ".join(notes),
            "error": error.strip().splitlines()[-1] if isinstance(error, str) and error.strip() else "",
            "dataset": dataset_label(data, config),
            "data_shape": data_shape(data),
            "n_params": summary.get("n_params"),
            "wall_time_s": summary.get("wall_time_s"),
            "device_used": summary.get("device"),
            "seeds_together": together,
            "shared_clock": bool(summary.get("fused_group")),  # trained in a fused group: time_s is its share
            "experiment": experiment_name(overrides),
            "started_at": started if isinstance(started, str) else None,
            "path": str(job),
            **{k: v for k, v in config.items() if k != "seed"},
        }
        for seed in seeds
    ]
    if metrics is not None:
        metrics.insert(0, "run", name + ":" + metrics["seed"].astype(str))
    return rows, metrics


def data_shape(data: dict):
    """``3200 train / 800 val / 1000 test examples, 40 features, 10 classes``
    from summary.json's ``data``; None where it lacks them."""
    try:
        return (f"{int(data['n_train'])} train / {int(data['n_val'])} val / {int(data['n_test'])} test examples, "
                f"{int(data['n_features'])} features, {int(data['n_classes'])} classes")
    except (KeyError, TypeError, ValueError):
        return None


def dataset_label(data: dict, config: dict):
    """The dataset a run trained on, as the report tells datasets apart: its
    name, and for the user's own data (``data=file``, ``data=callable``) the
    file or loader and the fingerprint of its contents, so that runs on other
    files, or on a file whose contents changed, are never averaged together:
    ``file data.npz (42ec7de707c3d0d2)``."""
    name = data.get("name", config.get("data.name"))
    fingerprint = data.get("fingerprint")
    if not fingerprint:
        return name
    where = Path(str(data["path"])).name if data.get("path") else data.get("loader", "")
    return f"{name} {where} ({fingerprint})"


def experiment_name(overrides: Any) -> str | None:
    """``dropout_vs_bn`` from a job's Hydra overrides (``+experiment=dropout_vs_bn``,
    ``experiment=...``); None when the job used no stored experiment."""
    for o in overrides if isinstance(overrides, list) else []:
        key, sep, value = str(o).partition("=")
        if sep and key.lstrip("+~") == "experiment" and value:
            return value
    return None


def experiment_header(name: str) -> str:
    """The comment header of the stored experiment ``conf/experiment/<name>.yaml``
    (its first comment lines, without ``@package``, up to the ``Run:`` line),
    joined into one paragraph; "" when there is no such file or header."""
    from importlib import resources

    if not re.fullmatch(r"[\w-]+(/[\w-]+)*", name):  # a config group path, never ../
        return ""
    try:
        text = (resources.files("regbench.conf") / "experiment" / f"{name}.yaml").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError, ValueError):
        return ""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        line = line.lstrip("#").strip()
        if line.startswith("Run:"):
            break
        if not line.startswith("@package"):
            lines.append(line)
    return " ".join(" ".join(lines).split())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- the study


def _warn(message: str) -> None:
    print(f"regbench report: warning: {message}", file=sys.stderr)


def load_study(
    paths: list[str | os.PathLike],
    allow_mixed: bool = False,
    warn: Callable[[str], None] = _warn,
) -> Study:
    """Every run under ``paths`` as a :class:`Study`.

    Raises :class:`ReportError` when nothing can be reported (no such folder,
    no records, none readable) or when runs of different datasets are mixed
    without ``allow_mixed``. Defective records are warned about and listed.
    """
    found: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"{p}: no such folder; give folders that contain run records")
        if not p.is_dir():
            raise ReportError(f"{p}: not a folder; give folders that contain run records")
        found[p] = find_job_dirs(p)
    for p, jobs in found.items():
        if not jobs and len(found) > 1:
            warn(f"no run records under {p}")
    jobs = sorted({j for js in found.values() for j in js})
    if not jobs:
        where = ", ".join(map(str, found))
        raise ReportError(
            f"no run records under {where} (a run folder has summary.json, or .hydra/config.yaml and metrics.csv)"
        )

    root = Path(os.path.commonpath(jobs))
    if root in jobs:  # a single job, or a job folder that holds others
        root = root.parent
    rows: list[dict] = []
    frames: list[pd.DataFrame] = []
    unreadable: list[tuple[str, str]] = []
    for job in jobs:
        name = job.relative_to(root).as_posix()
        try:
            job_rows, metrics = _read_job(job, name)
        except Exception as exc:  # any defect is the record's, not the report's
            unreadable.append((name, _reason(exc)))
            continue
        rows += job_rows
        if metrics is not None:
            frames.append(metrics)
    if not rows:
        raise ReportError(f"none of the {len(jobs)} run records could be read ({unreadable[0][1]} in {unreadable[0][0]})")
    for name, reason in unreadable:  # only now: if nothing is readable, the error above says it once
        warn(f"unreadable record {root / name}: {reason}; reporting the rest")

    runs = pd.DataFrame(rows)
    epochs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "seed", "epoch"])
    if TIME_COLUMN in epochs:
        # Time per seed: a job that trained R seeds together wrote its one clock
        # into each seed's rows; R seeds share it, so each is charged 1/R.
        together = epochs["run"].map(runs.set_index("run")["seeds_together"]).fillna(1).astype(float)
        epochs[TIME_COLUMN] = epochs[TIME_COLUMN].astype(float) / together

    datasets = runs["dataset"].fillna("unknown").value_counts()
    if len(datasets) > 1 and not allow_mixed:
        counts = ", ".join(f"{name} ({n} run{'' if n == 1 else 's'})" for name, n in datasets.items())
        names = [str(d) for d in datasets.index]
        older = [n for n in names if n in ("file", "callable") and any(m.startswith(f"{n} ") for m in names)]
        hint = (f" (runs labelled only {' or '.join(older)} were recorded before regbench kept a fingerprint of "
                "your data: if they trained on the same data, --allow-mixed reports them together)") if older else ""
        raise ReportError(f"runs from different datasets: {counts}; report one dataset at a time, or pass "
                          f"--allow-mixed{hint}")

    config_keys = [k for k in runs.columns[runs.columns.get_loc("path") + 1 :]]
    factors, constants = [], {}
    for key in config_keys:
        if key in NON_CELL_KEYS or key.startswith("hydra") or is_runtime_key(key):
            continue
        if runs[key].isna().any():  # null, or a key that older runs lack: one comparable value
            runs[key] = runs[key].astype(object).where(runs[key].notna(), "none")
        if runs[key].map(repr).nunique() > 1:  # repr: True differs from 1, NaN equals NaN
            factors.append(key)
        else:
            constants[key] = runs[key].tolist()[0]  # a Python value, not a numpy scalar
    levels = {f: _default_first(f, sorted(runs[f].drop_duplicates().tolist(), key=_sort_key)) for f in factors}
    runs, factors, levels, confounded = _combine_confounded(runs, factors, levels)

    def numeric(f: str) -> bool:
        return all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in levels[f])

    # Numeric factors with many levels make the best x axis and colour scale.
    factors.sort(key=lambda f: (not numeric(f), -len(levels[f]), f))

    runs = _add_usage(runs, epochs)
    runs["cell"] = cell_labels(runs, factors)
    runs = _mark_duplicates(runs)
    keys = [tuple(_sort_key(v) for v in row) for row in runs[factors].itertuples(index=False)]
    order = sorted(range(len(runs)), key=lambda i: (keys[i], runs["seed"].iat[i], runs["job"].iat[i]))
    first = ["run", "job", "seed", "cell", "status", "used", "left_out", "epochs", "planned_epochs", "truncated", "note",
             "error", "missing_epochs", "duplicate_of", "seeds_together", "shared_clock"]
    runs = runs.iloc[order].reset_index(drop=True)[first + [c for c in runs.columns if c not in first]]
    # Tidy: every epoch row carries its cell and factor values.
    epochs = epochs.merge(runs[["run", "cell", *factors]], on="run", how="left")
    for i, col in enumerate(["cell", *factors]):
        epochs.insert(1 + i, col, epochs.pop(col))
    return Study(runs, epochs, factors, levels, constants, unreadable, root, confounded)


def confounded_groups(runs: pd.DataFrame, factors: list[str]) -> list[list[str]]:
    """Groups of factors whose effects cannot be told apart in these runs.

    Two factors are confounded when, over the observed combinations, one
    determines the other (they change together, as in two runs that differ
    in two keys); groups are the connected sets of such pairs. If a group
    still never varies on its own (no two observed cells differ in it alone,
    as in a fractional design), every factor is one group. A grid with a
    hole (a factorial sweep with a missing job) has no such pair: its
    factors stay apart and the hole is reported as missing.
    """
    if len(factors) < 2:
        return []
    combos = runs[factors].apply(lambda col: col.map(repr)).drop_duplicates()
    parent = {f: f for f in factors}

    def root(f: str) -> str:
        while parent[f] != f:
            f = parent[f]
        return f

    for a, b in itertools.combinations(factors, 2):
        pair = combos[[a, b]].drop_duplicates()
        if pair[a].is_unique or pair[b].is_unique:  # b is a function of a, or a of b
            parent[root(b)] = root(a)
    groups: dict[str, list[str]] = {}
    for f in factors:
        groups.setdefault(root(f), []).append(f)
    parts = list(groups.values())
    for g in parts:
        rest = [f for f in factors if f not in g]
        if not rest:
            break
        setting = combos[g].agg("|".join, axis=1)
        if combos.assign(_g=setting).groupby(rest)["_g"].nunique().max() < 2:
            return [list(factors)]  # g never changes while the other factors stay fixed
    return [g for g in parts if len(g) > 1]


def _combine_confounded(
    runs: pd.DataFrame, factors: list[str], levels: dict[str, list]
) -> tuple[pd.DataFrame, list[str], dict[str, list], dict[str, list[str]]]:
    """Replace each group of confounded factors by one combined factor whose
    levels are the observed combinations, e.g. ``dropout=0.3, epochs=5``:
    no invented cells, no grid of combinations that were never meant to run."""
    groups = confounded_groups(runs, factors)
    if not groups:
        return runs, factors, levels, {}
    runs = runs.copy()
    short = short_names(factors)
    confounded: dict[str, list[str]] = {}
    for g in groups:
        g = sorted(g, key=factors.index)
        name = COMBINED_SEP.join(g)
        text = runs[g[0]].map(lambda v, f=g[0]: setting_text(f, v, short[f])).astype(str)
        for f in g[1:]:
            text = text + ", " + runs[f].map(lambda v, f=f: setting_text(f, v, short[f])).astype(str)
        runs[name] = text
        observed = runs.drop_duplicates(name)
        order = sorted(range(len(observed)), key=lambda i: [_sort_key(observed[f].iat[i]) for f in g])
        levels = {k: v for k, v in levels.items() if k not in g}
        levels[name] = [observed[name].iat[i] for i in order]
        factors = [f for f in factors if f not in g] + [name]
        confounded[name] = g
    return runs, factors, levels, confounded


def missing_text(missing: str) -> str:
    """A ``missing_epochs`` value in words: ``epochs 3-6 missing``, ``epoch 0 missing``."""
    return f"{'epoch' if missing.isdigit() else 'epochs'} {missing} missing"


def _ranges(numbers: list[int]) -> str:
    """``[0, 3, 4, 5, 6, 9]`` -> ``0, 3-6, 9``."""
    parts, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(parts)


def _add_usage(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Columns ``epochs`` (the last epoch k of the unbroken rows 0..k),
    ``planned_epochs`` (``trainer.epochs``, where recorded), ``used`` (enters
    the statistics), ``left_out`` (why not, in a word or two) and
    ``missing_epochs`` (epochs without a row before the last recorded one,
    ``3-6``; empty if none).

    Rows are counted, not the highest epoch trusted: a run is finished only
    with one row for every epoch 0..planned. Diverged and failed runs are
    listed, never averaged in. A run whose loss is NaN/inf although its status
    says otherwise is treated the same way. So is an unfinished run: still
    running or interrupted, or with fewer epochs recorded than planned (a
    killed job, a truncated metrics file): its final and best values are those
    of another, shorter experiment. So is a run with missing epochs (rows lost
    in the middle): whatever epoch it reached, its curve has holes.
    """
    runs = runs.copy()
    # One row per (run, epoch) already (_read_metrics keeps the last of repeats).
    ep = epochs[["run", "epoch"]].drop_duplicates().sort_values(["run", "epoch"])
    # Sorted distinct epochs >= 0: the i-th is i exactly along the unbroken prefix 0..k.
    prefix = ep["epoch"].to_numpy() == ep.groupby("run").cumcount().to_numpy()
    k = pd.Series(prefix, index=ep.index).groupby(ep["run"]).sum() - 1
    last = ep.groupby("run")["epoch"].max()
    runs["epochs"] = runs["run"].map(k.where(k >= 0)).astype("Int64")  # NA: no row for epoch 0
    has_rows = runs["run"].isin(last.index)
    gap_runs = last.index[last > k]
    holes = {}
    for run in gap_runs:  # few: a Python loop is fine
        seen = set(ep.loc[ep["run"] == run, "epoch"].tolist())
        holes[run] = _ranges([e for e in range(last[run]) if e not in seen])
    runs["missing_epochs"] = [holes.get(r, "") for r in runs["run"]]
    gap = runs["missing_epochs"] != ""
    planned = pd.to_numeric(runs[PLANNED_EPOCHS], errors="coerce") if PLANNED_EPOCHS in runs else np.nan
    runs["planned_epochs"] = pd.Series(planned, index=runs.index, dtype="float").astype("Int64")
    # NaN is how a diverged loss is written ("nan"), and also what an empty
    # cell reads as: a loss counts as blown up only in a run that records it.
    bad = pd.Series(False, index=epochs.index)
    for c in (c for c in LOSS_COLUMNS if c in epochs):
        values = epochs[c].astype(float)
        recorded_loss = values.notna().groupby(epochs["run"]).transform("any")
        bad |= recorded_loss & ~np.isfinite(values)
    nonfinite = runs["run"].isin(set(epochs.loc[bad, "run"]))
    excluded = runs["status"].isin(EXCLUDED_STATUSES)
    no_epochs = ~has_rows
    short = (runs["epochs"] < runs["planned_epochs"]).fillna(False).astype(bool)
    unfinished = runs["status"].isin(UNFINISHED_STATUSES) | short
    # Later assignments win: the most telling reason is the one given.
    runs["left_out"] = ""
    runs.loc[unfinished, "left_out"] = UNFINISHED
    runs.loc[gap, "left_out"] = GAP
    runs.loc[no_epochs, "left_out"] = "no epoch"
    runs.loc[nonfinite, "left_out"] = "non-finite loss"
    runs.loc[excluded, "left_out"] = runs.loc[excluded, "status"]
    runs["used"] = runs["left_out"] == ""
    of_planned = runs["planned_epochs"].map(lambda p: "" if pd.isna(p) else f" of {p}")
    stopped = "stopped at epoch " + runs["epochs"].astype(str) + of_planned
    running = runs["status"] == RUNNING  # its summary says running: still training, or its process died
    stopped[running] = ("at epoch " + runs["epochs"].astype(str) + of_planned + ", still running or its process died")[running]
    holed = (runs["missing_epochs"].map(missing_text) + " (last recorded epoch "
             + runs["run"].map(last).astype("Int64").astype(str) + of_planned + ")")
    for mask, text in ((nonfinite & ~excluded, "non-finite loss: left out like a diverged run"),
                       (no_epochs, "no complete epoch recorded"),
                       (gap, holed + ": left out of the statistics"),
                       (runs["left_out"] == UNFINISHED, "unfinished (" + stopped + "): left out of the statistics")):
        text = text[mask] if isinstance(text, pd.Series) else text
        runs.loc[mask, "note"] = (runs.loc[mask, "note"] + "; " + text).str.lstrip("; ")
    return runs


def _mark_duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    """Count each (cell, seed) once: of the used runs that share a cell and a
    seed (copies of a folder, a seed trained alone and again as a replica:
    ``trainer.replicas`` and runtime keys define no cell), one stays in the
    statistics and the others are left out as ``duplicate``, with a note and a
    ``duplicate_of`` column naming the run kept."""
    runs = runs.copy()
    runs["duplicate_of"] = ""
    used = runs[runs["used"]]
    # The run kept is the one whose job folder comes first in path order,
    # compared folder by folder (sweep/0 before sweep_copy/0, w before x/2):
    # deterministic, and independent of the order the folders were given in.
    # Two runs of one (cell, seed) are always in different jobs: no ties.
    order = sorted(used.index, key=lambda i: PurePosixPath(used.at[i, "job"]).parts)
    used = used.loc[order]
    kept = used.groupby(["cell", "seed"], sort=False)["run"].transform("first")
    dup = kept[kept != used["run"]]
    if dup.empty:
        return runs
    runs.loc[dup.index, "duplicate_of"] = dup
    runs.loc[dup.index, "left_out"] = DUPLICATE
    runs.loc[dup.index, "used"] = False
    text = "duplicate of " + dup + " (same cell and seed): left out, counted once"
    runs.loc[dup.index, "note"] = (runs.loc[dup.index, "note"] + "; " + text).str.lstrip("; ")
    return runs


def incomplete(runs: pd.DataFrame) -> pd.Series:
    """Used runs whose status is not known to be completed (no summary.json,
    but a row for every epoch 0..planned)."""
    return runs["used"] & (runs["status"] != COMPLETED)
