"""Startup, measured against `python -c "import torch"` in the same rounds.

Each round runs, one after another, in fresh processes: `import torch`; a
1-epoch default run (`regbench train trainer.epochs=1`, MNIST-1D cached);
`regbench train --cfg job`; `regbench --help`. Rounds are interleaved and the
best of each is kept (noise on a shared machine only ever adds time).
Prints the best wall times and the targets of issue 11:
  a 1-epoch default run within 1.5 s of `import torch`;
  `regbench train --cfg job` faster than `import torch`.

    python scripts/bench_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    out = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    commands = {
        "import torch": [py, "-c", "import torch"],
        "regbench train trainer.epochs=1": None,
        "regbench train --cfg job": [py, "-m", "regbench", "train", "--cfg", "job"],
        "regbench --help": [py, "-m", "regbench", "--help"],
    }
    wall([py, "-m", "regbench", "train", "trainer.epochs=1", f"hydra.run.dir={out / 'warm'}"])  # caches MNIST-1D
    best = {k: float("inf") for k in commands}
    for r in range(args.rounds):
        for name, cmd in commands.items():
            if cmd is None:
                cmd = [py, "-m", "regbench", "train", "trainer.epochs=1", f"hydra.run.dir={out / str(r)}"]
            best[name] = min(best[name], wall(cmd))
    print(f"best of {args.rounds} interleaved rounds, wall seconds ({os.cpu_count()} CPUs)")
    for name, t in best.items():
        print(f"  {name:<36} {t:6.2f}")
    run, torch_, cfg = best["regbench train trainer.epochs=1"], best["import torch"], best["regbench train --cfg job"]
    print(f"1-epoch run - import torch: {run - torch_:+.2f} s (target <= 1.5 s: {'met' if run - torch_ <= 1.5 else 'missed'})")
    print(f"--cfg job / import torch: {cfg / torch_:.2f}x (target < 1: {'met' if cfg < torch_ else 'missed'})")


if __name__ == "__main__":
    main()
