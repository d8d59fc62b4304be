"""The Optuna side of :mod:`.optuna_sweeper` (imports optuna; Hydra's plugin
scan skips modules whose name starts with ``_``)."""

import logging
import math
from pathlib import Path
from typing import Any, List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def plain_optuna_logging() -> None:
    """Optuna's lines through Hydra's logging (console and log file), without colour codes."""
    optuna.logging.disable_default_handler()  # a colorlog handler on stderr, coloured even in a pipe
    optuna.logging.enable_propagation()


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


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
            status = job_status(folder) if folder is not None else "unknown"
            if folder is not None:
                trial.set_user_attr("records", str(Path(folder).resolve()))
                trial.set_user_attr("status", status)
            if ret.status == JobStatus.COMPLETED and isinstance(ret._return_value, float) and not _is_nan(ret._return_value):
                self.sweeper.valued += 1
            if ret.status == JobStatus.COMPLETED and _is_nan(ret._return_value):
                # Every seed diverged (a recorded outcome, not a crash). Optuna's
                # tell() refuses NaN, and the upstream sweeper then fails on its
                # own retry; no value makes it tell a failed trial instead.
                log.info(f"Trial {trial.number}: {status}, no objective (records in {folder})")
                ret.return_value = None
        return returns

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)


class LinkedOptunaSweeperImpl(OptunaSweeperImpl):
    """The upstream sweeper; trials carry ``records`` and ``status`` user attributes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: List[optuna.trial.Trial] = []
        self.valued = 0  # trials of this run that returned an objective
        self.completed_before = 0  # completed trials the stored study had

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
        try:
            return super().sweep(arguments)
        except ValueError:
            # The upstream sweeper ends by asking for the best trial, which
            # raises when none completed (every job diverged or failed): the
            # trials are told and the records written; the sweep's closing
            # count says what happened.
            if self.valued or self.completed_before or not self.asked:
                raise
            log.warning("No trial completed: the study has no best trial (each job's summary.json says why)")
            return None

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
        self.completed_before = completed
        to_go = max(0, self.n_trials - completed)
        log.info(f"Study {self.study_name} has {completed} completed trials of n_trials={self.n_trials}: {to_go} to go")
        return to_go
