"""regbench's Optuna sweeper: Hydra's Optuna sweeper (hydra-optuna-sweeper,
the ``optuna`` extra) that also links each trial to its records.

Every trial gets two user attributes before it is told its value:
``records`` (the absolute path of the trial's job folder, which holds its
metrics.csv and summary.json) and ``status`` (the job's status from
summary.json: completed, diverged, failed, ...). It also keeps the console
plain: Optuna's own colour handler is replaced by Hydra's logging (no ANSI
codes in logs and pipes), and alembic's INFO lines (sqlite storage) are off.

Selected with ``hydra.sweeper._target_`` set to this class on top of
``hydra/sweeper=optuna``: ``regbench train`` adds it (and
``direction=maximize``, since regbench's objective is validation accuracy)
when the command line picks ``hydra/sweeper=optuna``; the stored searches in
conf/search/ set it themselves. The config is the upstream plugin's
(``OptunaSweeperConf``), unchanged.

This module imports neither optuna nor the upstream plugin: Hydra scans every
module under hydra_plugins, also where the ``optuna`` extra is not installed.
"""

# no `from __future__ import annotations`: Hydra scans plugins with exec_module
import logging
from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# alembic (imported with optuna, for its sqlite storage) logs a line per plugin
# it sets up, at INFO. Set here, at Hydra's plugin scan: optuna is first imported
# when Hydra instantiates the sweeper's sampler, before the sweeper itself.
logging.getLogger("alembic").setLevel(logging.WARNING)

TARGET = "hydra_plugins.regbench_optuna_sweeper.optuna_sweeper.RegbenchOptunaSweeper"


class RegbenchOptunaSweeper(Sweeper):
    def __init__(self, **kwargs: Any) -> None:
        from ._impl import LinkedOptunaSweeperImpl  # imports optuna

        self.sweeper = LinkedOptunaSweeperImpl(**kwargs)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        return self.sweeper.sweep(arguments)
