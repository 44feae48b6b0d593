"""The Store contract: every implementation runs this suite (add a factory to STORES)."""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nowait.errors import IllegalTransition, StoreError
from nowait.limits import CUSTOM_ID_PATTERN
from nowait.ratelimits import Limit, RateLimits
from nowait.route.custom_ids import custom_id
from nowait.store import (
    BatchState,
    Finished,
    NewJob,
    NoSuchJob,
    ObservedLimits,
    Outcome,
    Store,
    StoreBusyError,
)
from nowait.store.sqlite import SQLiteStore
from nowait.types import JobState, Route, Tier, Usage

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@contextmanager
def sqlite_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = SQLiteStore(tmp_path / "nowait.db")
    yield made
    made.close()


@contextmanager
def postgres_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh database on the session's real server (the `pg_database` fixture)."""
    from nowait.store.postgres import PostgresStore

    made = PostgresStore(request.getfixturevalue("pg_database"))
    yield made
    made.close()


StoreFactory = Callable[[pytest.FixtureRequest, Path], AbstractContextManager[Store]]
STORES: dict[str, StoreFactory] = {"sqlite": sqlite_store, "postgres": postgres_store}
MARKS = {"postgres": pytest.mark.postgres}


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, ())) for name in sorted(STORES)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with STORES[request.param](request, tmp_path) as made:
        yield made


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


def test_awaited_work_is_due_before_any_deadline(store: Store) -> None:
    store.add_job(job("fallback", Route.REALTIME, deadline=NOW + timedelta(minutes=5)), NOW)
    store.add_job(job("later", Route.REALTIME), NOW)
    store.add_job(job("chat", Route.REALTIME, awaited=True), NOW)
    assert [j.key for j in store.due_jobs(Route.REALTIME, NOW, 10)] == ["chat", "fallback", "later"]


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
    assert store.close_batch(batch.id, NOW + timedelta(minutes=1), NOW, 5) == 1  # k2 missing
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


def test_submit_started_is_recorded_on_planned_batches_only(store: Store) -> None:
    a = store.add_job(job("a"), NOW)[0].id
    batch = store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    assert batch.submit_started_at is None
    later = NOW + timedelta(minutes=10)
    store.submit_started(batch.id, later)
    [planned] = store.batches(BatchState.PLANNED)
    assert planned.submit_started_at == later
    store.batch_created(batch.id, "msgbatch_1", later, later)
    with pytest.raises(StoreError):
        store.submit_started(batch.id, later)


def test_the_namespace_is_a_random_id_a_custom_id_can_carry(store: Store) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", store.namespace)
    assert store.namespace == store.namespace  # read once, kept
    assert CUSTOM_ID_PATTERN.fullmatch(custom_id(store.namespace, 2**63 - 1, 999_999))


def test_a_plan_records_what_it_waits_on_until_it_is_created_or_abandoned(store: Store) -> None:
    a, b = (store.add_job(job(k), NOW)[0].id for k in "ab")
    first = store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    second = store.plan_batch([(b, "jb-a1")], 10, "m", NOW)
    assert first.waiting_for == ()
    store.wait_for(first.id, ["msgbatch_x", "msgbatch_y"])
    store.wait_for(second.id, ["msgbatch_x"])
    assert [p.waiting_for for p in store.batches(BatchState.PLANNED)] == [
        ("msgbatch_x", "msgbatch_y"),
        ("msgbatch_x",),
    ]
    store.wait_for(first.id, [])
    assert store.batches(BatchState.PLANNED)[0].waiting_for == ()
    store.wait_for(first.id, ["msgbatch_y"])
    store.batch_created(first.id, "msgbatch_y", NOW, NOW)
    store.abandon_batch(second.id, NOW)
    assert [b.waiting_for for b in store.batches(*BatchState)] == [(), ()]
    store.wait_for(first.id, ["msgbatch_z"])  # no longer planned: nothing to record
    assert store.batches(BatchState.CREATED)[0].waiting_for == ()


def test_batch_created_refuses_a_batch_that_is_not_planned(store: Store) -> None:
    a = store.add_job(job("a"), NOW)[0].id
    batch = store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    store.abandon_batch(batch.id, NOW)
    with pytest.raises(StoreError, match="no longer planned"):
        store.batch_created(batch.id, "msgbatch_1", NOW, NOW)


def test_result_lines_land_on_their_job_whichever_batch_is_collected(store: Store) -> None:
    ids = [store.add_job(job(f"k{i}"), NOW)[0].id for i in range(2)]
    first = store.plan_batch([(ids[0], "j1-a1")], 10, "m", NOW)
    second = store.plan_batch([(ids[1], "j2-a1")], 10, "m", NOW)
    store.batch_created(first.id, "msgbatch_1", NOW, NOW)
    store.batch_created(second.id, "msgbatch_2", NOW, NOW)
    line = Outcome("j2-a1", "succeeded", "{}", Usage(1, 1), Tier.BATCH)
    assert store.apply_batch_outcomes(first.id, [line], NOW) == 1  # a stray line of job k1
    assert store.apply_batch_outcomes(second.id, [line], NOW) == 0  # never applied twice
    done = store.get_job("k1")
    assert done is not None and done.state is JobState.SUCCEEDED


def test_unanswered_jobs_fail_at_the_attempt_cap(store: Store) -> None:
    ids = [store.add_job(job(f"k{i}"), NOW)[0].id for i in range(2)]
    old = store.plan_batch([(ids[0], "j1-a1")], 10, "m", NOW)
    store.abandon_batch(old.id, NOW)  # k0 leaves with one attempt used
    batch = store.plan_batch([(ids[0], "j1-a2"), (ids[1], "j2-a1")], 10, "m", NOW)
    store.batch_created(batch.id, "msgbatch_1", NOW, NOW)
    store.batch_ended(batch.id, NOW)
    assert store.close_batch(batch.id, NOW, NOW, max_attempts=2) == 1
    states = {j.key: (j.state, j.error) for j in store.jobs()}
    assert states["k0"][0] is JobState.FAILED and "gave up after 2" in (states["k0"][1] or "")
    assert states["k1"] == (JobState.QUEUED, "missing from the batch results")


def test_a_lost_batch_requeues_its_unanswered_jobs(store: Store) -> None:
    a = store.add_job(job("a"), NOW)[0].id
    batch = store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    store.batch_created(batch.id, "msgbatch_1", NOW, NOW)
    later = NOW + timedelta(minutes=1)
    assert store.lose_batch(batch.id, "batch msgbatch_1 lost: 404", later, NOW, 5) == 1
    assert store.batches(BatchState.LOST)[0].id == batch.id
    again = store.get_job("a")
    assert again is not None and again.state is JobState.QUEUED and again.not_before == later


def test_resubmitted_keys_join_the_new_run_and_count_undelivered(store: Store) -> None:
    assert store.add_jobs([job("a", run_id="r1"), job("b", run_id="r1")], NOW) == 2
    assert store.add_jobs([job("a", run_id="r2"), job("c", run_id="r2")], NOW) == 1
    _, new = store.add_job(job("b", run_id="r2"), NOW)
    assert not new
    assert sorted(j.key for j in store.jobs(run_id="r2")) == ["a", "b", "c"]
    assert store.undelivered_count() == 0
    a = store.get_job("a")
    assert a is not None and store.start_realtime(a.id, NOW)
    store.finish_realtime(a.id, Outcome(None, "failed", error="x"), NOW)
    assert store.undelivered_count() == 1


def test_release_realtime_leaves_no_attempt_counted(store: Store) -> None:
    a = store.add_job(job("a", Route.REALTIME), NOW)[0].id
    assert store.start_realtime(a, NOW)
    store.release_realtime(a, NOW)
    again = store.get_job("a")
    assert again is not None and again.state is JobState.QUEUED and again.attempts == 0


def test_only_one_claim_at_a_time(store: Store) -> None:
    busy = pytest.raises(StoreBusyError, match="another nowait process")
    with store.claim(), busy, store.claim():
        pass
    with store.claim():  # released when the block ends
        pass


def test_sqlite_claim_is_held_against_other_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "nowait.db"
    holder = SQLiteStore(path)
    probe = (
        "import sys; from nowait.store.sqlite import SQLiteStore\n"
        "try:\n    SQLiteStore(sys.argv[1]).claim().__enter__()\n"
        "except Exception as exc:\n    print(type(exc).__name__)"
    )
    command = [sys.executable, "-c", probe, str(path)]
    with holder.claim():
        busy = subprocess.run(command, capture_output=True, check=False)
    free = subprocess.run(command, capture_output=True, check=False)
    holder.close()
    assert busy.stdout.strip() == b"StoreBusyError" and free.stdout.strip() == b""


def test_an_older_store_gains_submit_started(tmp_path: Path) -> None:
    import sqlite3

    from nowait.store.sqlite import MIGRATIONS

    path = tmp_path / "nowait.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO batches (state, request_count, body_bytes, model, planned_at)"
        " VALUES ('planned', 1, 10, 'm', ?)",
        (NOW.isoformat(),),
    )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    [planned] = store.batches(BatchState.PLANNED)
    assert planned.submit_started_at == NOW  # it may have been sent: reconciled, not resent
    store.close()


def test_an_older_store_gains_a_namespace_kept_from_then_on(tmp_path: Path) -> None:
    """A store made before namespaces: the migration gives it one, every reopen keeps it, and
    jobs already in a batch keep the custom_ids they were sent with."""
    import sqlite3

    from nowait.store.sqlite import MIGRATIONS

    path = tmp_path / "nowait.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    a = store.add_job(job("a"), NOW)[0].id
    store.plan_batch([(a, "j1-a1")], 10, "m", NOW)
    namespace = store.namespace
    store.close()
    again = SQLiteStore(path)
    assert again.namespace == namespace
    assert [c for c, _ in again.batch_members(1)] == ["j1-a1"]
    again.close()
    assert SQLiteStore(tmp_path / "other.db").namespace != namespace


def test_the_guard_learns_cancels_and_calls_from_what_the_store_saw(store: Store) -> None:
    # A cancelled batch: sent at NOW + 1 min, ended at NOW + 16 min: 900 s of cancel latency.
    a = store.add_job(job("a"), NOW)[0].id
    batch = store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    store.batch_created(batch.id, "msgbatch_c", NOW, NOW)
    store.request_cancel(batch.id, NOW + timedelta(minutes=1))
    store.request_cancel(batch.id, NOW + timedelta(minutes=5))  # the first cancel counts
    store.batch_ended(batch.id, NOW + timedelta(minutes=16))
    # An uncancelled batch teaches turnaround, not cancel latency.
    b = store.add_job(job("b"), NOW)[0].id
    other = store.plan_batch([(b, "jb-a1")], 10, "m", NOW)
    store.batch_created(other.id, "msgbatch_d", NOW, NOW)
    store.batch_ended(other.id, NOW + timedelta(minutes=3))
    assert store.cancel_history() == [900.0]
    # Real-time calls: one succeeded in 12.5 s; a failed one and a released one teach nothing.
    ok, failed, released = (store.add_job(job(k, Route.REALTIME), NOW)[0].id for k in "xyz")
    for job_id in (ok, failed, released):
        assert store.start_realtime(job_id, NOW)
    done = Outcome(None, "succeeded", "{}", Usage(output_tokens=300), Tier.STANDARD)
    store.finish_realtime(ok, done, NOW + timedelta(seconds=12.5))
    store.finish_realtime(failed, Outcome(None, "failed", error="bad"), NOW + timedelta(seconds=3))
    store.release_realtime(released, NOW + timedelta(seconds=1))
    assert store.call_history() == [("claude-haiku-5-5", 300, 12.5)]


def test_deadline_rows_say_when_each_result_came_and_whether_it_fell_back(store: Store) -> None:
    due = NOW + timedelta(minutes=10)
    in_time = store.add_job(job("in-time", deadline=due, run_id="r"), NOW)[0].id
    late = store.add_job(job("late", Route.REALTIME, deadline=due, run_id="r"), NOW)[0].id
    store.add_job(job("no-deadline", Route.REALTIME, run_id="r"), NOW)
    batch = store.plan_batch([(in_time, "j1-a1")], 10, "m", NOW)
    store.batch_created(batch.id, "msgbatch_e", NOW, NOW)
    store.batch_ended(batch.id, NOW + timedelta(minutes=8))
    done = Outcome("j1-a1", "succeeded", "{}", Usage(output_tokens=1), Tier.BATCH)
    store.apply_batch_outcomes(batch.id, [done], NOW + timedelta(minutes=9))
    store.reroute([late], Route.REALTIME, "deadline guard: the batch ran late", NOW)
    assert store.start_realtime(late, NOW + timedelta(minutes=9))
    answer = Outcome(None, "succeeded", "{}", Usage(output_tokens=1), Tier.STANDARD)
    store.finish_realtime(late, answer, NOW + timedelta(minutes=11))
    rows = sorted(store.deadline_rows("r"), key=lambda r: r.fell_back)
    assert [(r.finished_at, r.fell_back) for r in rows] == [
        (NOW + timedelta(minutes=8), False),
        (NOW + timedelta(minutes=11), True),
    ]
    assert all(r.deadline == due for r in rows) and store.deadline_rows("other") == []


def test_rate_limits_keep_the_latest_per_model_class(store: Store) -> None:
    assert store.observed_limits() == []
    reset = NOW + timedelta(seconds=30)
    full = RateLimits(
        Limit(50, 49, reset), Limit(40_000, 39_000, reset), Limit(8_000, 8_000, reset)
    )
    store.record_rate_limits("sonnet", full, NOW)
    store.record_rate_limits("haiku", RateLimits(requests=Limit(1000)), NOW)
    later = NOW + timedelta(minutes=3)
    # a response that states only the request limit keeps the token limits kept before
    store.record_rate_limits("sonnet", RateLimits(requests=Limit(60, 12, later)), later)
    haiku, sonnet = store.observed_limits()
    assert haiku == ObservedLimits("haiku", RateLimits(requests=Limit(1000)), NOW)
    assert sonnet.model_class == "sonnet" and sonnet.seen_at == later
    assert sonnet.limits == RateLimits(Limit(60, 12, later), full.input_tokens, full.output_tokens)


def test_cached_prefixes_are_the_batch_jobs_that_read_or_wrote_a_1h_entry(store: Store) -> None:
    ids = [store.add_job(job(f"c{i}"), NOW)[0].id for i in range(4)]
    batch = store.plan_batch([(i, f"j{i}-a1") for i in ids], 999, "claude-haiku-5-5", NOW)
    store.batch_created(batch.id, "msgbatch_c", NOW, NOW)
    ended = NOW + timedelta(minutes=30)
    store.batch_ended(batch.id, ended)
    wrote = Usage(input_tokens=10, output_tokens=5, cache_write_1h_tokens=4000)
    read = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=4000)
    plain = Usage(input_tokens=4010, output_tokens=5)
    outcomes = [
        Outcome(f"j{ids[0]}-a1", "succeeded", "{}", wrote, Tier.BATCH),
        Outcome(f"j{ids[1]}-a1", "succeeded", "{}", read, Tier.BATCH),
        Outcome(f"j{ids[2]}-a1", "succeeded", "{}", plain, Tier.BATCH),
        Outcome(f"j{ids[3]}-a1", "failed", error="invalid_request_error"),
    ]
    store.apply_batch_outcomes(batch.id, outcomes, ended)
    store.close_batch(batch.id, ended, ended, 5)
    found = store.cached_prefixes(ended - timedelta(minutes=50))
    assert sorted(found) == [('{"model": "m"}', 4000, ended)] * 2
    assert store.cached_prefixes(ended + timedelta(seconds=1)) == []


# ---- the cases the two stores once drifted on (issue 17): one core, one behaviour -------------
def test_an_outcome_reported_twice_never_replaces_the_stored_result(store: Store) -> None:
    a = store.add_job(job("a", Route.REALTIME), NOW)[0].id
    assert store.start_realtime(a, NOW)
    first = Outcome(None, "succeeded", '{"n": 1}', Usage(1, 1), Tier.STANDARD)
    store.finish_realtime(a, first, NOW)
    late = Outcome(None, "succeeded", '{"n": 2}', Usage(9, 9), Tier.STANDARD)
    store.finish_realtime(a, late, NOW + timedelta(seconds=5))  # the job no longer runs
    done = store.get_job("a")
    assert done is not None and done.result_json == '{"n": 1}' and done.usage == Usage(1, 1)


def test_delivering_a_job_the_store_does_not_hold_raises_no_such_job(store: Store) -> None:
    with pytest.raises(NoSuchJob, match="no job 4242"):
        store.mark_delivered(4242, NOW)
    assert issubclass(NoSuchJob, StoreError)
    with pytest.raises(IllegalTransition):
        store.mark_delivered_many([4242], NOW)


def test_a_queued_job_cannot_be_delivered(store: Store) -> None:
    a = store.add_job(job("a"), NOW)[0].id
    with pytest.raises(IllegalTransition, match="queued"):
        store.mark_delivered(a, NOW)
    assert store.job_counts() == {JobState.QUEUED: 1}


def test_requeue_running_moves_running_jobs_only(store: Store) -> None:
    ids = [store.add_job(job(k, Route.REALTIME), NOW)[0].id for k in "abc"]
    assert store.start_realtime(ids[0], NOW) and store.start_realtime(ids[1], NOW)
    store.finish_realtime(ids[1], Outcome(None, "failed", error="x"), NOW)
    assert store.requeue_running(NOW) == 1
    assert store.job_counts() == {JobState.QUEUED: 2, JobState.FAILED: 1}
    assert store.requeue_running(NOW) == 0


def test_a_key_repeated_in_one_call_is_one_job_of_the_last_run_named(store: Store) -> None:
    batch = [job("a", run_id="r1"), job("a"), job("a", run_id="r2"), job("b")]
    assert store.add_jobs(batch, NOW) == 2
    a = store.get_job("a")
    assert a is not None and a.run_id == "r2"
    assert store.add_jobs([], NOW) == 0


def test_usage_rows_sort_the_same_on_every_store(store: Store) -> None:
    for key, workload, model in [("a", "b", "m2"), ("b", None, "m1"), ("c", "B", "m1")]:
        new = NewJob(key, "{}", model, Route.REALTIME, "r", workload=workload)
        job_id = store.add_job(new, NOW)[0].id
        assert store.start_realtime(job_id, NOW)
        store.finish_realtime(
            job_id, Outcome(None, "succeeded", "{}", Usage(1), Tier.STANDARD), NOW
        )
    assert [(r.workload, r.model) for r in store.usage_rows()] == [
        (None, "m1"), ("B", "m1"), ("b", "m2"),
    ]  # fmt: skip


def test_batch_members_are_read_a_page_at_a_time(store: Store) -> None:
    """A 5,000-request batch of 4 KB bodies (20 MB): reading its first member holds one page
    in memory, not the batch."""
    import tracemalloc

    body = '{"pad": "' + "x" * 4000 + '"}'
    jobs = [NewJob(f"k{i}", body, "m", Route.BATCH, "r") for i in range(5000)]
    store.add_jobs(jobs, NOW)
    members = [(j.id, f"c{j.id}") for j in store.jobs()]
    batch = store.plan_batch(members, 20_000_000, "m", NOW)
    tracemalloc.start()
    try:
        reader = store.batch_members(batch.id)
        assert next(reader) == (members[0][1], body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000
    assert sum(1 for _ in reader) == 4999  # and every member still comes, in order of id


def test_jobs_are_listed_in_pages_by_id_whatever_the_filter(store: Store) -> None:
    store.add_jobs([job(f"k{i:04}", run_id="r" if i % 2 else None) for i in range(2500)], NOW)
    listed = [j.key for j in store.jobs(run_id="r", state=JobState.QUEUED)]
    assert listed == [f"k{i:04}" for i in range(1, 2500, 2)]


def test_a_plan_that_fails_first_leaves_the_next_one_working(store: Store) -> None:
    """The first set-based write of a store rolled back (its staging included), then more."""
    a = store.add_job(job("a"), NOW)[0].id
    with pytest.raises(StoreError, match="no longer queued"):
        store.plan_batch([(a, "ja-a1"), (a + 1000, "jx-a1")], 10, "m", NOW)
    batch = store.plan_batch([(a, "ja-a1")], 10, "m", NOW)
    assert [c for c, _ in store.batch_members(batch.id)] == ["ja-a1"]
    b = store.add_job(job("b"), NOW)[0].id
    assert store.plan_batch([(b, "jb-a1")], 10, "m", NOW).request_count == 1


def test_batch_custom_ids_come_in_pages_in_member_order(store: Store) -> None:
    store.add_jobs([job(f"k{i}") for i in range(2500)], NOW)  # more than one page
    members = [(j.id, f"c{j.id}") for j in store.jobs()]
    batch = store.plan_batch(members, 1000, "m", NOW)
    other = store.plan_batch([], 0, "m", NOW)
    assert list(store.batch_custom_ids(batch.id)) == [c for _, c in members]
    assert list(store.batch_custom_ids(other.id)) == []


def test_undelivered_results_carry_what_a_delivery_needs(store: Store) -> None:
    deadline = NOW + timedelta(hours=1)
    ok = store.add_job(job("ok", Route.REALTIME, deadline=deadline, workload="w"), NOW)[0].id
    bad = store.add_job(job("bad", Route.REALTIME, awaited=True, run_id="r"), NOW)[0].id
    store.add_job(job("waiting", Route.REALTIME), NOW)
    for job_id in (ok, bad):
        assert store.start_realtime(job_id, NOW)
    store.finish_realtime(
        ok, Outcome(None, "succeeded", '{"id": 1}', Usage(1, 1), Tier.STANDARD), NOW
    )
    store.finish_realtime(bad, Outcome(None, "failed", error="400 no"), NOW)
    found = store.undelivered_results(10)
    assert [(f.key, f.result_json, f.error, f.tier) for f in found] == [
        ("ok", '{"id": 1}', None, Tier.STANDARD),
        ("bad", None, "400 no", None),
    ]
    full = {j.key: j for j in store.undelivered(10)}
    for f in found:  # the same values the full read gives
        j = full[f.key]
        assert (f.id, f.workload, f.route, f.awaited, f.deadline, f.created_at) == (
            j.id, j.workload, j.route, j.awaited, j.deadline, j.created_at,
        )  # fmt: skip
    assert found[0].deadline == deadline and found[0].workload == "w" and found[1].awaited
    assert [f.key for f in store.undelivered_results(10, run_id="r")] == ["bad"]
    assert [f.key for f in store.undelivered_results(1)] == ["ok"]
    store.mark_delivered_many([ok, bad], NOW)
    assert store.undelivered_results(10) == []


def test_claim_realtime_takes_due_calls_in_queue_order_once(store: Store) -> None:
    store.add_job(job("fallback", Route.REALTIME, deadline=NOW + timedelta(minutes=5)), NOW)
    store.add_job(job("later", Route.REALTIME), NOW)
    store.add_job(job("chat", Route.REALTIME, awaited=True), NOW)
    store.add_job(job("batch"), NOW)
    future, _ = store.add_job(job("future", Route.REALTIME), NOW)
    store.start_realtime(future.id, NOW)
    retry = Outcome(None, "retry", error="529", not_before=NOW + timedelta(minutes=1))
    store.finish_realtime(future.id, retry, NOW)  # queued again, due in a minute
    claimed = store.claim_realtime("w", NOW, 10)
    assert [j.key for j in claimed] == ["chat", "fallback", "later"]
    assert all(j.state is JobState.RUNNING and j.attempts == 1 for j in claimed)
    assert all(j.result_json is None and j.run_id is None for j in claimed)
    assert store.claim_realtime("w", NOW, 10) == []  # running: never claimed twice
    assert store.get_job("chat").state is JobState.RUNNING  # type: ignore[union-attr]
    assert [j.key for j in store.due_jobs(Route.BATCH, NOW, 10)] == ["batch"]


def test_claim_realtime_only_takes_that_queued_call_due_or_not(store: Store) -> None:
    first, _ = store.add_job(job("a", Route.REALTIME), NOW)
    store.start_realtime(first.id, NOW)
    store.finish_realtime(
        first.id, Outcome(None, "retry", error="529", not_before=NOW + timedelta(hours=1)), NOW
    )
    store.add_job(job("b", Route.REALTIME), NOW)
    [again] = store.claim_realtime("w", NOW, 1, only=first.id)
    assert again.key == "a" and again.attempts == 2 and again.state is JobState.RUNNING
    assert store.claim_realtime("w", NOW, 1, only=first.id) == []
    assert [j.key for j in store.claim_realtime("w", NOW, 5)] == ["b"]


def _ended_batch(store: Store, keys: list[str], run_id: str | None = None) -> tuple[int, list[str]]:
    """A batch of `keys` the API ended: its id and its members' custom_ids."""
    ids = [store.add_job(job(k, run_id=run_id), NOW)[0].id for k in keys]
    cids = [custom_id(store.namespace, i, 1) for i in ids]
    batch = store.plan_batch(list(zip(ids, cids, strict=True)), 99, "claude-haiku-5-5", NOW)
    store.batch_created(batch.id, f"msgbatch_{batch.id}", NOW, NOW)
    store.batch_ended(batch.id, NOW)
    return batch.id, cids


def test_results_applied_and_delivered_in_one_transaction(store: Store) -> None:
    earlier = store.add_job(job("earlier"), NOW)[0].id  # finished before: delivered with them
    assert store.start_realtime(earlier, NOW)
    store.finish_realtime(earlier, Outcome(None, "failed", error="e"), NOW)
    batch, cids = _ended_batch(store, ["a", "b", "c"])
    usage = Usage(input_tokens=3, output_tokens=2)
    lines = [
        Outcome(cids[0], "succeeded", '{"id": "msg_a"}', usage, Tier.BATCH),
        Outcome(cids[1], "failed", error="invalid_request_error"),
        Outcome(cids[2], "retry", error="overloaded", not_before=NOW + timedelta(minutes=1)),
    ]
    handed: list[list[tuple[str, JobState]]] = []

    def deliver(finished: Sequence[Finished]) -> None:  # what the jobs' rows say meanwhile
        handed.append([(f.key, store_state(store, f.key)) for f in finished])

    assert store.apply_batch_outcomes(batch, lines, NOW, deliver=deliver) == 3
    assert [[k for k, _ in page] for page in handed] == [["earlier", "a", "b"]]
    assert all(s is not JobState.DELIVERED for _, s in handed[0])  # marked once it returned
    states = {j.key: j.state for j in store.jobs()}
    assert states == {
        "earlier": JobState.DELIVERED, "a": JobState.DELIVERED, "b": JobState.DELIVERED,
        "c": JobState.QUEUED,
    }  # fmt: skip
    delivered = store.get_job("a")
    assert delivered is not None and delivered.result_json == '{"id": "msg_a"}'
    assert delivered.usage == usage
    assert store.undelivered_count() == 0


def store_state(store: Store, key: str) -> JobState:
    found = store.get_job(key)
    assert found is not None
    return found.state


def test_a_failing_delivery_applies_none_of_its_lines(store: Store) -> None:
    batch, cids = _ended_batch(store, ["a", "b"])
    lines = [Outcome(c, "succeeded", "{}", Usage(), Tier.BATCH) for c in cids]

    def deliver(finished: Sequence[Finished]) -> None:
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        store.apply_batch_outcomes(batch, lines, NOW, deliver=deliver)
    assert {j.state for j in store.jobs()} == {JobState.IN_BATCH}  # the lines can come again
    assert store.apply_batch_outcomes(batch, lines, NOW) == 2
    assert store.undelivered_count() == 2


def test_delivery_in_the_apply_transaction_keeps_to_its_run(store: Store) -> None:
    batch, cids = _ended_batch(store, ["mine"], run_id="run-1")
    other, other_cids = _ended_batch(store, ["theirs"], run_id="run-2")
    store.apply_batch_outcomes(other, [Outcome(other_cids[0], "failed", error="e")], NOW)
    keys: list[str] = []
    store.apply_batch_outcomes(
        batch, [Outcome(cids[0], "failed", error="e")], NOW,
        deliver=lambda finished: keys.extend(f.key for f in finished), run_id="run-1",
    )  # fmt: skip
    assert keys == ["mine"]
    assert store_state(store, "mine") is JobState.DELIVERED
    assert store_state(store, "theirs") is JobState.FAILED


def test_lines_naming_their_job_land_by_id_and_only_on_their_attempt(store: Store) -> None:
    batch, cids = _ended_batch(store, ["a", "b", "c"])
    a, b, c = (store.get_job(k) for k in "abc")
    assert a is not None and b is not None and c is not None
    earlier_try = custom_id(store.namespace, b.id, 7)  # names b, but not the attempt it is on
    lines = [
        Outcome(cids[0], "succeeded", '{"id": "msg_a"}', Usage(1, 1), Tier.BATCH, job_id=a.id),
        Outcome(earlier_try, "failed", error="stale", job_id=b.id),
        Outcome(cids[2], "retry", error="overloaded", job_id=c.id),
    ]
    assert store.apply_batch_outcomes(batch, lines, NOW) == 2
    states = {j.key: j.state for j in store.jobs()}
    assert states == {"a": JobState.SUCCEEDED, "b": JobState.IN_BATCH, "c": JobState.QUEUED}
    done = store.get_job("a")
    assert done is not None and done.result_json == '{"id": "msg_a"}'
