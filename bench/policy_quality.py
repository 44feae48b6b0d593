"""Policy quality on the bundled trace generator: nowait's savings as a share of the oracle's
(target >= 95%, with zero missed deadlines), and against fixed-buffer (fewer missed deadlines
at equal or lower cost). Several seeds and turnaround regimes; also the simulator's speed.

    .venv/bin/python bench/policy_quality.py [--requests 1000000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from nowait.simulate.engine import SimConfig, simulate
from nowait.simulate.report import oracle_share
from nowait.simulate.trace import read_trace, write_trace
from nowait.turnaround import Turnaround

REGIMES = {
    "typical (median 20 min, p95 3 h)": Turnaround(20 * 60, 3 * 3600),
    "slow day (median 2 h, p95 12 h)": Turnaround(2 * 3600, 12 * 3600),
    "fast (median 5 min, p95 40 min)": Turnaround(5 * 60, 40 * 60),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    n = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        for seed in (1, 2):
            write_trace(path, n, days=30, seed=seed)
            requests = read_trace(path)
            for regime, turnaround in REGIMES.items():
                started = time.perf_counter()
                results = simulate(requests, SimConfig(turnaround=turnaround, seed=seed))
                seconds = time.perf_counter() - started
                by = {r.policy: r for r in results}
                share = oracle_share(results)
                ours, fixed = by["nowait"], by["fixed-buffer"]
                print(f"seed {seed}, {regime}: {n:,} requests, 5 policies in {seconds:.1f} s")
                print(
                    f"  nowait share of oracle savings  {share:.2%}   missed {ours.missed}  (target >= 95%, 0)"
                )
                print(
                    f"  fixed-buffer                   {oracle_share(results, 'fixed-buffer'):.2%}   missed {fixed.missed}, paid twice {fixed.paid_twice}"
                )
                print(
                    f"  cost nowait / fixed-buffer      {ours.cost / fixed.cost:.4f}  (target <= 1)"
                )
                prior = Turnaround(30 * 60, 4 * 3600)  # nowait's default prior, no history
                cold = simulate(
                    requests, SimConfig(turnaround=turnaround, seed=seed, forecast=prior)
                )
                missed = {r.policy: r.missed for r in cold}["nowait"]
                print(
                    f"  nowait on its prior, no history {oracle_share(cold):.2%}   missed {missed}"
                )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
