"""``regbench report``: run records -> tidy tables, statistics, figures, report.html.

Called, this package is the Python API's verb (:func:`regbench.api.report`)::

    regbench.report(paths, out, *options) -> Path of report.html
        the comparison report of the runs under ``paths`` (a folder or a list of
        them) written into ``out``; ``options``: more ``regbench report`` flags,
        e.g. ``"--metric", "val_loss"``; a bad input raises ValueError

The pipeline, one module per step, each usable on its own:

    load.load_study(paths)      records on disk -> Study (runs, epochs, factors)
    stats.*                     pure functions over those DataFrames
    optimize.*                  a non-grid sweep (Optuna, random): trials, best so far, top-k
    figures.*                   pure ``(data, ax=None) -> ax`` plots plus figure builders
    render.write_html / write_markdown   through templates/report.html, report.md (Jinja2)
    cli.main(argv)              the command line

It reads records through :mod:`regbench.records` only and never imports torch
or the training code, so a report runs anywhere the records are copied to.
"""

import sys
import types


class _CallableModule(types.ModuleType):
    """``regbench.report(paths, out)`` is the Python API's report verb
    (regbench.api.report), and ``regbench.report`` is also this package: once
    it is imported, Python binds the name to the package. Calling the package
    is calling the verb, so both readings work."""

    def __call__(self, paths, out, *options):
        from ..api import report

        return report(paths, out, *options)


sys.modules[__name__].__class__ = _CallableModule
