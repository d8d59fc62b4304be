"""The options of ``regbench report``, without the report's imports.

``regbench train ... report.at_end=true report.options=[...]`` checks these
options before any job starts (regbench.config.validate), in a process that
has not imported pandas, matplotlib or torch; ``regbench report`` parses its
command line with the same parser.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

FORMATS = ("png", "svg", "pdf")
PROG = "regbench report"


def build_parser(parser_class: type = argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = parser_class(
        prog=PROG,
        description="Compare runs: tables, statistics over seeds, figures and one self-contained report.html.",
        epilog="example: regbench report outputs/multirun/2026-11-26/10-00-00 --target 0.6",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders to search for run records (sweeps, single runs)")
    p.add_argument("-o", "--out", metavar="OUT", help="output folder (default: <first PATH>/report)")
    p.add_argument("--metric", default="val_acc",
                   help="metrics.csv column to rank and compare cells by (default: val_acc); *_acc is "
                        "better higher, anything else lower (gap_acc, the fit - val accuracy gap, too)")
    p.add_argument("--target", type=_finite_float, metavar="VALUE",
                   help="target value of --metric for 'epochs/seconds to target' (accuracy as a fraction, e.g. "
                        "0.6; default: the weakest cell's mean best)")
    p.add_argument("--formats", default="png",
                   help=f"figure files to write, comma-separated from {','.join(FORMATS)} (default: png; "
                        "PNG is always written, the HTML embeds it; SVG and PDF take longer)")
    p.add_argument("--x", metavar="FACTOR", help="factor on the ablation plot's x axis, by key or its last part "
                   "(model.dropout or dropout; default: every numeric factor)")
    p.add_argument("--color", metavar="FACTOR", help="factor that sets the colour of each cell's curves (default: "
                   "--x if given, else the numeric factor with the most levels; the ablation plot always colours "
                   "by the factors not on its x axis)")
    p.add_argument("--style", metavar="FACTOR", help="factor that sets line style (default: another factor)")
    p.add_argument("--allow-mixed", action="store_true", help="compare runs of different datasets (data.name)")
    p.add_argument("-j", "--jobs", type=_positive_int, metavar="N",
                   help="processes that draw figures, this one included, at most one per figure (default: one per "
                        "CPU, up to 4, unless there are only a few small figures)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    return p


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: a finite number")
    return value


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not allowed: at least 1 process")
    return n


def parse_formats(text: str) -> list[str]:
    """``--formats`` as a list, PNG first; ValueError naming an unknown format and the allowed ones."""
    asked = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    bad = [f for f in asked if f not in FORMATS]
    if bad:
        raise ValueError(f"--formats {text}: unknown format {bad[0]!r}; allowed: {', '.join(FORMATS)}")
    return list(dict.fromkeys(["png", *asked]))


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line (it prints its usage first), as every other refusal."""

    def parse_args(self, args=None, namespace=None):
        self._args = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str):
        args = getattr(self, "_args", [])
        after = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--target"]
        if message == "argument --target: expected one argument" and any(a[:2] in ("-0", "-1", "-2", "-3", "-4", "-5", "-6", "-7", "-8", "-9", "-.") for a in after):
            message += " (a negative value is written --target=-1e-3)"  # argparse read it as another option
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Refused(Exception):
    pass


class _CheckingParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit
        raise _Refused(message)


def target_refusal(metric: str, target: Optional[float]) -> Optional[str]:
    """Why ``--target`` cannot be a value of ``--metric``: accuracies are
    fractions in [0, 1], an accuracy gap (fit - val) one in [-1, 1], a loss
    (not a gap) at least 0."""
    if target is None:
        return None
    if metric.endswith("loss") and not metric.startswith("gap") and target < 0:
        return f"--target {target:g}: losses are cross-entropies, >= 0"
    if not metric.endswith("acc"):
        return None
    low = -1 if metric.startswith("gap") else 0
    if low <= target <= 1:
        return None
    what = "accuracy gaps are differences of fractions, in [-1, 1]" if low else "accuracies are fractions in [0, 1]"
    return f"--target {target:g}: {what}" + (f"; did you mean {target / 100:g}?" if 1 < abs(target) <= 100 else "")


def refusal(options: list[str], root: Optional[str] = None) -> Optional[str]:
    """Why ``options`` (as typed after ``regbench report PATH``) would not
    parse, or name what cannot be there, in one sentence naming what is
    allowed; None when they are fine. ``root``: the folder the report's paths
    and ``-o`` are relative to (the sweep's launch folder)."""
    import os
    options = [str(o) for o in options]
    parser = build_parser(_CheckingParser)
    allowed = ", ".join(a.option_strings[-1] for a in parser._actions if a.option_strings and a.dest != "help")
    if any(o in ("-h", "--help") for o in options):
        return f"--help asks for the report's help, not a report; allowed: {allowed}"
    try:
        args = parser.parse_args(["PATH", *options])
        parse_formats(args.formats)
    except _Refused as exc:
        return f"{exc}; allowed: {allowed}"
    except ValueError as exc:
        return str(exc)
    # what is known before the sweep trains: else its report failed on it after every job had trained
    why = target_refusal(args.metric, args.target)
    if why:
        return why
    at = lambda p: os.path.join(root or os.getcwd(), p)  # as the report reads them: no ~ expanded
    for given in [*args.paths[1:], *([args.out] if args.out else [])]:
        for name in at(given).split(os.sep):
            if len(os.fsencode(name)) > 255:
                return f"{given}: a name in it is longer than the file system allows (255 bytes)"
    for extra in args.paths[1:]:  # runs to compare with, besides the sweep's own
        if not os.path.isdir(at(extra)):
            return (f"{extra}: no such folder (a PATH in report.options is compared with the sweep's runs; "
                    "the sweep folder itself is already given)")
    if args.out and os.path.exists(at(args.out)) and not os.path.isdir(at(args.out)):
        return f"-o {args.out}: a file, not a folder; give a new or empty folder for the report"
    return None
