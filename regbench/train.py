"""One run: fit the MLP, evaluate every epoch, checkpoint, record.

``run(cfg, out_dir)`` is the whole life of a run; ``main`` is the Hydra task
that ``regbench train`` calls. The hot loop keeps data on the device, indexes
batches from a seeded permutation and reads back to the host once per epoch.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from . import __version__, progress, provenance, records, signals, userdata
from .config import ConfigError, flat_defaults, validate
from .data import Dataset, DataError, build_dataset
from .diagnostics import Probe
from .learner import Learner
from .progress import EpochBar
from .signals import Interrupted  # SIGTERM/SIGINT in a training loop (also train.Interrupted)
from .trackers import JobTrackers

log = logging.getLogger("regbench.train")


# A file system that stops taking writes: full, over quota, read-only, failing.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES, errno.EPERM})


class RecordsUnwritable(Exception):
    """The job folder stopped taking writes (e.g. a full disk). The run stops as
    ``interrupted`` where the summary could still be written; its last
    checkpoint and the rows up to it are kept, so running it again resumes."""

    def __init__(self, out: Path, exc: OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        super().__init__(
            f"cannot write the records in {out}: {exc.strerror or exc}{where}; what the last completed epoch "
            "recorded is kept: make room (or fix the folder), then run the same command again to resume"
        )


# ---------------------------------------------------------------- setup


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when present, else cpu; a device that is not here is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            raise ConfigError(
                f"device={name!r} is not allowed: this machine has {count} CUDA device(s)"
                + (f" (cuda:0..cuda:{count - 1})" if count else "")
                + "; use device=cpu or device=auto"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device='mps' is not allowed: MPS is not available here; use device=cpu or device=auto")
    return torch.device(name)


# ---------------------------------------------------------------- one epoch's numbers


def epoch_metrics(learner: Learner, datas, replicas: list[int], eval_batch: int, with_test: bool, probe=None) -> list[dict]:
    """Evaluate fit (train set), val and test for each replica in ``replicas``;
    one host sync for all of them. ``datas``: one Dataset, or one per replica
    (a fused group: each job's own labels). Returns one dict of floats per replica.

    A vectorized learner evaluates the replicas at once (``Learner.evaluate_replicas``);
    R = 1 evaluates its plain module."""
    per = [datas if isinstance(datas, Dataset) else datas[i] for i in replicas]
    diagnostics = probe.columns() if probe is not None else []
    names = []
    for data in per:
        keys = ["fit_loss", "fit_acc", *diagnostics, "val_loss", "val_acc"]
        keys += ["test_loss", "test_acc"] if with_test and data.test is not None else []
        keys += [records.NOISY_FIT_ACC, records.NOISY_CLEAN_ACC] if data.n_corrupted else []
        names.append(keys)
    if learner.layerwise:
        columns = _columns_at_once(learner, per, replicas, eval_batch, with_test, probe)
        table = dict(zip(columns, torch.stack([v.float() for v in columns.values()]).tolist()))  # column -> r floats
        values = [[table[k][j] for k in keys] for j, keys in enumerate(names)]
    else:
        flat = iter(torch.stack([v.float() for i, data in zip(replicas, per)
                                 for v in _values_of_one(learner, data, i, eval_batch, with_test, probe)]).tolist())
        values = [[next(flat) for _ in keys] for keys in names]
    out = []
    for keys, vals in zip(names, values):
        row = dict(zip(keys, vals))
        row["gap_loss"] = row["val_loss"] - row["fit_loss"]
        row["gap_acc"] = row["fit_acc"] - row["val_acc"]
        out.append(row)
    return out


def _values_of_one(learner: Learner, data: Dataset, i: int, eval_batch: int, with_test: bool, probe) -> list[torch.Tensor]:
    """Replica i's metrics as 0-dim tensors, in the order of epoch_metrics' keys."""
    fit_loss, fit_acc, fit_pred = learner.evaluate(data.train, eval_batch, i, probe)
    values = [fit_loss, fit_acc]
    if probe is not None:
        values += list(probe.results().values())
    values += list(learner.evaluate(data.val, eval_batch, i)[:2])
    if with_test and data.test is not None:
        values += list(learner.evaluate(data.test, eval_batch, i)[:2])
    if data.n_corrupted:
        mask = data.corrupted
        values += [
            (fit_pred[mask] == data.train.y[mask]).float().mean(),  # memorized the wrong label
            (fit_pred[mask] == data.clean_y[mask]).float().mean(),  # still predicts the true one
        ]
    return values


def _columns_at_once(learner: Learner, per: list[Dataset], replicas: list[int], eval_batch: int, with_test: bool,
                     probe) -> dict[str, torch.Tensor]:
    """{column: (r,) tensor} for the replicas of a vectorized learner, evaluated
    at once. The group shares its inputs (the first replica's); labels are
    shared, or stacked where a replica has its own (label noise). A replica
    without label noise gets NaN noisy-label columns that it does not record."""
    first = per[0]

    def labels(split: str) -> torch.Tensor:
        ys = [getattr(d, split).y for d in per]
        return ys[0] if all(y is ys[0] for y in ys) else torch.stack(ys)  # (N,) or (r, N)

    fit_y = labels("train")
    masked = ()
    if any(d.n_corrupted for d in per):
        none = torch.zeros(len(first.train), dtype=torch.bool, device=first.train.y.device)
        mask = torch.stack([d.corrupted if d.n_corrupted else none for d in per])  # (r, N)
        clean = torch.stack([d.clean_y if d.n_corrupted else d.train.y for d in per])
        masked = ((fit_y.expand_as(clean), mask), (clean, mask))
    loss, acc, counts, found = learner.evaluate_replicas(first.train.x, fit_y, eval_batch, replicas, probe, masked)
    cols = {"fit_loss": loss, "fit_acc": acc, **found}
    cols["val_loss"], cols["val_acc"] = learner.evaluate_replicas(first.val.x, labels("val"), eval_batch, replicas)[:2]
    if with_test and first.test is not None:
        cols["test_loss"], cols["test_acc"] = learner.evaluate_replicas(first.test.x, labels("test"), eval_batch, replicas)[:2]
    if masked:
        n = torch.tensor([float(d.n_corrupted) for d in per], device=loss.device)  # 0: NaN, not recorded
        cols[records.NOISY_FIT_ACC] = counts[0].float() / n  # memorized the wrong label
        cols[records.NOISY_CLEAN_ACC] = counts[1].float() / n  # still predicts the true one
    return cols


# ---------------------------------------------------------------- checkpoint


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as fh:  # Python's file, so a full disk raises OSError(ENOSPC), not a C++ stream error
            torch.save(state, fh)
        os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact
    except RuntimeError as exc:
        # An interrupt or a write error inside torch.save surfaces as the zip
        # writer's own error ("unexpected pos") when it closes the file: raise
        # what really happened.
        if isinstance(exc.__context__, (KeyboardInterrupt, Interrupted, OSError)):
            raise exc.__context__ from None
        raise
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind


def _checkpoint_epoch(path: Path, default: Optional[int]) -> Optional[int]:
    """The epoch the checkpoint at ``path`` holds (its tensors mapped, not
    read), or ``default``. An interrupt between a save's os.replace and the
    line that records its epoch left summary.json one epoch behind the file:
    the interrupt line said "resumes it from epoch 3", and it resumed after 4."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # noqa: BLE001 - no file, or not one of ours: what the summary had
        return default


# ---------------------------------------------------------------- the run

def _columns(data: Dataset, probe: Optional[Probe]) -> list[str]:
    cols = list(records.BASE_COLUMNS)
    if data.corrupted is not None:
        cols += [records.NOISY_FIT_ACC, records.NOISY_CLEAN_ACC]
    if probe is not None:
        cols += [records.GRAD_NORM] + probe.columns()
    return cols


def _best(rows: list[dict]) -> dict[str, Any]:
    """Values at the epoch of lowest validation loss, plus the highest val accuracy."""
    finite = [r for r in rows if math.isfinite(r["val_loss"])]
    if not finite:
        return {}
    best = min(finite, key=lambda r: r["val_loss"])
    top = max(finite, key=lambda r: r["val_acc"])
    keys = ("epoch", "val_loss", "val_acc", "fit_loss", "fit_acc", "test_loss", "test_acc", "gap_loss", "gap_acc")
    return {**{k: best[k] for k in keys if k in best}, "val_acc_max": top["val_acc"], "val_acc_max_epoch": top["epoch"]}


class Resume:
    """What an existing job folder holds, decided before anything in it changes.

    completed / diverged -> skip, while metrics.csv holds every epoch the
    summary reports (else start afresh). interrupted (or ``running``, left by a kill
    -9 or a full disk) -> resume after the checkpoint's epoch, but only when
    the checkpoint was written by this very config (its fingerprint) and
    metrics.csv holds one complete row per seed for every epoch up to it.
    Anything else (failed, no checkpoint, a damaged or foreign one, rows
    missing) -> start afresh; :meth:`begin` then moves the old records into a
    hidden ``.corrupt-<time>/`` (or ``.failed-``/``.unfinished-``) folder beside
    them: nothing is deleted or truncated before that decision. A folder
    holding another config is refused (ConfigError).
    """

    FILES = (records.METRICS_FILE, records.CHECKPOINT_FILE, records.SUMMARY_FILE)

    def __init__(self, out: Path, config: dict, seeds: list[int]):
        self.out, self.config, self.seeds = out, config, seeds
        self.summary: Optional[dict] = None
        self.checkpoint: Optional[dict] = None
        self.columns: list[str] = []
        self.rows: list[dict] = []
        self.note = ""  # what was found, said in one line when the job starts
        self.label = "corrupt"  # starting afresh: the old records go to .<label>-<time>/
        try:
            self.summary = records.read_summary(out)
        except FileNotFoundError:
            if any((out / name).exists() for name in self.FILES):
                self.fresh("records without a summary.json")
            return
        except (OSError, ValueError) as exc:
            self.fresh(f"summary.json is unreadable ({exc})")
            return
        if not records.has_config(self.summary):  # regbench always writes it: damaged, set aside as such
            # (it was read as another config's run: "remove that folder", which would have deleted the records)
            self.fresh("summary.json has no config (damaged?)")
            self.summary = None  # not a record to skip by
            return
        conflict = records.config_conflict(out, self.summary.get("config") or {}, config, flat_defaults())
        if conflict:
            raise ConfigError(conflict)
        status = self.summary.get("status")
        if status in (records.INTERRUPTED, records.RUNNING):
            self._verify_checkpoint()
        elif status == records.FAILED:
            self.fresh("it failed before; running it again", "failed")
        elif not self.done:
            self.fresh(f"summary.json has an unknown status {status!r}")
        else:
            self._verify_done(status)

    def fresh(self, why: str, label: str = "corrupt") -> None:
        """Decide to start afresh (nothing moves until :meth:`begin`)."""
        self.checkpoint, self.columns, self.rows = None, [], []
        self.note, self.label = why, label

    def _verify_checkpoint(self) -> None:
        path = self.out / records.CHECKPOINT_FILE
        if not path.exists():
            self.fresh("interrupted without a checkpoint", "unfinished")
            return
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            self.fresh(f"checkpoint.pt is unreadable ({type(exc).__name__})")
            return
        if not isinstance(ckpt, dict) or "fingerprint" not in ckpt:
            self.fresh("checkpoint.pt carries no config fingerprint (an older regbench wrote it)")
            return
        if ckpt["fingerprint"] != records.fingerprint(self.config) or ckpt.get("seeds") != self.seeds:
            self.fresh("checkpoint.pt was written by another config")
            return
        try:
            last = dict(zip(self.seeds, ckpt["seed_epochs"]))
            self.columns, self.rows = records.read_metrics_upto(self.out / records.METRICS_FILE, last)
        except records.DamagedRecord as exc:
            self.fresh(str(exc))
            return
        self.checkpoint = ckpt
        self.note = f"resuming after epoch {ckpt['epoch']}"

    def _verify_done(self, status: str) -> None:
        """A completed (or diverged) job is skipped only while metrics.csv holds
        every epoch its summary reports, one row per seed: a truncated or damaged
        file was skipped for ever, and only the report noticed."""
        why = records.done_records_damaged(self.out, self.summary, self.seeds)
        if why is not None:
            self.summary = None  # not done: trained again, the old records set aside
            self.fresh(f"it {status}, but {why}")

    @property
    def done(self) -> bool:
        return self.summary is not None and self.summary.get("status") in (records.COMPLETED, records.DIVERGED)

    def begin(self, columns: list[str]) -> list[dict]:
        """Act on the decision: set the old records aside and return no rows, or
        rewrite metrics.csv (atomically) to exactly the verified rows and return them."""
        if self.checkpoint is not None and self.columns != columns:
            self.fresh("metrics.csv has other columns than this run writes")
        if self.checkpoint is None:
            aside = records.set_aside(self.out, self.FILES, self.label, self.note)
            if aside is not None:
                log.warning("%s: %s; its records moved to %s, starting afresh", self.out, self.note, aside.name)
            return []
        log.info("%s: %s", self.out, self.note, extra={"job_line": True})
        path = self.out / records.METRICS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        try:
            with records.MetricsWriter(tmp, columns) as writer:
                writer.write(*self.rows)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return self.rows


def run(
    cfg: DictConfig,
    out_dir: str | os.PathLike,
    overrides: Optional[list[str]] = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train one config for ``trainer.replicas`` seeds (``seed``, ``seed+1``, ...)
    and write their records into ``out_dir``.

    An earlier attempt in ``out_dir`` is skipped when done, resumed from its
    checkpoint when interrupted, re-run when failed (see :class:`Resume`).
    Raises ConfigError / DataError before anything is recorded when the config
    cannot run here. Returns the summary (``"skipped": True`` when nothing ran).
    """
    (outcome,) = run_group([(cfg, out_dir, overrides)], show_progress)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def run_group(jobs: list[tuple], show_progress: bool = True, announce: bool = False) -> list:
    """Train several jobs ``(cfg, out_dir, overrides)`` that share tensor shapes
    and code path as one vectorized model (a fused sweep group), each writing
    its own records exactly as :func:`run` would.

    Returns one outcome per job: its summary, or the exception that ended it
    (ConfigError/DataError before anything was recorded, FolderInUse,
    RecordsUnwritable, Interrupted, or the error it failed with). A job that
    diverges or cannot write its records stops; the others go on. An
    interrupt stops them all (recorded as interrupted) and is raised after the
    outcomes are recorded.
    """
    runs = [JobRun(cfg, Path(out), overrides) for cfg, out, overrides in jobs]
    try:
        for job in runs:
            job.open()
        ready = [j for j in runs if j.outcome is None]
        data_cache: dict[str, Dataset] = {}
        for job in ready:
            job.load_data(data_cache)
        # Jobs train in lockstep only from the same epoch (one optimizer step
        # count and schedule): the ones resuming from epoch e train together.
        by_start: dict[int, list[JobRun]] = {}
        for job in [j for j in ready if j.outcome is None]:
            job.check_checkpoint()
            by_start.setdefault(job.start, []).append(job)
        training = [j for group in by_start.values() for j in group]
        if announce and len(training) > 1:  # after the skips: a finished sweep run again said it trained 4 jobs, then "4 skipped"
            seeds = sum(len(j.seeds) for j in training)
            log.info("training %d jobs (%d seeds) as one vectorized model", len(training), seeds)
        for start in sorted(by_start):
            stop = next((j.outcome for j in runs if isinstance(j.outcome, (KeyboardInterrupt, Interrupted))), None)
            if stop is not None:  # interrupted: the jobs not begun stay as they are
                for j in by_start[start]:
                    j.outcome = stop
                continue
            _train_together(by_start[start], show_progress)
    finally:
        for job in runs:
            job.release()
    interrupted = [j.outcome for j in runs if isinstance(j.outcome, (KeyboardInterrupt, Interrupted))]
    if interrupted and len(runs) > 1:
        raise interrupted[0]
    return [j.outcome for j in runs]


def _save_clock() -> float:
    """The clock trainer.save_every_s is measured on (tests replace it)."""
    return time.perf_counter()


class JobRun:
    """One job folder while it trains, alone or in a group: its decision on
    the earlier records, its rows, summary, checkpoint and lock."""

    def __init__(self, cfg: DictConfig, out: Path, overrides):
        self.cfg, self.out, self.overrides = cfg, out, list(overrides or [])
        self.outcome: Any = None  # the summary, or the exception that ended it
        self.lock = None
        self.writer: Optional[records.MetricsWriter] = None
        self.trackers: Optional[JobTrackers] = None  # logger=...: mirrors of the rows; never stop the run
        self.stopped = False  # an exception ended it; its records say so

    # ------------------------------------------------ before training

    def open(self) -> None:
        try:
            validate(self.cfg)
            self.device = resolve_device(self.cfg.device)
            if self.cfg.threads > 0:
                torch.set_num_threads(self.cfg.threads)
            self.out.mkdir(parents=True, exist_ok=True)
            self.lock = records.acquire_lock(self.out)  # raises FolderInUse: nothing in the folder is touched
            self.config = records.flatten(OmegaConf.to_container(self.cfg, resolve=True))
            self.seeds = [int(self.cfg.seed) + i for i in range(self.cfg.trainer.replicas)]
            self.previous = Resume(self.out, self.config, self.seeds)
            if self.previous.done:
                s = self.previous.summary
                changed = userdata.changed_since(s, self.out)  # the sweep's line for the job says it too
                (log.warning if changed else log.info)("skipped: %s already %s (%s)%s", self.out, s["status"],
                                                       records.plural(int(s.get("epochs_completed") or 0), "epoch"), changed,
                                                       extra={"job_line": True})  # "(1 epochs)"
                self.outcome = {**s, "skipped": True}
                self.release()
                return
            records.remove_stale_temp_files(self.out)  # a killed writer's leftovers; we hold the lock
            (self.out / records.ERROR_FILE).unlink(missing_ok=True)  # an earlier failure to start is history now
        except Exception as exc:
            self.outcome = exc
            self.release()

    def load_data(self, cache: dict) -> None:
        key = repr(sorted(records.flatten(OmegaConf.to_container(self.cfg.data, resolve=True)).items())) + str(self.device)
        try:
            if key not in cache:  # data first: mnist1d's generator reseeds the global RNGs
                cache[key] = build_dataset(self.cfg.data, self.device)
            self.data = cache[key]
        except Exception as exc:
            self.outcome = exc
            self.release()

    def check_checkpoint(self) -> None:
        """Whether the verified checkpoint loads into this job's model; decides the start epoch."""
        ckpt = self.previous.checkpoint
        self.start = 1
        if ckpt is None:
            return
        was = ((self.previous.summary or {}).get("data") or {}).get("fingerprint")
        now = (self.data.source or {}).get("fingerprint")
        if was is not None and now is not None and was != now:  # the user's file or loader gives other data now
            self.previous.fresh(f"its epochs were trained on other data (fingerprint {was}, now {now})", "other-data")
            return
        try:
            learner = Learner(self.cfg.model, self.cfg.optim, self.cfg.trainer.epochs, self.data.n_features,
                              self.data.n_classes, self.seeds, self.device)
            learner.load_state_dict(ckpt["learner"])
        except Exception as exc:
            self.previous.fresh(f"checkpoint.pt does not fit this model ({type(exc).__name__})")
            return
        probe = Probe(learner.module) if self.cfg.trainer.diagnostics else None
        if self.previous.columns != _columns(self.data, probe):
            self.previous.fresh("metrics.csv has other columns than this run writes")
            return
        self.start = ckpt["epoch"] + 1

    # ------------------------------------------------ training

    def begin(self, columns: list[str], n_params: int, describe: str) -> None:
        """Act on the resume decision and write the first summary."""
        self.columns = columns
        t = self.cfg.trainer  # read once: an OmegaConf attribute costs ~20 us, and these are read every epoch
        self.epochs, self.diverge_loss = int(t.epochs), float(t.diverge_loss)
        self.save_every_s, self.keep_checkpoint = float(t.save_every_s), bool(t.checkpoint)
        rows = self.previous.begin(columns)  # the decision is made: only now does anything on disk change
        ckpt = self.previous.checkpoint
        seeds = self.seeds
        self.per_seed = {s: {"status": records.RUNNING, "rows": [r for r in rows if r["seed"] == s], "error": None} for s in seeds}
        self.step, self.train_time, self.wall_before = 0, 0.0, 0.0
        if ckpt is not None:
            self.step, self.train_time = ckpt["step"], ckpt["train_time"]
            for s, (status, error) in zip(seeds, ckpt["seed_status"]):
                self.per_seed[s].update(status=status, error=error)
            self.wall_before = float(self.previous.summary.get("wall_time_s", 0.0))
        self.alive = [self.per_seed[s]["status"] == records.RUNNING for s in seeds]
        self.summary: dict[str, Any] = {
            "status": records.RUNNING,
            "config": self.config,
            "overrides": self.overrides,
            "seeds": seeds,
            "epochs_completed": self.start - 1,
            "wall_time_s": self.wall_before,
            "device": str(self.device),
            "threads": torch.get_num_threads(),  # CPU threads torch used (config threads=0 means its default)
            "torch_version": torch.__version__,
            "regbench_version": __version__,
            "error": None,
            "data": self.data.info(),
            "n_params": n_params,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_after_epoch": self.start - 1 if ckpt is not None else None,
            **({"checkpoint_epoch": self.start - 1} if ckpt is not None else {}),
            # command line, git commit, versions, host: of this process; a resume keeps the earlier ones
            "provenance": provenance.collect(self.device),
        }
        if ckpt is not None:
            before = self.previous.summary
            earlier = before.get("earlier_provenance", []) + ([before["provenance"]] if "provenance" in before else [])
            if earlier:
                self.summary["earlier_provenance"] = earlier
        self.update_summary()
        self.t_start = time.perf_counter()
        self.last_save = _save_clock()
        self.fingerprint = records.fingerprint(self.config)
        self.writer = records.MetricsWriter(self.out / records.METRICS_FILE, columns)  # from now on, fail() records
        records.write_summary(self.out, self.summary)
        self.trackers = JobTrackers(self.cfg, self.out, self.config, seeds)
        self.trackers.begin(rows)  # a resumed job's earlier rows, where a tracker does not have them yet
        log.info(
            "%s on %s, seed%s %s: %s, %d parameters; records in %s",
            self.data.name, self.device, "s" if len(seeds) > 1 else "", ",".join(map(str, seeds)), describe, n_params, self.out,
            extra={"job_line": True},
        )

    def update_summary(self) -> None:
        """best/final/status per seed; the top-level best/final are the first seed's."""
        summary, seeds = self.summary, self.seeds
        summary["per_seed"] = {
            str(s): {
                "status": v["status"],
                "epochs_completed": v["rows"][-1]["epoch"] if v["rows"] else 0,
                "best": _best(v["rows"]),
                "final": v["rows"][-1] if v["rows"] else {},
                "error": v["error"],
            }
            for s, v in self.per_seed.items()
        }
        summary["seed_status"] = {s: v["status"] for s, v in summary["per_seed"].items()}
        summary["best"] = summary["per_seed"][str(seeds[0])]["best"]
        summary["final"] = summary["per_seed"][str(seeds[0])]["final"]

    @property
    def active(self) -> bool:
        return self.outcome is None and self.writer is not None and any(self.alive)

    def record_epoch(self, epoch: int, lrs: list[float], sums, seen: int, steps: int, metrics: dict, offset: int, grad_norm: bool) -> None:
        """This epoch's rows for the job's live seeds (``metrics``: replica index -> eval dict; ``lrs``:
        each replica's learning rate during the epoch). The summary is brought
        up to date where it is written (save, close)."""
        live = [k for k in range(len(self.seeds)) if self.alive[k]]
        for k in live:
            s, i = self.seeds[k], offset + k
            row = {
                "seed": s, "epoch": epoch, "step": self.step, "time_s": self.train_time, "lr": lrs[i],
                "train_loss": sums[0][i] / seen, "train_acc": sums[1][i] / seen,
                **({records.GRAD_NORM: sums[2][i] / steps} if grad_norm else {}),
                **metrics[i],
            }
            self.per_seed[s]["rows"].append(row)
            if not all(math.isfinite(row[k2]) for k2 in ("train_loss", "fit_loss")) or max(
                row["train_loss"], row["fit_loss"]
            ) > self.diverge_loss:
                self.alive[k] = False  # masked out of the gradients; the other replicas go on
                self.per_seed[s]["status"] = records.DIVERGED
                self.per_seed[s]["error"] = (
                    f"loss {row['train_loss']:.4g} (train) / {row['fit_loss']:.4g} (fit) at epoch {epoch}: "
                    f"NaN/inf or above trainer.diverge_loss={self.diverge_loss:g}"
                )
        self.write_rows([self.per_seed[self.seeds[k]]["rows"][-1] for k in live])
        self.summary["epochs_completed"] = epoch

    def write_rows(self, rows: list[dict]) -> None:
        """Append rows to metrics.csv, then hand the same dicts to the trackers."""
        self.writer.write(*rows)
        if self.trackers is not None:
            self.trackers.log(rows)

    def save(self, epoch: int, learner: Learner, offset: int) -> None:
        """checkpoint.pt and summary.json, once ``trainer.save_every_s`` has passed
        since the last save, and after the last epoch. (Small models train an
        epoch in milliseconds: saving 25 jobs' files after each of them took a
        fifth of a fused group's time.) After the last epoch only the checkpoint:
        finish() writes the summary next."""
        if not any(self.alive):
            return  # nothing left to resume: finish() records it
        now = _save_clock()
        if epoch < self.epochs and now - self.last_save < self.save_every_s:
            return
        self.last_save = now
        if self.keep_checkpoint:
            seeds = self.seeds
            self.saving = True  # until the summary names the epoch the file holds (fail() reads it from the file)
            save_checkpoint(
                self.out / records.CHECKPOINT_FILE,
                {
                    "epoch": epoch,
                    "fingerprint": self.fingerprint,  # resume loads only this config's state
                    "seeds": seeds,
                    "seed_epochs": [self.per_seed[s]["rows"][-1]["epoch"] for s in seeds],  # rows metrics.csv must hold
                    "step": self.step,
                    "train_time": self.train_time,
                    "learner": learner.state_dict(list(range(offset, offset + len(seeds)))),
                    "seed_status": [(self.per_seed[s]["status"], self.per_seed[s]["error"]) for s in seeds],
                },
            )
            self.summary["checkpoint_epoch"] = epoch  # where a resume starts from (`regbench status` says it)
            self.saving = False
        if epoch < self.epochs:
            self.update_summary()
            self.summary["wall_time_s"] = self.wall_before + time.perf_counter() - self.t_start
            records.write_summary(self.out, self.summary)  # a killed run's summary says how far it got

    # ------------------------------------------------ the end

    def finish(self) -> None:
        """Trained to the end, or every seed diverged."""
        for s in self.seeds:
            if self.per_seed[s]["status"] == records.RUNNING:
                self.per_seed[s]["status"] = records.COMPLETED
        # The job diverged only when every seed did; seed_status says which.
        self.summary["status"] = records.COMPLETED if any(self.alive) else records.DIVERGED
        if self.summary["status"] == records.DIVERGED:
            self.summary["error"] = self.per_seed[self.seeds[0]]["error"]
        self.close(None)

    def fail(self, exc: BaseException) -> None:
        """Record what stopped this job (with the traceback being handled)."""
        self.stopped = True
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            self.summary["status"] = records.INTERRUPTED
            if getattr(self, "saving", False):  # stopped inside a save: before or after the new file took the old one's place
                self.summary["checkpoint_epoch"] = _checkpoint_epoch(self.out / records.CHECKPOINT_FILE,
                                                                     self.summary.get("checkpoint_epoch"))
            kept = self.summary.get("checkpoint_epoch") if (self.out / records.CHECKPOINT_FILE).exists() else None
            self.summary["error"] = ("interrupted (SIGINT/SIGTERM); " + (f"the checkpoint of epoch {kept} is kept" if kept is not None
                                     else "no checkpoint was saved yet (every trainer.save_every_s): a rerun starts over"))
        elif isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            # Not the experiment's fault: resumable, like an interrupt.
            self.summary["status"] = records.INTERRUPTED
            self.summary["error"] = f"stopped: cannot write records ({exc.strerror}); the last checkpoint is kept"
            exc = RecordsUnwritable(self.out, exc)
        else:
            _record_failure(self.summary, self.per_seed)
        self.close(exc)

    def close(self, exc: Optional[BaseException]) -> None:
        self.update_summary()
        self.summary["wall_time_s"] = self.wall_before + time.perf_counter() - self.t_start
        self.summary["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            self.writer.close()
            records.write_summary(self.out, self.summary)
        except OSError as err:
            if exc is None:  # the run itself went well: say the records could not be completed
                exc = RecordsUnwritable(self.out, err)
            # else the exception on its way out already says what happened
        if self.trackers is not None:  # after the records; with the final status
            self.trackers.close(self.summary)
            self.trackers = None
        self.outcome = exc if exc is not None else self.summary
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            records.release_lock(self.lock)
            self.lock = None


# glibc's malloc, set once per training process (env REGBENCH_MALLOC=default
# leaves it as it is, to compare). By default it returns freed memory at the
# top of the heap to the OS and serves blocks over a moving threshold (128 KiB
# and up) from fresh mmaps, so a training step's and an evaluation pass's
# tensors (up to 1 MiB, learner.EVAL_PASS_BYTES) page-faulted in anew, step after
# step: 20-120 thousand minor faults in a 12-job group's 10 epochs, against
# 0.03-3 thousand with these (docs/speed.md). A process keeps its peak heap instead.
MALLOC_SETTINGS = {-3: 32 << 20, -1: 1 << 30, -2: 64 << 20}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD
_malloc_set = False


def keep_freed_memory() -> None:
    """Apply :data:`MALLOC_SETTINGS` where the C library is glibc (elsewhere nothing)."""
    global _malloc_set
    if _malloc_set or os.environ.get("REGBENCH_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return
    _malloc_set = True
    import ctypes

    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return
        libc = ctypes.CDLL("libc.so.6")
        for param, value in MALLOC_SETTINGS.items():
            libc.mallopt(param, value)
    except (OSError, ValueError, AttributeError):
        pass


# threads=0 on a CPU: a training step of fewer multiply-adds than this (all
# replicas, the batch) runs on one thread. There a second thread gained 3-23%
# (the default MLP on MNIST-1D, 1.9 million a step: 3%; README "Threads"), and
# two threads beside any other busy process took 4-27x longer: OpenMP's threads
# spin-wait for each other, one of them waiting for a core that is not free.
SMALL_STEP_MACS = 8_000_000


def _small_on_one_thread(cfg: DictConfig, learner: Learner, device: torch.device) -> Optional[int]:
    """One CPU thread for a small model when ``threads`` is 0; returns the
    thread count to restore afterwards, or None where nothing changed."""
    if int(cfg.threads) != 0 or device.type != "cpu" or torch.get_num_threads() == 1:
        return None
    macs = sum(m.in_features * m.out_features for m in learner.module.modules() if isinstance(m, torch.nn.Linear))
    if macs * int(cfg.trainer.batch_size) * len(learner.seeds) >= SMALL_STEP_MACS:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


def _train_together(jobs: list[JobRun], show_progress: bool) -> None:
    """Train ``jobs`` (same shapes, same start epoch) as one vectorized model."""
    keep_freed_memory()
    cfg, first = jobs[0].cfg, jobs[0]
    device, data = first.device, first.data
    seeds = [s for j in jobs for s in j.seeds]
    offsets, o = [], 0
    for j in jobs:
        offsets.append(o)
        o += len(j.seeds)
    datas = [j.data for j in jobs for _ in j.seeds]
    labels = None
    if any(d.train.y is not data.train.y for d in datas):
        labels = torch.stack([d.train.y for d in datas])  # (R, N): each job's own (noisy) labels
    models = [j.cfg.model for j in jobs for _ in j.seeds]
    optims = [j.cfg.optim for j in jobs for _ in j.seeds]  # lr and weight decay may differ per job
    learner = Learner(models, optims, cfg.trainer.epochs, data.n_features, data.n_classes, seeds, device, labels)
    threads_before = None
    probe = Probe(learner.module) if cfg.trainer.diagnostics else None
    if first.previous.checkpoint is not None:
        learner.load_state_dict([j.previous.checkpoint["learner"] for j in jobs])
    R, start, epochs = len(seeds), first.start, cfg.trainer.epochs
    alive = lambda: [a for j in jobs for a in (j.alive if j.active else [False] * len(j.seeds))]
    desc = progress.label([j.overrides for j in jobs], [j.seeds for j in jobs])  # model.dropout=0.3,seed=2
    bar = None
    previous_handler = _install_sigterm()
    t = cfg.trainer  # read once, not every epoch (OmegaConf attribute access is slow)
    batch_size, grad_clip, eval_batch, with_test = int(t.batch_size), float(t.grad_clip), int(t.eval_batch_size), bool(t.test)
    evaluate = lambda live: dict(zip(live, epoch_metrics(learner, datas, live, eval_batch, with_test, probe)))

    def each(action) -> None:
        """Run a per-job record action; a job whose records fail stops, the others go on."""
        for j, off in zip(jobs, offsets):
            if j.active:
                try:
                    action(j, off)
                except (KeyboardInterrupt, Interrupted):
                    raise
                except Exception as exc:
                    j.fail(exc)

    try:
        threads_before = _small_on_one_thread(cfg, learner, device)  # before begin(): summary.json records the threads used
        for j in jobs:  # inside the try: a job whose summary says running is recorded however it stops
            try:
                j.begin(_columns(j.data, probe), learner.n_params, _describe(learner.module) if len(jobs) == 1 else _describe_job(j))
                if len(jobs) > 1:  # what it shared its clock with (time_s is its share); a resume may regroup it
                    j.summary["fused_group"] = {"jobs": len(jobs), "seeds": R}
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as exc:  # this job's folder failed it (e.g. a full disk); the others go on
                if j.writer is not None:
                    j.fail(exc)
                else:
                    j.outcome = exc
                    j.release()
        # after the jobs' opening lines (what trains, where its records go): a bar drawn before them was split by them
        bar = EpochBar(epochs, start - 1, show_progress and cfg.trainer.progress, desc=desc)
        if start == 1:
            live = [i for i, a in enumerate(alive()) if a]
            metrics = evaluate(live)

            def first_rows(j, off):
                for k, s in enumerate(j.seeds):
                    j.per_seed[s]["rows"].append({"seed": s, "epoch": 0, "step": 0, "time_s": 0.0, "lr": learner.lrs[off + k], **metrics[off + k]})
                j.write_rows([j.per_seed[s]["rows"][-1] for s in j.seeds])

            each(first_rows)
        for epoch in range(start, epochs + 1):
            _stop_if_signalled()
            mask_list = alive()
            if not any(mask_list):
                break
            lrs = learner.lrs
            t0 = time.perf_counter()
            loss_sum, correct, gn_sum, seen, steps = learner.train_epoch(
                data.train, batch_size, grad_clip, torch.tensor(mask_list, device=device),
                grad_norms=probe is not None,
            )
            sums = torch.stack([loss_sum, correct, gn_sum]).tolist()  # the epoch's one sync for training
            dt = time.perf_counter() - t0
            learner.scheduler.step()
            metrics = evaluate([i for i, a in enumerate(mask_list) if a])

            def record(j, off):
                # The group's clock, shared by its seeds: a job is charged its seeds' share
                # (a job alone, or with trainer.replicas, gets all of it).
                j.train_time += dt * len(j.seeds) / R
                j.step += steps
                j.record_epoch(epoch, lrs, sums, seen, steps, metrics, off, probe is not None)

            each(record)
            head_job = next((j for j in jobs if j.outcome is None and j.writer is not None), None)
            if head_job is not None:
                head = next(v["rows"][-1] for v in head_job.per_seed.values() if v["rows"])
                bar.update(val_acc=head["val_acc"], loss=head["train_loss"])  # val_acc first: what a narrow terminal keeps
                n_alive = sum(alive())
                log.info(
                    "epoch %d/%d train_loss=%.4f fit_acc=%.4f val_loss=%.4f val_acc=%.4f%s",
                    epoch, epochs, head["train_loss"], head["fit_acc"], head["val_loss"], head["val_acc"],
                    f" (seed {head['seed']}{' of ' + str(head_job.out.name) if len(jobs) > 1 else ''}; {n_alive}/{R} replicas running)" if R > 1 else "",
                    extra={"epoch_line": True},
                )
            for j in jobs:  # a job whose seeds all diverged is finished now
                if j.outcome is None and j.writer is not None and not any(j.alive):
                    j.finish()
            each(lambda j, off: j.save(epoch, learner, off))
        _stop_if_signalled()
        for j in jobs:
            if j.outcome is None and j.writer is not None:
                j.finish()
    except BaseException as exc:
        for j in jobs:
            if j.outcome is None and j.writer is not None:
                j.fail(exc)
            elif j.outcome is None:  # never began
                j.outcome = exc
        if not isinstance(exc, Exception) and not isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        if threads_before is not None:  # this process's own setting again (the Python API: a notebook's)
            torch.set_num_threads(threads_before)
        if bar is not None:
            bar.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def _describe_job(job: JobRun) -> str:
    """The job's own model, for the log (a group's template may have more Dropouts)."""
    from .model import build_mlp

    return _describe(build_mlp(job.cfg.model, job.data.n_features, job.data.n_classes))


def _record_failure(summary: dict, per_seed: dict) -> None:
    summary["status"] = records.FAILED
    summary["error"] = traceback.format_exc()
    for v in per_seed.values():
        if v["status"] == records.RUNNING:
            v["status"] = records.FAILED


_sigterm_seen = False  # set by the handler: an Interrupted swallowed on its way (see below) still stops the run


def _install_sigterm():
    """SIGTERM ends the run like Ctrl-C: recorded as interrupted. Main thread only.

    The handler raises Interrupted wherever the main thread is. Where that is
    inside code that catches Exception and carries on (logging's emit, which
    hands errors to handleError and goes quiet with raiseExceptions off), the
    exception is lost: so the handler also sets a flag that the epoch loop
    checks (:func:`_stop_if_signalled`)."""
    global _sigterm_seen
    _sigterm_seen = False

    def handler(signum, frame):
        global _sigterm_seen
        _sigterm_seen = True
        signals.note(signum)
        raise Interrupted(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (some launchers): leave signals alone
        return None


def _stop_if_signalled() -> None:
    if _sigterm_seen:
        raise Interrupted("signal 15 (after a handler swallowed the first raise)")
    if signals.signalled():  # Ctrl-C in the regbench process, its KeyboardInterrupt swallowed on the way
        raise Interrupted("signal 2 (after a handler swallowed the first raise)")


def _describe(model: torch.nn.Module) -> str:
    """e.g. ``40-[linear,bn,relu,dropout(0.3)]x100-...-10``, for the log."""
    parts = []
    for name, block in model.named_children():
        if name == "head":
            parts.append(f"head {block.in_features}->{block.out_features}")
        elif isinstance(block, torch.nn.Dropout):
            parts.append(f"input dropout({block.p})")
        else:
            inner = [
                f"dropout({m.p})" if isinstance(m, torch.nn.Dropout) else
                f"linear {m.in_features}->{m.out_features}" if isinstance(m, torch.nn.Linear) else
                "bn" if isinstance(m, torch.nn.BatchNorm1d) else type(m).__name__.lower()
                for m in block
            ]
            parts.append("[" + ", ".join(inner) + "]")
    return " ".join(parts)


# ---------------------------------------------------------------- Hydra task


def _threads_for_parallel_jobs(hc) -> int:
    """CPU threads per job so that jobs x threads never exceed the cores."""
    cores = os.cpu_count() or 1
    n_jobs = int(OmegaConf.select(hc, "launcher.n_jobs", default=1) or 1)
    if n_jobs < 0:  # joblib: -1 = all cores, -2 = all but one, ...
        n_jobs = cores + 1 + n_jobs
    return max(1, cores // max(1, n_jobs))


def main(cfg: DictConfig) -> Optional[float]:
    """The ``regbench train`` task: one job of a run or a sweep.

    In a sweep, a job that fails is recorded and the sweep goes on; the
    closing count (regbench.sweep) names it and sets the exit code.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    out_dir = hc.runtime.output_dir
    multirun = hc.mode == RunMode.MULTIRUN
    launcher = hc.runtime.choices.get("hydra/launcher", "basic")
    if multirun and launcher == "joblib":
        signals.watch_parent()  # a worker that is told to stop, or loses its parent, stops rather than trains on
    parallel = multirun and launcher != "basic"
    progress.epoch_lines_on_console = not parallel
    # A log handler that cannot write (train.log on a full disk) stays quiet
    # instead of printing a traceback per line; the error that matters is ours.
    logging.raiseExceptions = False
    if launcher == "joblib" and cfg.threads == 0:
        torch.set_num_threads(_threads_for_parallel_jobs(hc))
    try:
        outcome = run(cfg, out_dir, overrides=list(hc.overrides.task), show_progress=not parallel)
    except Exception as exc:
        outcome = exc
    except KeyboardInterrupt as exc:
        outcome = exc
    return job_result(outcome, cfg, out_dir, list(hc.overrides.task), multirun, rerun_command(hc, out_dir))


def rerun_command(hc, out_dir: str) -> str:
    """How to run the job in ``out_dir`` again (:func:`records.rerun_command`),
    from its Hydra config: a single run's folder named by the clock
    (``hydra.run.dir`` holds ``${now:...}``) needs naming."""
    from hydra.types import RunMode

    try:
        raw = "" if hc.mode == RunMode.MULTIRUN else str(OmegaConf.to_container(hc.run, resolve=False).get("dir", ""))
    except Exception:  # noqa: BLE001 - an odd hydra config: say the plain thing
        raw = ""
    return records.rerun_command(out_dir, "${now:" in raw)


def run_fused_group(jobs: list[tuple], launcher: str = "fused") -> list[Optional[float]]:
    """The fused launcher's task: ``jobs`` ((cfg, out_dir, overrides), one per
    Hydra job of the group) trained as one vectorized model; each outcome is
    handled as :func:`main` handles a job's. Returns each job's objective."""
    progress.epoch_lines_on_console = False
    progress.job_lines_on_console = False  # the launcher says one line per finished job
    logging.raiseExceptions = False
    try:
        outcomes = run_group(jobs, show_progress=False, announce=True)
    except (KeyboardInterrupt, Interrupted):
        signals.interrupted(str(jobs[0][1]))  # every job of the group recorded itself; exits 130
        raise
    return [job_result(o, cfg, out, overrides, True) for o, (cfg, out, overrides) in zip(outcomes, jobs)]


UNSTARTED = {".hydra", "train.log", records.LOCK_FILE, records.EXCL_LOCK_FILE}  # what a run refused at its data leaves


def _discard_unstarted(out_dir) -> None:
    """A single run refused before training (its data could not be loaded or
    downloaded, which preflight cannot know without loading it): take away
    what Hydra and the run wrote, so that the refusal leaves no run folder
    behind, as preflight's do. Only a folder that Hydra made for this run
    (regbench.cli notes it) and that holds nothing else."""
    import shutil

    from .cli import NEW_RUN_DIR_ENV, STAMPED

    folder = Path(out_dir)
    made = os.environ.get(NEW_RUN_DIR_ENV)  # regbench train found no folder there before Hydra made it
    if made is None or (made != STAMPED and made != os.path.abspath(folder)) or records.folder_in_use(folder):
        return  # a folder that was there (the user's own, or the current one): only what it holds is known
    try:
        names = {p.name for p in folder.iterdir()}
        if not names <= UNSTARTED or (folder / "train.log").is_dir():
            return
        shutil.rmtree(folder / ".hydra", ignore_errors=True)
        for name in names - {".hydra"}:
            (folder / name).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:  # read-only, or someone else's file appeared: leave it
        pass


def job_result(outcome, cfg: DictConfig, out_dir: str, overrides: list[str], multirun: bool,
               rerun: str = "the same command") -> Optional[float]:
    """What a job's outcome (its summary, or the exception that ended it) means
    for the user: alone, a failure is an error message and an exit code; in a
    sweep, one line in the log, and the sweep goes on. ``rerun``: how to run
    the job again in its folder (:func:`rerun_command`). Returns the objective."""
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        summary = outcome
    except (ConfigError, DataError) as exc:
        if not multirun:
            print(f"regbench train: error: {exc}", file=sys.stderr)
            _discard_unstarted(out_dir)
            sys.exit(2)
        log.error("failed before training: %s", exc)
        seeds = [int(cfg.seed) + i for i in range(max(1, cfg.trainer.replicas))]
        failure = {
            "status": records.FAILED,
            "config": records.flatten(OmegaConf.to_container(cfg, resolve=True)),
            "overrides": list(overrides),
            "seeds": seeds,
            "seed_status": {str(s): records.FAILED for s in seeds},
            "epochs_completed": 0,
            "error": str(exc),
        }
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        # Never overwrite earlier records: beside them, the error goes to its own
        # file, which the sweep's closing count reads.
        if (Path(out_dir) / records.SUMMARY_FILE).exists():
            records.write_json_atomic(Path(out_dir) / records.ERROR_FILE, failure)
        else:
            records.write_summary(out_dir, failure)
        return None
    except records.FolderInUse as exc:  # its owner is still training there: write nothing into it
        if not multirun:
            print(f"regbench train: error: {exc}", file=sys.stderr)
            sys.exit(2)
        log.error("not started: %s", exc)
        return None
    except (KeyboardInterrupt, Interrupted):
        signals.interrupted(out_dir, rerun)  # exits 130; safe on a closed pipe; a worker exits silently
    except (RecordsUnwritable, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in WRITE_ERRNOS:
            return _failed(exc, out_dir, multirun)
        message = str(exc if isinstance(exc, RecordsUnwritable) else RecordsUnwritable(Path(out_dir), exc))
        if not multirun:
            message = message.replace("run the same command again", f"run {rerun} again")
            print(f"regbench train: error: {message}", file=sys.stderr)
            sys.exit(2)
        log.error("stopped: %s", message)
        return None
    except Exception as exc:
        return _failed(exc, out_dir, multirun)
    if summary.get("skipped"):
        return _objective(summary)
    final, best = summary["final"], summary["best"]
    pct = lambda v: f"{100 * v:.1f}%" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"
    # the value at the epoch the report reads (lowest val_loss), then the last one: it printed the last value
    # next to "best val_loss at epoch N", read as the value there
    seeds = summary.get("seeds") or []
    # trainer.replicas: the values are the first seed's (summary.json's best/final), which the line did not say
    whose = f", of seed {seeds[0]} (of {len(seeds)} seeds; each seed's in summary.json's per_seed)" if len(seeds) > 1 else ""
    log.info(
        "%s after %d epoch%s in %.1f s: val_acc %s at epoch %s, the epoch of lowest val_loss (%s at the last)%s; records in %s",
        summary["status"], summary["epochs_completed"], "" if summary["epochs_completed"] == 1 else "s", summary["wall_time_s"],
        pct(best.get("val_acc")), best.get("epoch"), pct(final.get("val_acc")), whose, out_dir,
        extra={"job_line": True},
    )
    return _objective(summary)


def _failed(exc: Exception, out_dir: str, multirun: bool) -> None:
    """A job that raised: alone, the traceback is the message; in a sweep, one
    line, and the sweep goes on (its closing count names the job)."""
    if not multirun:
        raise exc
    log.error("failed: %s: %s (traceback in %s)", type(exc).__name__, exc, Path(out_dir) / records.SUMMARY_FILE)
    return None


def _objective(summary: dict) -> float:
    """For Hydra's sweepers (e.g. Optuna): the validation accuracy at the epoch
    of lowest validation loss (``best``, the report's definition too), averaged
    over the job's seeds that completed; NaN when none did."""
    values = [
        v["best"]["val_acc"]
        for v in summary.get("per_seed", {}).values()
        if v.get("status") == records.COMPLETED and "val_acc" in v.get("best", {})
    ]
    return sum(values) / len(values) if values else float("nan")
