"""The Optuna side of :mod:`.optuna_sweeper` (imports optuna; Hydra's plugin
scan skips modules whose name starts with ``_``)."""

import logging
from pathlib import Path
from typing import Any, List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def plain_optuna_logging() -> None:
    """Optuna's lines through Hydra's logging (console and log file), without colour codes."""
    optuna.logging.disable_default_handler()  # a colorlog handler on stderr, coloured even in a pipe
    optuna.logging.enable_propagation()


def records_dir(ret: JobReturn) -> Optional[str]:
    """The job folder a launcher ran the trial in (Hydra's runtime.output_dir)."""
    return OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir", default=None) if ret.hydra_cfg else None


def job_status(folder: str) -> str:
    """The job's status from its summary.json (``missing`` when it wrote none)."""
    from regbench import records

    try:
        return str(records.read_summary(folder).get("status", "unknown"))
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):
        return "unreadable"


class _LinkingLauncher:
    """Wraps the sweeper's launcher: once a batch of trials has run, and before
    the sweeper tells Optuna their values, each trial is given its job folder."""

    def __init__(self, launcher: Any, sweeper: "LinkedOptunaSweeperImpl"):
        self.launcher, self.sweeper = launcher, sweeper

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns = self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        for trial, ret in zip(self.sweeper.asked, returns):
            folder = records_dir(ret)
            if folder is not None:
                trial.set_user_attr("records", str(Path(folder).resolve()))
                trial.set_user_attr("status", job_status(folder))
        return returns

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)


class LinkedOptunaSweeperImpl(OptunaSweeperImpl):
    """The upstream sweeper; trials carry ``records`` and ``status`` user attributes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: List[optuna.trial.Trial] = []

    def setup(self, **kwargs: Any) -> None:
        super().setup(**kwargs)
        self.launcher = _LinkingLauncher(self.launcher, self)

    def _configure_trials(self, trials, search_space_distributions, fixed_params):  # type: ignore[no-untyped-def]
        self.asked = list(trials)  # the batch the next launch runs, in the same order
        return super()._configure_trials(trials, search_space_distributions, fixed_params)

    def sweep(self, arguments: List[str]) -> None:
        plain_optuna_logging()
        storage = str(self.storage or "")
        if storage.startswith("sqlite:///"):  # create_study does not make the folder
            Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.n_trials = self._trials_to_go()
        return super().sweep(arguments)

    def _trials_to_go(self) -> int:
        """A stored study is resumed, as a sweep is: n_trials is the study's
        total, so running the same command again runs only the trials that
        have not completed (a failed or interrupted trial is replaced)."""
        if not (self.storage and self.study_name):
            return self.n_trials
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        except KeyError:  # a new study
            return self.n_trials
        completed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        to_go = max(0, self.n_trials - completed)
        log.info(f"Study {self.study_name} has {completed} completed trials of n_trials={self.n_trials}: {to_go} to go")
        return to_go
