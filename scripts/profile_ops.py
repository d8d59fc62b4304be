"""Time each aten op of a fused group's training step: 25 jobs (dropout 0,
0.1, 0.2, 0.3, 0.5 x seeds 0-4) of the default MNIST-1D MLP as one vectorized
model, on one thread (a worker's share of 2 cores), on random data of
MNIST-1D's shape. Every op the step dispatches is timed on its own (a
TorchDispatchMode around it), so the shares are of the ops' own time; the
plain epoch (no timing) is printed first, for scale.

    python scripts/profile_ops.py                # BatchNorm off
    python scripts/profile_ops.py --batchnorm --top 30
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_module
from torch.utils._python_dispatch import TorchDispatchMode

from regbench import learner
from regbench.config import register_configs
from regbench.data import Split


class Timed(TorchDispatchMode):
    """Wall time and calls of each aten op dispatched inside."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, list] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        entry = self.ops.setdefault(str(func), [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - start
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batchnorm", action="store_true")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (after 3 untimed)")
    parser.add_argument("--top", type=int, default=22)
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_configs()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        cfgs = [compose(config_name="config", overrides=[f"model.dropout={d}", f"seed={s}",
                                                          f"model.batchnorm={str(args.batchnorm).lower()}"])
                for d in (0, 0.1, 0.2, 0.3, 0.5) for s in range(5)]
    group = learner.Learner([c.model for c in cfgs], [c.optim for c in cfgs], 50, 40, 10, list(range(25)), "cpu")
    train = Split(torch.randn(3200, 40), torch.randint(0, 10, (3200,)))
    alive = torch.ones(25, dtype=torch.bool)
    for _ in range(3):
        group.train_epoch(train, 128, 0.0, alive)
    start = time.perf_counter()
    for _ in range(args.epochs):
        group.train_epoch(train, 128, 0.0, alive)
    plain = (time.perf_counter() - start) / args.epochs
    timed = Timed()
    with timed:
        for _ in range(args.epochs):
            group.train_epoch(train, 128, 0.0, alive)
    total = sum(t for _, t in timed.ops.values())
    print(f"25 jobs, BN {'on' if args.batchnorm else 'off'}, 1 thread: {plain * 1e3:.1f} ms an epoch (25 steps), "
          f"the ops' own time {total / args.epochs * 1e3:.1f} ms")
    for name, (calls, seconds) in sorted(timed.ops.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"  {seconds / total:6.1%}  {seconds / args.epochs * 1e3:7.2f} ms/epoch  {calls // args.epochs:5d} calls  "
              f"{seconds / calls * 1e6:8.1f} us  {name}")


if __name__ == "__main__":
    main()
