#!/usr/bin/env python
"""Training speed, measured in one process on the same data, model and epochs:

  standard   the PyTorch-examples loop: DataLoader over a TensorDataset with
             shuffle, .item() per batch, evaluation through DataLoaders
  single     regbench's trainer, one seed (Learner with R = 1)
  replicas   regbench's vectorized replicas, R seeds as one model
  fused      a fused sweep group: R jobs with different dropout rates as one model
  fused xP   what the default launcher does on CPU: the R jobs as P groups of
             R/P training at once in P forked processes, cores/P threads each
             (time of the slowest process, after a barrier)

Each does the same work per epoch and seed: one training pass and an
eval-mode pass over train, val and test. Printed: seconds per epoch and seed,
throughput ratios against the standard loop and against sequential single
runs, and the ratio to the floating-point limit (the model's FLOPs per epoch
at this machine's measured peak matmul rate).

  python scripts/bench.py                      # MNIST-1D [100,100] and MNIST-sized [1024,1024]
  python scripts/bench.py --only mnist1d --replicas 8 --epochs 5
  python scripts/bench.py --only mnist1d --set model.dropout=0   # without dropout's random masks
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from torch.utils.data import DataLoader, TensorDataset

from regbench.config import register_configs
from regbench.data import build_dataset
from regbench.learner import Learner, make_optimizer
from regbench.model import build_mlp
from regbench.train import _small_on_one_thread, epoch_metrics, resolve_device

SETUPS = {
    # name: overrides
    "mnist1d": ["data=mnist1d", "model.widths=[100,100]", "model.batchnorm=true", "model.dropout=0.2"],
    "mnist-sized": ["data=teacher", "data.n_samples=75000", "data.n_features=784", "data.n_classes=10",
                    "data.val_fraction=0.2", "data.test_fraction=0.2", "model.widths=[1024,1024]",
                    "model.batchnorm=true", "model.dropout=0.2"],
}


def config(overrides):
    register_configs()
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_matmul_flops(device, n=2048, reps=10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def epoch_flops(model, n_train, n_eval) -> float:
    """Matmul FLOPs of one epoch: forward + backward (3x forward) on the
    training set, forward on train/val/test for evaluation."""
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 2 * macs * (3 * n_train + n_eval)


def standard(cfg, data, device, epochs, seed=0, on_epoch=None):
    """pytorch/examples style: DataLoader, shuffle, .item() per batch.
    ``on_epoch(epoch, {split: (loss, acc)})`` receives each epoch's evaluation."""
    torch.manual_seed(seed)
    model = build_mlp(cfg.model, data.n_features, data.n_classes).to(device)
    opt = make_optimizer(cfg.optim, model.parameters(), fast=False)  # as a script builds it: torch's defaults
    cpu = lambda s: TensorDataset(s.x.cpu(), s.y.cpu())
    train_loader = DataLoader(cpu(data.train), batch_size=cfg.trainer.batch_size, shuffle=True)
    eval_loaders = [DataLoader(cpu(s), batch_size=1000) for s in (data.train, data.val, data.test)]
    sync(device)
    t = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        running = 0.0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            running += loss.item()
        model.eval()
        results = {}
        with torch.no_grad():
            for split, loader in zip(("fit", "val", "test"), eval_loaders):
                total = correct = 0.0
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    out = model(x)
                    total += F.cross_entropy(out, y, reduction="sum").item()
                    correct += (out.argmax(1) == y).sum().item()
                results[split] = (total / len(loader.dataset), correct / len(loader.dataset))
        if on_epoch is not None:
            on_epoch(epoch, results)
    sync(device)
    return (time.perf_counter() - t) / epochs


THREADS_GIVEN = False  # --threads N: every loop on N threads


def regbench_loop(cfg, data, device, epochs, seeds, models=None):
    """Seconds per epoch for len(seeds) seeds trained together (R = 1: the
    single-run trainer). ``models``: one model config per replica (a fused
    group whose dropout rates differ), else ``cfg.model`` for all."""
    learner = Learner(models or cfg.model, cfg.optim, epochs, data.n_features, data.n_classes, seeds, device)
    alive = torch.ones(len(seeds), dtype=torch.bool, device=device)
    # the threads regbench train takes (threads=0: one for a small step; README "Threads"), unless set here
    before = _small_on_one_thread(cfg, learner, device) if not THREADS_GIVEN else None
    sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        # grad norms off: the standard loop does not measure them either (same work)
        sums = learner.train_epoch(data.train, cfg.trainer.batch_size, 0.0, alive, grad_norms=False)[:3]
        torch.stack(sums).tolist()
        epoch_metrics(learner, data, list(range(len(seeds))), cfg.trainer.eval_batch_size, True)
    sync(device)
    seconds = (time.perf_counter() - t) / epochs
    if before is not None:
        torch.set_num_threads(before)
    return seconds


def fused_in_processes(cfg, data, device, epochs: int, models: list, processes: int) -> float:
    """Seconds per epoch and seed for R jobs (``models``, one per job) split into ``processes`` groups
    training at once, each in a process forked from this one with
    cores/processes threads (as hydra_plugins/regbench_fused_launcher does)."""
    import multiprocessing
    import os

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    r = len(models)
    parts = [list(range(r))[k::processes] for k in range(processes)]
    threads = max(1, (os.cpu_count() or 1) // processes)

    def work(seeds):
        torch.set_num_threads(threads)
        regbench_loop(cfg, data, device, 1, seeds[:1], [models[seeds[0]]])  # warm-up in this process
        barrier.wait()
        results.put(regbench_loop(cfg, data, device, epochs, seeds, [models[i] for i in seeds]))

    procs = [ctx.Process(target=work, args=(part,)) for part in parts]
    for p in procs:
        p.start()
    per_epoch = max(results.get() for _ in procs)  # the slowest group sets the wall time
    for p in procs:
        p.join()
    return per_epoch / r


def dropout_masks(cfg, data, device, r: int) -> float:
    """Seconds per epoch and seed spent drawing the dropout masks alone
    (regbench.learner.MaskSampler: one uniform draw per replica and step from
    the job's own generator, outside vmap), for R = r replicas."""
    from regbench.learner import MaskSampler, dropout_positions, replica_rates

    rates = replica_rates(cfg.model)
    if not rates:
        return 0.0
    module = build_mlp(cfg.model, data.n_features, data.n_classes).to(device)
    sampler = MaskSampler(dropout_positions(module, data.n_features), [rates] * r, list(range(r)), device)
    bs, n = cfg.trainer.batch_size, len(data.train)
    sync(device)
    t = time.perf_counter()
    for _ in range(-(-n // bs)):
        sampler.draw(bs)
    sync(device)
    return (time.perf_counter() - t) / r


def fused_models(cfg, r: int) -> list:
    """R jobs of a dropout sweep: rates 0, 0.1, 0.2, 0.3, 0.5 in turn (one model config each)."""
    from omegaconf import OmegaConf

    out = []
    for i in range(r):
        m = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
        m.dropout = (0.0, 0.1, 0.2, 0.3, 0.5)[i % 5]
        out.append(m)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=list(SETUPS), action="append", help="setups to run (default: all)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[8],
                        help="R values for the vectorized path on MNIST-1D")
    parser.add_argument("--fused", type=int, nargs="*", default=[],
                        help="R values for a fused group on MNIST-1D: R jobs whose dropout rates differ (0..0.5), one seed each")
    parser.add_argument("--processes", type=int, default=0,
                        help="with --fused on CPU: also the R jobs as P groups in P processes (0 = one per core; 1 = off)")
    parser.add_argument("--big-replicas", type=int, default=2,
                        help="R for the MNIST-sized setup (arithmetic-bound: vectorizing does not pay there)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per measurement (default: 5, 1 for mnist-sized)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads for every loop (0 = as regbench train chooses: one for a small step)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides applied to every setup, e.g. --set model.dropout=0")
    parser.add_argument("--repeat", type=int, default=None,
                        help="measurements per loop, the fastest counts (default: 3, 1 for mnist-sized)")
    args = parser.parse_args(argv)
    global THREADS_GIVEN
    if args.threads:
        torch.set_num_threads(args.threads)
        THREADS_GIVEN = True
    device = resolve_device(args.device)
    peak = peak_matmul_flops(device)
    threads = f"{torch.get_num_threads()} CPU threads" + ("" if THREADS_GIVEN else "; regbench's loops on one where the step is small, as regbench train")
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else threads}), "
          f"torch {torch.__version__}, peak matmul {peak / 1e9:.1f} GFLOP/s")
    if device.type == "cpu":  # whether fused groups' ReLU + dropout run in regbench's C++ kernel (REGBENCH_KERNELS=off: not)
        from regbench import kernels

        print(f"regbench's C++ ReLU + dropout: {kernels.status(kernels.build_dir())}")
    for name in args.only or list(SETUPS):
        cfg = config(SETUPS[name] + args.set)
        data = build_dataset(cfg.data, device)
        epochs = args.epochs or (5 if name == "mnist1d" else 1)
        model = build_mlp(cfg.model, data.n_features, data.n_classes)
        limit = epoch_flops(model, len(data.train), len(data.train) + len(data.val) + len(data.test)) / peak
        repeat = args.repeat or (3 if name == "mnist1d" else 1)
        rs = args.replicas if name == "mnist1d" else [args.big_replicas]
        import os

        procs = args.processes or (os.cpu_count() or 1)
        fused = {r: fused_models(cfg, r) for r in (args.fused if name == "mnist1d" else [])}  # made once, before the freeze below
        loops = {
            "standard": lambda: standard(cfg, data, device, epochs),
            "single": lambda: regbench_loop(cfg, data, device, epochs, [0]),
            **{f"replicas R={r}": (lambda r=r: regbench_loop(cfg, data, device, epochs, list(range(r))) / r) for r in rs},
            **{f"fused R={r}": (lambda r=r: regbench_loop(cfg, data, device, epochs, list(range(r)), fused[r]) / r)
               for r in (args.fused if name == "mnist1d" else [])},
            **{f"fused R={r} x{procs}": (lambda r=r: fused_in_processes(cfg, data, device, epochs, fused[r], procs))
               for r in (args.fused if name == "mnist1d" and device.type == "cpu" and procs > 1 else [])},
            "masks": lambda: dropout_masks(cfg, data, device, max(rs)),
        }
        regbench_loop(cfg, data, device, 1, [0])  # warm-up (allocator, first-call overheads)
        standard(cfg, data, device, 1)  # and its imports (torch.optim's: torch._dynamo), not timed in the first round
        # What is alive now (torch, Hydra, the data, the fused jobs' configs)
        # is frozen, as a regbench process freezes its imports and a sweep's
        # configs (regbench.lifetime): else a full collection walking it
        # (0.1-0.2 s each, 7 in one run of this script) fell in whichever
        # loop happened to be timed.
        gc.collect()
        gc.freeze()
        # Rounds over all loops, the fastest of each counts: noise on a shared
        # machine only ever adds time, and drifts hit every loop alike.
        times = {k: float("inf") for k in loops}
        for _ in range(repeat):
            for k, f in loops.items():
                times[k] = min(times[k], f())
        std, one = times["standard"], times["single"]
        print(f"\n{name}: {len(data.train)} train examples, widths {list(cfg.model.widths)}, "
              f"BN {'on' if cfg.model.batchnorm else 'off'}, dropout {cfg.model.dropout}, "
              f"batch {cfg.trainer.batch_size}, {epochs} epochs per measurement, best of {repeat}")
        print(f"  {'loop':<16}{'s/epoch/seed':>14}{'vs standard':>13}{'vs single':>11}{'vs FLOP limit':>15}")
        for k, t in times.items():
            if k != "masks":
                print(f"  {k:<16}{t:>14.4f}{std / t:>12.2f}x{one / t:>10.2f}x{t / limit:>14.1f}x")
        print(f"  (FLOP limit: {limit:.4f} s/epoch/seed; 'vs' columns are throughput ratios, "
              "'vs FLOP limit' is time over that limit)")
        if times["masks"] > 0:
            print(f"  (dropout masks alone, drawn per replica outside vmap: {times['masks']:.4f} s/epoch/seed, "
                  f"{times['masks'] / one:.0%} of a single run's epoch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
