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
}

USAGE = "usage: regbench [--version] [--help] <command> [args...]\n\ncommands:\n" + "".join(
    f"  {name:<8}{text}\n" for name, text in COMMANDS.items()
) + "\nexamples:\n  regbench train model.dropout=0.3\n  regbench train -m model.dropout=0,0.5 model.batchnorm=false,true seed=0,1\n  regbench report outputs/multirun/<date>/<time>\n\ntab completion (bash): eval \"$(regbench train -sc install=bash)\"\n"

COMPLETION_FLAGS = ("-sc", "--shell-completion")


def train(argv: list[str]) -> None:
    import hydra

    from .config import register_configs
    from .train import main as task

    register_configs()
    sys.argv = [sys.argv[0]] + list(argv)  # Hydra parses sys.argv itself
    app = hydra.main(version_base="1.3", config_path="pkg://regbench.conf", config_name="config")(task)
    app()


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
    if command == "train":
        train(rest)
        return 0
    if command == "report":
        from .report.cli import main as report_main

        return report_main(rest)
    print(f"regbench: error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
