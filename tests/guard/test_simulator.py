"""Each policy's arithmetic on small hand-worked traces, and the CLI."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from nowait.policy import Capacity, GuardConfig
from nowait.simulate.engine import SimConfig, simulate
from nowait.simulate.trace import TraceRequest
from nowait.turnaround import Turnaround

# claude-haiku-4-5: $1 in, $5 out per million. 1,000 in + 200 out = $0.002 real time, $0.001 batch.
HAIKU = "claude-haiku-4-5"
FAST = Capacity(6_000, 10**9, 10**9, 100, 10.0)


def req(t: float, deadline: float | None, awaited: bool = False) -> TraceRequest:
    return TraceRequest(t, HAIKU, 1_000, 200, awaited, deadline)


def run(requests: list[TraceRequest], turnaround: float, **extra: Any) -> dict[str, Any]:
    config = SimConfig(turnaround=Turnaround(turnaround), batch_window=300, capacity=FAST, **extra)
    return {r.policy: r for r in simulate(requests, config)}


def test_a_batch_that_lands_in_time_costs_half() -> None:
    # Two requests due in 2 h; every batch takes 10 minutes.
    got = run([req(0, 7200), req(10, 7200)], turnaround=600)
    assert got["all-realtime"].cost == Decimal("0.004")
    for policy in ("all-batch", "fixed-buffer", "nowait", "oracle"):
        assert got[policy].cost == Decimal("0.002"), policy
        assert got[policy].missed == 0 and got[policy].batched == 2


def test_awaited_work_is_real_time_except_for_all_batch() -> None:
    got = run([req(0, 60, awaited=True)], turnaround=600)
    assert got["nowait"].cost == got["oracle"].cost == Decimal("0.002")
    assert got["all-batch"].missed == 1  # 300 s window + 600 s turnaround > 60 s
    assert 300 - 60 < got["all-batch"].p50_late <= 300 + 600 - 60  # window + its share of 10 min


def test_a_late_batch_guard_keeps_the_finished_part_and_pays_once() -> None:
    # 20 requests due in 1 h; the batch takes 5 h. The guard cancels in time; the oracle
    # sends to batch only requests that would land in time.
    trace = [req(i, 3600) for i in range(20)]
    got = run(trace, turnaround=5 * 3600, guard=GuardConfig())
    nowait, oracle, fixed = got["nowait"], got["oracle"], got["fixed-buffer"]
    assert nowait.missed == 0 and nowait.paid_twice == 0
    assert nowait.batched + nowait.realtime == 20
    # each request costs 0.001 batched or 0.002 real time
    assert nowait.cost == Decimal("0.001") * nowait.batched + Decimal("0.002") * nowait.realtime
    assert oracle.cost <= nowait.cost
    # firming-style: re-runs all 20 serially (10 s each) from 10 min before: 20 × $0.002
    # plus the finished ones paid a second time at batch price
    assert fixed.cost == Decimal("0.002") * 20 + Decimal("0.001") * fixed.paid_twice


def test_fixed_buffer_misses_when_serial_reruns_do_not_fit() -> None:
    slow = Capacity(6_000, 10**9, 10**9, 100, 60.0)  # a minute a call, one at a time
    trace = [req(i, 3600) for i in range(30)]
    config = SimConfig(turnaround=Turnaround(5 * 3600), capacity=slow)
    got = {r.policy: r for r in simulate(trace, config)}
    assert got["fixed-buffer"].missed > 0  # 30 serial minutes in a 10-minute buffer
    assert got["nowait"].missed == 0  # parallel, started early enough


def test_requests_past_24_hours_expire_and_are_rerun() -> None:
    # A 30-hour batch: requests whose point in it falls after 24 h (a fifth) expire.
    got = run([req(i, 48 * 3600) for i in range(100)], turnaround=30 * 3600)["all-batch"]
    assert 10 <= got.realtime <= 30 and got.batched + got.realtime == 100
    assert got.cost == Decimal("0.001") * got.batched + Decimal("0.002") * got.realtime


def test_simulate_cli_generates_and_compares(tmp_path: Path, cli: Any) -> None:
    trace = tmp_path / "trace.jsonl"
    html = tmp_path / "sim.html"
    result = cli("simulate", str(trace), "--generate", "3000", "--days", "2", "--html", str(html))
    assert result.code == 0, result.err
    assert len(trace.read_text().splitlines()) == 3000
    for policy in ("all-realtime", "all-batch", "fixed-buffer", "nowait", "oracle"):
        assert policy in result.out
    assert "of the oracle's savings" in result.out and "<svg" in html.read_text()


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
