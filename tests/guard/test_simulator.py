"""Each policy's arithmetic on small traces worked by hand, and the CLI.

The hand-worked world, unless a test says otherwise:
- claude-haiku-4-5 at $1 in, $5 out per million: 1,000 in + 200 out = $0.002 real time, $0.001
  in a batch;
- batches form in 300 s windows and are created at the window's end (a request at t < 300 is
  in the batch created at 300); every batch takes the fixed `turnaround`; request i finishes
  at 300 + fractions[i] × turnaround;
- real time: 60 requests/min (starts at least 1 s apart), 4 at once, each call 10 s in the
  world and in the guard's plan; the ready call with the earliest deadline goes first;
- a cancel reaches `ended` in 60 s (the guard plans 2 min, and keeps a 10 min margin); the
  worker sees an ended batch at once (no polling delay); no noise;
- nowait plans with the settings' cancel latency and call duration (`latency.prior`), not with
  latencies learned from the world's history, unless a test says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nowait.guard.latency import prior as latency_prior
from nowait.guard.policy import Capacity, GuardConfig, PollConfig
from nowait.guard.turnaround import Turnaround
from nowait.simulate.engine import RUNNERS, PolicyResult, SimConfig, build_world, simulate
from nowait.simulate.trace import TraceRequest
from nowait.sort.pricing import default_table

HAIKU = "claude-haiku-4-5"
CAP = Capacity(60, 10**9, 10**9, concurrency=4, seconds_per_request=10.0)
PRIOR = Turnaround(1800, 4 * 3600)  # nowait's forecast with no history (median 30 min, p95 4 h)
RT, BATCH = Decimal("0.002"), Decimal("0.001")


def req(t: float, deadline: float | None, awaited: bool = False) -> TraceRequest:
    return TraceRequest(t, HAIKU, 1_000, 200, awaited, deadline)


def world(turnaround: float, fractions: Sequence[float] | None = None, **extra: Any) -> SimConfig:
    settings: dict[str, Any] = {
        "turnaround": Turnaround(turnaround),
        "batch_window": 300,
        "capacity": CAP,
        "call_seconds": 10.0,
        "cancel_seconds": 60.0,
        "noise": 0.0,
        "poll": None,
        "finish_fractions": tuple(fractions) if fractions is not None else None,
    }
    merged = {**settings, **extra}
    merged.setdefault("latencies", latency_prior(merged["capacity"], GuardConfig()))
    return SimConfig(**merged)


def run(requests: list[TraceRequest], config: SimConfig) -> dict[str, PolicyResult]:
    return {r.policy: r for r in simulate(requests, config)}


def realtime_of(policy: str, requests: list[TraceRequest], config: SimConfig) -> set[int]:
    """Which requests `policy` runs in real time."""
    outcome = RUNNERS[policy](build_world(requests, config, default_table()), config)
    return {i for _, _, i in outcome.realtime}


def test_all_realtime_is_paced_by_the_rate_limit_and_concurrency() -> None:
    # Six awaited requests at t=0, due in 15 s. Starts 1 s apart, 4 at once, 10 s each:
    # starts 0, 1, 2, 3 (done 10..13); the fifth waits for the first slot (10) and the sixth
    # for the second (11): done 20 and 21, late 5 and 6.
    got = run([req(0, 15, awaited=True) for _ in range(6)], world(600))["all-realtime"]
    assert (got.cost, got.realtime, got.batched) == (6 * RT, 6, 0)
    assert (got.missed, got.with_deadline) == (2, 6)
    assert got.p50_late == 0  # lateness sorted: 0 0 0 0 5 6; p50 = the 4th
    assert got.p99_late == 6  # p99 = the 6th


def test_the_call_with_the_earliest_deadline_goes_first() -> None:
    # Five due in 60 s, a sixth due in 15 s, all at t=0: the sixth starts first (at 0, done 10)
    # and the others start at 1, 2, 3, 10, 11 (done by 21): nobody is late.
    trace = [req(0, 60, awaited=True) for _ in range(5)] + [req(0, 15, awaited=True)]
    got = run(trace, world(600))["all-realtime"]
    assert got.missed == 0 and got.p99_late == 0


# One trace for all five policies; turnaround 30 min: the batch created at 300 ends at 2100.
MIXED = [
    req(0, 60, awaited=True),  # r0: someone waits
    req(10, 7200),  # r1: due at 7210; finishes at 300 + 0.50 × 1800 = 1200
    req(20, 2380),  # r2: due at 2400; finishes at 300 + 0.25 × 1800 = 750
    req(30, 2370),  # r3: due at 2400; finishes at 300 + 0.90 × 1800 = 1920
    req(40, None),  # r4: no deadline; finishes at 300 + 1.00 × 1800 = 2100
]
MIXED_FRACTIONS = (0.5, 0.5, 0.25, 0.9, 1.0)


@pytest.mark.parametrize(
    ("policy", "cost", "batched", "realtime", "paid_twice", "missed", "p50", "p99", "in_rt"),
    [
        # Each at its arrival, done 10 s later: 5 × $0.002.
        ("all-realtime", 5 * RT, 0, 5, 0, 0, 0, 0, {0, 1, 2, 3, 4}),
        # Everything in the batch, seen at its end (2100). r0 (due 60) is 2040 s late; r1..r3
        # are in time. Lateness sorted 0 0 0 2040: p50 the 3rd, p99 the 4th.
        ("all-batch", 5 * BATCH, 5, 0, 0, 1, 0, 2040, set()),
        # r0 real time. The batch's earliest deadline is 2400: cancel at 2400 - 600 = 1800,
        # ended at 1860. r1 (1200) and r2 (750) had finished: billed and discarded, paid
        # twice. All four re-run one at a time from 1800: done 1810, 1820, 1830, 1840.
        # 5 × $0.002 + 2 × $0.001.
        ("fixed-buffer", 5 * RT + 2 * BATCH, 0, 5, 2, 0, 0, 0, {0, 1, 2, 3, 4}),
        # r0 real time. At 300, with the prior as forecast (sigma = ln 8 / 1.645 = 1.264):
        #   r1: fallback moment 7210 - 600 - 120 - 10 = 6480, room 6180 s, P = 84%: batch;
        #   r2, r3: fallback moment 2400 - 730 = 1670, room 1370 s, P = 41%: batch.
        # r1..r3 share deadline class 0 (under 2 h left), r4 is alone (no deadline).
        # Their guard: 3 requests take 10 s in real time (one wave), so cancel at
        # 2400 - 600 - 120 - 10 = 1670; the batch ends at 2100, too late: cancel; ended at
        # 1730. r1 (1200) and r2 (750) are kept at batch price; r3 (1920) runs in real time
        # from 1730, done 1740 (due 2400). r4's batch ends at 2100: kept.
        # 3 × $0.001 + 2 × $0.002.
        ("nowait", 3 * BATCH + 2 * RT, 3, 2, 0, 0, 0, 0, {0, 3}),
        # Knows each finish: r1 (1200 <= 7210), r2 (750 <= 2400), r3 (1920 <= 2400) and r4 (no
        # deadline) batch; only r0 runs in real time. 4 × $0.001 + $0.002.
        ("oracle", 4 * BATCH + RT, 4, 1, 0, 0, 0, 0, {0}),
    ],
)
def test_each_policy_on_a_hand_worked_trace(
    policy: str,
    cost: Decimal,
    batched: int,
    realtime: int,
    paid_twice: int,
    missed: int,
    p50: float,
    p99: float,
    in_rt: set[int],
) -> None:
    config = world(1800, MIXED_FRACTIONS, forecast=PRIOR)
    got = run(MIXED, config)[policy]
    assert (got.cost, got.batched, got.realtime) == (cost, batched, realtime)
    assert (got.paid_twice, got.missed, got.with_deadline) == (paid_twice, missed, 4)
    assert (got.p50_late, got.p99_late) == (p50, p99)
    assert realtime_of(policy, MIXED, config) == in_rt


def test_a_batch_that_lands_in_time_costs_half() -> None:
    # Two requests due in 2 h; the batch takes 10 minutes: created at 300, ended at 900.
    got = run([req(0, 7200), req(10, 7200)], world(600, forecast=PRIOR))
    assert got["all-realtime"].cost == 2 * RT
    for policy in ("all-batch", "fixed-buffer", "nowait", "oracle"):
        assert got[policy].cost == 2 * BATCH, policy
        assert got[policy].missed == 0 and got[policy].batched == 2


# 20 requests at t = 0..19, each due an hour after it arrives (3600 + i); the world's batch
# takes 5 h (ends at 18,300) while nowait's forecast is the prior (median 30 min). Requests 0-4
# finish early in it (300 + 0.05 × 18,000 = 1200), the rest halfway (9300).
LATE = [req(i, 3600) for i in range(20)]
LATE_FRACTIONS = [0.05] * 5 + [0.5] * 15


def test_a_late_batch_guard_keeps_the_finished_part_and_pays_once() -> None:
    got = run(LATE, world(5 * 3600, LATE_FRACTIONS, forecast=PRIOR))
    nowait, oracle, fixed, batch = (
        got["nowait"],
        got["oracle"],
        got["fixed-buffer"],
        got["all-batch"],
    )
    # nowait, at 300: each request alone has a fallback moment at 3600 + i - 600 - 120 - 10,
    # room 2570 + i s, P(turnaround <= 2570 s) = 61% under the prior: batch, one class.
    # The batch of 20 takes 5 waves of 10 s in real time: cancel at 3600 - 600 - 120 - 50 =
    # 2830, ended at 2890. Requests 0-4 finished (1200): kept, paid once at batch price.
    # 5-19 run from 2890, four at a time, 1 s apart: done 2900..2903, 2910..2913,
    # 2920..2923, 2930..2932; all due at 3605 or later.
    assert (nowait.batched, nowait.realtime, nowait.paid_twice, nowait.missed) == (5, 15, 0, 0)
    assert nowait.cost == 5 * BATCH + 15 * RT == Decimal("0.035")
    assert realtime_of("nowait", LATE, world(5 * 3600, LATE_FRACTIONS, forecast=PRIOR)) == set(
        range(5, 20)
    )
    # The oracle batches exactly the five that finish in time: the same cost.
    assert (oracle.batched, oracle.realtime, oracle.cost) == (5, 15, Decimal("0.035"))
    # Fixed buffer: cancel at 3600 - 600 = 3000, ended at 3060: requests 0-4 had finished,
    # paid twice. All 20 re-run one at a time from 3000: done 3010..3200, all in time.
    assert (fixed.batched, fixed.realtime, fixed.paid_twice, fixed.missed) == (0, 20, 5, 0)
    assert fixed.cost == 20 * RT + 5 * BATCH == Decimal("0.045")
    # No guard: all 20 seen at 18,300, late by 14,700 - i. Sorted, p50 is the 11th (i = 9),
    # p99 the 20th (i = 0).
    assert (batch.missed, batch.p50_late, batch.p99_late) == (20, 14_691, 14_700)


def test_fixed_buffer_misses_when_serial_reruns_do_not_fit() -> None:
    # 30 requests at t = 0..29, due at 3600 + i; a minute a call; the batch takes 5 h;
    # requests 0-9 finish at 1200, the rest at 9300.
    slow = Capacity(60, 10**9, 10**9, concurrency=100, seconds_per_request=60.0)
    config = world(
        5 * 3600, [0.05] * 10 + [0.5] * 20, capacity=slow, call_seconds=60.0, forecast=PRIOR
    )
    got = run([req(i, 3600) for i in range(30)], config)
    fixed, nowait = got["fixed-buffer"], got["nowait"]
    # Fixed buffer: cancel at 3000 (0-9 paid twice), then request k runs from 3000 + 60k,
    # done 3060 + 60k, due 3600 + k: late by 59k - 540 from k = 10 on. Twenty late; sorted
    # lateness has ten zeros, then 50, 109, ...: p50 is k = 15 (345 s), p99 k = 29 (1171 s).
    assert (fixed.missed, fixed.paid_twice, fixed.p50_late, fixed.p99_late) == (20, 10, 345, 1171)
    assert fixed.cost == 30 * RT + 10 * BATCH
    # nowait: 30 requests are one wave (100 at once) but 30 s of starts; the wave's 60 s
    # bind: cancel at 3600 - 600 - 120 - 60 = 2820, ended 2880; 0-9 kept; 10-29 start at
    # 2880..2899, done 2940..2959, in time.
    assert (nowait.missed, nowait.paid_twice, nowait.batched, nowait.realtime) == (0, 0, 10, 20)
    assert nowait.cost == 10 * BATCH + 20 * RT


def test_a_world_slower_than_the_margin_makes_the_guard_miss() -> None:
    # The LATE trace again, but the world's cancel takes 15 minutes where the guard plans 2
    # and keeps 10 in hand: cancel at 2830, ended at 3730, past every deadline (3600..3619).
    # The five kept results are seen at 3730 (late 130 - i: 126..130). The 15 re-runs go in
    # waves of four from 3730: requests 5-8 done 3740..3743 (late 135), 9-12 at 3750..3753
    # (141), 13-16 at 3760..3763 (147), 17-19 at 3770..3772 (153). Sorted, p50 is the 11th
    # value (141), p99 the 20th (153).
    config = world(5 * 3600, LATE_FRACTIONS, forecast=PRIOR, cancel_seconds=900.0)
    got = run(LATE, config)["nowait"]
    assert (got.missed, got.batched, got.realtime) == (20, 5, 15)
    assert (got.p50_late, got.p99_late) == (141, 153)


def test_the_guard_learns_slow_cancels_from_the_worlds_history() -> None:
    # The same world, nowait learning its latencies from the world's history (no noise: every
    # cancel took 900 s, every call 10 s): it plans the cancel at its p95, 900 s. Each request
    # alone: room 3600 + i - 600 - 900 - 10 - 300 = 1790 + i s, P <= 50% under the prior, still
    # above 20%: batch. The batch: cancel at 3600 - 600 - 900 - 50 = 2050, ended 2950; 0-4
    # finished (1200): kept; 5-19 run from 2950, done by 2992, all in time.
    config = world(5 * 3600, LATE_FRACTIONS, forecast=PRIOR, cancel_seconds=900.0, latencies=None)
    got = run(LATE, config)["nowait"]
    assert (got.missed, got.batched, got.realtime, got.paid_twice) == (0, 5, 15, 0)
    learned = build_world(LATE, config, default_table()).latencies
    assert learned.cancel.seconds() == 900.0 and learned.call(HAIKU, 200).seconds() == 10.0


def test_learned_latencies_come_from_their_own_draws_of_the_world() -> None:
    # With noise, the history is drawn within the world's bounds but not from this run's
    # batches; the plan takes its 95th percentile: near the top of 15 min ± 50%.
    trace = [req(i * 7.0, 3 * 3600) for i in range(400)]
    config = SimConfig(turnaround=Turnaround(1200, 3 * 3600), noise=0.5, cancel_seconds=900.0)
    built = build_world(trace, config, default_table())
    cancels = built.latencies.cancel
    assert cancels.learned and len(cancels.samples) == config.history_cancels
    assert all(450.0 <= s <= 1350.0 for s in cancels.samples)
    assert set(cancels.samples).isdisjoint(built.batch_cancel)
    assert 1250.0 <= cancels.seconds() <= 1350.0
    assert 18.0 <= built.latencies.call(HAIKU, 200).seconds() <= 22.5  # 15 s ± 50%, p95


def test_batches_due_together_fall_back_together_in_time() -> None:
    # 300 requests at t=0 and 300 at t=300, all due at 3600 (two batches, created at 300 and
    # 600); no batch ends in time (5 h). Alone, each plans 75 waves of 10 s (4 at once):
    # cancel at 3600 - 600 - 120 - 750 = 2130; both would fall back then, and 600 calls from
    # 2190 take 150 waves: done ~3690, late. Each counts the other (due with it, open at the
    # moment): 150 waves = 1500 s, cancel at 1380, ended 1440; 600 calls done by ~2940.
    trace = [req(0, 3600) for _ in range(300)] + [req(300, 3300) for _ in range(300)]
    got = run(trace, world(5 * 3600, [0.9] * 600, forecast=PRIOR))["nowait"]
    assert (got.missed, got.batched, got.realtime, got.paid_twice) == (0, 0, 600, 0)
    assert got.cost == 600 * RT


def test_noise_is_seeded_and_within_its_bounds() -> None:
    trace = [req(i * 7.0, 3 * 3600) for i in range(400)] + [req(5.0, 60, awaited=True)]
    config = SimConfig(turnaround=Turnaround(1200, 3 * 3600), noise=0.5, call_seconds=20.0)
    built = build_world(trace, config, default_table())
    assert all(10.0 <= s <= 30.0 for s in built.call) and len(set(built.call)) > 300
    assert all(90.0 <= s <= 270.0 for s in built.batch_cancel)
    assert simulate(trace, config) == simulate(trace, config)
    other = SimConfig(turnaround=Turnaround(1200, 3 * 3600), noise=0.5, call_seconds=20.0, seed=2)
    assert build_world(trace, other, default_table()).call != built.call


def test_results_are_seen_at_the_first_poll_after_the_batch_ends() -> None:
    # The batch created at 300 ends at 2100, 1800 s in. Polls come 10, 25, 47.5, 81.25,
    # 131.875, 207.8125, 321.71875, 441.71875 s in (intervals 10, x1.5, up to 120), then
    # every 120 s: the first at or after 1800 is 441.71875 + 12 × 120 = 1881.71875 s in.
    config = world(1800, [1.0], poll=PollConfig(first=10, factor=1.5, longest=120))
    got = run([req(0, 2000)], config)["all-batch"]
    assert got.p50_late == got.p99_late == 300 + 1881.71875 - 2000


def test_requests_past_24_hours_expire_and_are_rerun() -> None:
    # A 30-hour batch: the requests finishing at 0.85 and 0.95 of it (25.5 h, 28.5 h) expire
    # at 24 h and are re-run in real time; the other eight are batched.
    fractions = [0.05 + 0.1 * k for k in range(10)]
    config = world(30 * 3600, fractions)
    got = run([req(i, 48 * 3600) for i in range(10)], config)["all-batch"]
    assert (got.batched, got.realtime, got.cost) == (8, 2, 8 * BATCH + 2 * RT)
    assert realtime_of("all-batch", [req(i, 48 * 3600) for i in range(10)], config) == {8, 9}


def test_finish_fractions_need_one_value_in_range_per_request() -> None:
    with pytest.raises(ValueError, match="finish_fractions"):
        simulate([req(0, 3600)], world(600, [0.5, 0.5]))
    with pytest.raises(ValueError, match="finish_fractions"):
        simulate([req(0, 3600)], world(600, [0.0]))


def test_simulate_cli_generates_and_compares(tmp_path: Path, cli: Any) -> None:
    trace = tmp_path / "trace.jsonl"
    html = tmp_path / "sim.html"
    result = cli("simulate", str(trace), "--generate", "3000", "--days", "2", "--html", str(html))
    assert result.code == 0, result.err
    assert len(trace.read_text().splitlines()) == 3000
    for policy in ("all-realtime", "all-batch", "fixed-buffer", "nowait", "oracle"):
        assert policy in result.out
    assert "of the oracle's savings" in result.out and "<svg" in html.read_text()
    page = html.read_text()  # the deadlines chart counts requests; it is not money
    assert "requests that missed their deadline, of 3,000" in page
    missed = re.findall(r'class="value" data-label="([^"]+)" [^>]*>([^<]+)<', page)[-5:]
    assert dict(missed)["nowait"] == "0" and "$" not in "".join(v for _, v in missed)


def test_simulate_cli_sets_the_world_apart_from_the_plan(tmp_path: Path, cli: Any) -> None:
    trace = tmp_path / "trace.jsonl"
    calm = cli("simulate", str(trace), "--generate", "3000", "--days", "2", "--noise", "0")
    assert calm.code == 0, calm.err
    assert "missing none" in " ".join(calm.out.split())
    # cancels far slower than the guard plans for (2 min) and nowait on its prior alone:
    # the table must show what that costs in missed deadlines, not hide it
    slow = cli("simulate", str(trace), "--cancel-time", "40m", "--noise", "0", "--prior")
    assert slow.code == 0, slow.err
    assert re.search(r"missing [1-9][\d,]* deadlines", " ".join(slow.out.split()))
    # the same world with history: nowait learns the 40-minute cancels and misses none
    learned = cli("simulate", str(trace), "--cancel-time", "40m", "--noise", "0")
    assert learned.code == 0, learned.err
    assert "missing none" in " ".join(learned.out.split())
    bad = cli("simulate", str(trace), "--noise", "2")
    assert bad.code == 2 and "--noise" in bad.err and "Traceback" not in bad.err


def test_the_deadlines_mix_is_a_named_generator_option(tmp_path: Path, cli: Any) -> None:
    trace = tmp_path / "trace.jsonl"
    result = cli("simulate", str(trace), "--generate", "2000", "--days", "2", "--mix", "deadlines")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    deadlines = {r["deadline"] for r in rows}
    assert {50 * 60.0, 2 * 3600.0, 48 * 3600.0, 60.0} <= deadlines
    overnight = [r for r in rows if r["model"] == "claude-opus-5-5"]
    assert overnight and all((r["t"] + r["deadline"]) % 86400 == 8 * 3600 for r in overnight)
    bad = cli("simulate", str(trace), "--generate", "10", "--mix", "weekly")
    assert bad.code == 2 and "--mix" in bad.err and "deadlines" in bad.err


def test_bad_trace_lines_are_named(tmp_path: Path, cli: Any) -> None:
    trace = tmp_path / "trace.jsonl"
    good = {
        "t": 0,
        "model": HAIKU,
        "input_tokens": 10,
        "output_tokens": 5,
        "awaited": False,
        "deadline": 3600,
    }
    trace.write_text(json.dumps(good) + "\n" + json.dumps({**good, "input_tokens": -1}) + "\n")
    result = cli("simulate", str(trace))
    assert result.code == 2 and "trace.jsonl:2: input_tokens: got -1" in result.err
