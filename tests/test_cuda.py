"""The CUDA path. Skipped where torch sees no GPU (CI, this project's
workstations); scripts/gpu_check.sh runs them on a machine that has one:

    pytest -q -p no:xdist -m cuda tests/test_cuda.py
"""

import csv

import pytest
import torch

from regbench import records, train
from regbench.learner import Learner

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = ["device=cuda", "threads=0"]


def rows(job):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(open(job / records.METRICS_FILE))]


def test_a_run_on_cuda_records_the_device_and_resumes(make_cfg, tmp_path):
    cfg = make_cfg(*CUDA, "trainer.epochs=3")
    summary = train.run(cfg, tmp_path / "run", show_progress=False)
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")
    ckpt = torch.load(tmp_path / "run" / records.CHECKPOINT_FILE, map_location="cpu")
    assert ckpt["epoch"] == 3
    longer = train.run(make_cfg(*CUDA, "trainer.epochs=5"), tmp_path / "run", show_progress=False)
    assert longer["status"] == "completed" and longer["resumed_after_epoch"] == 3


@pytest.mark.parametrize("batchnorm", [False, True])
def test_a_fused_job_on_cuda_is_the_job_trained_alone(make_cfg, tmp_path, batchnorm):
    """The README's guarantee on the GPU too: without BatchNorm to 1e-5."""
    common = [*CUDA, f"model.batchnorm={batchnorm}", "trainer.epochs=3"]
    jobs = [(make_cfg(*common, f"model.dropout={d}", f"seed={s}"), tmp_path / f"g{d}_{s}", []) for d in (0, 0.3) for s in (0, 1)]
    out = train.run_group(jobs, show_progress=False)
    assert all(o["status"] == "completed" for o in out)
    train.run(make_cfg(*common, "model.dropout=0.3", "seed=1"), tmp_path / "alone", show_progress=False)
    for a, b in zip(rows(tmp_path / "g0.3_1"), rows(tmp_path / "alone")):
        for k in a:
            if a[k] == b[k] or "/" in k:
                continue
            tol = (0.05 if k.endswith("acc") else 1e-3) if batchnorm else 1e-5
            assert float(a[k]) == pytest.approx(float(b[k]), abs=tol), (a["epoch"], k)


def test_the_training_step_never_waits_for_the_gpu(make_cfg):
    """No host syncs inside an epoch: torch raises on any synchronizing call."""
    from regbench.data import build_dataset

    cfg = make_cfg(*CUDA, "model.dropout=0.3", "model.batchnorm=true")
    data = build_dataset(cfg.data, torch.device("cuda"))
    learner = Learner([cfg.model] * 4, cfg.optim, 2, data.n_features, data.n_classes, [0, 1, 2, 3], "cuda")
    alive = torch.ones(4, dtype=torch.bool, device="cuda")
    learner.train_epoch(data.train, 32, 1.0, alive)  # warm-up: allocations, cuBLAS handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        learner.train_epoch(data.train, 32, 1.0, alive)
    finally:
        torch.cuda.set_sync_debug_mode("default")
