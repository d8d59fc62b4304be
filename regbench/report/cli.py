"""``regbench report PATH...``: compare any set of runs.

Every user mistake ends in one line on stderr, ``regbench report: error:
...``, naming what is wrong and what is allowed, and a non-zero exit code;
never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable, Optional

from . import optimize
from .options import FORMATS, PROG, OneLineParser, build_parser, parse_formats, target_refusal  # noqa: F401  (build_parser, FORMATS: the API's, the tests')
from .load import COMBINED_SEP, ReportError, Study, confounding_notes, fmt_bounds, fmt_diff, fmt_p, load_study, \
    short_names
from .stats import Analysis, analyze, complete_effects, left_out_count

MAX_STYLES = 4  # solid, dashed, dotted, dash-dot: more are hard to tell apart


def _factor(study: Study, name: str | None, option: str) -> str | None:
    """A factor by its full key or an unambiguous last part (``dropout``)."""
    if name is None:
        return None
    if name in study.factors:
        return name
    short = short_names(study.factors)
    # A combined factor (confounded keys) answers to each of its keys, too.
    matches = [f for f in study.factors
               if name == short[f] or any(name in (k, k.rsplit(".", 1)[-1]) for k in f.split(COMBINED_SEP))]
    if len(matches) == 1:
        return matches[0]
    allowed = ", ".join(study.factors) or "none: no config key varies across these runs"
    raise ReportError(f"{option} {name}: not a factor of these runs; allowed: {allowed}")


def _formats(text: str) -> list[str]:
    try:
        return parse_formats(text)
    except ValueError as exc:
        raise ReportError(str(exc)) from None


def roles(study: Study, x: str | None, color: str | None, style: str | None) -> tuple[str | None, str | None, str | None]:
    """Factors for the ablation's x axis, line colour and line style."""
    x, color, style = _factor(study, x, "--x"), _factor(study, color, "--color"), _factor(study, style, "--style")
    if style is not None and len(study.levels[style]) > MAX_STYLES:
        raise ReportError(f"--style {style}: {len(study.levels[style])} levels, but line styles tell apart at most "
                          f"{MAX_STYLES}; use it as --color instead")
    if color is None:
        color = x if x is not None and x != style else next((f for f in study.factors if f != style), None)
    if style is None:
        # Few levels suit line styles; a factor with many keeps to colour.
        free = [f for f in study.factors if f != color and len(study.levels[f]) <= MAX_STYLES]
        style = min(free, key=lambda f: len(study.levels[f])) if free else None
    return x, color, style


def analyze_study(args: argparse.Namespace, effects_later: bool = False) -> tuple[Study, Analysis, tuple]:
    """The runs under ``args.paths`` loaded and analysed, the options checked
    against them: (study, analysis, (x, color, style) factors).
    ``effects_later``: a grid's effects are left to
    :func:`regbench.report.stats.complete_effects`."""
    study = load_study(args.paths, allow_mixed=args.allow_mixed)
    present = [c for c in study.metric_columns if study.epochs[c].notna().any()]
    if args.metric not in present:
        why = "has no values in these runs" if args.metric in study.metric_columns else "no such column in metrics.csv"
        raise ReportError(f"--metric {args.metric}: {why}; allowed: {', '.join(present)}")
    why = target_refusal(args.metric, args.target)
    if why:
        raise ReportError(why)
    factor_roles = roles(study, args.x, args.color, args.style)
    # A search (Optuna, random, interval()) samples settings: no effects between its trials.
    search = optimize.is_search(study)
    a = analyze(study, args.metric, args.target, effects=not search and ("later" if effects_later else True))
    if search:
        a.params = optimize.search_params(study)
        a.trials = optimize.trials(a.runs, a.params, args.metric)
    return study, a, factor_roles


# Set (to anything) to analyse in this process, after matplotlib is imported.
SERIAL_ENV = "REGBENCH_REPORT_SERIAL"


def _analysis_process(args: argparse.Namespace, conn) -> None:
    """The forked process's whole life: Ctrl-C is the report process's to
    report (it ends this one), then :func:`_analyze_forked`."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _analyze_forked(args, conn)


def _analyze_forked(args: argparse.Namespace, conn) -> None:
    """Analyse and send the outcome: ("ok", result), ("error", ReportError),
    or ("again", None) for anything else."""
    try:
        result = ("ok", analyze_study(args))
    except ReportError as exc:
        result = ("error", exc)
    except BaseException:  # the parent analyses again and shows it as it would alone
        result = ("again", None)
    for message in (result, ("again", None)):
        try:
            conn.send(message)
            return
        except OSError:  # the parent stopped listening (interrupted): nothing to say
            return
        except Exception:  # could not be pickled
            continue


def analyze_while_importing(args: argparse.Namespace) -> tuple[Study, Analysis, tuple, Optional[Callable[[], Analysis]]]:
    """:func:`analyze_study`, with the figure modules imported and warmed up
    on the other CPU: a forked process loads and analyses the runs and sends
    the result back while this one imports matplotlib (the two took 0.7 and
    0.9 s one after the other in a small sweep's 6.6 s report; one CPU sat
    idle). Serial where matplotlib is imported already (nothing to overlap),
    without fork, or with ``REGBENCH_REPORT_SERIAL`` set; and where the
    forked process fails other than with a ReportError (this one repeats the
    work, so the error reads as it would).

    The last item: None, or (serial) what computes the effects, left for
    the figure workers' first seconds (:func:`regbench.report.figures.make_figures`):
    the report process of ``report.at_end`` has matplotlib imported, and
    the effects were 0.08-0.13 s of its analysis with the other CPU idle."""
    import multiprocessing as mp
    import os

    serial = ("regbench.report.figures" in sys.modules or "fork" not in mp.get_all_start_methods()
              or os.environ.get(SERIAL_ENV))
    if serial:
        study, a, factor_roles = analyze_study(args, effects_later=True)
        return study, a, factor_roles, (functools.partial(complete_effects, a) if a.trials is None else None)
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_analysis_process, args=(args, send), daemon=True)
    child.start()
    send.close()
    kind = None
    try:
        from .. import lifetime

        with lifetime.importing():  # frozen: the drawing's collections skip it
            from . import figures, render  # noqa: F401  (the import this overlaps)

        figures.warm_up()
        try:
            kind, result = receive.recv()
        except EOFError:  # it died (killed, out of memory)
            kind, result = "again", None
    finally:
        receive.close()
        if kind is None:  # interrupted here: the analysis is not wanted any more
            child.terminate()
        child.join()
    if kind == "ok":
        return (*result, None)
    if kind == "error":
        raise result
    return (*analyze_study(args), None)


def run(args: argparse.Namespace) -> int:
    formats = _formats(args.formats)
    t0 = time.perf_counter()
    study, a, (x, color, style), complete = analyze_while_importing(args)

    from .figures import FIGURE_NAMES, cell_styles, make_figures
    from .render import write_html, write_markdown

    out = Path(args.out) if args.out else Path(args.paths[0]) / "report"
    # What is alive now (pandas, matplotlib, the study: about 140k objects)
    # outlives the figures, which leave cyclic garbage behind; without this,
    # each full collection walked all of it again (0.15-0.2 s of a small
    # report's 2 s of drawing). Frozen objects are still freed when
    # unreferenced; unfrozen at the end for a caller in the same process.
    gc.freeze()
    made: list[Path] = []
    stage = None
    try:
        made = [d for d in (out, *out.parents) if not d.exists()]  # removed again if the report fails
        out.mkdir(parents=True, exist_ok=True)
        # Everything is written into a folder of its own inside OUT, and moved into place once all of it is
        # written: a report that fails (a full disk) or is interrupted leaves OUT as it was. Written in place,
        # the new tables stood beside the old report.html, which they contradicted, and empty figures.
        stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
        fig_dir = stage / "figures"
        keys = a.cells[study.factors] if study.factors else a.cells[[]]
        styles = cell_styles(keys, study.levels, color, style)

        def write_tables() -> None:  # while the figure workers draw
            a.runs.to_csv(stage / "runs.csv", index=False)
            study.epochs.to_csv(stage / "epochs.csv", index=False)
            a.cells.to_csv(stage / "cells.csv")
            if not a.effects.empty:
                a.effects.to_csv(stage / "effects.csv", index=False)
            if a.trials is not None:
                a.trials.to_csv(stage / "trials.csv", index=False)

        figures = make_figures(a, styles, fig_dir, formats, x=x, jobs=args.jobs, meanwhile=write_tables, complete=complete)
        outputs = ["report.md", "runs.csv", "epochs.csv", "cells.csv"]
        outputs += ["effects.csv"] if not a.effects.empty else []
        outputs += ["trials.csv"] if a.trials is not None else []
        outputs += [p.relative_to(stage).as_posix() for f in figures for p in f.files]
        write_html(a, figures, stage / "report.html", list(args.paths), outputs)
        write_markdown(a, figures, stage / "report.md", list(args.paths), ["report.html", *outputs[1:]])
        if any(f.files for f in figures):
            (out / "figures").mkdir(exist_ok=True)
        for name in [o for o in outputs if o != "report.md"] + ["report.md", "report.html"]:  # the page last
            os.replace(stage / name, out / name)
        # what an earlier report left that this one does not write (a figure in another format or no longer
        # drawn, effects.csv of a search): it stood beside this page, which says otherwise
        written = set(outputs) | {"report.html"}
        stale = [f"figures/{n}.{fmt}" for n in FIGURE_NAMES for fmt in FORMATS] + ["effects.csv", "trials.csv"]
        for name in stale:
            if name not in written:
                try:
                    (out / name).unlink(missing_ok=True)
                except OSError:  # not ours to remove after all: the report is written, it stays
                    pass
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    finally:
        gc.unfreeze()
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if made and not (out / "report.html").exists():
            for d in made:  # folders this report made for itself, still empty
                try:
                    d.rmdir()
                except OSError:
                    break
    if not args.quiet:
        # the figures drawn: a note (a diagnostic that shows nothing) is a sentence on the page, not a figure
        print(summary(a, out, sum(1 for f in figures if f.png), formats, time.perf_counter() - t0))
    return 0


def summary(a: Analysis, out: Path, n_figures: int, formats: list[str], seconds: float) -> str:
    """The console version of 'at a glance': cells, runs per cell, best cell, effects
    in their adjusted reading (or, for a search, the best trials)."""
    from .render import ci_note, fmt_ci, plural

    study, cells, runs = a.study, a.cells, a.runs
    per = cells.loc[cells["n_runs"] > 0, "n_used"]
    factors = " x ".join(short_names(study.factors).values()) or "one cell"
    if a.trials is not None:
        return "\n".join(search_summary(a) + [_wrote(out, n_figures, formats, seconds)])
    lines = [
        f"{plural(len(runs), 'run')} in {plural(len(cells), 'cell')} ({factors}); usable runs per cell: "
        + (f"{per.min()}" if per.min() == per.max() else f"{per.min()}-{per.max()}")
    ]
    lines += confounding_notes(study)
    lines += _left_out(a)
    flagged = cells[cells["caveats"] != ""]
    only_improving = flagged["caveats"].str.fullmatch(r"still improving: lowest val loss at the last epoch in \d+ of "
                                                      r"\d+ runs \(train longer\)")
    if only_improving.sum() >= 3:  # one line, not one per cell (8 of a 25-line summary said the same)
        names = list(flagged.index[only_improving])
        which = (f"every cell ({len(names)})" if len(names) == int((cells["n_used"] > 0).sum())
                 else f"{len(names)} cells ({'; '.join(names)})")
        lines.append(f"  still improving: lowest val loss at the last epoch in most runs of {which} (train longer)")
        flagged = flagged[~only_improving]
    for cell, r in flagged.iterrows():
        lines.append(f"  {cell}: {r['caveats']}")
    if study.unreadable:
        lines.append(f"unreadable records: {len(study.unreadable)} (listed in the report)")
    ranked = a.ranked()
    if not ranked.empty:
        top = ranked.iloc[0]
        lines.append(f"best {a.metric} (at each run's epoch of lowest val_loss): {ranked.index[0]}  "
                     f"{fmt_ci(top, a.best_col)} ({ci_note(top, a.best_col)})")
        d = a.best_vs_runner_up
        if d:
            interval = fmt_bounds(d["ci_lo"], d["ci_hi"], a.best_col) or "no interval"
            lines.append(f"  vs runner-up {d['runner_up']}: {fmt_diff(d['estimate'], a.best_col)} {interval} "
                         f"({'paired' if d['paired'] else 'unpaired'}, n={int(d['n'])}), better in "
                         f"{d['prob_improvement']:.0%} of {plural(int(d['n_best']) * int(d['n_runner_up']), 'run pair')} "
                         "(any seed against any): "
                         + ("resolved" if d["resolved"] else "not resolved"))
    else:
        lines.append("no cell has a usable run: nothing to rank")
    width = columns()
    lines = [fit(line, width) for line in lines]
    lines += effect_lines(a, width)
    lines.append(_wrote(out, n_figures, formats, seconds))
    return "\n".join(lines)


def _wrote(out: Path, n_figures: int, formats: list[str], seconds: float) -> str:
    from .render import plural

    return (f"wrote {out / 'report.html'} (+ report.md, CSV tables, {plural(n_figures, 'figure')} as "
            f"{', '.join(formats)}) in {seconds:.1f} s")


def _left_out(a: Analysis) -> list[str]:
    runs = a.runs
    left = runs.loc[~runs["used"], "left_out"].value_counts()
    if not len(left):
        return []
    return [f"left out of the statistics ({int(runs['used'].sum())}/{len(runs)} runs used): "
            + ", ".join(left_out_count(n, s) for s, n in left.items())]


def _reading(r) -> str:
    """An effect's adjusted reading in a few words."""
    from .render import NOT_ESTIMABLE, SAME_IN_EVERY_SEED

    if r["estimate"] != r["estimate"]:  # NaN
        return f"not estimable: {NOT_ESTIMABLE}"
    if not r["n"] >= 2:
        return "1 seed: no interval"
    if r["std"] != r["std"]:  # NaN: stats.essentially_constant
        return f"no test: {SAME_IN_EVERY_SEED.format(n=int(r['n']))}"
    p = fmt_p(r["p_adj"])
    text = f"{'resolved' if r['resolved'] else 'not resolved'}, p_adj {p if p.startswith('<') else '= ' + p}"
    return text + (" (" + r["scope"] + ")" if r["scope"] else "")


MAX_SIMPLE = 8  # simple effects printed; the rest are in the report


def columns() -> int | None:
    """The width the summary fits: ``COLUMNS`` if set, else the terminal's;
    None (lines whole, one item a line for grep) in a pipe or a file."""
    env = os.environ.get("COLUMNS", "")
    if env.isascii() and env.isdecimal() and int(env) > 0:  # 0, "abc", "²": not a width (as shutil reads it)
        return max(40, int(env))
    return max(40, shutil.get_terminal_size().columns) if sys.stdout.isatty() else None


def fit(line: str, width: int | None) -> str:
    """A line of prose wrapped to ``width``, its continuation indented two
    more than its first line (a caveat under its cell reads as one item)."""
    if width is None or len(line) <= width:
        return line
    lead = line[: len(line) - len(line.lstrip(" "))]
    return textwrap.fill(line, width, subsequent_indent=lead + "  ", break_long_words=False, break_on_hyphens=False)


def effect_lines(a: Analysis, width: int | None = None) -> list[str]:
    """Main effects and interactions on the best-epoch outcome, and the
    resolved simple effects (with the level they are at), each with its
    simultaneous interval and Bonferroni-adjusted reading, under a heading
    per kind. Of more than ``MAX_SIMPLE`` interactions only the resolved
    ones are listed, and counted. Rows fit ``width`` columns (None, the
    default: lines as wide as they are; the summary passes :func:`columns`):
    a contrast too long to share its line with the numbers has the numbers
    on the next line, and a reading that still does not fit goes under them."""
    from .render import CORRECTION, NOT_ESTIMABLE, plural

    eff = a.effects[a.effects["outcome"] == a.best_col] if not a.effects.empty else a.effects
    if eff.empty:
        return []
    lines = []
    lost = int(eff["estimate"].isna().sum())
    if lost:
        lines.append(f"{lost} effects not estimable: {NOT_ESTIMABLE}")
    family = int(eff["family_size"].max()) if eff["family_size"].notna().any() else 0
    how = (f"simultaneous {a.level:.0%} intervals, {CORRECTION} over {plural(family, 'contrast')}" if family
           else "no contrast could be tested: one seed, or no spread across seeds")  # it said "Bonferroni over 0 contrasts"
    have = eff[eff["estimate"].notna()]
    ns = sorted({int(n) for n in have["n"]})
    seeds = f"over {plural(ns[0], 'seed')}" if len(ns) == 1 else "over seeds"
    lines += fit(f"effects on {a.metric} at the epoch of lowest val_loss (paired {seeds}; {how}):", width).split("\n")
    main, inter, simple = (have[have["kind"] == k] for k in ("main", "interaction", "simple"))
    simple_name = "simple effects (each factor at each level of another)"
    blocks = [("main effects", main, main),
              ("interactions", inter if len(inter) <= MAX_SIMPLE else inter[inter["resolved"]], inter),
              (simple_name, simple[simple["resolved"]], simple)]
    rows = []  # (heading or None, contrast, numbers)
    for name, part, total in blocks:
        shown = part if name == "main effects" else part.head(MAX_SIMPLE)
        tested = int(total["p"].notna().sum()) if "p" in total else len(total)
        if name == "main effects" or len(part) == len(total):
            heading = f"  {name}:" if len(shown) else None
        elif not tested:  # it said "0 of 4 resolved" of contrasts that had no test
            heading = f"  {name}: none of the {len(total)} could be tested"
        else:  # only the resolved ones are listed: say of how many
            heading = (f"  {name}: {len(part)} of {tested} tested resolved"
                       + (f", the first {len(shown)}:" if len(shown) < len(part) else ":" if len(part) else ""))
        if heading:
            rows.append((heading, "", ""))
        for _, r in shown.iterrows():
            contrast = r["contrast"] + (f" at {r['at']}" if r["at"] else "")
            interval = fmt_bounds(r["ci_lo_adj"], r["ci_hi_adj"], a.best_col) if r["n"] >= 2 else ""
            rows.append((None, contrast, (fmt_diff(r["estimate"], a.best_col), interval, int(r["n"]), _reading(r))))
    body = [r for r in rows if r[0] is None]
    if not body:
        return lines + [h for h, _, _ in rows]
    est_w = max(len(n[0]) for _, _, n in body)
    int_w = max(len(n[1]) for _, _, n in body)

    def numbers(n) -> str:
        return (f"{n[0]:>{est_w}}" + (f" {n[1]:<{int_w}}" if int_w else "") + (f" n={n[2]}" if len(ns) > 1 else "")
                + f"  {n[3]}").rstrip()

    right = max(len(numbers(n)) for _, _, n in body)
    names = max(len(c) for _, c, _ in body)
    # the contrasts' column: all of them where the lines fit, else as wide as leaves room for the numbers
    col = names if width is None or 4 + names + 2 + right <= width else max(20, width - 4 - 2 - right)
    # where a row's numbers go when it takes two lines: under their column where they fit there, else one
    # indent for the whole table (never 6 for one row and 26 for the next)
    under = 4 + col + 2 if width is None or 4 + col + 2 + right <= width else 6
    for heading, contrast, n in rows:
        if heading is not None:
            lines += fit(heading, width).split("\n")
        elif len(contrast) <= col and (width is None or 4 + col + 2 + len(numbers(n)) <= width):
            lines.append(f"    {contrast:<{col}}  {numbers(n)}")
        else:  # its own line(s), then the numbers; a reading that still does not fit goes under them
            lines += fit(f"    {contrast}", width).split("\n")
            if width is None or under + len(numbers(n)) <= width:
                lines.append(" " * under + numbers(n))
            else:
                head = numbers((n[0], n[1], n[2], "")).rstrip()
                lines.append(" " * under + head)
                lines += fit(" " * under + n[3], width).split("\n")
    return lines


def search_summary(a: Analysis) -> list[str]:
    """A search's console summary: what was searched, the best trials; no effects."""
    from .render import search_lines

    return search_lines(a) + _left_out(a)


def main(argv: list[str] | None = None) -> int:
    # The command's process ends after the report: its exit need not walk
    # every object for cycles (Python's last collections took 0.2-0.5 s here).
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    parser = build_parser(OneLineParser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage or help
        return int(exc.code or 0)
    try:
        return run(args)
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from .. import signals

        print(f"{PROG}: interrupted", file=sys.stderr)
        return signals.exit_status()  # 130 after Ctrl-C, 143 after SIGTERM


if __name__ == "__main__":
    sys.exit(main())
