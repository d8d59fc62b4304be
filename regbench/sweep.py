"""Sweeps that finish: job folders named from overrides, a manifest that keeps
one sweep per folder, and the closing count of what happened.

Hydra's multirun launches the jobs; regbench adds, through a Hydra callback
(``SweepCallback``, set in conf/config.yaml):

- ``on_multirun_start``: refuse a sweep folder that holds a sweep with another
  base config (``sweep.json``), before any job starts;
- ``on_multirun_end``: one line counting completed / skipped / diverged /
  failed jobs, naming the failed ones; ``regbench train`` then exits non-zero
  only when a job failed.

Each job decides for itself whether to skip, resume or re-run (train.Resume),
so this works with every launcher. This module imports no torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from . import records
from .signals import say

log = logging.getLogger("regbench.sweep")

MANIFEST = "sweep.json"

# Set by on_multirun_end, read by `regbench train` for its exit code.
last_counts: Optional[dict[str, list[str]]] = None
# The exit code of the report that report.at_end=true wrote (None: none written).
report_code: Optional[int] = None


def job_dirname(override_dirname: str) -> str:
    """A job folder name from its overrides (Hydra's ``override_dirname``).

    Stable across re-runs of the same command and independent of job order;
    ``/`` cannot appear in a folder name; very long names keep a readable
    prefix and a hash of the whole.
    """
    name = override_dirname.replace("/", "%2F") or "default"
    if len(name) > 180:
        name = name[:160] + "~" + hashlib.sha1(name.encode()).hexdigest()[:12]
    return name


def register_resolver() -> None:
    OmegaConf.register_new_resolver("regbench_jobdir", job_dirname, replace=True)


def base_config(config: DictConfig) -> dict[str, Any]:
    """The multirun's composed config (sweep values not applied), flat, without
    Hydra's node and runtime knobs: what every job of the sweep shares."""
    tree = OmegaConf.to_container(config, resolve=False)
    tree.pop("hydra", None)
    flat = records.flatten(OmegaConf.to_container(OmegaConf.create(tree), resolve=True))
    return {k: v for k, v in flat.items() if not records.is_runtime_key(k)}


def _config_loader():
    """Hydra's config loader (to list a config group's options, which ``glob()``
    sweeps need): the running app's, else one over regbench's packaged configs."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return GlobalHydra.instance().config_loader()
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    return ConfigLoaderImpl(config_search_path=create_config_search_path("pkg://regbench.conf"))


def expand_jobs(config: DictConfig) -> list[list[str]]:
    """The jobs Hydra's basic sweeper will launch: a list of override lists."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()]
    params += list(config.hydra.overrides.task)
    parsed = OverridesParser.create(config_loader=_config_loader()).parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


JOB_SUBDIR = "${regbench_jobdir:${hydra.job.override_dirname}}"  # conf/config.yaml's hydra.sweep.subdir


def names_job_folders(config: DictConfig) -> bool:
    """Whether job folders follow regbench's naming (``job_folder``); a user's own
    ``hydra.sweep.subdir`` (e.g. ``${hydra.job.num}``) does not."""
    raw = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    return raw == JOB_SUBDIR


@functools.lru_cache(maxsize=1)
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()  # slow to create, reusable


@functools.lru_cache(maxsize=4096)
def _parsed(line: str):
    return _parser().parse_overrides([line])[0]


def parsed_overrides(lines: list[str]) -> list:
    """Hydra's parse of each of a job's override lines (``OverridesParser``,
    without a config loader), each line parsed once per process: a sweep's
    jobs share their lines (the 50-run ablation: 200 lines, 12 different),
    and the ANTLR parser takes about 1 ms a line, run per job by preflight
    and again by the fused launcher. The Override objects are shared: read them, never change them."""
    return [_parsed(line) for line in lines]


def job_folder(config: DictConfig, job_overrides: list[str]) -> str:
    """The folder name Hydra will give a job with these overrides (see conf/config.yaml)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    od = config.hydra.job.config.override_dirname
    parsed = parsed_overrides(list(job_overrides))
    return job_dirname(get_overrides_dirname(parsed, list(od.exclude_keys), od.item_sep, od.kv_sep))


DEAD = "dead"  # summary says running, but no process holds the job's lock
# States after which a sweep has not done its work: `regbench train` exits non-zero.
UNDONE = ("failed", DEAD, records.INTERRUPTED, records.RUNNING, "unreadable", "missing")  # missing: never recorded
LEGEND = {
    DEAD: "stopped without recording why (kill -9, a lost node, a full disk); the same command resumes it from its "
          "checkpoint, or starts it over where none was saved (each line says which)",
    "unreadable": "summary.json is damaged; the same command sets it aside and runs the job afresh",
}


def job_state(job_dir: Path) -> tuple[str, int, Optional[int]]:
    """(state, epochs done, epochs planned) of a job folder; state is a run
    status, ``dead`` for a ``running`` job whose process is gone (its
    run.lock is free), or ``missing`` when nothing was recorded there."""
    try:
        s = records.read_summary(job_dir)
    except FileNotFoundError:
        return "missing", 0, None
    except (OSError, ValueError):
        return "unreadable", 0, None
    state = str(s.get("status", "unknown"))
    if state in (records.COMPLETED, records.DIVERGED) and not records.has_config(s):
        return "unreadable", 0, None  # damaged: the trainer sets it aside and trains afresh, not skips it
    if state == records.RUNNING and records.folder_in_use(job_dir) is None:
        state = DEAD
    config = s.get("config") if isinstance(s.get("config"), dict) else {}
    try:
        done = int(s.get("epochs_completed") or 0)
    except (TypeError, ValueError):
        done = 0
    if state in (records.RUNNING, DEAD):  # its summary is written at checkpoints; metrics.csv every epoch
        done = max(done, _last_epoch(job_dir / records.METRICS_FILE))
    return state, done, config.get("trainer.epochs")


def _last_epoch(path: Path) -> int:
    """The epoch of metrics.csv's last complete row (0 when there is none),
    from the file's head and tail only."""
    try:
        with open(path, "rb") as fh:
            header = fh.readline().decode("utf-8", "replace").strip().split(",")
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode("utf-8", "replace")
        rows = tail.split("\n")[:-1]  # a row cut short by a kill has no newline yet
        return int(rows[-1].split(",")[header.index("epoch")]) if rows and "epoch" in header else 0
    except (OSError, ValueError, IndexError):
        return 0


TRAINS_AGAIN = "the same command trains it again"  # a finished job whose records lack what its summary reports


def resume_note(job_dir: Path, state: str, done: int, single: bool = False) -> str:
    """What the same command does with a job that stopped part-way (interrupted,
    dead: what it keeps of its ``done`` epochs, as its checkpoint says) or a
    finished one whose metrics.csv lacks what its summary reports (trains it
    again); "" where nothing needs saying, or an older record does not say."""
    if state in ("completed", "diverged"):
        try:
            summary = records.read_summary(job_dir)
            seeds = summary.get("seeds") or []
        except (OSError, ValueError):
            return ""
        why = records.done_records_damaged(job_dir, summary, seeds)
        return f"  ({why}: {TRAINS_AGAIN})" if why else ""
    if state not in ("interrupted", DEAD) or done < 1:
        return ""
    if not (job_dir / records.CHECKPOINT_FILE).exists():
        return "  (no checkpoint yet: the same command starts it over)"
    try:
        kept = records.read_summary(job_dir).get("checkpoint_epoch")
    except (OSError, ValueError):
        return ""
    # a single run's clock-named folder: the same command alone would start a new run elsewhere
    by_clock = single and records.run_dir_by_clock(job_dir)
    command = records.rerun_command(job_dir.resolve(), by_clock)
    if isinstance(kept, int) and 0 <= kept < done:
        return f"  (checkpoint at epoch {kept}: {command} resumes from there)"
    if by_clock and isinstance(kept, int) and kept >= 0:  # nothing to train again, but how to resume it needs saying
        return f"  ({command} resumes it)"
    return ""


def manifest_conflict(sweep_dir: Path, base: dict[str, Any]) -> Optional[str]:
    """Why ``sweep_dir`` cannot take a sweep with this base config, or None (reads only)."""
    path = sweep_dir / MANIFEST
    if not path.exists():
        return None
    base = records.json_safe(base)  # inf/nan as they read back from JSON
    try:
        old = json.loads(path.read_text())["base"]
        if not isinstance(old, dict):
            raise TypeError("base is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:  # not written by regbench, or damaged since
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return (f"{path} is damaged ({why}): it records the base config of the sweep in {sweep_dir}, which "
                f"regbench checks before adding jobs to it; if that folder holds only jobs of this command, move "
                f"{MANIFEST} aside and run it again (it is rewritten), else use another hydra.sweep.dir")
    from .config import flat_defaults

    diff = records.config_diff(old, base, flat_defaults())
    if not diff:
        return None
    return (f"{sweep_dir} holds a sweep with another base config ({'; '.join(diff[:3])}"
            f"{'; ...' if len(diff) > 3 else ''}); use another hydra.sweep.dir, or remove that folder")


def check_manifest(sweep_dir: Path, base: dict[str, Any]) -> None:
    """Write ``sweep.json`` on first use; refuse a folder whose sweep differs."""
    refusal = manifest_conflict(sweep_dir, base)
    if refusal:
        raise SweepRefused(refusal)
    if not (sweep_dir / MANIFEST).exists():
        sweep_dir.mkdir(parents=True, exist_ok=True)
        records.write_json_atomic(sweep_dir / MANIFEST, {"schema_version": records.SCHEMA_VERSION, "base": records.json_safe(base)})


class SweepRefused(Exception):
    pass


def overlapping_seeds(config: DictConfig, jobs: list[list[str]]) -> Optional[str]:
    """A job trains seeds seed .. seed+replicas-1. Two jobs of one setting (the
    same overrides apart from the seed, trainer.replicas, which only says how
    seeds are run, and runtime keys) that share a seed would train that run
    twice and count it twice."""
    ignored = {"seed", "trainer.replicas", *records.RUNTIME_KEYS}
    groups: dict[tuple, dict[int, tuple[str, list[str]]]] = {}
    for job in jobs:
        kv = dict(o.lstrip("+").split("=", 1) for o in job if "=" in o)
        seed = int(kv.get("seed", config.seed))
        replicas = int(kv.get("trainer.replicas", config.trainer.replicas))
        setting = tuple(sorted((k, same_value(v)) for k, v in kv.items() if k not in ignored and not records.is_runtime_key(k)))
        owner = groups.setdefault(setting, {})
        name = ",".join(o for o in job if o.lstrip("+").split("=", 1)[0] in ("seed", "trainer.replicas")) or "the defaults"
        for s in range(seed, seed + replicas):
            if s in owner:
                first_name, first = owner[s]
                if first_name != name:
                    return (
                        f"seed {s} would be trained twice in one setting (by the jobs {first_name} and {name}); "
                        "sweep seeds that do not overlap: with trainer.replicas=R, step them by R (seed=0,R,2R,...)"
                    )
                if first == list(job):
                    return f"the job {job_name(job) or '(no overrides)'} is listed twice (a value given twice); give each value once"
                a, b = (",".join(o for o in j if o not in other) for j, other in ((first, job), (job, first)))
                keys = {o.lstrip("+~").split("=", 1)[0] for o in [*first, *job] if o not in first or o not in job}
                if all(records.is_runtime_key(k) for k in keys):  # threads=1,2 in folders of their own (${hydra.job.num})
                    return (f"jobs {a} and {b} differ only in {', '.join(sorted(keys))}, which says how a job runs, not "
                            f"what it computes: seed {s} would be trained twice; run one value per sweep")
                # one value written two ways: 0 and 0.0 (two folders, one run trained twice)
                return (f"jobs {a} and {b} are one setting written two ways: seed {s} would be trained twice; "
                        "give each value once")
            owner[s] = (name, list(job))
    return None


def same_value(text: str) -> str:
    """A value as a setting tells it: numbers by value (0 and 0.0, 2 and 02 are one setting), true/false
    in any case; anything else as typed."""
    if text.lower() in ("true", "false"):
        return text.lower()
    if text.startswith("[") and text.endswith("]"):  # [0,0.2] and [0.0, 0.2]
        return "[" + ",".join(same_value(part.strip()) for part in text[1:-1].split(",")) + "]"
    try:
        return str(int(text.replace("_", "")))  # exact: big integers stay apart
    except ValueError:
        pass
    try:
        number = float(text.replace("_", ""))
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) and not number.is_integer() else (
        str(int(number)) if math.isfinite(number) else text)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra < 1.1
    Callback = object  # type: ignore


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


PROGRESS_FILE = ".regbench-progress"  # in a joblib sweep's folder: one byte per finished job


def job_name(overrides: list[str], shared: Optional[set] = None) -> str:
    """A job's overrides as typed, comma-joined, without the runtime ones
    (records.is_runtime_key: device, report.at_end, ...): the same for every job
    of a sweep, and not part of its folder's name either. ``shared``: overrides
    every job of the sweep has (``trainer.epochs=8``), left out too: they
    made each line of a 12-job sweep wrap on an 80-column terminal."""
    mine = records.job_overrides(overrides)
    own = [o for o in mine if o not in (shared or ())]
    return ",".join(own or mine)


def shared_overrides(jobs: list) -> set:
    """The overrides every one of ``jobs`` (lists of override strings) has; none for one job."""
    jobs = [list(j) for j in jobs]
    return set.intersection(*(set(j) for j in jobs)) if len(jobs) > 1 else set()


class JobProgress:
    """One line per finished job of a sweep of ``n``:
    ``[7/40] model.dropout=0.3,seed=2 completed in 4.1 s; ETA 1 min 52 s``.
    The state and time come from the job's summary.json.

    ``counter``: a file that counts finished jobs across processes (a joblib
    sweep's jobs end in its workers, each with its own copy of this object):
    each job appends one byte and reads the size."""

    def __init__(self, n: int, counter: Optional[Path] = None):
        self.n, self.count = n, 0
        self.t0 = time.time()
        self.counter = counter
        if counter is not None:
            try:
                counter.parent.mkdir(parents=True, exist_ok=True)
                counter.write_bytes(b"")
            except OSError:
                self.counter = None

    def _count(self, k: int) -> int:
        """Jobs finished so far, these ``k`` included."""
        if self.counter is not None:
            try:
                fd = os.open(self.counter, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, b"." * k)
                    return os.fstat(fd).st_size
                finally:
                    os.close(fd)
            except OSError:
                pass
        return self.count + k

    def _state(self, folder: Optional[str]) -> tuple[str, Optional[float]]:
        if folder is None:
            return "failed", None
        try:  # it failed to start beside earlier records, which it left as they were (train.job_result)
            if os.path.getmtime(Path(folder) / records.ERROR_FILE) >= self.t0:
                return "failed", None
        except OSError:
            pass
        try:
            summary = records.read_summary(Path(folder))
        except Exception:  # none yet: another process may have just taken the folder
            return ("not started: another process is training it" if records.folder_in_use(Path(folder)) else "failed"), None
        state, seconds = str(summary.get("status", "failed")), summary.get("wall_time_s")
        if state == records.RUNNING:  # ended here, so not trained here: "running in 0.0 s" read as ours
            if records.folder_in_use(Path(folder)) is None:
                return "dead (its process ended without recording why)", None
            return "not started: another process is training it", None
        try:
            if state == records.COMPLETED and os.path.getmtime(Path(folder) / records.SUMMARY_FILE) < self.t0:
                from .userdata import changed_since  # numpy: only for a data=file job

                changed = changed_since(summary, Path(folder)) if (summary.get("data") or {}).get("name") == "file" else ""
                return f"skipped (already completed{changed})", None
        except OSError:
            pass
        return state, seconds if isinstance(seconds, (int, float)) else None

    def finished(self, jobs: list[tuple[str, Optional[str]]], left_s: Optional[float] = None) -> list[str]:
        """Lines for jobs that ended together: (overrides as typed, job folder or
        None). ``left_s``: the launcher's own estimate of the seconds left (the
        fused launcher's groups end in batches), else the time per finished job."""
        self.count = self._count(len(jobs))
        first = self.count - len(jobs)
        left = self.n - self.count
        if left_s is None and self.count:
            left_s = (time.time() - self.t0) / self.count * left
        eta = "" if left <= 0 or left_s is None else "; ETA under 1 s" if left_s < 0.5 else f"; ETA {format_duration(left_s)}"
        lines = []
        for k, (name, folder) in enumerate(jobs):
            state, seconds = self._state(folder)
            took = f" in {seconds:.1f} s" if seconds is not None else ""
            lines.append(f"[{first + k + 1}/{self.n}] {name.replace(' ', ',') or '(no overrides)'} {state}{took}{eta}")
        return lines


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global last_counts
        last_counts = None
        self.started = time.time()
        sweep_dir = Path(config.hydra.sweep.dir)
        self.jobs: Optional[list[str]] = None
        self.progress: Optional[JobProgress] = None
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        try:
            if OmegaConf.select(config, "hydra.sweeper._target_", default="").endswith("BasicSweeper"):
                jobs = expand_jobs(config)
                overlap = overlapping_seeds(config, jobs)
                if overlap:
                    raise SweepRefused(overlap)
                if names_job_folders(config):  # else the closing count reads the folders on disk
                    self.jobs = [job_folder(config, job) for job in jobs]
                self.shared = shared_overrides(jobs)
                if launcher.endswith("BasicLauncher"):
                    self.progress = JobProgress(len(jobs))  # jobs end in this process (the fused launcher says its own)
                elif launcher.endswith("JoblibLauncher"):  # jobs end in worker processes: count them in a file
                    self.progress = JobProgress(len(jobs), sweep_dir / PROGRESS_FILE)
            check_manifest(sweep_dir, base_config(config))
        except SweepRefused as exc:
            import sys

            print(f"regbench train: error: {exc}", file=sys.stderr)
            sys.exit(2)
        # the fused launcher says when the report process may import (regbench.report.at_end)
        self.report = _start_report(config, wait=launcher.endswith("FusedLauncher"))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        folder = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
        self.last_job_dir = folder  # a single run's folder, for its report (on_run_end)
        if getattr(self, "progress", None) is None:
            return
        overrides = [o for o in (getattr(job_return, "overrides", None) or [])]
        for line in self.progress.finished([(job_name(overrides, getattr(self, "shared", None)), folder)]):
            log.info(line)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_counts
        sweep_dir = Path(config.hydra.sweep.dir)
        names = self.jobs if self.jobs is not None else sorted(
            str(p.relative_to(sweep_dir.resolve())) for p in records.find_job_dirs(sweep_dir)
        )
        counts: dict[str, list[str]] = {}
        for name in names:
            state = job_state(sweep_dir / name)[0]
            if _written_since(sweep_dir / name / records.ERROR_FILE, self.started):
                state = "failed"  # could not start this time; its earlier records are untouched
            elif state == records.COMPLETED and not _written_since(sweep_dir / name / records.SUMMARY_FILE, self.started):
                state = "skipped"
            counts.setdefault(state, []).append(name)
        last_counts = counts
        pending = getattr(self, "report", None)
        report = pending is not None and not counts.get("interrupted")  # Ctrl-C: no report
        mixed = data_mix(sweep_dir, [n for k in ("completed", "skipped", "diverged") for n in counts.get(k, [])])
        say(format_counts(counts, sweep_dir, report_follows=report, mixed=mixed), sys.stdout)  # `| head` may have closed stdout
        if pending is not None:
            self.report = None
            if report:
                _finish_report(pending, sweep_dir, config)
            else:
                pending.cancel()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.last_job_dir = None
        self.report = _start_report(config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        pending = getattr(self, "report", None)
        if pending is None:
            _next_for_a_run(getattr(self, "last_job_dir", None))
            return
        self.report = None
        folder = getattr(self, "last_job_dir", None)
        if folder is None:  # the job did not start
            pending.cancel()
            return
        try:
            interrupted = records.read_summary(Path(folder)).get("status") == "interrupted"
        except (OSError, ValueError):
            interrupted = False  # no summary: the report says what it finds
        if interrupted:
            pending.cancel()
            return
        _finish_report(pending, Path(folder), config)


def _next_for_a_run(folder: Optional[str]) -> None:
    """A completed (or diverged) single run's last line, as a sweep's: what to
    type next (`next: regbench report PATH`). Nothing where the run did not
    start or end (its own lines say what happened)."""
    if folder is None:
        return
    try:
        status = records.read_summary(Path(folder)).get("status")
    except (OSError, ValueError):
        return
    if status in (records.COMPLETED, records.DIVERGED):
        import shlex

        print(f"next: regbench report {shlex.quote(str(folder))}", flush=True)


def _start_report(config: DictConfig, wait: bool = False):
    """The report process of report.at_end=true (regbench.report.at_end), or
    None; ``wait``: it imports once told to (``at_end.begin_imports``)."""
    global report_code
    report_code = None
    if not OmegaConf.select(config, "report.at_end", default=False):
        return None
    from .report.at_end import PendingReport

    return PendingReport(wait=wait)


def _finish_report(pending, folder: Path, config: DictConfig) -> None:
    """The report of ``folder`` with report.options, from the report process
    (or this one, where it is gone); its exit code in ``report_code``."""
    global report_code
    argv = [str(folder), *[str(o) for o in OmegaConf.select(config, "report.options", default=None) or []]]
    code = pending.write(argv)
    if code is None:  # the report process is gone: write it here
        from .report import cli

        code = cli.main(argv)
    report_code = code


def _written_since(path: Path, started: float) -> bool:
    """Whether this sweep wrote ``path``: a completed job whose summary predates
    the sweep was skipped, not run."""
    try:
        return os.path.getmtime(path) >= started
    except OSError:
        return False


def data_mix(sweep_dir: Path, names: list[str]) -> Optional[str]:
    """Where finished jobs of a sweep trained on different contents of one
    file or loader (it changed between runs of the sweep: the jobs done before
    were skipped, the new ones trained on what it holds now), what that means,
    for the closing lines; else None (a sweep over several files is a
    deliberate mix, which the report takes with --allow-mixed). Its report
    refuses such a mix."""
    seen: dict[str, dict[str, int]] = {}  # file or loader -> fingerprint -> jobs
    for name in names:
        try:
            data = records.read_summary(sweep_dir / name).get("data") or {}
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not data.get("fingerprint"):
            continue  # a built-in set, or an older record: nothing to tell apart by
        source = str(data.get("path") or data.get("loader") or data.get("name"))
        prints = seen.setdefault(source, {})
        prints[data["fingerprint"]] = prints.get(data["fingerprint"], 0) + 1
    changed = {source: prints for source, prints in seen.items() if len(prints) > 1}
    if not changed:
        return None
    what = "; ".join(f"{source}: " + ", ".join(f"{records.plural(n, 'job')} on its contents {fp}" for fp, n in prints.items())
                     for source, prints in changed.items())
    return (f"these jobs trained on different contents of one file or loader ({what}): it changed between runs of "
            f"the sweep, and `regbench report` refuses to mix them; restore the data, or move the jobs trained on "
            f"the old contents out of {shlex.quote(str(sweep_dir))} and run the same command again")


def format_counts(counts: dict[str, list[str]], sweep_dir: Path, report_follows: bool = False,
                  mixed: Optional[str] = None) -> str:
    n = sum(len(v) for v in counts.values())
    order = ["completed", "skipped", "diverged", "failed", DEAD, "interrupted", "running", "missing", "unreadable"]
    parts = [f"{len(counts[k])} {k}" for k in order + sorted(set(counts) - set(order)) if counts.get(k)]
    line = f"sweep {sweep_dir}: {records.plural(n, 'job')}: " + ", ".join(parts)
    for state in ("failed", DEAD):
        if counts.get(state):
            line += f"; {state}: " + " ".join(counts[state])
    # What to do next, on a line of its own.
    undone = sum(len(counts.get(s, [])) for s in UNDONE if s != records.RUNNING)
    running = len(counts.get(records.RUNNING, []))  # at the sweep's end: training in another process (its lock held)
    where = shlex.quote(str(sweep_dir))
    if running:
        line += (f"\nnext: {records.plural(running, 'job')} {'is' if running == 1 else 'are'} training in another "
                 f"process: let it finish (`regbench status {where}` shows each)"
                 + (f", then run the same command again for the other {records.plural(undone, 'unfinished job')}"
                    if undone else ""))
    elif undone:
        line += (f"\nnext: run the same command again to resume or retry the {undone} unfinished job"
                 f"{'s' if undone > 1 else ''}; `regbench status {where}` shows each")
    elif mixed:  # "next: regbench report" would be refused
        line += f"\nnext: {mixed}"
    elif not report_follows:  # report.at_end=true: the report's own lines follow
        line += f"\nnext: regbench report {shlex.quote(str(sweep_dir))}"  # pasted into a shell as it is
    return line
