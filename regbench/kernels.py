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
The first fused group that could use it starts that build in the background
(one process, at nice 19, holding the ``building`` lock with its pid and host; its
output goes to ``build.log``) and trains with PyTorch's ops meanwhile; the
groups after it use the kernel. ``ready`` holds the library's sha256, checked
before every load: a damaged library could crash the process that maps it,
so it is built again instead. ``python -m regbench.kernels --build`` builds
it now and says what happened; ``python -m regbench.kernels`` says whether
it is used. ``REGBENCH_KERNELS=off`` neither builds nor uses it. It is only
used on x86-64 Linux CPUs with AVX2 or AVX-512 (on others its loops are
slower than PyTorch's), for float32 on the CPU, and where a ReLU directly
precedes a Dropout (the default order); everything else, and a machine where
the build failed (``failed`` in that folder says why), trains as before.
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
_LOCK_MAX_S = 2 * 3600  # a build lock older than this is stale whatever its pid says (pids are reused)
_FOREIGN_LOCK_S = 30 * 60  # a lock from another host sharing the cache (NFS): counted by its age alone

_loaded: dict[str, Any] = {}  # build folder -> the module, or None where unusable (looked up once per process)


def enabled() -> bool:
    return os.environ.get(ENV, "auto").strip().lower() not in _OFF


def supported_platform() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def missing_tools() -> Optional[str]:
    """What this machine lacks to build the kernel, or None."""
    import shlex
    import shutil

    cxx = os.environ.get("CXX", "c++")
    try:
        words = shlex.split(cxx) if cxx.strip() else ["c++"]
    except ValueError:  # unbalanced quotes
        return f"no C++ compiler (CXX={cxx!r} does not parse)"
    if shutil.which(words[1] if words[0] in ("ccache", "sccache") and len(words) > 1 else words[0]) is None:
        return f"no C++ compiler ({cxx})"
    if shutil.which("ninja", path=_build_path()) is None:
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


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(folder: Path) -> bool:
    """Whether the library is the one the build wrote (``ready`` holds its
    sha256): a truncated or replaced file is never loaded, since a damaged
    library can crash the process that maps it (SIGBUS), past any except."""
    try:
        recorded = (folder / "ready").read_text().split()[0]
        return recorded == _digest(_library(folder))
    except (OSError, IndexError):
        return False


def _import(folder: Path):
    import importlib.machinery
    import importlib.util

    path = _library(folder)
    loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
    spec = importlib.util.spec_from_file_location(NAME, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _load(folder: Path):
    """(module or None, why not): the built library, checked, then loaded."""
    if not (folder / "ready").exists():
        return None, "not built"
    if not _intact(folder):
        return None, "is damaged (its library is missing or not the one its build wrote)"
    try:
        module = _import(folder)
    except Exception as exc:  # noqa: BLE001 - a library that does not load: PyTorch's ops
        return None, f"does not load ({type(exc).__name__}: {exc})"
    if module.vector_level() == 0:
        return None, "built, but not used: this CPU has neither AVX2 nor AVX-512"
    return module, ""


def get(build: bool = True):
    """The kernel module when it is built and worth using on this CPU, else
    None. When it has not been built, or its library is damaged (and
    ``build``), one build starts in the background for the runs after this one."""
    if not (enabled() and supported_platform()):
        return None
    folder = build_dir()
    key = str(folder)
    if key in _loaded:
        return _loaded[key]
    module, why = _load(folder)
    if module is not None or why.startswith("built, but"):
        _loaded[key] = module
        return module
    can = build and not (folder / "failed").exists() and missing_tools() is None and _writable(folder)
    if why != "not built" and _builder(folder) is None:
        log.warning("regbench's C++ kernel in %s %s: training with PyTorch's ops, to the same bits%s", folder,
                    why, "; building it again" if can else "")
        if can:
            try:
                (folder / "ready").unlink(missing_ok=True)
            except OSError:
                can = False
    if can:
        _start_background_build(folder)
    return None  # not cached: a later group in this process may find it built


_children: list = []  # the background builds this process started (polled by _builder, so none stays a zombie)


def _builder(folder: Path) -> Optional[int]:
    """The pid of the process building in ``folder``, if one is alive (-1:
    one that cannot be checked from here, counted alive while its lock is
    young: a lock just made, or made on another host sharing this cache)."""
    for child in _children:
        child.poll()  # reaps a builder of ours that ended (a zombie still answers kill(pid, 0))
    lock = folder / "building"
    try:
        words = lock.read_text().split()
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return None
    try:
        pid = int(words[0]) if words else 0
    except ValueError:
        pid = 0
    if pid <= 0:  # just made: its creator is about to start the build
        return -1 if age < 60 else None
    if age > _LOCK_MAX_S:
        return None
    if len(words) > 1 and words[1] != platform.node():  # another host's process: its pid means nothing here
        return -1 if age < _FOREIGN_LOCK_S else None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, another user's
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None  # ended, not yet reaped by its parent
    except (OSError, IndexError):
        pass
    return pid


def _start_background_build(folder: Path) -> None:
    import shutil

    lock = folder / "building"
    fd = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _builder(folder) is not None:
                return  # another process is building it
            lock.unlink(missing_ok=True)  # its builder died (killed): build again
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        if _load(folder)[0] is not None:  # built meanwhile, by the builder whose lock just went
            lock.unlink(missing_ok=True)
            return
        # at the lowest priority from its first instruction (its imports too) where `nice` is at hand, from the
        # build folder (so that no regbench/ in the caller's folder stands in for this one)
        command = [sys.executable, "-m", "regbench.kernels", "--background", str(folder)]
        if shutil.which("nice"):
            command = ["nice", "-n", "19", *command]
        with open(folder / "build.log", "wb") as out:
            child = subprocess.Popen(command, cwd=str(folder), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                     env=_child_env())
        _children.append(child)
        os.write(fd, f"{child.pid} {platform.node()}".encode())
    except OSError as exc:  # an unwritable cache: train with PyTorch's ops, quietly
        log.debug("regbench's C++ kernel: no background build (%s)", exc)
        if fd is not None:
            lock.unlink(missing_ok=True)
        return
    finally:
        if fd is not None:
            os.close(fd)
    log.info("building regbench's C++ kernel for ReLU + dropout in the background (about 25 s of one core, at the "
             "lowest priority; log %s). Until it is ready, groups train with PyTorch's ops, to the same bits",
             folder / "build.log")


def _child_env() -> dict:
    """The environment of the background build: this one, with the folder that
    holds this regbench first on PYTHONPATH when it is not an installed
    package's (a source tree run as is), so the child builds this source."""
    env = dict(os.environ)
    root = Path(__file__).resolve().parent.parent
    if root.name not in ("site-packages", "dist-packages"):
        rest = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([str(root), rest]) if rest else str(root)
    return env


def _build_path() -> str:
    # the ninja that pip installed beside this Python, when the environment is not activated
    return os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


def build(folder: Optional[Path] = None, verbose: bool = False):
    """Compile into ``folder`` (this machine's build folder) now; returns the
    module. On failure writes ``failed`` (why) there, where it can, and raises."""
    folder = folder or build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # the old outputs too: ninja rebuilds by file times, and a truncated library is newer than its object
    for name in ("ready", "failed", f"{NAME}.so", "relu_dropout.o"):
        (folder / name).unlink(missing_ok=True)
    saved = {k: os.environ.get(k) for k in ("PATH", "MAX_JOBS")}
    quiet = logging.getLogger("torch.utils.cpp_extension")  # its note that no CUDA runtime was found: a CPU build
    level = quiet.level
    os.environ["PATH"] = _build_path()
    os.environ.setdefault("MAX_JOBS", "1")
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load

        load(NAME, [str(SOURCE)], build_directory=str(folder), extra_cflags=CFLAGS, verbose=verbose)
        module = _import(folder)
        module.vector_level()
    except BaseException as exc:
        try:
            (folder / "failed").write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        except OSError:
            pass
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        quiet.setLevel(level)
    tmp = folder / f".ready.{os.getpid()}"  # whole or not at all: a reader never sees it half written
    tmp.write_text(f"{_digest(_library(folder))} torch {torch.__version__}, built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    os.replace(tmp, folder / "ready")
    _loaded.pop(str(folder), None)
    return module


class ReluDropout(torch.autograd.Function):
    """``relu(z) * mask`` of a :class:`regbench.batched.LaneMask` in one pass each way."""

    @staticmethod
    def forward(ctx, z, lanes, lo, thr, scale, kernel):
        ctx.save_for_backward(z, lanes, thr, scale)
        ctx.lo, ctx.kernel = lo, kernel
        return kernel.relu_dropout_forward(z, lanes, lo, thr, scale)

    @staticmethod
    def backward(ctx, g):
        z, lanes, thr, scale = ctx.saved_tensors
        return ctx.kernel.relu_dropout_backward(g, z, lanes, ctx.lo, thr, scale), None, None, None, None, None


def _writable(folder: Path) -> bool:
    """Whether ``folder`` is, or could be made, a folder this process writes in."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def status(folder: Path) -> str:
    if not enabled():
        return f"off ({ENV}={os.environ.get(ENV)}): fused groups use PyTorch's ops"
    if not supported_platform():
        return f"not used on {sys.platform}/{platform.machine()} (x86-64 Linux only): fused groups use PyTorch's ops"
    if (folder / "ready").exists():
        module, why = _load(folder)
        if module is not None:
            return f"built in {folder}, used by fused groups on the CPU (AVX-{module.vector_level()} loops)"
        if why.startswith("built, but"):
            return f"{why} (in {folder}): fused groups use PyTorch's ops"
        return f"the build in {folder} {why}: the next fused group builds it again (or: python -m regbench.kernels --build)"
    if (folder / "failed").exists():
        reason = (folder / "failed").read_text().splitlines()[0]
        return f"the build failed ({reason}; all of it in {folder / 'failed'}): fused groups use PyTorch's ops"
    if _builder(folder) is not None:
        return f"being built in the background (log {folder / 'build.log'})"
    if missing_tools():
        return f"cannot be built here: {missing_tools()}. Fused groups use PyTorch's ops"
    if not _writable(folder):
        return f"cannot be built: {folder} cannot be written ({DIR_ENV} names another folder). Fused groups use PyTorch's ops"
    return "not built yet: the first fused group starts its build (or: python -m regbench.kernels --build)"


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m regbench.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true",
                        help="build it now unless it is built and loads, and wait (a failed build is tried again)")
    parser.add_argument("--background", metavar="FOLDER", help=argparse.SUPPRESS)  # the background build's own process
    args = parser.parse_args(argv)
    if args.background:  # started by _start_background_build, at nice 19; its output is build.log
        folder = Path(args.background)
        if os.getpriority(os.PRIO_PROCESS, 0) < 19:  # started without `nice`
            try:
                os.nice(19)
            except OSError:
                pass
        try:
            build(folder, verbose=True)
        except BaseException:  # noqa: BLE001 - the training runs never wait on this
            traceback.print_exc()
            return 1
        finally:
            try:
                if (folder / "building").read_text().split()[:1] == [str(os.getpid())]:
                    (folder / "building").unlink(missing_ok=True)
            except OSError:
                pass
        return 0
    folder = build_dir()
    if args.build and _load(folder)[0] is None:
        if not (enabled() and supported_platform()) or missing_tools() or not _writable(folder):
            print(f"regbench kernels: {status(folder)}")
            return 2
        if _load(folder)[0] is None and not _load(folder)[1].startswith("built, but"):
            print(f"regbench kernels: building in {folder} (about 25 s) ...", flush=True)
            start = time.perf_counter()
            try:
                build(folder)
            except BaseException as exc:  # noqa: BLE001
                first = str(exc).splitlines()[0] if str(exc) else ""
                where = f"all of it in {folder / 'failed'}" if (folder / "failed").exists() else "nothing written"
                print(f"regbench kernels: the build failed ({type(exc).__name__}: {first}; {where}). "
                      f"Fused groups train with PyTorch's ops", file=sys.stderr)
                return 1
            print(f"regbench kernels: built in {time.perf_counter() - start:.0f} s")
    print(f"regbench kernels: {status(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
