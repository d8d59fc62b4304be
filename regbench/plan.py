"""``regbench plan`` and ``regbench status``: what a sweep will run, what a
sweep folder holds. Neither trains nor imports torch."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from . import records
from .sweep import (
    LEGEND, TRAINS_AGAIN, base_config, expand_jobs, job_folder, job_state, manifest_conflict, names_job_folders, overlapping_seeds, resume_note,
    shared_overrides,
)


TO_RUN = "to run"  # plan's word for a job with no record yet: status says "missing" (it left none)


DAMAGED = "damaged"  # finished, but its records lack what its summary reports: train runs it again


def table(sweep_dir: Path, names: list[str], plan: bool = False) -> str:
    """One line per job (state, epochs done/planned, folder), a closing count,
    and what the less obvious states mean. ``plan``: a job not recorded yet
    is one train will run ("to run"), not "missing", the word status uses for
    a job whose process died before it wrote anything."""
    rows, counts = [], {}
    common = _shared_parts(names)
    for name in names:
        state, done, planned = job_state(sweep_dir / name)
        if plan and state == "missing":
            state = TO_RUN
        note = resume_note(sweep_dir / name, state, done, single=names == ["."])
        if state in ("completed", "diverged") and note.endswith(f"{TRAINS_AGAIN})"):
            state = DAMAGED  # counted as completed beside a note that it will be trained again
        counts[state] = counts.get(state, 0) + 1
        epochs = f"{done}/{planned}" if planned else "-"
        shown = ",".join(p for p in _parts(name) if p not in common) if common else name
        rows.append((f"  {state:<12}{epochs:>9}  {shown if name != '.' else sweep_dir}", note))
    # a note that many jobs share is said once, under the table, each of them marked [k]: an interrupted
    # 16-job sweep repeated "(no checkpoint yet: the same command starts it over)" 16 times
    shared = [n for n in dict.fromkeys(n for _, n in rows) if n and sum(1 for _, m in rows if m == n) >= 3]
    mark = {n: f"  [{k}]" for k, n in enumerate(shared, 1)}
    lines = [line + mark.get(note, note) for line, note in rows]
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    notes = [f"[{k}] {n.strip().removeprefix('(').removesuffix(')')}" for k, n in enumerate(shared, 1)]
    notes += [f"{state}: {text}" for state, text in LEGEND.items() if state in counts]
    shared = [f"  every job's folder name also has: {','.join(p for p in _parts(names[0]) if p in common)}"] if common else []
    what = "run" if names == ["."] else "sweep"  # a single run's folder is no sweep of one job
    return f"{what} {sweep_dir}: {records.plural(len(names), 'job')} ({tally})\n" + "\n".join(shared + lines + notes)


def _parts(name: str) -> list[str]:
    """A job folder name's overrides: split at its commas outside brackets
    (``model.widths=[100,100],seed=0``)."""
    parts, depth, cur = [], 0, ""
    for ch in name:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _shared_parts(names: list[str]) -> set:
    """The overrides every job folder's name has (``trainer.epochs=8``): said
    once above the table, not on every row (a row wrapped at 80 columns).
    None where a name would be left empty, or for one job."""
    if len(names) < 2 or any("/" in n or n == "." for n in names):
        return set()
    split = [_parts(n) for n in names]
    common = shared_overrides(split)
    return common if all(len(p) > len(common) for p in split) else set()


def plan_main(argv: list[str], checked=None) -> int:
    """``regbench plan [-m] OVERRIDES...``: the jobs ``regbench train -m OVERRIDES`` runs.
    ``checked``: what regbench.preflight composed (base config, jobs), or None."""
    if any(a in ("-h", "--help") for a in argv):
        print("usage: regbench plan [-m] OVERRIDE...\n\nLists the jobs that `regbench train -m OVERRIDE...` "
              "will run, with the state of each in the sweep folder (to run / completed / interrupted / failed ...).")
        return 0
    if checked is None:
        print("regbench plan: error: plan lists the jobs of Hydra's basic sweeper (value lists, range(), glob()); "
              "this command line uses another sweeper or a Hydra flag", file=sys.stderr)
        return 2
    cfg, jobs = checked
    sweep_dir = Path(cfg.hydra.sweep.dir)
    refusal = overlapping_seeds(cfg, jobs) or manifest_conflict(sweep_dir, base_config(cfg))
    if refusal:
        print(f"regbench plan: error: train would refuse this sweep: {refusal}", file=sys.stderr)
        return 2
    if not names_job_folders(cfg):
        print(f"sweep {sweep_dir}: {records.plural(len(jobs), 'job')} (folders named by your hydra.sweep.subdir; "
              "`regbench status` reads them after the run)\n" + "\n".join("  " + ",".join(job) for job in jobs))
        return 0
    print(table(sweep_dir, [job_folder(cfg, job) for job in jobs], plan=True))
    return 0


def status_main(argv: list[str]) -> int:
    from .report.options import OneLineParser  # argparse's errors as one line, as every other refusal

    parser = OneLineParser(prog="regbench status", description="State of every job in a sweep folder.")
    parser.add_argument("sweep_dir", type=Path, help="a folder written by `regbench train -m`")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        what = "a file, not a folder" if args.sweep_dir.exists() else "no such folder"
        print(f"regbench status: error: {args.sweep_dir}: {what}", file=sys.stderr)
        return 2
    found = [str(p.relative_to(args.sweep_dir.resolve())) for p in records.find_job_dirs(args.sweep_dir)]
    multirun = args.sweep_dir / "multirun.yaml"
    names = found
    if multirun.exists():  # Hydra's saved sweep config: also lists the jobs not started yet
        try:
            cfg = OmegaConf.load(multirun)
            planned = [job_folder(cfg, job) for job in expand_jobs(cfg)] if names_job_folders(cfg) else []
            names = planned + sorted(set(found) - set(planned))
        except Exception as exc:  # a sweeper we cannot expand: show what is on disk
            print(f"regbench status: note: cannot expand {multirun} ({type(exc).__name__}); showing jobs on disk")
    if not names:
        print(f"regbench status: error: no jobs under {args.sweep_dir}", file=sys.stderr)
        return 2
    print(table(args.sweep_dir, names))
    return 0
