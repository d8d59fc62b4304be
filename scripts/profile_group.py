"""Profile one fused group the way the launcher trains it: 25 jobs (dropout
0, 0.1, 0.2, 0.3, 0.5 x seeds 0-4) of the default MNIST-1D MLP as one
vectorized model, in this process, on one thread (a worker's share of 2
cores). Prints the wall time, the time per seed and epoch, and cProfile's
top functions by their own time.

    python scripts/profile_group.py                 # BatchNorm off, 20 epochs
    python scripts/profile_group.py --batchnorm --epochs 10 --threads 2
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import torch
from hydra import compose, initialize_config_module

from regbench import train
from regbench.config import register_configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batchnorm", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    register_configs()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        cfgs = [compose(config_name="config", overrides=[f"model.dropout={d}", f"seed={s}", f"trainer.epochs={args.epochs}",
                                                          f"model.batchnorm={str(args.batchnorm).lower()}"])
                for d in (0, 0.1, 0.2, 0.3, 0.5) for s in range(5)]
    out = tempfile.mkdtemp(prefix="profile_group_")
    jobs = [(c, f"{out}/{i}", []) for i, c in enumerate(cfgs)]
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.runcall(train.run_group, jobs, show_progress=False)
    wall = time.perf_counter() - t0
    print(f"{len(jobs)} jobs x {args.epochs} epochs, BN {'on' if args.batchnorm else 'off'}, {args.threads} thread(s): "
          f"{wall:.2f} s wall (profiled), {wall / len(jobs) / args.epochs * 1e3:.1f} ms per seed and epoch")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
