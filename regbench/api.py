"""regbench from Python (a notebook, a script): the four verbs of the CLI.

    import regbench
    cfg = regbench.compose(["model.dropout=0.3", "trainer.epochs=10"])
    summary = regbench.run(cfg, "outputs/nb/dropout0.3")       # or regbench.run([...overrides], out_dir)
    study = regbench.load("outputs/nb")                        # .runs, .epochs, .cells DataFrames
    regbench.report(["outputs/nb"], "outputs/nb/report")       # report.html and friends

Each imports what it needs when called: ``import regbench`` stays instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

if TYPE_CHECKING:  # for the annotations only: importing them costs Hydra and pandas
    from omegaconf import DictConfig

    from .report.load import Study

Overrides = Sequence[str]
PathLike = Union[str, os.PathLike]


def compose(overrides: Overrides = ()) -> "DictConfig":
    """The config ``regbench train OVERRIDES`` would run, composed from the
    packaged configs and the typed schema, and range-checked: a typo, a wrong
    type or a value out of range raises ``ValueError`` with one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from .config import ConfigError, register_configs, validate
    from .preflight import describe

    if isinstance(overrides, str):
        raise TypeError("compose() takes a list of overrides, e.g. ['model.dropout=0.3']")
    register_configs()
    GlobalHydra.instance().clear()  # a notebook may have initialized Hydra before
    parsed: list = []
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        try:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            from .preflight import override_value_refusal

            parsed = OverridesParser.create().parse_overrides(list(overrides))
            sweep = next((o for o in parsed if o.is_sweep_override()), None)
            why = (f"{sweep.input_line} sweeps over values: compose() makes one config; call it once per value "
                   f"(or sweep from the shell: regbench train -m {sweep.input_line})") if sweep else override_value_refusal(parsed)
        except Exception:  # the grammar error: compose says it below
            why = None
        if why:
            raise ValueError(why)
        try:
            cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        except Exception as exc:
            raise ValueError(describe(exc, GlobalHydra.instance().config_loader())) from None
    GlobalHydra.instance().clear()
    why = _sweep_refusal(cfg, overrides)
    if why:
        raise ValueError(why)
    from .preflight import PreflightError, unused_settings

    try:  # data.path without data=file: the CLI refuses it; compose() gave the default dataset's config
        unused_settings(cfg, [], parsed)
    except PreflightError as exc:
        raise ValueError(str(exc)) from None
    with open_dict(cfg):  # as hydra's compose() leaves it without return_hydra_config
        del cfg["hydra"]
    try:
        validate(cfg)
    except ConfigError as exc:  # a ValueError already: one line
        raise ConfigError(str(exc)) from None
    return cfg


def _sweep_refusal(cfg: "DictConfig", overrides: Overrides) -> Optional[str]:
    """Why ``cfg`` (composed with its hydra node) is not one config: it defines
    a sweep (``hydra.sweeper.params``, e.g. ``+experiment=dropout_vs_bn``) whose
    keys ``overrides`` do not all set (one value each: one job of it)."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if not params:
        return None
    given = {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))}
    unset = [k for k in params if k not in given]
    if not unset:
        return None
    return (f"this config defines a sweep (hydra.sweeper.params: {', '.join(params)}): compose() makes one config; "
            f"run the sweep with regbench train -m {shlex.join(map(str, overrides))}, or give {', '.join(unset)} "
            f"one value{' each' if len(unset) > 1 else ''}, one config per call")


def run(cfg_or_overrides: Union["DictConfig", Overrides], out_dir: PathLike, progress: bool = True) -> dict[str, Any]:
    """Train one job (``seed``, or ``trainer.replicas`` seeds from it) into
    ``out_dir`` and return its summary (the dict written to summary.json).
    ``progress``: a bar over epochs in a notebook or on a terminal (never in
    a pipe), labelled with the overrides.

    ``out_dir`` behaves as a job folder of the CLI: a completed job there is
    skipped (the summary comes back with ``"skipped": True``), an interrupted
    one resumes, a failed one runs again, and a folder holding another config
    is refused."""
    from omegaconf import DictConfig  # noqa: F811 (the real class, at run time)

    from .preflight import folder_refusal, foreign_folder_refusal
    from .train import run as train_run

    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise ValueError(f"out_dir is required: a folder path (str or pathlib.Path) to train the job in, "
                         f"not {out_dir!r}")
    why = folder_refusal("out_dir", out_dir) or foreign_folder_refusal("out_dir", out_dir)
    if why:
        raise ValueError(why)
    if isinstance(cfg_or_overrides, DictConfig):
        cfg, overrides = cfg_or_overrides, None
    else:  # recorded in summary.json and shown on the bar, as the CLI does with its overrides
        cfg, overrides = compose(cfg_or_overrides), list(cfg_or_overrides)
    return train_run(cfg, out_dir, overrides=overrides, show_progress=progress)


def load(*paths: PathLike, allow_mixed: bool = False) -> "Study":
    """Every run under ``paths`` as a Study: ``.runs`` (one row per run:
    status, config, whether it enters the statistics and why not), ``.epochs``
    (one row per run and epoch, every metrics.csv column), and ``.cells`` (per
    cell: mean, std, n and 95% interval of each outcome over seeds, as in the
    report's cells.csv). ``.factors`` names the config keys that vary."""
    from .report.load import ReportError, load_study
    from .report.stats import analyze

    if not paths:
        raise TypeError("load() needs at least one folder of run records")
    try:
        study = load_study(list(paths), allow_mixed=allow_mixed, warn=lambda message: None)
    except ReportError as exc:  # one line, as report() raises it, in Python's words for the flag it names
        raise ValueError(str(exc).replace("pass --allow-mixed", "pass allow_mixed=True")
                         .replace("--allow-mixed reports them", "allow_mixed=True loads them")) from None
    study.cells = analyze(study, effects=False).cells
    return study


def report(paths: Union[PathLike, Iterable[PathLike]], out: PathLike, *options: str) -> Path:
    """Write the comparison report of the runs under ``paths`` into ``out``
    (``options``: more ``regbench report`` flags, e.g. ``"--metric", "val_loss"``).
    Returns the path of report.html; a bad input raises ``ValueError``."""
    from .report.cli import build_parser
    from .report.cli import run as report_run
    from .report.load import ReportError
    from .report.options import refusal

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    why = refusal([str(o) for o in options])  # argparse would print its usage and exit
    if why:
        raise ValueError(why)
    given = build_parser().parse_args(["PATH", *map(str, options)]).out  # -o X, --out=X, -oX, --ou X: argparse's reading
    if given is not None:
        raise ValueError(f"-o/--out {given} in the options: report() writes into its out argument; "
                         "choose the folder there: report(paths, out, *options)")
    args = build_parser().parse_args([*map(str, paths), "-o", str(out), "-q", *options])
    try:
        report_run(args)
    except ReportError as exc:
        raise ValueError(str(exc)) from None
    return Path(out) / "report.html"
