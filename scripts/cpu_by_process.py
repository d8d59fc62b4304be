"""Run a command and say how much CPU each of its processes used, and when.

Samples /proc every 50 ms (Linux) for the command's process and every
process it starts (children, grandchildren, ...), and prints one line per
process: when it was first and last seen, its CPU seconds (user + system),
and its command line; then the total. A process's last < 50 ms are missed.

    python scripts/cpu_by_process.py regbench train -m model.dropout=0,0.1,0.2,0.3,0.5 \\
        model.batchnorm=false,true seed=0,1,2,3,4 trainer.epochs=50 report.at_end=true 'report.options=[--formats,png,-q]'

``--every S`` (before the command) also prints each process's CPU seconds in
every S-second interval: when the cores sat idle (the start, the tail).
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


def intervals(series: dict[int, list], pids: list[int], every: float, wall: float) -> None:
    """Each process's CPU seconds in every ``every``-second interval, and their sum."""
    print("   t/s " + " ".join(f"{pid:>8}" for pid in pids) + "     all")
    for k in range(int(wall / every) + 1):
        lo, hi = k * every, (k + 1) * every
        used = []
        for pid in pids:
            before = [cpu for t, cpu in series[pid] if t <= lo]
            upto = [cpu for t, cpu in series[pid] if t <= hi]
            used.append((upto[-1] if upto else 0.0) - (before[-1] if before else 0.0))
        print(f"{lo:6.2f} " + " ".join(f"{u:8.2f}" for u in used) + f" {sum(used):7.2f}")


def main() -> int:
    args = sys.argv[1:]
    every = None
    if args[:1] == ["--every"] and len(args) > 2:
        every, args = float(args[1]), args[2:]
    if not args:
        print(__doc__)
        return 2
    t0 = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, dict] = {}
    series: dict[int, list] = {}
    while proc.poll() is None:
        sample(proc.pid, seen, t0)
        now = time.time() - t0
        for pid, e in seen.items():
            series.setdefault(pid, []).append((now, e["cpu"]))
        time.sleep(0.05)
    wall = time.time() - t0
    print(f"wall {wall:.2f} s, exit {proc.returncode}")
    if every:
        intervals(series, sorted(seen, key=lambda p: seen[p]["first"]), every, wall)
    for pid, e in sorted(seen.items(), key=lambda kv: kv[1]["first"]):
        print(f"{pid:>8} {e['first']:6.2f}-{e['last']:6.2f} s  cpu {e['cpu']:6.2f} s  {e['comm']:<15} {e['cmd']}")
    print(f"total cpu {sum(e['cpu'] for e in seen.values()):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
