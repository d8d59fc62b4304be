#!/usr/bin/env python
"""Time `regbench report` on synthetic records: 200 runs x 100 epochs by default.

The records are written with the real regbench.records writers into a temp
folder (a 10 x 2 dropout x batchnorm grid, 10 seeds, 2 runs diverged, with
per-layer diagnostics). Each round times the phases in this process (load,
analyze, figures, render: HTML, Markdown and CSV), then the whole command in
a fresh process (imports included), as a user runs it. The machine may be
shared: the best of the rounds is the number to compare, the worst says how
noisy it was. Goal: end to end within 15 s on 2 cores.

    python scripts/bench_report.py [--runs 200] [--epochs 100] [--formats png] [--jobs N] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from regbench.report import cli, load, optimize, stats
from regbench.report.synth import write_sweep

PHASES = ("load", "analyze", "figures", "render", "end to end")


def one_round(sweep: Path, out: Path, formats: str, jobs: int | None) -> tuple[dict[str, float], int]:
    times = {}
    t = time.perf_counter()
    study = load.load_study([sweep])
    times["load"] = time.perf_counter() - t

    t = time.perf_counter()
    search = optimize.is_search(study)
    a = stats.analyze(study, "val_acc", effects=not search)
    times["analyze"] = time.perf_counter() - t

    t = time.perf_counter()
    from regbench.report.figures import cell_styles, make_figures  # matplotlib's import is counted once, here

    x, color, style = cli.roles(study, None, None, None)
    styles = cell_styles(a.cells[study.factors], study.levels, color, style)
    figures = make_figures(a, styles, out / "figures", cli._formats(formats), x=x, jobs=jobs)
    times["figures"] = time.perf_counter() - t

    t = time.perf_counter()
    from regbench.report.render import write_html, write_markdown

    a.runs.to_csv(out / "runs.csv", index=False)
    study.epochs.to_csv(out / "epochs.csv", index=False)
    a.cells.to_csv(out / "cells.csv")
    a.effects.to_csv(out / "effects.csv", index=False)
    write_html(a, figures, out / "report.html", [str(sweep)], [])
    write_markdown(a, figures, out / "report.md", [str(sweep)], [])
    times["render"] = time.perf_counter() - t

    command = [sys.executable, "-m", "regbench.report.cli", str(sweep), "-o", str(out.with_name(out.name + "-cli")),
               "--formats", formats, "-q"] + (["--jobs", str(jobs)] if jobs else [])
    t = time.perf_counter()
    subprocess.run(command, check=True)
    times["end to end"] = time.perf_counter() - t
    return times, len(figures)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200, help="total runs (a multiple of 20: 10 dropouts x 2 batchnorm)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--formats", default="png", help="as regbench report --formats (default: png)")
    p.add_argument("--jobs", type=int, help="as regbench report --jobs (default: automatic)")
    p.add_argument("--rounds", type=int, default=3, help="repetitions; the best is reported (default: 3)")
    p.add_argument("--keep", metavar="DIR", help="write the records and report here and keep them")
    args = p.parse_args()

    seeds = max(1, args.runs // 20)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="regbench-bench-"))
    try:
        t = time.perf_counter()
        sweep = root / "sweep"
        if not sweep.is_dir():
            write_sweep(sweep, dropouts=[i / 20 for i in range(10)], seeds=range(seeds), epochs=args.epochs,
                        diverged=[(0.45, True, 0), (0.0, False, 1)])
        print(f"{20 * seeds} runs x {args.epochs} epochs ready in {time.perf_counter() - t:.1f} s "
              f"(cpus: {os.cpu_count()}, affinity: {len(os.sched_getaffinity(0))}, load average: "
              f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})")
        rounds = []
        for i in range(args.rounds):
            times, n_figures = one_round(sweep, root / "report", args.formats, args.jobs)
            rounds.append(times)
            print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()), flush=True)
        print(f"{n_figures} figures as {args.formats}; best (worst) of {len(rounds)} rounds:")
        for phase in PHASES:
            values = [r[phase] for r in rounds]
            print(f"  {phase:<11} {min(values):6.2f} s  ({max(values):.2f})")
        print(f"  {'phases':<11} {min(sum(r[k] for k in PHASES[:-1]) for r in rounds):6.2f} s  (sum, in-process;"
              " 'end to end' adds the imports of a fresh process)   goal: end to end <= 15 s on 2 cores")
        print(f"report.html: {(root / 'report' / 'report.html').stat().st_size / 1e6:.1f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
