"""The guard on the wire, end to end against the emulator over HTTP: nowait learns the
account's limits from the API's headers, falls back in time under them, paces its real-time
calls to them, and treats a 429 as a wait."""

from __future__ import annotations

import json
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock, ScaledClock
from nowait.emulator import EmulatorConfig, EmulatorServer, RateLimit, Turnaround
from nowait.guard.policy import (
    Capacity,
    GuardConfig,
    PollConfig,
    WorkLeft,
    fallback_start,
    realtime_duration,
)
from nowait.route.backend import AnthropicBackend
from nowait.route.router import Delivery, Router
from nowait.route.worker import WorkerConfig
from nowait.store.sqlite import SQLiteStore
from nowait.types import Route, Tier
from router_helpers import ask

MODEL = "claude-haiku-5-5"


def test_limits_learned_from_the_headers_make_a_slow_cancel_fall_back_in_time(
    fake_clock: FakeClock, make_router: Any
) -> None:
    """Cancels take 15 minutes and the account runs 4 requests a minute; nowait's settings say
    nothing about capacity. Planned with the defaults (50 a minute), the fallback would start
    too late; planned with the limits the batch create's headers stated, every deadline holds."""
    rpm, n, cancel = 4, 100, timedelta(minutes=15)
    config = EmulatorConfig(
        turnaround=Turnaround(5 * 3600),  # a slow day: the batch will not land in time
        cancel_latency=cancel.total_seconds(),
        rate_limits={"*": RateLimit(rpm, 20_000, 2_000)},
    )
    with EmulatorServer(config, fake_clock) as server:
        guard = GuardConfig(margin=timedelta(minutes=10), cancel_latency=cancel)
        router = make_router(server, guard=guard, poll=PollConfig(first=60, longest=300))
        deadline = fake_clock.now() + timedelta(hours=2)
        for i in range(n):
            router.submit(ask(i), key=f"k{i}", workload="export", deadline=deadline)
        assert {j.route for j in router.store.jobs()} == {Route.BATCH}
        delivered_at: dict[str, datetime] = {}

        def sink(d: Delivery) -> None:
            assert d.ok, d.error
            delivered_at[d.key] = fake_clock.now()

        router.run(sink)
        in_use = router.worker.capacity_in_use(MODEL)
        refused = server.emulator.rate_limited
        print(f"429s seen: {refused}; capacity {in_use.capacity} from {in_use.source}")

    assert in_use.source.startswith("headers at") and in_use.capacity.requests_per_minute == rpm
    assert len(delivered_at) == n and max(delivered_at.values()) <= deadline  # none late
    assert refused <= 3  # paced: the limit was met, not hit
    tiers = [j.tier for j in router.store.jobs()]
    assert Tier.STANDARD in tiers  # it did fall back, and in time
    # Learning was needed: with the defaults, the whole fallback (cancel, then the work at the
    # account's real rate) could not have ended by the deadline.
    work = WorkLeft(n, 30 * n, 32 * n)
    assumed = fallback_start(deadline, work, Capacity(), guard)
    at_the_real_rate = realtime_duration(work, in_use.capacity)
    assert assumed + cancel + at_the_real_rate > deadline


@pytest.mark.slow
def test_same_run_comparison_every_request_delivered_none_late_none_given_up(
    tmp_path: Path,
) -> None:
    """Issue 14's comparison, on the emulator's time scale (one real second is five emulated
    minutes): 200 requests due in 2 h, batches at a 90 min median / 6 h p95, an account limit
    of 50 requests a minute, 3 s real-time calls, 30 s cancels."""
    clock = ScaledClock(300)
    config = EmulatorConfig(
        seed=14,
        turnaround=Turnaround(90 * 60, 6 * 3600),
        cancel_latency=30,
        realtime_latency=3,
        rate_limits={"*": RateLimit(requests_per_minute=50)},
    )
    with EmulatorServer(config, clock) as server:
        backend = AnthropicBackend(api_key="k", base_url=server.base_url)
        store = SQLiteStore(tmp_path / "nowait.db")
        worker = WorkerConfig(poll=PollConfig(first=10, longest=120))
        with closing(Router(store=store, backend=backend, clock=clock, worker=worker)) as router:
            deadline = clock.now() + timedelta(hours=2)
            for i in range(200):
                router.submit(ask(i), key=f"k{i}", workload="report", deadline=deadline)
            delivered: dict[str, tuple[datetime, Delivery]] = {}
            router.run(lambda d: delivered.__setitem__(d.key, (clock.now(), d)))
            tiers = [j.tier for j in router.store.jobs()]
        refused = server.emulator.rate_limited
    late = [k for k, (at, _) in delivered.items() if at > deadline]
    failed = {k: d.error for k, (_, d) in delivered.items() if not d.ok}
    slack = deadline - max(at for at, _ in delivered.values())
    print(
        f"delivered {len(delivered)}, late {len(late)}, failed {len(failed)}, 429s {refused},"
        f" batch {tiers.count(Tier.BATCH)}, real time {tiers.count(Tier.STANDARD)},"
        f" last delivery {slack} before the deadline"
    )
    assert len(delivered) == 200
    assert failed == {}  # none given up
    assert late == []


def test_status_reports_the_capacity_read_from_the_headers(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nowait.clock import SystemClock

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    home = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    SQLiteStore(tmp_path / "home" / "nowait.db").close()  # status reads a store, never makes one
    before = json.loads(cli("status", "--home", home, "--json").out)["capacity"]
    assert [c["source"] for c in before] == ["defaults"]
    monkeypatch.setenv("NOWAIT_CAPACITY__OUTPUT_TOKENS_PER_MINUTE", "3000")
    assert json.loads(cli("status", "--home", home, "--json").out)["capacity"][0]["source"] == (
        "settings"
    )
    requests = tmp_path / "requests.jsonl"
    lines = [{"key": f"k{i}", "params": ask(i), "awaited": True} for i in range(3)]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    limits = {"*": RateLimit(1000, 400_000, 80_000)}
    with EmulatorServer(EmulatorConfig(rate_limits=limits), SystemClock()) as server:
        ran = cli("run", str(requests), "--home", home, "--out", str(tmp_path / "out.jsonl"),
                  "--base-url", server.base_url)  # fmt: skip
        assert ran.code == 0, ran.err

    [capacity] = json.loads(cli("status", "--home", home, "--json").out)["capacity"]
    assert capacity["model_class"] == "haiku"
    assert capacity["source"].startswith("headers at ")
    assert (capacity["requests_per_minute"], capacity["input_tokens_per_minute"]) == (1000, 400_000)
    assert capacity["output_tokens_per_minute"] == 3000  # the user's setting is the lower
    assert capacity["source"].endswith(", settings lower")
    text = cli("status", "--home", home).out
    assert "capacity: haiku: 1,000 requests, 400,000 input and 3,000 output tokens a minute" in text
