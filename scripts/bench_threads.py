#!/usr/bin/env python
"""Training seconds of `regbench train` runs on 1 and 2 CPU threads, alone and
two side by side (what two commands typed at once, or any other busy process,
do to a run), in interleaved rounds; the best of the rounds is printed, then
the ratios (README "Threads").

    python scripts/bench_threads.py                 # 3 rounds
    python scripts/bench_threads.py --rounds 5 --only mnist1d

The seconds are each run's own training clock (metrics.csv's last time_s), so
the interpreter's start and torch's import are not in them; side by side, the
slower of the two runs counts.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "mnist1d": ["trainer.epochs=10"],  # the default MLP, 1.9 million multiply-adds a step
    "inputs784": ["data=blobs", "data.n_samples=12000", "data.n_features=784", "data.n_classes=10", "trainer.epochs=3"],
    "wide1024": ["model.widths=[1024,1024]", "trainer.epochs=3"],
}


def regbench() -> list[str]:
    here = Path(__file__).resolve().parent.parent
    exe = here / ".venv" / "bin" / "regbench"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "regbench"]


def seconds(folder: Path) -> float:
    with open(folder / "metrics.csv", newline="") as fh:
        return float(list(csv.DictReader(fh))[-1]["time_s"])


def runs(args: list[str], threads: int, folders: list[Path]) -> float:
    """Train ``len(folders)`` runs at once; the slowest one's training seconds."""
    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
    procs = [subprocess.Popen([*regbench(), "train", *args, f"threads={threads}", f"hydra.run.dir={f}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for f in folders]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"a run failed: regbench train {' '.join(args)} threads={threads}")
    return max(seconds(f) for f in folders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    args = parser.parse_args()
    cases = {k: v for k, v in CASES.items() if not args.only or k in args.only}
    work = Path(tempfile.mkdtemp(prefix="bench_threads_"))
    best: dict[tuple, float] = {}
    print(f"cpus: {os.cpu_count()}; {args.rounds} interleaved rounds; training seconds (best of the rounds)")
    try:
        for _ in range(args.rounds):
            for name, case in cases.items():
                for threads in (1, 2):
                    for mode, n in (("alone", 1), ("side by side", 2)):
                        t = runs(case, threads, [work / f"{name}-{threads}-{k}" for k in range(n)])
                        best[name, mode, threads] = min(t, best.get((name, mode, threads), t))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name in cases:
        a1, a2 = best[name, "alone", 1], best[name, "alone", 2]
        p1, p2 = best[name, "side by side", 1], best[name, "side by side", 2]
        print(f"{name:10s} alone: 1 thread {a1:6.2f} s, 2 threads {a2:6.2f} s (2 threads {a1 / a2:.2f}x as fast); "
              f"side by side: 1 thread {p1:6.2f} s, 2 threads {p2:6.2f} s (2 threads {p2 / p1:.1f}x as slow)")


if __name__ == "__main__":
    main()
