"""One run: fit the MLP, evaluate every epoch, checkpoint, record.

``run(cfg, out_dir)`` is the whole life of a run; ``main`` is the Hydra task
that ``regbench train`` calls. The hot loop keeps data on the device, indexes
batches from a seeded permutation and reads back to the host once per epoch.
"""

from __future__ import annotations

import csv
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

from . import __version__, progress, records
from .config import ConfigError, validate
from .data import Dataset, DataError, build_dataset
from .diagnostics import Probe
from .learner import Learner
from .progress import EpochBar

log = logging.getLogger("regbench.train")


class Interrupted(Exception):
    """SIGTERM (or SIGINT) arrived: stop after recording, keep the checkpoint."""


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


def epoch_metrics(learner: Learner, data: Dataset, replicas: list[int], eval_batch: int, with_test: bool, probe=None) -> list[dict]:
    """Evaluate fit (train set), val and test for each replica in ``replicas``;
    one host sync for all of them. Returns one dict of floats per replica."""
    names, values = [], []
    for i in replicas:
        fit_loss, fit_acc, fit_pred = learner.evaluate(data.train, eval_batch, i, probe)
        names.append(["fit_loss", "fit_acc"])
        values += [fit_loss, fit_acc]
        if probe is not None:
            found = probe.results()
            names[-1] += list(found)
            values += list(found.values())
        val_loss, val_acc, _ = learner.evaluate(data.val, eval_batch, i)
        names[-1] += ["val_loss", "val_acc"]
        values += [val_loss, val_acc]
        if with_test and data.test is not None:
            test_loss, test_acc, _ = learner.evaluate(data.test, eval_batch, i)
            names[-1] += ["test_loss", "test_acc"]
            values += [test_loss, test_acc]
        if data.n_corrupted:
            mask = data.corrupted
            names[-1] += [records.NOISY_FIT_ACC, records.NOISY_CLEAN_ACC]
            values += [
                (fit_pred[mask] == data.train.y[mask]).float().mean(),  # memorized the wrong label
                (fit_pred[mask] == data.clean_y[mask]).float().mean(),  # still predicts the true one
            ]
    flat = iter(torch.stack([v.float() for v in values]).tolist())
    out = []
    for keys in names:
        row = {k: next(flat) for k in keys}
        row["gap_loss"] = row["val_loss"] - row["fit_loss"]
        row["gap_acc"] = row["fit_acc"] - row["val_acc"]
        out.append(row)
    return out


# ---------------------------------------------------------------- checkpoint


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


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
    """What an existing job folder holds, decided before any work starts.

    completed / diverged -> skip; interrupted (or ``running`` left by a kill -9)
    with a readable checkpoint -> resume after its epoch; failed, no checkpoint,
    or an unreadable one -> start afresh. A folder holding another config is
    refused.
    """

    def __init__(self, out: Path, config: dict):
        self.out = out
        self.summary: Optional[dict] = None
        self.checkpoint: Optional[dict] = None
        self.note = ""
        try:
            self.summary = records.read_summary(out)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # a corrupt summary: treat the job as not done
            self.note = f"summary.json unreadable ({exc}); starting afresh"
            return
        conflict = records.config_conflict(out, self.summary.get("config", {}), config)
        if conflict:
            raise ConfigError(conflict)
        status = self.summary.get("status")
        if status in (records.INTERRUPTED, records.RUNNING):
            path = out / records.CHECKPOINT_FILE
            if path.exists():
                try:
                    self.checkpoint = torch.load(path, map_location="cpu", weights_only=True)
                    self.note = f"resuming after epoch {self.checkpoint['epoch']}"
                except Exception as exc:
                    self.note = f"checkpoint.pt unreadable ({type(exc).__name__}); starting this job afresh"
            else:
                self.note = "no checkpoint; starting afresh"
        elif status == records.FAILED:
            self.note = "it failed before; running it again"

    @property
    def done(self) -> bool:
        return self.summary is not None and self.summary.get("status") in (records.COMPLETED, records.DIVERGED)

    def kept_rows(self) -> list[dict]:
        """Rows of metrics.csv up to the checkpoint's epoch, as floats; the file is
        rewritten (atomically) to exactly those rows, so no epoch appears twice."""
        path = self.out / records.METRICS_FILE
        if self.checkpoint is None:
            for stale in (path, self.out / records.CHECKPOINT_FILE):
                if stale.exists():
                    stale.replace(stale.with_name(stale.name + ".old"))  # kept, out of the way
            return []
        last = self.checkpoint["epoch"]
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            raw = [r for r in reader if None not in r.values() and r["epoch"] and int(r["epoch"]) <= last]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(raw)
        os.replace(tmp, path)
        ints = ("seed", "epoch", "step")
        return [{k: (int(v) if k in ints else float(v)) if v != "" else None for k, v in r.items()} for r in raw]


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
    validate(cfg)
    device = resolve_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = records.acquire_lock(out)  # raises FolderInUse: nothing in the folder is touched
    try:
        return _run(cfg, out, device, overrides, show_progress)
    finally:
        records.release_lock(lock)


def _run(cfg: DictConfig, out: Path, device, overrides, show_progress: bool) -> dict[str, Any]:
    config = records.flatten(OmegaConf.to_container(cfg, resolve=True))
    previous = Resume(out, config)
    if previous.done:
        log.info("skipped: %s already %s (%d epochs)", out, previous.summary["status"], previous.summary.get("epochs_completed", 0))
        return {**previous.summary, "skipped": True}
    if previous.note:
        log.info("%s: %s", out, previous.note)
    (out / records.ERROR_FILE).unlink(missing_ok=True)  # an earlier failure to start is history now
    # Data first: mnist1d's generator reseeds the global RNGs.
    data = build_dataset(cfg.data, device)
    seeds = [int(cfg.seed) + i for i in range(cfg.trainer.replicas)]
    learner = Learner(cfg.model, cfg.optim, cfg.trainer.epochs, data.n_features, data.n_classes, seeds, device)
    R = len(seeds)

    rows = previous.kept_rows()
    per_seed = {s: {"status": records.RUNNING, "rows": [r for r in rows if r["seed"] == s], "error": None} for s in seeds}
    start, step, train_time, wall_before = 1, 0, 0.0, 0.0
    ckpt = previous.checkpoint
    if ckpt is not None:
        learner.load_state_dict(ckpt["learner"])
        torch.set_rng_state(ckpt["rng_torch"])
        if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        start, step, train_time = ckpt["epoch"] + 1, ckpt["step"], ckpt["train_time"]
        for s, (status, error) in zip(seeds, ckpt["seed_status"]):
            per_seed[s].update(status=status, error=error)
        wall_before = float(previous.summary.get("wall_time_s", 0.0))
    alive = [per_seed[s]["status"] == records.RUNNING for s in seeds]

    summary: dict[str, Any] = {
        "status": records.RUNNING,
        "config": config,
        "overrides": list(overrides or []),
        "seeds": seeds,
        "epochs_completed": start - 1,
        "wall_time_s": wall_before,
        "device": str(device),
        "torch_version": torch.__version__,
        "regbench_version": __version__,
        "error": None,
        "data": data.info(),
        "n_params": learner.n_params,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed_after_epoch": start - 1 if ckpt is not None else None,
    }

    def update_summary() -> None:
        """best/final/status per seed; the top-level best/final are the first seed's."""
        summary["per_seed"] = {
            str(s): {
                "status": v["status"],
                "epochs_completed": v["rows"][-1]["epoch"] if v["rows"] else 0,
                "best": _best(v["rows"]),
                "final": v["rows"][-1] if v["rows"] else {},
                "error": v["error"],
            }
            for s, v in per_seed.items()
        }
        summary["seed_status"] = {s: v["status"] for s, v in summary["per_seed"].items()}
        summary["best"] = summary["per_seed"][str(seeds[0])]["best"]
        summary["final"] = summary["per_seed"][str(seeds[0])]["final"]

    update_summary()
    records.write_summary(out, summary)
    log.info(
        "%s on %s, seed%s %s: %s, %d parameters; records in %s",
        data.name, device, "s" if R > 1 else "", ",".join(map(str, seeds)), _describe(learner.module), learner.n_params, out,
    )

    t_start = time.perf_counter()
    epochs = cfg.trainer.epochs
    bar = EpochBar(epochs, start - 1, show_progress and cfg.trainer.progress, desc=f"seed{'s' if R > 1 else ''} {seeds[0]}{'..' + str(seeds[-1]) if R > 1 else ''}")
    previous_handler = _install_sigterm()
    probe = Probe(learner.module) if cfg.trainer.diagnostics else None
    writer = records.MetricsWriter(out / records.METRICS_FILE, _columns(data, probe))
    evaluate = lambda: epoch_metrics(
        learner, data, [i for i in range(R) if alive[i]], cfg.trainer.eval_batch_size, cfg.trainer.test, probe
    )
    try:
        if start == 1:
            for s, m in zip(seeds, evaluate()):
                per_seed[s]["rows"].append({"seed": s, "epoch": 0, "step": 0, "time_s": 0.0, "lr": learner.lr, **m})
            writer.write(*(per_seed[s]["rows"][-1] for s in seeds))
        for epoch in range(start, epochs + 1):
            lr = learner.lr
            mask = torch.tensor(alive, device=device)
            t0 = time.perf_counter()
            loss_sum, correct, gn_sum, seen, steps = learner.train_epoch(
                data.train, cfg.trainer.batch_size, cfg.trainer.grad_clip, mask, grad_norms=probe is not None
            )
            sums = torch.stack([loss_sum, correct, gn_sum]).tolist()  # the epoch's one sync for training
            train_time += time.perf_counter() - t0
            learner.scheduler.step()
            step += steps
            live = [i for i in range(R) if alive[i]]
            for i, m in zip(live, evaluate()):
                s = seeds[i]
                row = {
                    "seed": s,
                    "epoch": epoch,
                    "step": step,
                    "time_s": train_time,
                    "lr": lr,
                    "train_loss": sums[0][i] / seen,
                    "train_acc": sums[1][i] / seen,
                    **({records.GRAD_NORM: sums[2][i] / steps} if probe is not None else {}),
                    **m,
                }
                per_seed[s]["rows"].append(row)
                if not all(math.isfinite(row[k]) for k in ("train_loss", "fit_loss")) or max(
                    row["train_loss"], row["fit_loss"]
                ) > cfg.trainer.diverge_loss:
                    alive[i] = False  # masked out of the gradients; the other replicas go on
                    per_seed[s]["status"] = records.DIVERGED
                    per_seed[s]["error"] = (
                        f"loss {row['train_loss']:.4g} (train) / {row['fit_loss']:.4g} (fit) at epoch {epoch}: "
                        f"NaN/inf or above trainer.diverge_loss={cfg.trainer.diverge_loss:g}"
                    )
            writer.write(*(per_seed[seeds[i]]["rows"][-1] for i in live))
            head = per_seed[seeds[live[0]]]["rows"][-1]
            bar.update(loss=head["train_loss"], val_acc=head["val_acc"])
            log.info(
                "epoch %d/%d train_loss=%.4f fit_acc=%.4f val_loss=%.4f val_acc=%.4f%s",
                epoch, epochs, head["train_loss"], head["fit_acc"], head["val_loss"], head["val_acc"],
                f" (seed {head['seed']}; {sum(alive)}/{R} replicas running)" if R > 1 else "",
                extra={"epoch_line": True},
            )
            summary["epochs_completed"] = epoch
            update_summary()
            if not any(alive):
                break
            summary["wall_time_s"] = wall_before + time.perf_counter() - t_start
            if cfg.trainer.checkpoint:
                save_checkpoint(
                    out / records.CHECKPOINT_FILE,
                    {
                        "epoch": epoch,
                        "step": step,
                        "train_time": train_time,
                        "learner": learner.state_dict(),
                        "seed_status": [(per_seed[s]["status"], per_seed[s]["error"]) for s in seeds],
                        "rng_torch": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                    },
                )
            records.write_summary(out, summary)  # a killed run's summary says how far it got
        for s in seeds:
            if per_seed[s]["status"] == records.RUNNING:
                per_seed[s]["status"] = records.COMPLETED
        # The job diverged only when every seed did; seed_status says which.
        summary["status"] = records.COMPLETED if any(alive) else records.DIVERGED
        if summary["status"] == records.DIVERGED:
            summary["error"] = per_seed[seeds[0]]["error"]
    except (KeyboardInterrupt, Interrupted):
        summary["status"] = records.INTERRUPTED
        summary["error"] = "interrupted (SIGINT/SIGTERM); the checkpoint of the last completed epoch is kept"
        raise
    except Exception:
        summary["status"] = records.FAILED
        summary["error"] = traceback.format_exc()
        for v in per_seed.values():
            if v["status"] == records.RUNNING:
                v["status"] = records.FAILED
        raise
    finally:
        bar.close()
        writer.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        update_summary()
        summary["wall_time_s"] = wall_before + time.perf_counter() - t_start
        summary["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        records.write_summary(out, summary)
    return summary


def _install_sigterm():
    """SIGTERM ends the run like Ctrl-C: recorded as interrupted. Main thread only."""

    def handler(signum, frame):
        raise Interrupted(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (some launchers): leave signals alone
        return None


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
    parallel = multirun and launcher != "basic"
    progress.epoch_lines_on_console = not parallel
    if launcher == "joblib" and cfg.threads == 0:
        torch.set_num_threads(_threads_for_parallel_jobs(hc))
    try:
        summary = run(cfg, out_dir, overrides=list(hc.overrides.task), show_progress=not parallel)
    except (ConfigError, DataError) as exc:
        if not multirun:
            print(f"regbench train: error: {exc}", file=sys.stderr)
            sys.exit(2)
        log.error("failed before training: %s", exc)
        seeds = [int(cfg.seed) + i for i in range(max(1, cfg.trainer.replicas))]
        failure = {
            "status": records.FAILED,
            "config": records.flatten(OmegaConf.to_container(cfg, resolve=True)),
            "overrides": list(hc.overrides.task),
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
        print(f"regbench train: interrupted; records kept in {out_dir}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not multirun:
            raise
        log.error("failed: %s: %s (traceback in %s)", type(exc).__name__, exc, Path(out_dir) / records.SUMMARY_FILE)
        return None
    if summary.get("skipped"):
        return _objective(summary)
    final = summary["final"]
    log.info(
        "%s after %d epochs in %.1f s: val_acc %.4f (best val_loss at epoch %s); records in %s",
        summary["status"], summary["epochs_completed"], summary["wall_time_s"],
        final.get("val_acc", float("nan")), summary["best"].get("epoch"), out_dir,
    )
    return _objective(summary)


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
