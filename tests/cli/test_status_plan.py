"""`nowait status` shows the deadline guard's plan, learned from the store's own history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nowait.store import NewJob, Outcome
from nowait.store.sqlite import SQLiteStore
from nowait.types import Route, Tier, Usage

MODEL = "claude-haiku-4-5"


def _job(key: str, deadline: datetime | None = None, route: Route = Route.BATCH) -> NewJob:
    params = {"model": MODEL, "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]}
    return NewJob(key, json.dumps(params), MODEL, route, "r", deadline=deadline)


def _cancelled_batches(store: SQLiteStore, n: int, latency: timedelta, start: datetime) -> None:
    """`n` batches the guard cancelled, each reaching `ended` `latency` after its cancel."""
    for i in range(n):
        key = f"cancel-{latency.total_seconds():.0f}-{i}"
        job = store.add_job(_job(key), start)[0]
        batch = store.plan_batch([(job.id, f"{key}-a1")], 10, MODEL, start)
        store.batch_created(batch.id, f"msgbatch_{key}", start, start)
        store.request_cancel(batch.id, start)
        store.batch_ended(batch.id, start + latency)


def _plan(cli: Any, home: Path) -> dict[str, Any]:
    result = cli("status", "--home", str(home), "--json")
    assert result.code == 0, result.err
    [plan] = json.loads(result.out)["guard"]
    return plan  # type: ignore[no-any-return]


def test_status_shows_the_fallback_moment_moving_as_cancels_slow_down(
    tmp_path: Path, cli: Any
) -> None:
    now = datetime.now(UTC)
    deadline = now + timedelta(hours=6)
    with _open(tmp_path) as store:
        job = store.add_job(_job("report", deadline), now)[0]
        batch = store.plan_batch([(job.id, "report-a1")], 100, MODEL, now)
        store.batch_created(batch.id, "msgbatch_open", now, now)
    before = _plan(cli, tmp_path)
    assert before["api_id"] == "msgbatch_open" and before["deadline"].startswith(
        deadline.isoformat(timespec="seconds")
    )
    assumes = before["assumes"]
    assert assumes["cancel_latency_seconds"] == 120.0  # the setting: no cancel seen yet
    assert assumes["cancel_latency_source"].startswith("the setting (0 of 10 cancels")
    assert assumes["margin_seconds"] == 600.0 and assumes["capacity"]["requests_per_minute"] == 50
    p50, p95 = before["forecast_end"]["p50"], before["forecast_end"]["p95"]
    assert now.isoformat() < p50 < p95  # the prior: 30 min median, 4 h p95
    assert before["verdict"].startswith("waits")

    with _open(tmp_path) as store:
        _cancelled_batches(store, 10, timedelta(minutes=15), now - timedelta(days=1))
    slow = _plan(cli, tmp_path)
    assert slow["assumes"]["cancel_latency_seconds"] == 900.0
    assert slow["assumes"]["cancel_latency_source"] == "p95 of 10 cancels"
    moved = _moment(before) - _moment(slow)
    assert moved == timedelta(minutes=13)  # 15 min learned where the setting said 2

    with _open(tmp_path) as store:  # slower still: 40-minute cancels, 10 of 20 cancels seen
        _cancelled_batches(store, 10, timedelta(minutes=40), now - timedelta(days=1))
    slower = _plan(cli, tmp_path)
    assert slower["assumes"]["cancel_latency_seconds"] == 2400.0
    assert _moment(slow) - _moment(slower) == timedelta(minutes=25)

    text = cli("status", "--home", str(tmp_path))
    assert text.code == 0, text.err
    flat = " ".join(text.out.split())
    assert "guard: batch msgbatch_open (1 requests of claude-haiku-4-5)" in flat
    assert "cancel 40 min (p95 of 20 cancels)" in flat and "fallback at" in flat


def _moment(plan: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(plan["fallback_at"])


def test_status_learns_call_duration_from_real_time_calls(tmp_path: Path, cli: Any) -> None:
    now = datetime.now(UTC)
    with _open(tmp_path) as store:
        job = store.add_job(_job("report", now + timedelta(hours=3)), now)[0]
        batch = store.plan_batch([(job.id, "report-a1")], 100, MODEL, now)
        store.batch_created(batch.id, "msgbatch_open", now, now)
        for i in range(20):  # calls of 40 s, writing 150 tokens each
            call = store.add_job(_job(f"call-{i}", route=Route.REALTIME), now)[0]
            assert store.start_realtime(call.id, now)
            answer = Outcome(None, "succeeded", "{}", Usage(output_tokens=150), Tier.STANDARD)
            store.finish_realtime(call.id, answer, now + timedelta(seconds=40))
    plan = _plan(cli, tmp_path)
    assert plan["assumes"]["call_seconds"] == 40.0
    assert plan["assumes"]["call_source"] == (f"p95 of 20 {MODEL} calls of up to 256 output tokens")


def _open(home: Path) -> Any:
    from contextlib import closing

    return closing(SQLiteStore(home / "nowait.db"))
