"""Time spent in CPython's cycle collector, in every process of one command.

Runs the command given after ``--`` with a sitecustomize that times
each collection (gc.callbacks) in that process and every Python process it starts
(forked or not), then prints the totals per process and for all of them:
full collections (generation 2) and the rest. regbench.lifetime keeps what a
process keeps to its end out of the collector; this shows what is left.

    python scripts/collections.py -- regbench train -m model.dropout=0,0.5 seed=0,1 trainer.epochs=5 hydra.sweep.dir=/tmp/s
    python scripts/collections.py -- regbench report /tmp/s -q
    PYTHONPATH=/path/to/an/older/checkout python scripts/collections.py -- regbench ...   # the same, older code
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOOK = '''
import gc, os, sys, time
_log = os.environ["REGBENCH_GC_LOG"]
_start = [0.0]
def _timed(phase, info):
    if phase == "start":
        _start[0] = time.perf_counter()
        return
    took = time.perf_counter() - _start[0]
    name = "?"
    if "multiprocessing" in sys.modules:
        name = sys.modules["multiprocessing"].current_process().name
    with open(_log, "a") as f:
        f.write(f"{os.getpid()}\\t{name}\\t{info['generation']}\\t{took}\\n")
gc.callbacks.append(_timed)
'''


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    with tempfile.TemporaryDirectory(prefix="regbench_gc_") as tmp:
        Path(tmp, "sitecustomize.py").write_text(HOOK)
        log = Path(tmp, "collections.tsv")
        log.touch()
        env = dict(os.environ, REGBENCH_GC_LOG=str(log),
                   PYTHONPATH=os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")])))
        t0 = time.perf_counter()
        code = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        wall = time.perf_counter() - t0
        rows = [line.split("\t") for line in log.read_text().splitlines()]
    names: dict[str, str] = {}
    per = collections.defaultdict(lambda: [0, 0.0, 0, 0.0])  # pid -> full: count, seconds; younger: count, seconds
    for pid, name, gen, took in rows:
        if name != "?" or pid not in names:
            names[pid] = name
        entry = per[pid]
        young = gen != "2"
        entry[2 * young] += 1
        entry[2 * young + 1] += float(took)
    print(f"{' '.join(command)}: exit {code}, {wall:.2f} s wall")
    print(f"{'process':28s} {'full':>14s} {'younger':>16s}")
    total = [0, 0.0, 0, 0.0]
    for pid, (nf, sf, ny, sy) in per.items():
        print(f"{pid + ' ' + names[pid]:28s} {nf:4d} {sf * 1e3:7.1f} ms {ny:5d} {sy * 1e3:7.1f} ms")
        total = [total[0] + nf, total[1] + sf, total[2] + ny, total[3] + sy]
    print(f"{'all processes':28s} {total[0]:4d} {total[1] * 1e3:7.1f} ms {total[2]:5d} {total[3] * 1e3:7.1f} ms"
          f"   (in all: {(total[1] + total[3]) * 1e3:.0f} ms)")
    return code


if __name__ == "__main__":
    sys.exit(main())
