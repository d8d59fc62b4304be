"""Run a command and say how much CPU each of its processes used, and when.

Samples /proc every 50 ms (Linux) for the command's process and every
process it starts (children, grandchildren, ...), and prints one line per
process: when it was first and last seen, its CPU seconds (user + system),
and its command line; then the total. A process's last < 50 ms are missed.

    python scripts/cpu_by_process.py regbench train -m model.dropout=0,0.1,0.2,0.3,0.5 \\
        model.batchnorm=false,true seed=0,1,2,3,4 trainer.epochs=50 report.at_end=true 'report.options=[--formats,png,-q]'
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def sample(root: int, seen: dict, t0: float) -> None:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        end = stat.rfind(")")
        fields = stat[end + 2:].split()
        pid, ppid = int(name), int(fields[1])
        if pid != root and pid not in seen and ppid not in seen:
            continue
        now = time.time() - t0
        entry = seen.setdefault(pid, {"first": now, "comm": stat[stat.find("(") + 1:end], "cmd": ""})
        entry["cpu"] = (int(fields[11]) + int(fields[12])) / TICK
        entry["last"] = now
        try:
            with open(f"/proc/{name}/cmdline") as fh:
                entry["cmd"] = fh.read().replace("\0", " ").strip()[:70] or entry["cmd"]
        except OSError:
            pass


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    t0 = time.time()
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, dict] = {}
    while proc.poll() is None:
        sample(proc.pid, seen, t0)
        time.sleep(0.05)
    print(f"wall {time.time() - t0:.2f} s, exit {proc.returncode}")
    for pid, e in sorted(seen.items(), key=lambda kv: kv[1]["first"]):
        print(f"{pid:>8} {e['first']:6.2f}-{e['last']:6.2f} s  cpu {e['cpu']:6.2f} s  {e['comm']:<15} {e['cmd']}")
    print(f"total cpu {sum(e['cpu'] for e in seen.values()):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
