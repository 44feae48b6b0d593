"""The Store contract: every implementation runs this suite (add a factory to STORES)."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nowait.errors import IllegalTransition, StoreError
from nowait.models import JobState, Route, Tier, Usage
from nowait.store import BatchState, NewJob, Outcome, Store
from nowait.store.sqlite import SQLiteStore

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
STORES: dict[str, Callable[[Path], Store]] = {"sqlite": lambda d: SQLiteStore(d / "nowait.db")}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = STORES[request.param](tmp_path)
    yield made
    made.close()


def job(key: str, route: Route = Route.BATCH, **extra: object) -> NewJob:
    return NewJob(
        key=key,
        params_json='{"model": "m"}',
        model="claude-haiku-5-5",
        route=route,
        reasons="r",
        **extra,
    )  # type: ignore[arg-type]


def test_add_job_is_idempotent_on_key(store: Store) -> None:
    first, new = store.add_job(job("a", workload="w"), NOW)
    again, new_again = store.add_job(job("a", workload="other"), NOW)
    assert new and not new_again
    assert again.id == first.id and again.workload == "w"
    assert first.state is JobState.QUEUED and first.attempts == 0


def test_due_jobs_respect_route_time_and_deadline_order(store: Store) -> None:
    store.add_job(job("late", deadline=NOW + timedelta(hours=5)), NOW)
    store.add_job(job("soon", deadline=NOW + timedelta(hours=1)), NOW)
    store.add_job(job("none"), NOW)
    store.add_job(job("rt", Route.REALTIME), NOW)
    assert [j.key for j in store.due_jobs(Route.BATCH, NOW, 10)] == ["soon", "late", "none"]
    assert [j.key for j in store.due_jobs(Route.REALTIME, NOW, 10)] == ["rt"]
    assert store.due_jobs(Route.BATCH, NOW - timedelta(seconds=1), 10) == []


def test_batch_plan_create_collect_cycle(store: Store) -> None:
    ids = [store.add_job(job(f"k{i}"), NOW)[0].id for i in range(3)]
    batch = store.plan_batch([(i, f"j{i}-a1") for i in ids], 999, "claude-haiku-5-5", NOW)
    assert batch.state is BatchState.PLANNED and batch.request_count == 3
    assert {j.state for j in store.jobs()} == {JobState.SUBMITTING}
    assert [c for c, _ in store.batch_members(batch.id)] == [f"j{i}-a1" for i in ids]
    store.batch_created(batch.id, "msgbatch_1", NOW, NOW + timedelta(seconds=10))
    [created] = store.batches(BatchState.CREATED)
    assert created.api_id == "msgbatch_1" and created.next_poll_at == NOW + timedelta(seconds=10)
    assert {j.state for j in store.jobs()} == {JobState.IN_BATCH}
    store.batch_ended(batch.id, NOW + timedelta(hours=1))
    usage = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=7)
    outcomes = [
        Outcome(f"j{ids[0]}-a1", "succeeded", '{"id": "msg"}', usage, Tier.BATCH),
        Outcome(f"j{ids[1]}-a1", "failed", error="invalid_request_error"),
        Outcome("j999-a1", "succeeded", "{}", usage, Tier.BATCH),  # not ours: ignored
    ]
    assert store.apply_batch_outcomes(batch.id, outcomes, NOW) == 2
    assert store.apply_batch_outcomes(batch.id, outcomes, NOW) == 0  # a second pass changes nothing
    assert store.close_batch(batch.id, NOW + timedelta(minutes=1), NOW) == 1  # k2 was missing
    states = {j.key: j.state for j in store.jobs()}
    assert states == {"k0": JobState.SUCCEEDED, "k1": JobState.FAILED, "k2": JobState.QUEUED}
    done = store.get_job("k0")
    assert done is not None and done.usage == usage and done.tier is Tier.BATCH
    assert store.batches(BatchState.COLLECTED)[0].id == batch.id


def test_abandoned_plan_returns_jobs_to_the_queue(store: Store) -> None:
    [a] = [store.add_job(job("a"), NOW)[0].id]
    batch = store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    assert store.abandon_batch(batch.id, NOW) == 1
    requeued = store.get_job("a")
    assert requeued is not None and requeued.state is JobState.QUEUED and requeued.custom_id is None
    assert store.batches(BatchState.ABANDONED)[0].id == batch.id


def test_a_job_cannot_join_two_batches(store: Store) -> None:
    a = store.add_job(job("a"), NOW)[0].id
    store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    with pytest.raises((StoreError, IllegalTransition)):
        store.plan_batch([(a, "ja-a2")], 10, "m", NOW)
    assert len(store.batches(BatchState.PLANNED)) == 1  # the failed plan left nothing behind


def test_realtime_claim_retry_and_delivery(store: Store) -> None:
    a = store.add_job(job("a", Route.REALTIME), NOW)[0].id
    assert store.start_realtime(a, NOW)
    assert not store.start_realtime(a, NOW)  # already claimed
    store.finish_realtime(
        a, Outcome(None, "retry", error="529", not_before=NOW + timedelta(seconds=30)), NOW
    )
    assert store.due_jobs(Route.REALTIME, NOW, 5) == []
    [due] = store.due_jobs(Route.REALTIME, NOW + timedelta(seconds=30), 5)
    assert due.attempts == 1 and due.error == "529"
    assert store.start_realtime(a, NOW)
    store.finish_realtime(a, Outcome(None, "succeeded", "{}", Usage(1, 1), Tier.STANDARD), NOW)
    assert [j.key for j in store.undelivered(10)] == ["a"]
    store.mark_delivered(a, NOW)
    assert store.undelivered(10) == []
    with pytest.raises(IllegalTransition):
        store.mark_delivered(a, NOW)


def test_requeue_running_after_a_crash(store: Store) -> None:
    a = store.add_job(job("a", Route.REALTIME), NOW)[0].id
    store.start_realtime(a, NOW)
    assert store.requeue_running(NOW) == 1
    again = store.get_job("a")
    assert again is not None and again.state is JobState.QUEUED


def test_reroute_and_usage_rows(store: Store) -> None:
    ids = [store.add_job(job(f"k{i}", workload="w"), NOW)[0].id for i in range(2)]
    assert store.reroute(ids, Route.REALTIME, "deadline at risk", NOW) == 2
    for i in ids:
        store.start_realtime(i, NOW)
        store.finish_realtime(
            i, Outcome(None, "succeeded", "{}", Usage(100, 10, 5, 0, 20), Tier.STANDARD), NOW
        )
    [row] = store.usage_rows()
    assert (row.workload, row.tier, row.requests) == ("w", Tier.STANDARD, 2)
    assert row.usage == Usage(200, 20, 10, 0, 40)
    assert store.job_counts() == {JobState.SUCCEEDED: 2}
    rerouted = store.get_job("k0")
    assert rerouted is not None and "deadline at risk" in rerouted.reasons


def test_sqlite_file_is_private_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "home" / "nowait.db"
    first = SQLiteStore(path)
    first.add_job(job("a"), NOW)
    first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reopened = SQLiteStore(path)
    assert reopened.get_job("a") is not None
    reopened.close()


def test_sqlite_rejects_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "nowait.db"
    path.write_text("not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable nowait store"):
        SQLiteStore(path)
