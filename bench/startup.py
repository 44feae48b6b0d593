"""How fast the commands that make no API call start: each one run several times in a fresh
process, its median wall time printed next to `python -c pass` measured in the same run (the
interpreter's own start, the floor). Target: each command ≤ 0.3 s. The median CPU time (user +
system) is printed too: on a loaded machine the wall time also counts waiting for a core.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKSHEET = Path(__file__).resolve().parents[1] / "src/nowait/data/example-worksheet.toml"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "nowait --help": [sys.executable, "-m", "nowait", "--help"],
    "nowait --version": [sys.executable, "-m", "nowait", "--version"],
    "nowait prices": [sys.executable, "-m", "nowait", "prices"],
    "nowait worksheet": [sys.executable, "-m", "nowait", "worksheet", str(WORKSHEET)],
    "nowait config": [sys.executable, "-m", "nowait", "config"],
}
TARGET = 0.3


def median_seconds(argv: list[str], runs: int, home: str) -> tuple[float, float]:
    """(median wall time, median CPU time) of `runs` runs of `argv`."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            argv, check=True, stdout=subprocess.DEVNULL, env={"NOWAIT_HOME": home, "PATH": ""}
        )
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as home:
        for argv in COMMANDS.values():  # warm the file cache: the first start reads from disk
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        results = {name: median_seconds(argv, runs, home) for name, argv in COMMANDS.items()}
    floor = results["python -c pass"][0]
    print(f"{'command':<20} {'wall':>8} {'vs python':>10} {'cpu':>8}  (medians of {runs} runs)")
    for name, (seconds, cpu) in results.items():
        mark = "" if name == "python -c pass" or seconds <= TARGET else f"  > {TARGET} s"
        print(f"{name:<20} {seconds:>7.3f}s {seconds / floor:>9.1f}× {cpu:>7.3f}s{mark}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
