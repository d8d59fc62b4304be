"""Console progress: a tqdm bar per run, and per-epoch log lines kept off the
terminal while the bar shows them (they still go to the job's train.log)."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

_bar_active = False


class EpochLinesOffTerminal(logging.Filter):
    """Drops records logged with ``extra={"epoch_line": True}`` while a bar is shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_bar_active and getattr(record, "epoch_line", False))


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
