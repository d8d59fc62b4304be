"""Shared fixtures: the real config, composed and shrunk; the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from regbench.config import register_configs

# regbench's C++ kernel (regbench/kernels.py) gives the bits PyTorch's ops give;
# the suite trains with those ops and neither builds nor loads the kernel
# anywhere but tests/test_kernels.py, which builds its own copy and checks both
# ways against each other (subprocesses inherit this).
os.environ["REGBENCH_KERNELS"] = "off"

# Tiny, fast, CPU: a few hundred synthetic examples, 2 epochs.
TINY = [
    "data=blobs",
    "data.n_samples=300",
    "data.n_features=8",
    "data.n_classes=3",
    "model.widths=[16,16]",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "device=cpu",
    "threads=1",
    "trainer.save_every_s=0",  # a checkpoint after every epoch: the resume tests interrupt at given epochs
]


@pytest.fixture
def whole_lines(monkeypatch):
    """`regbench report`'s console summary with its lines whole, as in a pipe:
    pytest-xdist's workers set COLUMNS=80, to which it would fit them."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """One dataset cache for the session (mnist1d is generated into it once)."""
    env = os.environ.get("REGBENCH_TEST_DATA")
    return Path(env) if env else tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(data_root):
    """``make_cfg(*overrides)`` -> the composed real config, shrunk by TINY."""
    register_configs()

    def make(*overrides: str, tiny: bool = True):
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
            return compose(
                config_name="config",
                overrides=(TINY if tiny else []) + [f"data.root={data_root}"] + list(overrides),
            )

    yield make
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``regbench ARGS`` as a user types it, in a subprocess, from ``cwd``."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "regbench", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path, data_root):
    """``cli(*args)`` runs the CLI in tmp_path with the session's data cache."""

    def call(*args: str, **kw) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=kw.pop("cwd", tmp_path), **kw)

    call.data_arg = f"data.root={data_root}"
    return call
