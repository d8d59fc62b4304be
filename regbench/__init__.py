"""regbench: ablation studies of Dropout and BatchNorm in MLPs.

From Python: ``regbench.compose(overrides)``, ``regbench.run(cfg, out_dir)``,
``regbench.load(*paths)`` and ``regbench.report(paths, out)`` (regbench.api).
Importing regbench imports neither torch nor Hydra; each call imports what it needs.
"""

__version__ = "0.1.0"

from .api import compose, load, report, run  # noqa: E402

__all__ = ["compose", "load", "report", "run", "__version__"]
