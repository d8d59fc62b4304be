"""Where a run came from: the command line the user typed, the commit of the
repository they ran it in, versions, the machine. summary.json keeps it under
``provenance``; it never enters the config, so neither the fingerprint that
guards a resume nor a job folder's identity depends on it.

``regbench train`` records the command line and folder in the environment
(:func:`remember_invocation`) before Hydra starts, so jobs that run in other
processes (joblib workers, submitit jobs) record the user's command, not the
worker's. Without it (the Python API) the process's own ``sys.argv`` and
folder are used. Git is asked once per process, with a short timeout.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

ENV = "REGBENCH_INVOCATION"  # JSON: {"command": [...], "cwd": "..."}
GIT_TIMEOUT_S = 2.0


def remember_invocation(argv: list[str]) -> None:
    """Called by ``regbench``'s entry point: ``argv`` without the program name."""
    os.environ[ENV] = json.dumps({"command": ["regbench", *argv], "cwd": os.getcwd()})


def invocation() -> tuple[list[str], str]:
    """(command line, folder it was typed in): the user's, else this process's."""
    try:
        found = json.loads(os.environ.get(ENV, ""))
        return [str(a) for a in found["command"]], str(found["cwd"])
    except (ValueError, KeyError, TypeError):
        return list(sys.argv), os.getcwd()


def launch_dir() -> str:
    """The folder the command was typed in: relative paths in the config
    (data.path, data.root, data.loader's module) are read from there, also
    where Hydra changed into the job's folder (hydra.job.chdir=true)."""
    if "hydra.core.hydra_config" not in sys.modules:  # not under Hydra (the Python API): no other folder to know
        return os.getcwd()
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return HydraConfig.get().runtime.cwd or os.getcwd()
    except Exception:  # no Hydra here, or a config without its runtime node (the Python API)
        pass
    return os.getcwd()


def from_launch_dir(text: str) -> Path:
    """``text`` as a path, ``~`` expanded, relative to :func:`launch_dir`."""
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else Path(launch_dir()) / path


def _git(cwd: str, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # `git status` must not write .git/index
        )
    except (OSError, subprocess.SubprocessError):  # no git, no folder, too slow
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(cwd: str) -> dict[str, Any]:
    """``{"git_commit": sha, "git_dirty": bool}`` of the repository holding
    ``cwd``; both None when it is not in one or git is missing. Dirty means a
    tracked file differs from the commit (untracked files, such as the
    run's own outputs/, do not count)."""
    head = _git(cwd, "rev-parse", "HEAD")
    if head is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return {"git_commit": head.strip(), "git_dirty": None if status is None else bool(status.strip())}


def collect(device: Any = None) -> dict[str, Any]:
    """The provenance of a run on ``device`` (a torch.device or its name)."""
    import torch

    command, cwd = invocation()
    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    return {
        "command": command,
        "cwd": cwd,
        **git_state(cwd),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,  # the CUDA torch was built with; None for a CPU build
        "device_name": torch.cuda.get_device_name(device) if cuda else None,
        "host": socket.gethostname(),
    }
