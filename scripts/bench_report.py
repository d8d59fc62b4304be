#!/usr/bin/env python
"""Time `regbench report` on sweep folders, in fresh processes, with its phases.

Each round runs, for every folder (and every code tree given with --tree),
one after another:
  - the command as a user types it: `python -m regbench report SWEEP -o TMP
    --formats png -q` (the benchmark's options): its wall time, and its CPU
    time (user + system, worker processes included: less sensitive to other
    jobs on the machine than the wall time, blind to what runs in parallel);
  - the same command in a process that times its phases from outside (it
    wraps regbench.report.cli's load_study and analyze, and make_figures,
    and changes nothing else): startup (the interpreter), imports
    (regbench.report.cli: pandas, scipy.special, ...), load, analyze,
    plotting imports (matplotlib, Jinja2), or, where the tree overlaps them,
    load and analyze in a forked process while this one does the plotting
    imports, then figures, write (CSV tables, report.html, report.md) and exit.
Rounds are interleaved and the best of each number is kept (noise on a
shared machine only ever adds time); the worst says how noisy it was.

    python scripts/bench_report.py SWEEP [SWEEP ...] [--rounds 5] [--formats png] [--jobs N]
    python scripts/bench_report.py SWEEP --tree /tmp/main-copy --tree .     # compare code trees, same rounds
    python scripts/bench_report.py [--runs 200] [--epochs 100]              # synthetic records (below)

Without SWEEP it writes synthetic records first (regbench.report.synth, the
real record writers: a 10 x 2 dropout x batchnorm grid, --runs / 20 seeds, 2
runs diverged, per-layer diagnostics) and times those; --keep DIR keeps them.
--tree DIR runs the regbench found in DIR (PYTHONPATH=DIR; default: this
checkout), so two checkouts are compared in the same window.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("startup", "imports", "load", "analyze", "plot imports", "load+analyze | plot imports", "figures", "write", "exit")

# Runs in the timed child: the real command (regbench.report.cli.main), with
# load_study, analyze and make_figures wrapped to stamp the clock. matplotlib
# is imported where the command imports it: after analyze, or (a tree with
# analyze_while_importing) while a forked process loads and analyses, whose
# clock is stamped around the two.
CHILD = r"""
import sys, time, json
t_start = time.time()
stamps = {"start": time.perf_counter()}
import regbench.report.cli as cli
stamps["imported"] = time.perf_counter()

def timed(fn, before, after, then=None):
    def wrapper(*args, **kwargs):
        stamps[before] = time.perf_counter()
        out = fn(*args, **kwargs)
        stamps[after] = time.perf_counter()
        if then:
            then()
        return out
    return wrapper

def wrap_figures():
    import regbench.report.figures as figures
    if not hasattr(figures.make_figures, "__wrapped_by_bench__"):
        figures.make_figures = timed(figures.make_figures, "figures_start", "figures_end")
        figures.make_figures.__wrapped_by_bench__ = True

if hasattr(cli, "analyze_while_importing"):
    cli.analyze_while_importing = timed(cli.analyze_while_importing, "overlap_start", "overlap_end", wrap_figures)
else:
    cli.load_study = timed(cli.load_study, "load_start", "load_end")
    cli.analyze = timed(cli.analyze, "analyze_start", "analyze_end", wrap_figures)
code = cli.main(sys.argv[2:])
stamps["done"] = time.perf_counter()
offset = t_start - stamps["start"]  # perf_counter -> wall clock
with open(sys.argv[1], "w") as fh:
    json.dump({"file": cli.__file__, **{k: v + offset for k, v in stamps.items()}}, fh)
sys.exit(code)
"""


def run(cmd: list[str], tree: Path, cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the command and its worker processes)."""
    # cwd: not a checkout, which `python -m`/`-c` would put before PYTHONPATH on sys.path
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, usage.ru_utime + usage.ru_stime


def phases(sweep: Path, out: Path, options: list[str], tree: Path, stamp_file: Path) -> dict[str, float]:
    """Phase times of one instrumented `regbench report` process (seconds)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-c", CHILD, str(stamp_file), str(sweep), "-o", str(out), *options]
    t0 = time.time()
    subprocess.run(cmd, env=env, cwd=stamp_file.parent, check=True, stdout=subprocess.DEVNULL)
    t_end = time.time()
    s = json.loads(stamp_file.read_text())
    if not Path(s["file"]).is_relative_to(tree):
        sys.exit(f"bench_report.py: ran {s['file']}, not the regbench in {tree}")
    s.update(t0=t0, end=t_end)
    spans = {"startup": ("t0", "start"), "imports": ("start", "imported"), "load": ("load_start", "load_end"),
             "analyze": ("analyze_start", "analyze_end"), "plot imports": ("analyze_end", "figures_start"),
             "load+analyze | plot imports": ("overlap_start", "figures_start"),
             "figures": ("figures_start", "figures_end"), "write": ("figures_end", "done"), "exit": ("done", "end"),
             "in phases": ("t0", "end")}
    # A stamp is missing where a tree does that step elsewhere (not through the wrapped functions).
    return {k: s[a] - s[b] if a in s and b in s else math.nan for k, (b, a) in spans.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="*", metavar="SWEEP", help="folders of run records (default: synthetic records)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved repetitions; the best is reported (default: 5)")
    p.add_argument("--formats", default="png", help="as regbench report --formats (default: png)")
    p.add_argument("--jobs", type=int, help="as regbench report --jobs (default: automatic)")
    p.add_argument("--tree", action="append", metavar="DIR", help="code tree to run (repeatable; default: this checkout)")
    p.add_argument("--runs", type=int, default=200, help="synthetic records: total runs (a multiple of 20)")
    p.add_argument("--epochs", type=int, default=100, help="synthetic records: epochs")
    p.add_argument("--keep", metavar="DIR", help="synthetic records: write them here and keep them")
    args = p.parse_args()

    trees = [Path(t).resolve() for t in (args.tree or [ROOT])]
    tmp = Path(tempfile.mkdtemp(prefix="regbench-bench-report-"))
    try:
        sweeps = [Path(s).resolve() for s in args.sweeps]
        if not sweeps:
            sys.path.insert(0, str(ROOT))
            from regbench.report.synth import write_sweep

            seeds = max(1, args.runs // 20)
            sweep = Path(args.keep) / "sweep" if args.keep else tmp / "sweep"
            if not sweep.is_dir():
                write_sweep(sweep, dropouts=[i / 20 for i in range(10)], seeds=range(seeds), epochs=args.epochs,
                            diverged=[(0.45, True, 0), (0.0, False, 1)])
            print(f"synthetic records: {20 * seeds} runs x {args.epochs} epochs in {sweep}")
            sweeps = [sweep]
        options = ["--formats", args.formats, "-q"] + (["--jobs", str(args.jobs)] if args.jobs else [])
        print(f"cpus: {os.cpu_count()}, affinity: {len(os.sched_getaffinity(0))}, load average: "
              f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; options: {' '.join(options)}")
        cases = [(s, t) for s in sweeps for t in trees]
        walls: dict[tuple, list[float]] = {c: [] for c in cases}
        cpus: dict[tuple, list[float]] = {c: [] for c in cases}
        parts: dict[tuple, list[dict[str, float]]] = {c: [] for c in cases}
        for r in range(args.rounds):
            for i, (sweep, tree) in enumerate(cases):
                out = tmp / f"report-{i}"
                cmd = [sys.executable, "-m", "regbench", "report", str(sweep), "-o", str(out), *options]
                wall, cpu = run(cmd, tree, tmp)
                walls[sweep, tree].append(wall)
                cpus[sweep, tree].append(cpu)
                parts[sweep, tree].append(phases(sweep, out, options, tree, tmp / "stamps.json"))
            print(f"round {r + 1}: " + ", ".join(f"{walls[c][-1]:.2f} s" for c in cases), flush=True)
        print(f"best (worst) of {args.rounds} interleaved rounds, seconds:")
        for sweep, tree in cases:
            w = walls[sweep, tree]
            name = f"{sweep}" + (f"  [{tree}]" if len(trees) > 1 else "")
            print(f"{name}\n  {'wall':<29}{min(w):6.2f}  ({max(w):.2f})   regbench report {sweep} {' '.join(options)}")
            c = cpus[sweep, tree]
            print(f"  {'cpu':<29}{min(c):6.2f}  ({max(c):.2f})   user + system, workers included")
            for phase in (*PHASES, "in phases"):
                values = [d[phase] for d in parts[sweep, tree] if not math.isnan(d[phase])]
                print(f"  {phase:<29}{min(values):6.2f}  ({max(values):.2f})" if values else f"  {phase:<29}     –")
        if len(trees) > 1:
            for sweep in sweeps:
                first = min(walls[sweep, trees[0]])
                print(f"{sweep}: " + ", ".join(f"{t}: {min(walls[sweep, t]):.2f} s ({min(walls[sweep, t]) / first:.2f}x)"
                                               for t in trees))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
