"""regbench's one C++ kernel: ReLU then dropout in a fused group's hidden layers, on the CPU.

A fused group spends about a third of its training step in elementwise
PyTorch ops, and a hidden layer's ReLU and dropout take five passes over its
activations (ReLU, the mask's compare and scale, the multiply; in backward the
mask multiply and ReLU's threshold). ``csrc/relu_dropout.cpp`` does each
direction in one pass, with values identical bit for bit to those ops'
(tests/test_kernels.py compares them, and whole groups trained both ways).

It is compiled once per machine with PyTorch's extension builder
(``torch.utils.cpp_extension``: a C++ compiler and ninja) into
``$XDG_CACHE_HOME/regbench/kernels/<key>`` (``~/.cache`` by default, or
``$REGBENCH_KERNELS_DIR``), the key naming the source, torch and Python.
The first fused group that could use it starts that build in the background,
at the lowest priority, and trains with PyTorch's ops meanwhile; the groups
after it use the kernel. ``python -m regbench.kernels --build`` builds it now
and says what happened; ``python -m regbench.kernels`` says whether it is
used. ``REGBENCH_KERNELS=off`` neither builds nor uses it. It is only used on
x86-64 Linux CPUs with AVX2 or AVX-512 (on others its loops are slower than
PyTorch's), for float32 on the CPU, and where a ReLU directly precedes a
Dropout (the default order); everything else, and a machine where the build
failed (``failed`` in that folder says why), trains as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import sys
import sysconfig
import time
import traceback
from pathlib import Path
from typing import Any, Optional

import torch

log = logging.getLogger(__name__)

ENV, DIR_ENV = "REGBENCH_KERNELS", "REGBENCH_KERNELS_DIR"
NAME = "regbench_relu_dropout"
SOURCE = Path(__file__).with_name("csrc") / "relu_dropout.cpp"
CFLAGS = ["-O3", "-ffp-contract=off"]
_OFF = {"off", "0", "false", "no"}
_STALE_S = 15 * 60  # a build lock older than this is left over from a killed build

_loaded: dict[str, Any] = {}  # build folder -> the module, or None where unusable (looked up once per process)


def enabled() -> bool:
    return os.environ.get(ENV, "auto").strip().lower() not in _OFF


def supported_platform() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def missing_tools() -> Optional[str]:
    """What this machine lacks to build the kernel, or None."""
    import shutil

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx})"
    if shutil.which("ninja", path=_build_env()["PATH"]) is None:
        return "no ninja (pip install ninja)"
    return None


def build_dir() -> Path:
    """This source, torch and Python's build folder."""
    root = os.environ.get(DIR_ENV)
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "regbench" / "kernels"
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), sys.version.encode(), platform.machine().encode(),
                 str(sysconfig.get_config_var("EXT_SUFFIX")).encode(), " ".join(CFLAGS).encode()):
        key.update(part)
        key.update(b"\0")
    return Path(root).expanduser() / key.hexdigest()[:16]


def _library(folder: Path) -> Path:
    return folder / f"{NAME}.so"


def _import(folder: Path):
    import importlib.machinery
    import importlib.util

    path = _library(folder)
    loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
    spec = importlib.util.spec_from_file_location(NAME, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def get(build: bool = True):
    """The kernel module when it is built and worth using on this CPU, else
    None. When it has not been built (and ``build``), one build starts in the
    background for the runs after this one."""
    if not (enabled() and supported_platform()):
        return None
    folder = build_dir()
    key = str(folder)
    if key in _loaded:
        return _loaded[key]
    module = None
    if (folder / "ready").exists():
        try:
            module = _import(folder)
            if module.vector_level() == 0:
                module = None
        except Exception as exc:  # noqa: BLE001 - a damaged build trains with PyTorch's ops, and says so once
            log.warning("regbench's C++ kernel in %s does not load (%s: %s); training with PyTorch's ops "
                        "(python -m regbench.kernels --build builds it again)", folder, type(exc).__name__, exc)
        _loaded[key] = module
        return module
    if build and not (folder / "failed").exists() and missing_tools() is None:
        _start_background_build(folder)
    return None  # not cached: a later group in this process may find it built


def _start_background_build(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / "building"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if time.time() - lock.stat().st_mtime < _STALE_S:
                return  # another process is building it
            lock.unlink(missing_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with open(folder / "build.log", "wb") as out:
            child = subprocess.Popen([sys.executable, "-m", "regbench.kernels", "--background", str(folder)],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True, env=_build_env())
        os.write(fd, str(child.pid).encode())
        os.close(fd)
    except OSError as exc:  # an unwritable cache: train with PyTorch's ops, quietly
        log.debug("regbench's C++ kernel: no background build (%s)", exc)
        return
    log.info("building regbench's C++ kernel for ReLU + dropout in the background, once for this machine (about "
             "30 s at the lowest priority; log %s). Until it is ready, groups train with PyTorch's ops, to the same "
             "bits", folder / "build.log")


def _build_env() -> dict:
    env = dict(os.environ)
    # the ninja that pip installed beside this Python, when the environment is not activated
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.setdefault("MAX_JOBS", "1")
    return env


def build(folder: Optional[Path] = None, verbose: bool = False):
    """Compile into ``folder`` (this machine's build folder) now; returns the
    module. On failure writes ``failed`` (why) there and raises."""
    folder = folder or build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ready", "failed"):
        (folder / name).unlink(missing_ok=True)
    os.environ.update({k: v for k, v in _build_env().items() if k in ("PATH", "MAX_JOBS")})
    # its note that no CUDA runtime was found: this build is for the CPU
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load

        load(NAME, [str(SOURCE)], build_directory=str(folder), extra_cflags=CFLAGS, verbose=verbose)
        module = _import(folder)
        module.vector_level()
    except BaseException as exc:
        (folder / "failed").write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        raise
    (folder / "ready").write_text(f"torch {torch.__version__}, built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    _loaded.pop(str(folder), None)
    return module


class ReluDropout(torch.autograd.Function):
    """``relu(z) * mask`` of a :class:`regbench.learner.LaneMask` in one pass each way."""

    @staticmethod
    def forward(ctx, z, lanes, lo, thr, scale, kernel):
        ctx.save_for_backward(z, lanes, thr, scale)
        ctx.lo, ctx.kernel = lo, kernel
        return kernel.relu_dropout_forward(z, lanes, lo, thr, scale)

    @staticmethod
    def backward(ctx, g):
        z, lanes, thr, scale = ctx.saved_tensors
        return ctx.kernel.relu_dropout_backward(g, z, lanes, ctx.lo, thr, scale), None, None, None, None, None


def _status(folder: Path) -> str:
    if not enabled():
        return f"off ({ENV}={os.environ.get(ENV)}): fused groups use PyTorch's ops"
    if not supported_platform():
        return f"not used on {sys.platform}/{platform.machine()} (x86-64 Linux only): fused groups use PyTorch's ops"
    if (folder / "ready").exists():
        module = get(build=False)
        if module is None:
            return f"built in {folder}, but not used: this CPU has neither AVX2 nor AVX-512"
        return f"built in {folder}, used by fused groups on the CPU (AVX-{module.vector_level()} loops)"
    if (folder / "failed").exists():
        reason = (folder / "failed").read_text().splitlines()[0]
        return f"the build failed ({reason}; all of it in {folder / 'failed'}): fused groups use PyTorch's ops"
    if (folder / "building").exists():
        return f"being built in the background (log {folder / 'build.log'})"
    if missing_tools():
        return f"cannot be built here: {missing_tools()}. Fused groups use PyTorch's ops"
    return "not built yet: the first fused group starts its build (or: python -m regbench.kernels --build)"


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m regbench.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build it now, unless it is built, and wait (a failed build is tried again)")
    parser.add_argument("--background", metavar="FOLDER", help=argparse.SUPPRESS)  # the background build's own process
    args = parser.parse_args(argv)
    if args.background:
        folder = Path(args.background)
        try:
            os.nice(19)
        except OSError:
            pass
        try:
            build(folder)
        except BaseException:  # noqa: BLE001 - written to 'failed'; the training runs never wait on this
            return 1
        finally:
            (folder / "building").unlink(missing_ok=True)
        return 0
    folder = build_dir()
    if args.build:
        if not (enabled() and supported_platform()) or missing_tools():
            print(f"regbench kernels: {_status(folder)}")
            return 2
        start = time.perf_counter()
        try:
            if not (folder / "ready").exists():
                build(folder)
        except BaseException as exc:  # noqa: BLE001
            print(f"regbench kernels: the build failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                  f"all of it in {folder / 'failed'}. Fused groups train with PyTorch's ops", file=sys.stderr)
            return 1
            print(f"regbench kernels: built in {time.perf_counter() - start:.0f} s")
    print(f"regbench kernels: {_status(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
