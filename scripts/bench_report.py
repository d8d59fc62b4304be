#!/usr/bin/env python
"""Time `regbench report` on synthetic records: 200 runs x 100 epochs by default.

The records are written with the real regbench.records writers into a temp
folder (a 10 x 2 dropout x batchnorm grid, 10 seeds, 2 runs diverged), then
loading, statistics, figures and rendering are timed separately.
Goal: the whole report within 15 s on 2 cores.

    python scripts/bench_report.py [--runs 200] [--epochs 100] [--formats png,svg] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from regbench.report import cli, load, stats
from regbench.report.synth import write_sweep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200, help="total runs (a multiple of 20: 10 dropouts x 2 batchnorm)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--formats", default="png,svg")
    p.add_argument("--keep", metavar="DIR", help="write the records and report here and keep them")
    args = p.parse_args()

    seeds = max(1, args.runs // 20)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="regbench-bench-"))
    try:
        t = time.perf_counter()
        write_sweep(root / "sweep", dropouts=[i / 20 for i in range(10)], seeds=range(seeds), epochs=args.epochs,
                    diverged=[(0.45, True, 0), (0.0, False, 1)])
        print(f"synthesized {20 * seeds} runs x {args.epochs} epochs in {time.perf_counter() - t:.1f} s "
              f"(cpus: {os.cpu_count()}, affinity: {len(os.sched_getaffinity(0))})")

        timings = {}
        t = time.perf_counter()
        study = load.load_study([root / "sweep"])
        timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        a = stats.analyze(study, "val_acc")
        timings["stats"] = time.perf_counter() - t

        t = time.perf_counter()
        from regbench.report.figures import cell_styles, make_figures  # matplotlib import counted here

        x, color, style = cli.roles(study, None, None, None)
        styles = cell_styles(a.cells[study.factors], study.levels, color, style)
        out = root / "report"
        figures = make_figures(a, styles, out / "figures", cli._formats(args.formats), x=x)
        timings["figures"] = time.perf_counter() - t

        t = time.perf_counter()
        from regbench.report.render import write_html, write_markdown

        a.runs.to_csv(out / "runs.csv", index=False)
        study.epochs.to_csv(out / "epochs.csv", index=False)
        a.cells.to_csv(out / "cells.csv")
        write_html(a, figures, out / "report.html", [str(root / "sweep")], [])
        write_markdown(a, figures, out / "report.md", [str(root / "sweep")], [])
        timings["render"] = time.perf_counter() - t

        t = time.perf_counter()
        code = cli.main([str(root / "sweep"), "-o", str(root / "report-cli"), "--formats", args.formats, "-q"])
        timings["cli end to end"] = time.perf_counter() - t
        assert code == 0, code

        print(f"{len(study.runs)} runs, {len(study.epochs)} epoch rows, {len(a.cells)} cells, {len(figures)} figures")
        for step, s in timings.items():
            print(f"  {step:<15} {s:6.2f} s")
        print(f"  {'sum of steps':<15} {sum(v for k, v in timings.items() if k != 'cli end to end'):6.2f} s"
              f"   (goal: < 15 s on 2 cores)")
        print(f"report.html: {(out / 'report.html').stat().st_size / 1e6:.1f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
