"""Setting up a fused group's jobs before it trains: Hydra's ``run_job`` (with
a task that only notes the job) against the fused launcher's ``set_up_job``,
25 jobs of the default config into a temporary sweep folder, in this process,
best of interleaved rounds. Prints ms per job and the ratio.

    python scripts/bench_job_setup.py [--jobs 25] [--rounds 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import run_job, setup_globals
from hydra.types import HydraContext, RunMode
from omegaconf import open_dict

from hydra import initialize_config_module
from hydra._internal.callbacks import Callbacks
from hydra_plugins.regbench_fused_launcher.fused_launcher import set_up_job
from regbench.config import register_configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    register_configs()
    setup_globals()
    sweep = tempfile.mkdtemp(prefix="bench_job_setup_")
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", [f"hydra.sweep.dir={sweep}"], RunMode.MULTIRUN)
        cfgs = []
        for i in range(args.jobs):
            c = loader.load_sweep_config(master, [f"seed={i}"])
            with open_dict(c):
                c.hydra.job.num = c.hydra.job.id = i
            cfgs.append(c)
    callbacks = Callbacks()
    context = HydraContext(config_loader=None, callbacks=callbacks)
    note = lambda cfg: None  # noqa: E731
    ways = {
        "hydra run_job": lambda c: run_job(hydra_context=context, task_function=note, config=c,
                                           job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"),
        "set_up_job": lambda c: set_up_job(callbacks, note, c),
    }
    best = {k: float("inf") for k in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            shutil.rmtree(sweep, ignore_errors=True)
            t0 = time.perf_counter()
            for c in cfgs:
                way(c)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(cfgs))
    shutil.rmtree(sweep, ignore_errors=True)
    for name, t in best.items():
        print(f"  {name:<14} {t * 1e3:6.1f} ms per job")
    print(f"set_up_job is {best['hydra run_job'] / best['set_up_job']:.2f}x Hydra's run_job ({args.jobs} jobs, best of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
