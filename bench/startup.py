"""How fast the commands that make no API call start: each one run several times in a fresh
process, its median wall time printed next to `python -c pass` measured in the same run (the
interpreter's own start, the floor). Target: each command ≤ 0.3 s.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
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


def median_seconds(argv: list[str], runs: int, home: str) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            argv, check=True, stdout=subprocess.DEVNULL, env={"NOWAIT_HOME": home, "PATH": ""}
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as home:
        for argv in COMMANDS.values():  # warm the file cache: the first start reads from disk
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        results = {name: median_seconds(argv, runs, home) for name, argv in COMMANDS.items()}
    floor = results["python -c pass"]
    print(f"{'command':<20} {'median':>8} {'vs python':>10}  (median of {runs} runs)")
    for name, seconds in results.items():
        mark = "" if name == "python -c pass" or seconds <= TARGET else f"  > {TARGET} s"
        print(f"{name:<20} {seconds:>7.3f}s {seconds / floor:>9.1f}×{mark}")


if __name__ == "__main__":
    main()
