"""Console progress: a tqdm bar per run, and per-epoch log lines kept off the
terminal while the bar shows them (they still go to the job's train.log)."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

_bar_active = False
# Parallel sweep workers print one line per finished job, not one per epoch.
epoch_lines_on_console = True


class EpochLinesOffTerminal(logging.Filter):
    """Drops records logged with ``extra={"epoch_line": True}`` from the console
    while a bar shows them, or in parallel workers; train.log keeps them all."""

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = _bar_active or not epoch_lines_on_console
        return not (quiet and getattr(record, "epoch_line", False))


class EpochBar:
    """tqdm over epochs, shown only when enabled and stderr is a terminal."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        global _bar_active
        show = enabled and sys.stderr.isatty()
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", disable=not show, leave=True)
        _bar_active = show

    def update(self, **postfix: float) -> None:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        global _bar_active
        self._bar.close()
        _bar_active = False
