"""Experiment trackers (the ``logger`` config group): TensorBoard and MLflow
mirror a job's records, one tracker run per seed.

metrics.csv and summary.json stay the source of truth. A tracker gets the very
rows that JobRun writes to metrics.csv (``log``), and the final summary
(``close``). A tracker that fails (package missing, store unwritable, server
down) logs ONE warning line for the job and is dropped; training and the
records go on. ``regbench export`` puts finished records into the same
trackers through the same classes.

Resumed jobs: rows already in metrics.csv before the checkpoint are logged only
when the tracker does not have them yet (a TensorBoard seed folder without
event files; an MLflow run, found by its ``records`` and ``seed`` tags, whose
history stops earlier), so every epoch is in the tracker once.

This module imports neither torch nor a tracker package at import time:
tensorboard (through torch.utils.tensorboard) and mlflow are imported when a
logger is configured.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from . import records
from .provenance import from_launch_dir
from .signals import Interrupted

log = logging.getLogger("regbench.trackers")

NAMES = ("tensorboard", "mlflow")
EXTRAS = {"tensorboard": "regbench[tensorboard]", "mlflow": "regbench[mlflow]"}
INDEX = ("seed", "epoch")  # a row's coordinates, not metrics: epoch is the step
DEFAULT_MLFLOW_DIR = "outputs/mlruns"
DEFAULT_EXPERIMENT = "regbench"
# MLflow run status for each regbench status (diverged is an outcome, not a crash)
MLFLOW_STATUS = {records.COMPLETED: "FINISHED", records.DIVERGED: "FINISHED", records.FAILED: "FAILED",
                 records.INTERRUPTED: "KILLED", records.RUNNING: "KILLED"}


class TrackerError(Exception):
    """A tracker cannot be used; the message is one line."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    text = text[0] if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _needs(name: str, exc: ImportError) -> TrackerError:
    return TrackerError(f"the {name} package is not installed ({_one_line(exc)}): pip install '{EXTRAS[name]}'")


def summary_metrics(per_seed: Mapping[str, Any]) -> dict[str, float]:
    """One seed's summary values as tracker metrics: ``best_<k>`` at the epoch
    of lowest validation loss (regbench's "best", with ``best_epoch``) and
    ``final_<k>`` at the last epoch."""
    out: dict[str, float] = {}
    best = per_seed.get("best") or {}
    for k, v in best.items():
        if k in ("val_acc_max", "val_acc_max_epoch"):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"best_{k}"] = float(v)
    final = per_seed.get("final") or {}
    for k in ("fit_loss", "fit_acc", "val_loss", "val_acc", "test_loss", "test_acc", "gap_loss", "gap_acc"):
        v = final.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"final_{k}"] = float(v)
    return out


def _scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics row, without its index; empty cells left out."""
    out = {}
    for k, v in row.items():
        if k in INDEX or v is None or v == "" or isinstance(v, bool):
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _hparam(value: Any) -> Any:
    """TensorBoard hparams and MLflow params take numbers, strings and booleans."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)


# ---------------------------------------------------------------- TensorBoard


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises what stopped it (a full disk) to
    threading's hook, which printed "Exception in thread Thread-2" and a
    traceback into the middle of regbench's own line; the writer raises the same
    error in the thread that writes next, where regbench reports it once."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "regbench_quiet", False):
        return

    def hook(args):
        if type(args.thread).__name__ != "_AsyncWriterThread":
            previous(args)

    hook.regbench_quiet = True
    threading.excepthook = hook


class TensorBoardTracker:
    """``<save_dir or job>/tensorboard/seed=<s>/``: every metrics.csv column as a
    scalar per epoch, the flat config as hparams with best/final metrics."""

    name = "tensorboard"

    def __init__(self, spec: Any, out: Path, config: Mapping[str, Any], seeds: list[int], root: Optional[Path] = None):
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            from torch.utils.tensorboard.summary import hparams
        except ImportError as exc:
            raise _needs(self.name, exc) from None
        _quiet_writer_threads()
        save_dir = getattr(spec, "save_dir", None) if spec is not None else None
        self.root = root if root is not None else (from_launch_dir(save_dir) / out.name if save_dir else out / "tensorboard")
        self._writer_class, self._hparams = SummaryWriter, hparams
        self.config = {k: _hparam(v) for k, v in config.items()}
        self.seeds = seeds
        self.writers: dict[int, Any] = {}

    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed={seed}"

    def _writer(self, seed: int, purge_step: Optional[int]):
        """A writer for the seed's folder whose file TensorBoard reads after
        the ones there. It reads a folder's event files in name order, and a name
        goes on from its second with the host, the pid and a per-process counter:
        a file made in the same second as the newest one there could sort before
        it (counter 10 before 9, pid 10001 before 9999), and its purge_step then
        hid nothing. So that second is waited out (only when files are there)."""
        folder = self.seed_dir(seed)
        if purge_step is not None:
            stamps = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*")
                      if len(p.name.split(".")) > 3 and p.name.split(".")[3].isdigit()]
            if stamps and max(stamps) >= int(time.time()):
                time.sleep(max(stamps) + 1 - time.time())
        return self._writer_class(str(folder), purge_step=purge_step)

    def has(self, seed: int) -> bool:
        return any(self.seed_dir(seed).glob("events.out.tfevents.*"))

    def begin(self, earlier: list[dict]) -> None:
        for s in self.seeds:
            mine = [r for r in earlier if r["seed"] == s]
            had = self.has(s)
            first_new = (mine[-1]["epoch"] + 1) if mine else 0
            # A resumed seed: epochs from the checkpoint on may have been logged
            # before the kill; purge_step hides them, the rerun logs them again.
            writer = self._writer(s, purge_step=first_new if had else None)
            self.writers[s] = writer
            metrics = {f"summary/{k}": 0.0 for k in ("best_val_acc", "best_val_loss", "best_epoch", "final_val_acc")}
            for summary in self._hparams(self.config, metrics):  # experiment, session start, session end
                writer.file_writer.add_summary(summary)
            if not had:
                self.log(mine)

    def _logged(self, seed: int) -> tuple[int, set]:
        """What the seed's event files hold: the last epoch of its metrics (-1:
        none), and the steps its summary values were logged at."""
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        last, summaries = -1, set()
        for path in sorted(self.seed_dir(seed).glob("events.out.tfevents.*")):
            try:
                for event in EventFileLoader(str(path)).Load():
                    for value in event.summary.value:
                        if value.tag.startswith("summary/"):
                            summaries.add(event.step)
                        elif not value.tag.startswith("_hparams_/"):
                            last = max(last, event.step)
            except Exception:  # a file cut short: what was read before the cut counts
                continue
        return last, summaries

    def export(self, rows: list[dict], summary: Mapping[str, Any]) -> list[int]:
        """``regbench export``: each seed's rows that its event files lack, then
        its summary values; returns the seeds written. The first time, all its
        rows; after an export that was cut short (Ctrl-C, a full disk), or one
        made before the run ended, the epochs from the last one the files hold
        (logged again, with ``purge_step`` hiding what was there of it). A seed
        whose files hold its last row and its summary as it is now is left alone."""
        written = []
        for s in self.seeds:
            mine = [r for r in rows if r["seed"] == s]
            step = int(((summary.get("per_seed") or {}).get(str(s)) or {}).get("epochs_completed") or 0)
            had = self.has(s)
            last, summaries = self._logged(s) if had else (-1, set())
            if (not mine or last >= mine[-1]["epoch"]) and step in summaries:
                continue  # a seed without rows (a job stopped before epoch 0) too, once its summary is there
            # What is there is hidden from its last epoch on (purge_step), and from an earlier export's summary
            # values, which sit at the epoch its summary.json then had (written at saves, behind metrics.csv);
            # everything from there is logged again.
            marks = [m for m in (last, *summaries) if m >= 0]
            purge = min(marks) if marks else None
            writer = self._writer(s, purge_step=purge)
            if not had:
                metrics = {f"summary/{k}": 0.0 for k in ("best_val_acc", "best_val_loss", "best_epoch", "final_val_acc")}
                for event in self._hparams(self.config, metrics):  # experiment, session start, session end
                    writer.file_writer.add_summary(event)
            self.writers[s] = writer
            self.log([r for r in mine if purge is None or r["epoch"] >= purge])
            written.append(s)
        self.close(summary)
        return written

    def log(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            writer = self.writers[int(row["seed"])]
            for k, v in _scalars(row).items():
                writer.add_scalar(k, v, int(row["epoch"]))
        for writer in self.writers.values():
            writer.flush()

    def close(self, summary: Mapping[str, Any]) -> None:
        for s, writer in self.writers.items():
            per_seed = (summary.get("per_seed") or {}).get(str(s), {})
            step = int(per_seed.get("epochs_completed") or 0)
            for k, v in summary_metrics(per_seed).items():
                writer.add_scalar(f"summary/{k}", v, step)
            writer.close()
        self.writers = {}


# ---------------------------------------------------------------- MLflow


def mlflow_uri(tracking_uri: Optional[str]) -> str:
    """The tracking URI: as given, or the file store outputs/mlruns under the
    folder the command was typed in (also with hydra.job.chdir=true)."""
    if tracking_uri:
        return tracking_uri
    return from_launch_dir(DEFAULT_MLFLOW_DIR).resolve().as_uri()


def mlflow_client(tracking_uri: Optional[str]):
    """An MlflowClient for the URI. MLflow >= 3.7 keeps its file store
    (``file:``) only on request; regbench's default store is one, so ask."""
    uri = mlflow_uri(tracking_uri)
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise _needs("mlflow", exc) from None
    _reachable(uri)
    return MlflowClient(tracking_uri=uri)


def _reachable(uri: str) -> None:
    """An http(s) tracking server that accepts no connection: TrackerError at
    once (one warning), not after MLflow's seven retries with backoff (about 4
    minutes). Skipped behind an HTTP(S) proxy (regbench.reach)."""
    from .reach import unreachable

    why = unreachable(uri)
    if why:
        raise TrackerError(f"the MLflow tracking server {uri} cannot be reached ({why})")


class MlflowTracker:
    """One MLflow run per seed: the flat config as params, every metrics.csv
    column per epoch (step = epoch), tags ``status``, ``records`` (the job
    folder) and ``seed``; best/final as summary metrics at the end."""

    name = "mlflow"

    def __init__(self, spec: Any, out: Path, config: Mapping[str, Any], seeds: list[int], experiment: Optional[str] = None):
        self.client = mlflow_client(getattr(spec, "tracking_uri", None) if spec is not None else None)
        from mlflow.entities import Metric, Param, RunTag

        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        name = experiment or (getattr(spec, "experiment_name", None) if spec is not None else None) or default_experiment(out)
        self.experiment_id = _experiment_id(self.client, name)
        self.out, self.config, self.seeds = out, config, seeds
        self.runs: dict[int, str] = {}
        self.logged: dict[int, int] = {}  # seed -> last epoch the run already holds

    def _find(self, seed: int) -> Optional[str]:
        path = str(self.out.resolve())
        if "'" in path:  # cannot be quoted in a filter string: a new run
            return None
        runs = _read(lambda: self.client.search_runs([self.experiment_id], f"tags.records = '{path}' and tags.seed = '{seed}'",
                                                     max_results=1))
        return runs[0].info.run_id if runs else None

    def begin(self, earlier: list[dict]) -> None:
        for s in self.seeds:
            run_id = self._find(s)
            if run_id is not None:  # a resumed job (or a second export): go on in its run
                history = _read(lambda: self.client.get_metric_history(run_id, "val_loss"))
                self.logged[s] = max((m.step for m in history), default=-1)
                self.client.update_run(run_id, status="RUNNING")
            else:
                run = self.client.create_run(
                    self.experiment_id, run_name=f"{self.out.name}/seed={s}",
                    tags={"records": str(self.out.resolve()), "seed": str(s), "status": records.RUNNING},
                )
                run_id = run.info.run_id
                self.logged[s] = -1
                params = [self._Param(k, str(_hparam(v))[:6000]) for k, v in self.config.items()]
                for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                    self.client.log_batch(run_id, params=params[i : i + 100])
            self.runs[s] = run_id
        self.log(earlier)

    def log(self, rows: Iterable[Mapping[str, Any]]) -> None:
        now = int(time.time() * 1000)
        by_seed: dict[int, list] = {}
        for row in rows:
            s, epoch = int(row["seed"]), int(row["epoch"])
            if epoch <= self.logged.get(s, -1):
                continue  # the run has it already
            by_seed.setdefault(s, []).extend(self._Metric(k, v, now, epoch) for k, v in _scalars(row).items())
            self.logged[s] = epoch
        for s, metrics in by_seed.items():
            for i in range(0, len(metrics), 1000):  # at most 1000 metrics per batch
                self.client.log_batch(self.runs[s], metrics=metrics[i : i + 1000])

    @staticmethod
    def _status(summary: Mapping[str, Any], seed: int) -> str:
        status = ((summary.get("per_seed") or {}).get(str(seed)) or {}).get("status") or records.RUNNING
        if status == records.RUNNING:  # an interrupted job leaves its live seeds `running`
            status = summary.get("status") or records.RUNNING
        return str(status)

    def export(self, rows: list[dict], summary: Mapping[str, Any]) -> list[int]:
        """``regbench export``: the seeds whose run lacks epochs or has another
        status get what they lack and the summary as it is now; returns them. A
        seed whose run holds its last row and its status is left alone (an
        export again logged the summary values a second time)."""
        todo = []
        for s in self.seeds:
            run_id, mine = self._find(s), [r for r in rows if r["seed"] == s]
            if run_id is not None and mine:
                history = _read(lambda: self.client.get_metric_history(run_id, "val_loss"))
                tags = _read(lambda: self.client.get_run(run_id)).data.tags
                if max((m.step for m in history), default=-1) >= mine[-1]["epoch"] and tags.get("status") == self._status(summary, s):
                    continue
            todo.append(s)
        self.seeds = todo
        if todo:
            self.begin([r for r in rows if r["seed"] in todo])
            self.close(summary)
        return todo

    def close(self, summary: Mapping[str, Any]) -> None:
        now = int(time.time() * 1000)
        for s, run_id in self.runs.items():
            per_seed = (summary.get("per_seed") or {}).get(str(s), {})
            status = self._status(summary, s)
            step = int(per_seed.get("epochs_completed") or 0)
            metrics = [self._Metric(k, v, now, step) for k, v in summary_metrics(per_seed).items()]
            self.client.log_batch(run_id, metrics=metrics, tags=[self._RunTag("status", str(status))])
            self.client.set_terminated(run_id, status=MLFLOW_STATUS.get(status, "FINISHED"))
        self.runs = {}


READ_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8)  # seconds between tries of a read that met another process's write


def _read(fn):
    """``fn()``, tried again when it fails. MLflow's file store reads every run
    of the experiment to search it, and a run another worker process of the
    sweep is writing can have a metric file made but not yet written
    ("Metric 'final_val_acc' is malformed. No data found"); a moment later it reads."""
    for wait in READ_RETRIES:
        try:
            return fn()
        except Interrupted:
            raise
        except Exception:  # the store's errors have no common type across MLflow versions
            time.sleep(wait)
    return fn()


def _experiment_id(client, name: str) -> str:
    """The experiment's id, made if missing. The groups of a fused sweep start
    at once in worker processes: one at a time looks for it and makes it
    (regbench.locks), and where another process made it first (a server's
    store refuses a second of a name), take that. MLflow's file store does
    not refuse it: two workers that both found none made two experiments of
    one name, and the sweep's runs were split between them."""
    from .locks import one_at_a_time

    with one_at_a_time(f"mlflow experiment {client.tracking_uri} {name}"):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name)
        except Exception:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id


def default_experiment(out: Path) -> str:
    """A sweep's jobs go to an experiment named after the sweep folder; a single run to ``regbench``."""
    from .sweep import MANIFEST

    return out.parent.name if (out.parent / MANIFEST).exists() else DEFAULT_EXPERIMENT


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}


def configured(cfg: Any) -> list[str]:
    """The trackers a config turns on (``logger.<name>`` not null), in NAMES order."""
    logger = getattr(cfg, "logger", None) if cfg is not None else None
    if logger is None:
        return []
    return [n for n in NAMES if n in logger and logger[n] is not None]


class JobTrackers:
    """A job's trackers. Every call is guarded: a tracker that raises is
    dropped with one warning line, never an exception for the run."""

    def __init__(self, cfg: Any, out: Path, config: Mapping[str, Any], seeds: list[int]):
        self.out, self.active = out, []
        for name in configured(cfg):
            try:
                self.active.append(TRACKERS[name](cfg.logger[name], out, config, seeds))
            except Interrupted:
                raise
            except Exception as exc:
                self._drop(name, exc)

    def _drop(self, name: str, exc: BaseException) -> None:
        self.active = [t for t in self.active if t.name != name]
        reason = _one_line(exc) if isinstance(exc, TrackerError) else f"{type(exc).__name__}: {_one_line(exc)}"
        log.warning("logger=%s is off for %s: %s (metrics.csv and summary.json are complete)", name, self.out, reason)

    def _each(self, method: str, *args) -> None:
        for tracker in list(self.active):
            try:
                getattr(tracker, method)(*args)
            except Interrupted:  # SIGTERM while a tracker was writing: the run stops, recorded
                raise
            except Exception as exc:
                self._drop(tracker.name, exc)

    def begin(self, earlier: list[dict]) -> None:
        self._each("begin", earlier)

    def log(self, rows: list[dict]) -> None:
        if self.active:
            self._each("log", rows)

    def close(self, summary: Mapping[str, Any]) -> None:
        self._each("close", summary)
        self.active = []
