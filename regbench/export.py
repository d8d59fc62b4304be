"""``regbench export PATH... --to tensorboard|mlflow``: existing records into a tracker.

Reads job folders (single runs, sweeps, copied folders: regbench.records.find_job_dirs)
and logs each seed as one tracker run, exactly as ``logger=...`` would have
during training: every metrics.csv column per epoch, the flat config as
hparams/params, the final status, and best (validation values at the epoch
of lowest validation loss, ``best_epoch``) and final values as summary
metrics. Exporting again adds nothing twice: an MLflow run (found by its
``records`` and ``seed`` tags) gets only the epochs it lacks, and is left
alone where it has them all and its status; a TensorBoard
seed folder gets the epochs its event files lack and the summary as it is now
(after an export that was cut short, or one made before the run ended), and is
left as it is where it holds them. With ``-o DIR`` a TensorBoard job folder
names the records it was exported from (EXPORTED_FROM): a job whose folder name
is taken by another job's export (same name, another place) goes to a folder of
its own, ``<job>-2``, ``<job>-3``..., never into the other's curves.

Imports no torch at import time (``--help``); the TensorBoard writer is torch's.
"""

from __future__ import annotations

import argparse
import csv
import glob
import math
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import yaml

from . import records

TARGETS = ("tensorboard", "mlflow")

DESCRIPTION = """Put existing run records (job folders or sweep folders) into an experiment tracker:
one tracker run per seed, every metrics.csv column per epoch (step = epoch), the flat
config as hparams/params, the status, and best (at the epoch of lowest validation loss:
best_val_acc, best_epoch, ...) and final values as summary metrics."""

EPILOG = """examples:
  regbench export outputs/sweeps/dropout_vs_bn --to tensorboard -o tb/ && tensorboard --logdir tb/
  regbench export outputs/sweeps/dropout_vs_bn --to mlflow --tracking-uri file:///abs/path/mlruns
needs: pip install 'regbench[tensorboard]' or 'regbench[mlflow]'"""


class ExportError(Exception):
    pass


EXPORTED_FROM = "exported_from.txt"  # in DIR/<sweep>/<job>/ (-o DIR): the job folder's absolute path


def _exported_from(folder: Path) -> Optional[str]:
    """The records a TensorBoard export folder was made from: None where it has
    no marker, "" where the marker cannot be read (taken as another job's)."""
    marker = folder / EXPORTED_FROM
    if not marker.exists():
        return None
    try:
        return marker.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def tensorboard_folder(base: Path, job: Path) -> Path:
    """The folder under -o DIR that ``job`` is exported into: the one of ``base``
    (DIR/<sweep>/<job>) and ``base-N`` (N = 2, 3...) that names it, else ``base`` where it
    is new or names no records, else the first free ``base-N``. Two jobs whose folders
    share a name (x1/same, x3/same) were merged into one TensorBoard run: the second
    one's epochs added to the first's curves, or skipped as "already exported"."""
    me = str(job.resolve())
    taken = set()
    for other in base.parent.glob(f"{glob.escape(base.name)}-*"):
        n = other.name[len(base.name) + 1:]
        if n.isdigit() and int(n) >= 2 and str(int(n)) == n:
            if _exported_from(other) == me:
                return other
            taken.add(int(n))
    # No marker: made by a regbench from before markers (or by logger.tensorboard.save_dir
    # pointed here), most likely from this job: taken as its own, as before, so that an export
    # cut short is still completed, and a folder exported before is not exported a second time.
    if not base.exists() or _exported_from(base) in (None, me):
        return base
    n = 2
    while n in taken or base.with_name(f"{base.name}-{n}").exists():
        n += 1
    return base.with_name(f"{base.name}-{n}")


def _claim(folder: Path, job: Path) -> None:
    """Name the job in its export folder before anything else is written there (an
    export cut short is then still known as this job's)."""
    if _exported_from(folder) is None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EXPORTED_FROM).write_text(str(job.resolve()) + "\n", encoding="utf-8")


def _number(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_rows(job: Path) -> list[dict[str, Any]]:
    """metrics.csv's complete rows, as numbers (a cut last line is left out)."""
    path = job / records.METRICS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # a kill cut the last row
    rows = []
    for row in csv.DictReader(lines):
        parsed = {k: _number(v) for k, v in row.items() if k is not None}
        if isinstance(parsed.get("seed"), int) and isinstance(parsed.get("epoch"), int):
            rows.append(parsed)
    return rows


def _best(rows: list[dict]) -> dict[str, Any]:
    """regbench's best (as regbench.train._best writes it into summary.json):
    the row of lowest finite validation loss, the earliest on ties. Used only
    for records without a per-seed summary (a job killed before its first)."""
    finite = [r for r in rows if isinstance(r.get("val_loss"), float) and math.isfinite(r["val_loss"])]
    if not finite:
        return {}
    best = min(finite, key=lambda r: r["val_loss"])
    keys = ("epoch", "val_loss", "val_acc", "fit_loss", "fit_acc", "test_loss", "test_acc", "gap_loss", "gap_acc")
    return {k: best[k] for k in keys if best.get(k) is not None}


def load_job(job: Path) -> tuple[dict, list[int], list[dict], dict]:
    """(flat config, seeds, rows, summary with per_seed) of a job folder. A
    summary.json that is there but cannot be read is an ExportError (the job is
    skipped, named): exported, its status read "unknown" and MLflow's FINISHED."""
    try:
        summary = records.read_summary(job)
    except FileNotFoundError:
        summary = {}  # killed before its first summary: its rows are all there is
    except (OSError, ValueError) as exc:
        raise ExportError(f"{records.SUMMARY_FILE} unreadable: {type(exc).__name__}: {str(exc)[:120]}") from None
    config = summary.get("config")
    if not isinstance(config, dict):
        try:
            config = records.flatten(yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) or {})
        except (OSError, yaml.YAMLError):
            config = {}
    try:
        rows = read_rows(job)
    except (OSError, ValueError, csv.Error) as exc:  # not text, not a table: as unreadable as a bad summary.json
        raise ExportError(f"{records.METRICS_FILE} unreadable: {type(exc).__name__}: {str(exc)[:120]}") from None
    seeds = sorted({r["seed"] for r in rows} | {int(s) for s in summary.get("seeds") or []})
    per_seed = dict(summary.get("per_seed") or {})
    for s in seeds:
        mine = [r for r in rows if r["seed"] == s]
        entry = per_seed.get(str(s)) or {}
        per_seed[str(s)] = {
            "status": entry.get("status") or summary.get("status") or "unknown",
            "epochs_completed": entry.get("epochs_completed", mine[-1]["epoch"] if mine else 0),
            "best": entry.get("best") or _best(mine),
            "final": entry.get("final") or (mine[-1] if mine else {}),
        }
    return config, seeds, rows, {**summary, "per_seed": per_seed}


def _nothing_in(job: Path) -> str:
    """Why a job that could be read has nothing to export (no seed, no epoch)."""
    rows = "metrics.csv has no complete row" if (job / records.METRICS_FILE).exists() else "no metrics.csv"
    seeds = f"{records.SUMMARY_FILE} names no seeds" if (job / records.SUMMARY_FILE).exists() else f"no {records.SUMMARY_FILE}"
    return f"nothing recorded: {rows} and {seeds}"


def _read(jobs: list[tuple[Path, Path]], paths: list[str]) -> dict[Path, Any]:
    """The jobs up to the first one that can be exported: job -> load_job's answer, or
    -> why it is skipped. Where none can (every one unreadable or empty), ExportError: one
    line naming each job and why, before anything is written (an MLflow store, a folder
    under -o), as `regbench report` refuses the same folders. It printed "exported 0
    runs of 0 jobs" and exited 0, as if the export were done."""
    read: dict[Path, Any] = {}
    for _, job in jobs:
        try:
            read[job] = got = load_job(job)
        except ExportError as exc:  # what regbench report and status call unreadable
            read[job] = str(exc)
            continue
        if got[1]:  # seeds: something to export
            return read
        read[job] = _nothing_in(job)
    why = [f"{job} ({reason})" for job, reason in read.items()]
    raise ExportError(f"nothing to export under {', '.join(paths)} (nothing written): "
                      + ("its run record skipped: " if len(why) == 1 else f"all {len(why)} run records skipped: ")
                      + "; ".join(why[:3]) + ("; ..." if len(why) > 3 else "")
                      + "; a job exports from a readable summary.json naming its seeds, or from metrics.csv rows")


def _jobs(paths: list[str]) -> list[tuple[Path, Path]]:
    """(root given, job folder) for every job under the paths, each job once
    (`export s s` exported it twice, to MLflow and as two TensorBoard folders)."""
    out = []
    for p in paths:
        root = Path(p).expanduser()
        if not root.exists():
            raise ExportError(f"{p}: no such folder")
        if not root.is_dir():
            raise ExportError(f"{p}: a file, not a folder; give job folders or sweep folders")
        out += [(root.resolve(), job) for job in records.find_job_dirs(root)]
    seen: set = set()
    return [(root, job) for root, job in out if not (job.resolve() in seen or seen.add(job.resolve()))]  # each job once


def export(paths: list[str], to: str, output: Optional[str] = None, tracking_uri: Optional[str] = None,
           experiment: Optional[str] = None) -> str:
    """Export the records under ``paths``; returns the closing line (and, where jobs went to
    TensorBoard folders of their own, a line naming them). Raises ExportError (one line)."""
    from .trackers import MlflowTracker, TensorBoardTracker, TrackerError, mlflow_client, mlflow_uri

    if to not in TARGETS:
        raise ExportError(f"--to {to!r} is not allowed: one of {', '.join(TARGETS)}")
    jobs = _jobs(paths)
    if not jobs:
        raise ExportError(f"no run records under {', '.join(paths)} (a job folder holds summary.json, or .hydra/config.yaml and metrics.csv)")
    runs, skipped, own = 0, [], []  # own: (job, folder, the folder taken) exported to a folder of its own
    training = []  # jobs exported while still training: their epochs so far
    try:
        read = _read(jobs, paths)  # nothing exportable: one line, nothing written
        if to == "mlflow":
            mlflow_client(tracking_uri)  # the package and the store, checked before the first job
        else:
            try:
                import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)
            except ImportError as exc:
                raise TrackerError(f"the tensorboard package is not installed ({exc}): pip install 'regbench[tensorboard]'") from None
        for root, job in jobs:
            try:
                got = read.pop(job) if job in read else load_job(job)  # the ones _read read, once
            except ExportError as exc:  # what regbench report and status call unreadable
                got = str(exc)
            if not isinstance(got, str) and not got[1]:
                got = _nothing_in(job)
            if isinstance(got, str):
                skipped.append(f"{job} ({got})")
                continue
            config, seeds, rows, summary = got
            if to == "tensorboard":
                # DIR/<sweep>/<job>/seed=<s> (a job given itself: DIR/<job>/seed=<s>), or beside the records
                rel = Path(root.name) / job.relative_to(root) if job != root else Path(job.name)
                tb_root = Path(output).expanduser() / rel if output else job / "tensorboard"
                if not output and records.folder_in_use(job):  # its own logger=tensorboard may write there now
                    skipped.append(f"{job} (still training: export it when it ends, or with -o DIR)")
                    continue
                if output:  # beside the records (no -o) the folder is the job's own: no marker
                    base, tb_root = tb_root, tensorboard_folder(tb_root, job)
                    _claim(tb_root, job)
                    if tb_root != base:
                        own.append((job, tb_root, base))
                tracker = TensorBoardTracker(None, job, config, seeds, root=tb_root)
                where = str(tb_root)
            else:
                spec = SimpleNamespace(tracking_uri=tracking_uri)
                tracker = MlflowTracker(spec, job, config, seeds, experiment=experiment or root.name)
                where = f"experiment {experiment or root.name}"
            written = tracker.export(rows, summary)
            if not written:
                skipped.append(f"{job} (already exported to {where})")
                own = [o for o in own if o[0] != job]  # its own folder is named there
            runs += len(written)
            if written and records.folder_in_use(job):
                training.append(job)
    except TrackerError as exc:
        raise ExportError(str(exc)) from None
    except ExportError:
        raise
    except Exception as exc:  # the store refused (unwritable, server down): one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"cannot export to {to}: {type(exc).__name__}: {first}") from None
    where = (f"tensorboard --logdir {shlex.quote(output) if output else ' '.join(map(shlex.quote, paths))}" if to == "tensorboard"
             else f"tracking URI {mlflow_uri(tracking_uri)}")
    line = f"exported {records.plural(runs, 'run')} of {records.plural(len(jobs) - len(skipped), 'job')} to {to} ({where})"
    if skipped:
        line += f"; skipped {len(skipped)}: " + "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
    if training:  # a partial run in the tracker, said so: the same command adds the rest once they end
        one = len(training) == 1
        line += (f"; {records.plural(len(training), 'job')} still training, exported up to "
                 f"{'its' if one else 'their'} latest epoch ({', '.join(str(j) for j in training[:3])}"
                 f"{', ...' if len(training) > 3 else ''}): the same command adds the rest once "
                 f"{'it ends' if one else 'they end'}")
    if len(own) == 1:
        job, folder, base = own[0]
        line += f"\n{job} exported to {folder}: {base} holds another job's export"
    elif own:
        line += (f"\n{len(own)} jobs exported to folders of their own (their folder names hold other jobs' exports): "
                 + "; ".join(f"{job} to {folder}" for job, folder, _ in own[:3]) + ("; ..." if len(own) > 3 else ""))
    return line


def export_main(argv: list[str]) -> int:
    from .report.options import OneLineParser  # argparse's errors as one line, as every other refusal

    parser = OneLineParser(prog="regbench export", description=DESCRIPTION, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="job folders or sweep folders (searched for records)")
    parser.add_argument("--to", required=True, metavar="TRACKER", help="tensorboard or mlflow")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="tensorboard: write the event files under DIR/<sweep>/<job>/seed=<s> (default: <job>/tensorboard/seed=<s>)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="mlflow: the tracking URI (default: the file store outputs/mlruns under the current folder)")
    parser.add_argument("--experiment", metavar="NAME", help="mlflow: the experiment (default: the folder name of each PATH)")
    args = parser.parse_args(argv)
    if args.output and args.to == "mlflow":
        print("regbench export: error: -o is for --to tensorboard; use --tracking-uri with mlflow", file=sys.stderr)
        return 2
    if args.tracking_uri and args.to == "tensorboard":
        print("regbench export: error: --tracking-uri is for --to mlflow; use -o DIR with tensorboard", file=sys.stderr)
        return 2
    if args.output:  # a file, or a place no folder can be made (/proc/x): one line, not NotADirectoryError's traceback
        from .preflight import cannot_make

        why = cannot_make(Path(args.output))
        if why:
            print(f"regbench export: error: -o {args.output}: {why}; give a folder for the event files", file=sys.stderr)
            return 2
    try:
        print(export(args.paths, args.to, args.output, args.tracking_uri, args.experiment))
    except ExportError as exc:
        print(f"regbench export: error: {exc}", file=sys.stderr)
        return 2
    return 0
