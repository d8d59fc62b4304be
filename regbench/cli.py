"""``regbench <command>``: dispatch only.

``train`` is a full Hydra application: this module removes the word ``train``
from argv (and from COMP_LINE for tab completion) and calls the ``@hydra.main``
task, so overrides, ``-m``, ``--cfg``, ``--help``, launchers and sweepers
behave as Hydra documents. The other commands are plain argparse programs.
"""

from __future__ import annotations

import os
import sys

from . import __version__

COMMANDS = {
    "train": "train one run or a sweep (a Hydra app; see `regbench train --help`)",
    "report": "compare any set of runs: tables, figures, report.html",
    "plan": "list the jobs a sweep will run and which already exist (same overrides as train -m)",
    "status": "state of every job in a sweep folder",
}

# Hydra plugins that are optional extras: group choice -> (plugin module, extra)
PLUGINS = {
    ("hydra/launcher", "joblib"): ("hydra_plugins.hydra_joblib_launcher", "regbench"),
    ("hydra/launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher", "regbench[slurm]"),
    ("hydra/launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher", "regbench[slurm]"),
    ("hydra/sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "regbench[optuna]"),
}

USAGE = "usage: regbench [--version] [--help] <command> [args...]\n\ncommands:\n" + "".join(
    f"  {name:<8}{text}\n" for name, text in COMMANDS.items()
) + "\nexamples:\n  regbench train model.dropout=0.3\n  regbench train -m model.dropout=0,0.5 model.batchnorm=false,true seed=0,1\n  regbench report outputs/multirun/<date>/<time>\n\ntab completion (bash): eval \"$(regbench train -sc install=bash)\"\n"

COMPLETION_FLAGS = ("-sc", "--shell-completion")


class UsageError(Exception):
    pass


def check_choices(argv: list[str]) -> None:
    """Name an uninstalled plugin in one line, before Hydra's longer message:
    ``hydra/launcher=NAME``, ``hydra/sweeper=NAME``. (A missing experiment or
    other config option is named by regbench.preflight, which also sees the
    user's own config dirs.)"""
    import importlib.util

    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        plugin = PLUGINS.get((key, value))
        if plugin and importlib.util.find_spec(plugin[0]) is None:
            raise UsageError(f"{key}={value} needs a Hydra plugin that is not installed: pip install '{plugin[1]}'")


def _preflight(argv: list[str], command: str):
    """Compose and check every job before Hydra writes anything (regbench.preflight)."""
    from .preflight import PreflightError, check

    try:
        return check(argv, command)
    except PreflightError as exc:
        raise UsageError(str(exc)) from None


def train(argv: list[str]) -> int:
    """Run the Hydra app; 1 when a job of a sweep failed, else 0."""
    check_choices(argv)
    from .preflight import reset

    try:
        _preflight(argv, "train")  # before torch is imported: a refusal comes in well under a second
    finally:
        reset()

    import hydra

    from . import sweep
    from .config import register_configs
    from .train import main as task

    register_configs()
    sys.argv = [sys.argv[0]] + list(argv)  # Hydra parses sys.argv itself
    app = hydra.main(version_base="1.3", config_path="pkg://regbench.conf", config_name="config")(task)
    app()
    return 1 if sweep.last_counts and sweep.last_counts.get("failed") else 0


def _completion(argv: list[str]) -> None:
    """Hydra's bash completion runs ``regbench -sc query=bash`` with COMP_LINE
    holding the whole line, ``regbench train model.dr``: hand Hydra the line
    without ``train``, or complete the command name itself."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if any(a.startswith("query") for a in argv) and (len(words) < 2 or words[1] != "train"):
        typing_command = len(words) == 1 or (len(words) == 2 and not line.endswith(" "))
        print(" ".join(COMMANDS) if typing_command else "")
        return
    if line:
        cut = line.index("train", len(words[0]))
        os.environ["COMP_LINE"] = line[:cut] + line[cut + len("train ") :]
        point = int(os.environ.get("COMP_POINT", len(line)))
        os.environ["COMP_POINT"] = str(max(cut, point - len("train ")))
    train(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"regbench {__version__}")
        return 0
    if argv[0] in COMPLETION_FLAGS:
        _completion(argv)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            return train(rest)
        if command == "plan":
            from .plan import plan_main

            if any(a in ("-h", "--help") for a in rest):
                return plan_main(rest)
            check_choices(rest)
            from .preflight import reset

            try:
                return plan_main(rest, _preflight(rest, "plan"))
            finally:
                reset()
    except UsageError as exc:
        print(f"regbench {command}: error: {exc}", file=sys.stderr)
        return 2
    if command == "status":
        from .plan import status_main

        return status_main(rest)
    if command == "report":
        from .report.cli import main as report_main

        return report_main(rest)
    print(f"regbench: error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
