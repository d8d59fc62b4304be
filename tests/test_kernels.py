"""regbench's C++ ReLU + dropout (regbench/kernels.py): built in the background
the first time a group could use it, and giving PyTorch's bits, one call and a
whole training run at a time."""

from __future__ import annotations

import csv
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY
from regbench import batched, kernels, learner, records
from regbench.data import Split

pytestmark = pytest.mark.skipif(not kernels.supported_platform() or kernels.missing_tools() is not None,
                                reason=f"the kernel is built and used on x86-64 Linux with a C++ compiler and ninja only "
                                       f"({kernels.missing_tools()})")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A build folder of the session's own, filled by the background build that
    the first ``kernels.get()`` starts (the one the first fused group triggers)."""
    folder = tmp_path_factory.mktemp("kernels")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(kernels.ENV, "auto")
        mp.setenv(kernels.DIR_ENV, str(folder))
        home = kernels.build_dir()
        assert home.parent == folder
        assert kernels.get() is None  # not built: a build starts in the background
        assert (home / "building").exists()
        lock = (home / "building").read_text()
        assert kernels._builder(home) == int(lock.split()[0])  # the builder's pid (and this host)
        assert kernels.get() is None and (home / "building").read_text() == lock  # only one build
        deadline = time.monotonic() + 300
        while (home / "building").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (home / "ready").exists(), (home / "build.log").read_text() + (home / "failed").read_text() \
            if (home / "failed").exists() else ""
        module = kernels.get()
        if module is None and kernels._load(home)[1].startswith("built, but"):
            pytest.skip("this CPU has neither AVX2 nor AVX-512: the kernel is built but left unused")
        assert module is not None and module.vector_level() in (256, 512)
        yield folder, module


@pytest.fixture
def kernel_on(built, monkeypatch):
    monkeypatch.setenv(kernels.ENV, "auto")
    monkeypatch.setenv(kernels.DIR_ENV, str(built[0]))
    return built[1]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("layout", ["contiguous", "batchnorm"])
def test_relu_dropout_gives_pytorchs_bits_both_ways(kernel_on, layout):
    """relu(z) * mask forward and threshold_backward(g * mask, relu(z), 0)
    backward, equal bit for bit: NaN, infinities, signed zeros, a position
    that is not the lanes' first, and units a replica never drops."""
    torch.manual_seed(0)
    R, B, U, H, lo = 5, 33, 37, 80, 29
    z = torch.randn(B, R, U).transpose(0, 1) if layout == "batchnorm" else torch.randn(R, B, U)  # BN: (B, R, C) seen as (R, B, C)
    flat = z.view(-1) if z.is_contiguous() else z.transpose(0, 1).reshape(-1)
    flat[:8] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45, -1e-45, 3e38])
    if layout == "batchnorm":
        z = flat.view(B, R, U).transpose(0, 1)
    lanes = torch.randint(-2**15, 2**15, (R, B, H), dtype=torch.int16)
    keep = torch.rand(R, H) * 0.9 + 0.05
    keep[0] = 1.0  # a replica that keeps every unit (its lanes' threshold above every lane)
    lanes[0] = -2**15
    thr, scale = learner.lane_thresholds(keep), (1.0 / keep)
    mask = batched.LaneMask(lanes, lo, lo + U, thr, scale)
    dense = mask.dense()
    assert dense.shape == (R, B, U)
    g = torch.randn(R, B, U)
    g.view(-1)[:4] = torch.tensor([float("nan"), -0.0, float("inf"), -1.0])

    out = kernel_on.relu_dropout_forward(z, lanes, lo, thr, scale)
    assert torch.equal(bits(out), bits(torch.relu(z) * dense))
    grad = kernel_on.relu_dropout_backward(g, z, lanes, lo, thr, scale)
    assert torch.equal(bits(grad), bits(torch.ops.aten.threshold_backward(g * dense, torch.relu(z), 0)))

    # through autograd, as batched.forward calls it
    z1 = z.detach().clone().requires_grad_()
    y = kernels.ReluDropout.apply(z1, lanes, lo, thr, scale, kernel_on)
    y.backward(g)
    z2 = z.detach().clone().requires_grad_()
    (torch.relu(z2) * dense).backward(g)
    assert torch.equal(bits(y.detach()), bits(out)) and torch.equal(bits(z1.grad), bits(z2.grad))


def test_bad_inputs_are_refused_not_read_out_of_bounds(kernel_on):
    lanes = torch.zeros(2, 4, 10, dtype=torch.int16)
    thr, scale = torch.zeros(2, 10, dtype=torch.int16), torch.ones(2, 10)
    with pytest.raises(RuntimeError, match="lanes"):
        kernel_on.relu_dropout_forward(torch.zeros(2, 4, 6), lanes, 5, thr, scale)  # columns 5..10 of 10
    with pytest.raises(RuntimeError, match="z: a CPU float32"):
        kernel_on.relu_dropout_forward(torch.zeros(2, 4, 6, dtype=torch.float64), lanes, 0, thr, scale)


def group(make_cfg, settings: list[list[str]]) -> learner.Learner:
    cfgs = [make_cfg(*s) for s in settings]
    return learner.Learner([c.model for c in cfgs], [c.optim for c in cfgs], 3, 8, 3, [int(c.seed) for c in cfgs], "cpu")


@pytest.mark.parametrize("bn", [False, True])
def test_a_group_trains_to_the_same_bits_with_the_kernel_as_without(make_cfg, kernel_on, monkeypatch, bn):
    """Three epochs of a group whose replicas drop at different rates, in one
    layer or both, BatchNorm off and on: every parameter, buffer and epoch sum
    equal bit for bit with the kernel and with PyTorch's ops."""
    settings = [[f"model.batchnorm={str(bn).lower()}", *s] for s in
                (["seed=0", "model.dropout=0.3"], ["seed=1", "model.dropout_layers=[0,0.5]"], ["seed=2", "model.dropout=0"],
                 ["seed=3", "model.dropout_layers=[0.1,0]"])]
    torch.manual_seed(0)
    data = Split(torch.randn(200, 8), torch.randint(0, 3, (200,)))
    alive = torch.ones(4, dtype=torch.bool)
    runs = {}
    calls = []
    apply = kernels.ReluDropout.apply
    monkeypatch.setattr(kernels.ReluDropout, "apply", lambda *a: calls.append(1) or apply(*a))
    for on in (True, False):
        if not on:
            monkeypatch.setenv(kernels.ENV, "off")
        g = group(make_cfg, settings)
        assert (g.kernel is not None) == on
        assert batched.relu_dropout(g.module) == ["hidden0.dropout", "hidden1.dropout"]
        sums = [g.train_epoch(data, 32, 0.0, alive)[:3] for _ in range(3)]
        runs[on] = (sums, {**g.params, **g.buffers})
        # with it: both layers of every step (200 examples in batches of 32: 7 steps an epoch); without: no more
        assert len(calls) == 3 * 7 * 2, (on, len(calls))
    (sums_on, state_on), (sums_off, state_off) = runs[True], runs[False]
    for a, b in zip(sums_on, sums_off):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert state_on.keys() == state_off.keys()
    for k in state_on:
        assert torch.equal(state_on[k].detach(), state_off[k].detach()), k


def test_where_no_relu_comes_right_before_a_dropout_nothing_uses_it(make_cfg, kernel_on):
    """Dropout before the activation, or another activation: the group never
    loads the kernel (and draws its masks as before)."""
    for s in (["model.order=[linear,dropout,act]"], ["model.activation=gelu"]):
        g = group(make_cfg, [["seed=0", "model.dropout=0.3", *s], ["seed=1", "model.dropout=0.1", *s]])
        assert batched.relu_dropout(g.module) == [] and g.kernel is None, s
        assert all(isinstance(m, torch.Tensor) for m in g.masks.draw(4).values())


def metrics(job: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(open(job / records.METRICS_FILE))]


@pytest.mark.slow
def test_a_sweep_writes_the_same_records_with_the_kernel_as_without(cli, tmp_path, built):
    """The real CLI, a fused sweep of two dropout rates and two seeds, once
    with the kernel and once without: every job's metrics.csv the same."""
    grid = ["model.dropout=0.2,0.5", "seed=0,1", *TINY, cli.data_arg, "hydra.launcher.processes=1"]
    for on in ("auto", "off"):
        env = {kernels.ENV: on, kernels.DIR_ENV: str(built[0])}
        r = cli("train", "-m", *grid, f"hydra.sweep.dir={tmp_path / on}", env=env)
        assert r.returncode == 0, r.stderr
        assert "building regbench's C++ kernel" not in r.stdout + r.stderr  # built already: no second build
    jobs = sorted(p.parent.name for p in (tmp_path / "auto").glob("*/summary.json"))
    assert len(jobs) == 4
    for name in jobs:
        assert metrics(tmp_path / "auto" / name) == metrics(tmp_path / "off" / name), name


def status(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbench.kernels"], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


def test_status_says_whether_it_is_used_and_a_failed_build_is_not_retried(built, tmp_path, monkeypatch):
    r = status({kernels.ENV: "auto", kernels.DIR_ENV: str(built[0])})
    assert r.returncode == 0 and "used by fused groups on the CPU (AVX-" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "regbench.kernels", "--build"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, kernels.ENV: "auto", kernels.DIR_ENV: str(built[0])})
    assert r.returncode == 0 and "building" not in r.stdout and "used by fused groups" in r.stdout  # built: not again
    r = status({kernels.ENV: "off"})
    assert "off (REGBENCH_KERNELS=off)" in r.stdout
    r = status({kernels.ENV: "auto", kernels.DIR_ENV: str(tmp_path)})
    assert "not built yet" in r.stdout
    # a build that failed (no compiler, say) is not tried again by every group
    monkeypatch.setenv(kernels.ENV, "auto")
    monkeypatch.setenv(kernels.DIR_ENV, str(tmp_path))
    folder = kernels.build_dir()
    folder.mkdir(parents=True)
    (folder / "failed").write_text("RuntimeError: Error building extension\n\ndetails\n")
    assert kernels.get() is None and not (folder / "building").exists()
    r = status({kernels.ENV: "auto", kernels.DIR_ENV: str(tmp_path)})
    assert "the build failed (RuntimeError: Error building extension;" in r.stdout, r.stdout


def test_a_damaged_library_is_never_loaded_and_is_built_again(built, tmp_path, monkeypatch):
    """A library cut short (a full disk, a partial copy) would crash the
    process that maps it (SIGBUS), past any except: its sha256, written by the
    build, must match before it is loaded; then it is built again."""
    monkeypatch.setenv(kernels.ENV, "auto")
    monkeypatch.setenv(kernels.DIR_ENV, str(built[0]))
    good = kernels.build_dir()
    monkeypatch.setenv(kernels.DIR_ENV, str(tmp_path))
    folder = kernels.build_dir()
    shutil.copytree(good, folder)
    lib = folder / f"{kernels.NAME}.so"
    lib.write_bytes(lib.read_bytes()[:1000])
    assert kernels._load(folder) == (None, "is damaged (its library is missing or not the one its build wrote)")
    r = status({kernels.ENV: "auto", kernels.DIR_ENV: str(tmp_path)})
    assert r.returncode == 0 and "is damaged" in r.stdout and "builds it again" in r.stdout, r.stdout + r.stderr
    monkeypatch.setattr(kernels, "_start_background_build", lambda f: started.append(f))
    started: list = []
    assert kernels.get() is None and started == [folder] and not (folder / "ready").exists()

    # the build itself: ninja goes by file times, and the cut library is newer than its object, so the build
    # must remove it first (it answered "no work to do" and loaded the cut library: SIGBUS, every time)
    import torch.utils.cpp_extension as ext

    def load(name, sources, build_directory, **kw):
        assert not (Path(build_directory) / f"{kernels.NAME}.so").exists()
        shutil.copy(good / f"{kernels.NAME}.so", Path(build_directory) / f"{kernels.NAME}.so")

    monkeypatch.setattr(ext, "load", load)
    assert kernels.build(folder) is not None
    assert kernels._load(folder)[0] is not None and not list(folder.glob(".ready*"))


def test_a_build_lock_counts_only_while_its_builder_lives(tmp_path):
    (tmp_path / "building").write_text(f"{os.getpid()} {platform.node()}")
    assert kernels._builder(tmp_path) == os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "building").write_text(str(dead.pid))
    assert kernels._builder(tmp_path) is None  # killed mid-build: the next group builds again
    (tmp_path / "building").write_text(str(os.getpid()))
    old = time.time() - kernels._LOCK_MAX_S - 60
    os.utime(tmp_path / "building", (old, old))
    assert kernels._builder(tmp_path) is None  # a pid that old may be someone else's now
    (tmp_path / "building").write_text("")
    assert kernels._builder(tmp_path) == -1  # just made, its pid not yet written
    # a builder of this process that was killed is a zombie until reaped, and kill(pid, 0) still finds it
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while not Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
        time.sleep(0.05)
    (tmp_path / "building").write_text(f"{zombie.pid} {platform.node()}")
    assert kernels._builder(tmp_path) is None
    zombie.wait()
    # another host sharing the cache (NFS): its pid means nothing here, its lock counts while young
    (tmp_path / "building").write_text(f"{os.getpid()} another-host")
    assert kernels._builder(tmp_path) == -1
    old = time.time() - kernels._FOREIGN_LOCK_S - 60
    os.utime(tmp_path / "building", (old, old))
    assert kernels._builder(tmp_path) is None


def test_on_two_threads_the_kernel_gives_the_same_bits(kernel_on):
    """Rows split over threads (above PyTorch's 32768-element grain): each
    unit is computed alone, so the values are the one-thread ones."""
    torch.manual_seed(1)
    R, B, U, H = 7, 96, 100, 200
    z = torch.randn(B, R, U).transpose(0, 1)
    lanes = torch.randint(-2**15, 2**15, (R, B, H), dtype=torch.int16)
    keep = torch.rand(R, H) * 0.9 + 0.05
    thr, scale = learner.lane_thresholds(keep), 1.0 / keep
    g = torch.randn(R, B, U)
    threads = torch.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out[n] = (kernel_on.relu_dropout_forward(z, lanes, 100, thr, scale),
                      kernel_on.relu_dropout_backward(g, z, lanes, 100, thr, scale))
    finally:
        torch.set_num_threads(threads)
    dense = batched.LaneMask(lanes, 100, 200, thr, scale).dense()
    assert torch.equal(bits(out[2][0]), bits(out[1][0])) and torch.equal(bits(out[2][1]), bits(out[1][1]))
    assert torch.equal(bits(out[2][0]), bits(torch.relu(z) * dense))
