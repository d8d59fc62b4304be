"""``regbench <command>``: dispatch only.

``train`` is a full Hydra application: this module removes the word ``train``
from argv (and from COMP_LINE for tab completion) and calls the ``@hydra.main``
task, so overrides, ``-m``, ``--cfg``, ``--help``, launchers and sweepers
behave as Hydra documents. The other commands are plain argparse programs.
Ctrl-C, SIGTERM and a closed pipe end every command in at most one line
(regbench.signals).
"""

from __future__ import annotations

import atexit
import errno
import gc
import logging
import os
import re
import sys
from typing import Optional

from . import __version__, signals

COMMANDS = {
    "train": "train one run or a sweep (a Hydra app; see `regbench train --help`)",
    "report": "compare any set of runs: tables, figures, report.html",
    "plan": "list the jobs a sweep will run and which already exist (same overrides as train -m)",
    "status": "state of every job in a sweep folder",
    "export": "put existing records into a tracker: --to tensorboard|mlflow",
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
# Here, not in regbench.preflight (which imports Hydra and OmegaConf): the
# warm process is forked as soon as these say a multirun comes (regbench.warm).
MULTIRUN_FLAGS = ("-m", "--multirun")


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


# regbench's Optuna sweeper: Hydra's, plus each trial linked to its job folder
# (hydra_plugins/regbench_optuna_sweeper); conf/search/*.yaml name it themselves.
OPTUNA_SWEEPER = "hydra_plugins.regbench_optuna_sweeper.optuna_sweeper.RegbenchOptunaSweeper"


def sweeper_overrides(argv: list[str]) -> list[str]:
    """What ``hydra/sweeper=optuna`` on the command line needs from regbench:
    its sweeper class, and ``direction=maximize``, since the value a job
    returns is its validation accuracy (train._objective). A direction or
    class the user gives is kept."""
    keys = [a.lstrip("+~").partition("=")[0] for a in argv]
    if not any(a.lstrip("+~") == "hydra/sweeper=optuna" for a in argv):
        return []
    added = []
    if "hydra.sweeper._target_" not in keys:
        added.append(f"hydra.sweeper._target_={OPTUNA_SWEEPER}")
    if "hydra.sweeper.direction" not in keys:
        added.append("hydra.sweeper.direction=maximize")
    return added


def _preflight(argv: list[str], command: str):
    """Compose and check every job before Hydra writes anything (regbench.preflight)."""
    from .preflight import PreflightError, check

    try:
        return check(argv, command)
    except PreflightError as exc:
        raise UsageError(str(exc)) from None


def train(argv: list[str]) -> int:
    """Run the Hydra app; 1 when a job of a sweep failed, died or was interrupted, else 0."""
    check_choices(argv)
    argv = list(argv) + sweeper_overrides(argv)
    from . import warm

    # a multirun's workers: a process that imports torch while the sweep is composed
    warm.start(argv)
    try:
        return _train(argv)
    finally:
        warm.close()


def _config_flag_refusal(argv: list[str]) -> str | None:
    """``-cd DIR`` that is no folder, or ``-cn NAME`` that no config folder holds:
    Hydra said so in several lines with HYDRA_FULL_ERROR and exit status 1."""
    def value(*flags: str) -> str | None:
        for i, a in enumerate(argv):
            if a in flags and i + 1 < len(argv):
                return argv[i + 1]
            for f in flags:
                if f.startswith("--") and a.startswith(f + "="):
                    return a.split("=", 1)[1]
        return None

    folder = value("-cd", "--config-dir")
    if folder is not None and not os.path.isdir(folder):
        return f"-cd {folder}: no such folder; -cd adds a folder of your own configs (e.g. -cd myconf -cn myconfig)"
    name = value("-cn", "--config-name")
    if name is not None:
        import importlib.resources

        stem = name.removesuffix(".yaml")
        own = folder is not None and os.path.isfile(os.path.join(folder, f"{stem}.yaml"))
        if not own and not importlib.resources.files("regbench.conf").joinpath(f"{stem}.yaml").is_file():
            where = f"in {folder} or " if folder is not None else ""
            return (f"-cn {name}: no config {stem}.yaml {where}in regbench's configs (its primary config is config); "
                    "give your own folder of configs with -cd DIR")
    return None


def _train(argv: list[str]) -> int:
    from . import lifetime

    if any(a in ("-sc", "--shell-completion") for a in argv) and not any(
            a.split("=", 1)[0] in ("install", "uninstall", "query") for a in argv):
        print("regbench train: error: --shell-completion needs install=SHELL, uninstall=SHELL or query=SHELL "
              "(e.g. eval \"$(regbench train -sc install=bash)\")", file=sys.stderr)
        return 2

    refusal = _config_flag_refusal(argv)
    if refusal:
        print(f"regbench train: error: {refusal}", file=sys.stderr)
        return 2
    lifetime.imported("regbench.preflight")  # Hydra and OmegaConf, for the rest of the command
    from .preflight import reset

    try:
        checked = _preflight(argv, "train")  # before torch is imported: a refusal comes in well under a second
        sweep_dir = _fixed_sweep_dir(argv, checked)
        _note_new_run_dir(argv, checked)
    finally:
        reset()

    import hydra

    from . import sweep
    from .config import register_configs

    register_configs()
    sys.argv = [sys.argv[0]] + list(argv)  # Hydra parses sys.argv itself
    app = hydra.main(version_base="1.3", config_path="pkg://regbench.conf", config_name="config")(task)
    # A console that went away (`| head`, a tee killed by Ctrl-C) must not
    # print a logging traceback per line; each job's train.log has them all.
    logging.raiseExceptions = False
    try:
        with signals.stop_handlers():
            app()
    except ValueError as exc:
        # Hydra checks its own flags before it runs anything (--resolve without
        # --cfg, -m with --cfg): one line. Anything else (a job's error that
        # HYDRA_FULL_ERROR=1 or a debugger asked Hydra to re-raise) goes on.
        if not _from_hydras_flag_check(exc):
            raise
        print(f"regbench train: error: {str(exc).strip().splitlines()[0]} (see regbench train --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM between jobs, or in a joblib sweep, whose workers
        # have recorded their jobs by now (signals.stop_handlers). A job
        # interrupted in this process said its own line and exits via SystemExit.
        signals.say("regbench train: interrupted" + (f"; records kept in {sweep_dir}{signals.RESUME}" if sweep_dir else ""))
        return signals.exit_status()
    # Non-zero when the sweep left work undone (a failed, dead or interrupted
    # job), else the report's where report.at_end=true wrote one.
    if sweep.last_counts and any(sweep.last_counts.get(s) for s in sweep.UNDONE):
        return 1
    return sweep.report_code or 0


def task(cfg) -> Optional[float]:
    """The Hydra task of ``regbench train``: :func:`regbench.train.main`,
    imported only when a job runs, so that ``--help``, ``--cfg`` and tab
    completion never import torch. Module-level, so launchers can pickle it.
    The import (torch's) is frozen out of the cycle collector (regbench.lifetime)."""
    from . import lifetime

    main = lifetime.imported("regbench.train").main

    return main(cfg)


def _fixed_sweep_dir(argv: list[str], checked) -> Optional[str]:
    """The sweep folder for the line that Ctrl-C ends a sweep with, when the
    command line or its experiment fixes it. Hydra composes its own config
    after preflight, so a ``${now:...}`` in the folder would name another moment."""
    from omegaconf import OmegaConf

    if checked is None:
        return None
    base = checked[0]
    if not (any(a in MULTIRUN_FLAGS for a in argv) or str(OmegaConf.select(base, "hydra.mode")) == "MULTIRUN"):
        return None
    raw = OmegaConf.to_container(base.hydra.sweep, resolve=False).get("dir")
    if not isinstance(raw, str) or "${now:" in raw:
        return None
    try:
        return str(base.hydra.sweep.dir)
    except Exception:  # an interpolation only the running app resolves: the line names no folder
        return None


def _from_hydras_flag_check(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by Hydra's own check of its command-line flags
    (in hydra._internal.utils._run_hydra itself, not in anything it called)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code if tb is not None else None
    return code is not None and code.co_name == "_run_hydra" and code.co_filename.replace("\\", "/").endswith("hydra/_internal/utils.py")


NEW_RUN_DIR_ENV = "REGBENCH_NEW_RUN_DIR"  # a single run's folder that Hydra makes (it was not there before)
STAMPED = "<stamped to the microsecond>"  # ... or: whatever folder Hydra names from ${now:...%f}


def _note_new_run_dir(argv: list[str], checked) -> None:
    """For a single run whose folder does not exist yet (the default, stamped
    to the microsecond, or a new hydra.run.dir): its absolute path, so that a
    run refused at its data may take away the folder Hydra made for it, and
    never one that was there before (regbench.train._discard_unstarted)."""
    from omegaconf import OmegaConf

    os.environ.pop(NEW_RUN_DIR_ENV, None)
    if checked is None or any(a in MULTIRUN_FLAGS for a in argv) or str(OmegaConf.select(checked[0], "hydra.mode")) == "MULTIRUN":
        return
    raw = OmegaConf.to_container(checked[0].hydra.run, resolve=False).get("dir")
    if not isinstance(raw, str):
        return
    stamps = re.findall(r"\$\{([^}]*)\}", raw)
    if stamps and all(t.startswith("now:") for t in stamps) and any("%f" in t for t in stamps):
        os.environ[NEW_RUN_DIR_ENV] = STAMPED  # the default: named by Hydra to the microsecond, so new
    elif "${" not in raw and not os.path.lexists(raw):
        os.environ[NEW_RUN_DIR_ENV] = os.path.abspath(raw)


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
    """Exit status: 130 after Ctrl-C, 143 after SIGTERM, 141 when the reader of stdout
    went away (``regbench plan ... | head -1``); no traceback for either."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else ""
    # The command's process ends after this: its exit need not walk every
    # object it made (or imported) for cycles. A single run's process, torch
    # imported: `regbench train trainer.epochs=1` took 2.79-3.35 s without
    # this, 1.97-2.50 s with it (5 interleaved rounds). The sweep process's
    # last collections: 0.1-0.15 s of a 12-run sweep (all its jobs' configs),
    # 0.01-0.02 s frozen. regbench.report.cli does the same for its process.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    if command == "train":
        from .provenance import remember_invocation

        remember_invocation(argv)  # each job's summary.json records the command the user typed
    try:
        with signals.early_handlers():
            try:
                code = _dispatch(argv)
            except OSError as exc:
                if signals.signalled():
                    raise KeyboardInterrupt from None
                if exc.errno != errno.ENAMETOOLONG:
                    raise
                # a path given with a name past the file system's limit: any check of it raised this (a traceback)
                print(f"regbench {command}: error: {exc.filename or 'a path'}: a name in it is longer than the "
                      f"file system allows ({exc.strerror}); use shorter folder names", file=sys.stderr)
                code = 2
            except Exception:
                if not signals.signalled():
                    raise
                raise KeyboardInterrupt from None  # what went wrong after Ctrl-C/SIGTERM came from it
        sys.stdout.flush()  # a closed pipe met here is an exit status, not a message at exit
        return code
    except KeyboardInterrupt:
        signals.say(f"regbench {command}: interrupted" if command in COMMANDS else "regbench: interrupted")
        return signals.exit_status()
    except BrokenPipeError:
        signals.mute(sys.stdout)
        return signals.EXIT_BROKEN_PIPE
    finally:
        # Also on SystemExit (an interrupted job): the interpreter's last flush
        # would report a closed pipe as "Exception ignored ... BrokenPipeError".
        signals.flush_or_mute()


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] == "--version" or argv[:2] == ["train", "--version"]:  # not Hydra's own version
        from importlib.metadata import version

        print(f"regbench {__version__} (hydra-core {version('hydra-core')})")
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
                rest = list(rest) + sweeper_overrides(rest)  # as train -m composes it: plan then says what it lists
                return plan_main(rest, _preflight(rest, "plan"))
            finally:
                reset()
    except UsageError as exc:
        print(f"regbench {command}: error: {exc}", file=sys.stderr)
        return 2
    if command == "status":
        from .plan import status_main

        return status_main(rest)
    if command == "export":
        from .export import export_main

        return export_main(rest)
    if command == "report":
        from .report.cli import main as report_main

        return report_main(rest)
    print(f"regbench: error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
