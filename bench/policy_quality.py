"""Policy quality on the bundled trace generator, one pass/fail line per run.

A run passes when nowait captures >= 95% of the oracle's savings with zero missed deadlines,
and beats fixed-buffer: fewer missed deadlines (or none where fixed-buffer misses none too) at
equal or lower cost. nowait is run twice: with the true turnaround as its forecast (what the
store's history converges to) and on its prior alone (no history yet); both must pass. The
script exits 1 when any run fails.

The simulated world differs from the guard's plan (see `nowait.simulate.engine`): calls and
cancels take noisy, seeded times (cancels 3 min ± 50% where the guard plans 2), results are
seen at the worker's next poll, and every real-time call shares the account's concurrency.

One run has the full size (default 1,000,000 requests over 30 days, also timed end to end:
generate, read, simulate); the others use 200,000 requests over 6 days (the same load per
hour), which keeps the whole bench to a few minutes.

    .venv/bin/python bench/policy_quality.py [--requests 1000000] [--small 200000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from nowait.guard.policy import Capacity
from nowait.guard.turnaround import Turnaround
from nowait.present.simulation import oracle_share
from nowait.simulate.engine import PolicyResult, SimConfig, simulate
from nowait.simulate.trace import TraceRequest, read_trace, write_trace

TYPICAL = ("typical (median 20 min, p95 3 h)", Turnaround(20 * 60, 3 * 3600))
SLOW = ("slow day (median 2 h, p95 12 h)", Turnaround(2 * 3600, 12 * 3600))
FAST = ("fast (median 5 min, p95 40 min)", Turnaround(5 * 60, 40 * 60))
PRIOR = Turnaround(30 * 60, 4 * 3600)  # nowait's default prior, no history
# The generated traces carry a large account's load (over 30 requests a minute on average,
# bursts far above): this bench measures the policy on an account sized for it, not the
# entry-tier default `nowait run` and `nowait simulate` start from.
LARGE_ACCOUNT = Capacity(4_000, 2_000_000, 400_000, 64, 15.0)
TARGET = 0.95


def check(regime: str, results: list[PolicyResult], cold: list[PolicyResult]) -> bool:
    by = {r.policy: r for r in results}
    ours, fixed = by["nowait"], by["fixed-buffer"]
    share = oracle_share(results) or 0
    cold_share = oracle_share(cold) or 0
    cold_missed = {r.policy: r for r in cold}["nowait"].missed
    ratio = ours.cost / fixed.cost
    print(
        f"  nowait        {share:7.2%} of the oracle's savings   missed {ours.missed:,}   "
        f"cost ${ours.cost:,.2f}"
    )
    print(
        f"  nowait, prior {cold_share:7.2%} of the oracle's savings   missed {cold_missed:,}   "
        "(no history: forecast = the prior)"
    )
    print(
        f"  fixed-buffer  {oracle_share(results, 'fixed-buffer') or 0:7.2%} of the oracle's savings   "
        f"missed {fixed.missed:,}   paid twice {fixed.paid_twice:,}   cost ${fixed.cost:,.2f}"
    )
    failures = []
    if share < TARGET or ours.missed:
        failures.append(f"nowait {share:.2%} of oracle with {ours.missed} missed")
    if cold_share < TARGET or cold_missed:
        failures.append(f"nowait on its prior {cold_share:.2%} of oracle with {cold_missed} missed")
    if not (ours.missed < fixed.missed or ours.missed == fixed.missed == 0):
        failures.append(f"missed {ours.missed} vs fixed-buffer's {fixed.missed}")
    if ratio > 1:
        failures.append(f"cost {ratio:.4f}x fixed-buffer's")
    verdict = "PASS" if not failures else "FAIL"
    versus = (
        f"{ours.missed:,} < {fixed.missed:,} missed"
        if ours.missed < fixed.missed
        else "neither misses a deadline"
    )
    detail = "; ".join(failures) or (
        f">= 95% of the oracle with 0 missed (history and prior); vs fixed-buffer: {versus}, "
        f"at {ratio:.4f}x its cost"
    )
    print(f"  {verdict}  {regime}: {detail}")
    return not failures


def run(
    regime: str,
    turnaround: Turnaround,
    requests: list[TraceRequest],
    seed: int,
    timed: tuple[list[PolicyResult], float] | None = None,
) -> bool:
    started = time.perf_counter()
    results = (
        timed[0]
        if timed
        else simulate(requests, SimConfig(turnaround=turnaround, seed=seed, capacity=LARGE_ACCOUNT))
    )
    seconds = timed[1] if timed else time.perf_counter() - started
    cold = simulate(
        requests,
        SimConfig(turnaround=turnaround, seed=seed, forecast=PRIOR, capacity=LARGE_ACCOUNT),
        policies=("all-realtime", "nowait", "oracle"),
    )
    print(f"{regime}, seed {seed}, {len(requests):,} requests: 5 policies in {seconds:.1f} s")
    return check(f"{regime}, seed {seed}, {len(requests):,}", results, cold)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000, help="the full-size run")
    parser.add_argument("--small", type=int, default=200_000, help="every other run")
    args = parser.parse_args()
    big, small = args.requests, args.small
    outcomes: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        started = time.perf_counter()
        write_trace(path, big, days=30, seed=1)
        generated = time.perf_counter()
        requests = read_trace(path)
        read = time.perf_counter()
        results = simulate(
            requests, SimConfig(turnaround=TYPICAL[1], seed=1, capacity=LARGE_ACCOUNT)
        )
        done = time.perf_counter()
        print(
            f"{big:,} requests over 30 days: generate {generated - started:.1f} s, "
            f"read {read - generated:.1f} s, simulate 5 policies {done - read:.1f} s, "
            f"total {done - started:.1f} s"
        )
        outcomes.append(run(*TYPICAL, requests, 1, (results, done - read)))
        del requests
        days = max(1, round(30 * small / big))
        print(f"\nthe other runs: {small:,} requests over {days} days each")
        for seed in (1, 2):
            write_trace(path, small, days=days, seed=seed)
            requests = read_trace(path)
            for regime, turnaround in (TYPICAL, SLOW, FAST):
                if regime == TYPICAL[0] and seed == 1:
                    continue  # the full-size run covers it
                outcomes.append(run(regime, turnaround, requests, seed))
    passed = sum(outcomes)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"{'PASS' if passed == len(outcomes) else 'FAIL'}: {passed} of {len(outcomes)} runs pass")
    return 0 if passed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
