"""Console progress: a tqdm bar per run, and per-epoch log lines kept off the
terminal while the bar shows them (they still go to the job's train.log).

The bar shows on a terminal and in a Jupyter notebook (``tqdm.auto``: a widget
where ipywidgets is installed, else text), never in a pipe or a CI log. It is
labelled with the job's overrides (``model.dropout=0.3,seed=2``)."""

from __future__ import annotations

import logging
import shutil
import sys
from typing import Sequence

from tqdm.auto import tqdm

from . import records

_bar_active = False
# Parallel sweep workers print one line per finished job, not one per epoch.
epoch_lines_on_console = True
# A fused launcher's jobs: the launcher prints one line per finished job
# ([7/40] ... completed in 4.1 s), so each job's own start/end lines go to its
# train.log only. Records logged with extra={"job_line": True}.
job_lines_on_console = True


class EpochLinesOffTerminal(logging.Filter):
    """Drops records logged with ``extra={"epoch_line": True}`` from the console
    while a bar shows them, or in parallel workers; train.log keeps them all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_line", False) and not job_lines_on_console:
            return False
        quiet = _bar_active or not epoch_lines_on_console
        return not (quiet and getattr(record, "epoch_line", False))


LABEL_CHARS = 60  # longer labels are cut: the bar itself must fit a line


def in_notebook() -> bool:
    """Whether this process is a Jupyter (IPython) kernel, whose stderr is no terminal."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    try:
        shell = sys.modules["IPython"].get_ipython()
    except Exception:  # an IPython too old or too odd to ask: no bar
        return False
    return getattr(shell, "kernel", None) is not None  # a terminal IPython has no kernel


def label(job_overrides: Sequence[Sequence[str]], job_seeds: Sequence[Sequence[int]]) -> str:
    """The bar's label: a job's overrides (runtime knobs such as device left
    out), e.g. ``model.dropout=0.3,seed=2``, or ``seed 0`` without any; a fused
    group: ``12 jobs (model.batchnorm=true)``, with the overrides all share."""
    if len(job_overrides) == 1:
        seeds = list(job_seeds[0])
        text = ",".join(records.job_overrides(job_overrides[0]))
        if len(seeds) > 1:
            span = f"seeds {seeds[0]}..{seeds[-1]}"
            text = f"{text} ({span})" if text else span
        text = text or f"seed {seeds[0]}"
    else:
        first = records.job_overrides(job_overrides[0])
        shared = [o for o in first if all(o in overrides for overrides in job_overrides[1:])]
        text = f"{len(job_overrides)} jobs" + (f" ({','.join(shared)})" if shared else "")
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 3] + "..."


class EpochBar:
    """tqdm over epochs, shown only when enabled and stderr is a terminal or
    this is a notebook."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        global _bar_active
        notebook = in_notebook()
        show = enabled and (sys.stderr.isatty() or notebook)
        # on a terminal, a quarter of its width: the bar and its numbers need the rest (a notebook's cell is wide)
        room = LABEL_CHARS if notebook else max(12, shutil.get_terminal_size((120, 24)).columns // 4)
        if len(desc) > room:  # a 60-character label left an 80-column bar one character and cut val_acc off
            desc = desc[: room - 3] + "..."
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", disable=not show, leave=True,
                         bar_format="{desc}: {n_fmt}/{total_fmt} epochs |{bar}| {elapsed}<{remaining}{postfix}")
        _bar_active = show

    def update(self, **postfix: float) -> None:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        global _bar_active
        self._bar.close()
        _bar_active = False
