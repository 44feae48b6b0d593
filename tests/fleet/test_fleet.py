"""Many workers on one PostgreSQL store (issue 17): claims never shared, a killed or hung
worker's jobs and batches taken over, each result delivered by one worker, one budget for
the account; and the load test, small, with real `nowait worker` processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock, SystemClock
from nowait.emulator import EmulatorConfig, EmulatorServer
from nowait.emulator.config import RateLimit
from nowait.errors import StoreError
from nowait.guard.policy import Capacity
from nowait.route.pacing import Reservation, SharedPacer
from nowait.route.router import JsonlSink, Router
from nowait.route.worker import Worker, WorkerConfig
from nowait.store import BatchState, NewJob, Outcome, StoreBusyError
from nowait.store.postgres import PostgresStore
from nowait.store.sqlite import SQLiteStore
from nowait.testing import FakeBackend
from nowait.types import JobState, Route

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.postgres


def job(key: str, route: Route = Route.REALTIME) -> NewJob:
    return NewJob(key=key, params_json='{"max_tokens": 8}', model="m", route=route, reasons="r")


def test_two_workers_never_claim_the_same_job(pg_database: str) -> None:
    a, b = PostgresStore(pg_database), PostgresStore(pg_database)
    a.add_jobs([job(f"k{i}") for i in range(200)], NOW)
    a.join_fleet("a", NOW, 30)
    b.join_fleet("b", NOW, 30)
    got: dict[str, list[int]] = {"a": [], "b": []}

    def claim(store: PostgresStore, name: str) -> None:
        while found := store.claim_realtime(name, NOW, 3):
            got[name] += [j.id for j in found]
            assert all(j.state is JobState.RUNNING and j.attempts == 1 for j in found)

    threads = [threading.Thread(target=claim, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(got["a"]) & set(got["b"])
    assert len(got["a"]) + len(got["b"]) == 200 and got["a"] and got["b"]
    a.close()
    b.close()


HOLDER = """
import sys
from datetime import UTC, datetime
from nowait.store import NewJob
from nowait.store.postgres import PostgresStore
from nowait.types import Route
now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
store = PostgresStore(sys.argv[1])
assert store.join_fleet("doomed", now, 3600)
[job] = store.claim_realtime("doomed", now, 1)
batch = store.plan_batch([(store.get_job("b0").id, "cid-b0")], 10, "m", now)
assert store.own_batch(batch.id, "doomed")
print(job.key, batch.id, flush=True)
sys.stdin.read()
"""


def test_a_killed_workers_jobs_and_batches_are_taken_over_at_once(pg_database: str) -> None:
    live = PostgresStore(pg_database)
    live.add_jobs([job("r0"), job("b0", Route.BATCH)], NOW)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_database],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    key, batch_id = holder.stdout.readline().split()
    live.join_fleet("live", NOW, 30)
    assert live.reap(NOW) == (0, 0)  # alive: its lease runs an hour, its lock is held
    assert live.take_batches("live", 8) == set()
    other = Worker(PostgresStore(pg_database), FakeBackend(), SystemClock(),
                   WorkerConfig(worker_id="doomed"))  # fmt: skip
    with pytest.raises(StoreBusyError, match="doomed"), other.membership():
        pass  # one name, one live worker
    other.store.close()
    holder.kill()  # SIGKILL: no goodbye; its session, and so its liveness lock, ends
    holder.wait()
    holder.stdout.close()
    assert holder.stdin is not None
    holder.stdin.close()
    reaped = (0, 0)
    for _ in range(100):  # the server ends the session a moment after the process
        if (reaped := live.reap(NOW)) != (0, 0):
            break
        time.sleep(0.05)
    assert reaped == (1, 1)  # long before its lease would have expired
    assert live.get_job(key).state is JobState.QUEUED  # type: ignore[union-attr]
    assert live.take_batches("live", 8) == {int(batch_id)}
    assert [b.id for b in live.batches(BatchState.PLANNED)] == [int(batch_id)]
    live.close()


def test_a_hung_worker_loses_its_claims_when_its_lease_expires(pg_database: str) -> None:
    hung, live = PostgresStore(pg_database), PostgresStore(pg_database)
    hung.add_jobs([job("r0")], NOW)
    hung.join_fleet("hung", NOW, 2)
    [claimed] = hung.claim_realtime("hung", NOW, 1)
    assert live.reap(NOW + timedelta(seconds=1)) == (0, 0)
    assert live.reap(NOW + timedelta(seconds=3)) == (1, 0)  # lock held, lease expired
    assert live.claim_realtime("live", NOW + timedelta(seconds=3), 1)[0].id == claimed.id
    assert not hung.heartbeat("hung", NOW + timedelta(seconds=3), 2)  # it must stop
    hung.close()
    live.close()


def test_each_result_is_claimed_by_one_worker_and_marked_by_it_alone(pg_database: str) -> None:
    a, b = PostgresStore(pg_database), PostgresStore(pg_database)
    a.add_jobs([job(f"k{i}") for i in range(10)], NOW)
    a.join_fleet("a", NOW, 30)
    b.join_fleet("b", NOW, 30)
    for j in a.claim_realtime("a", NOW, 10):
        a.finish_realtime(j.id, Outcome(None, "succeeded", "{}"), NOW)
    mine = a.claim_deliveries("a", 4)
    theirs = b.claim_deliveries("b", 4)
    assert len(mine) == 4 and len(theirs) == 4
    assert not {j.id for j in mine} & {j.id for j in theirs}
    assert b.deliver_claimed([j.id for j in mine], "b", NOW) == 0  # not b's to mark
    assert a.deliver_claimed([j.id for j in mine[:2]], "a", NOW) == 2
    a.close()  # a dies with two results claimed: written to its sink, or not
    assert [j.key for j in b.claim_deliveries("b", 100)] == [j.key for j in theirs] + [
        f"k{i}" for i in (8, 9)
    ]  # a's two wait for a's lease: started again within it, a writes them to its own sink
    again = PostgresStore(pg_database)
    assert again.join_fleet("a", NOW + timedelta(seconds=5), 30)
    assert [j.key for j in again.claim_deliveries("a", 100)] == [j.key for j in mine[2:]]
    again.close()  # gone for good: after its lease, b takes them over
    assert b.heartbeat("b", NOW + timedelta(seconds=29), 60)
    assert b.reap(NOW + timedelta(seconds=60)) == (0, 0)
    assert len(b.claim_deliveries("b", 100)) == 8
    b.close()


def test_the_heartbeat_keeps_the_lease_while_a_long_transaction_holds_the_store(
    pg_database: str,
) -> None:
    clock = SystemClock()
    store, other = PostgresStore(pg_database), PostgresStore(pg_database)
    store.add_jobs([job("r0")], clock.now())
    busy = Worker(store, FakeBackend(), clock, WorkerConfig(worker_id="busy", lease=1.5))
    with busy.membership():
        assert store.claim_realtime("busy", clock.now(), 1)
        collecting = threading.Thread(target=lambda: store.dialect.read("SELECT pg_sleep(4)"))
        collecting.start()  # the main connection and its lock, held for over twice the lease
        while collecting.is_alive():
            assert other.reap(clock.now()) == (0, 0)  # its lease renewed all along
            time.sleep(0.2)
        collecting.join()
        assert not busy._lease_lost.is_set()
    store.close()
    other.close()


def test_a_worker_whose_lease_is_lapsing_writes_none_of_its_claimed_chunk(
    pg_database: str,
) -> None:
    clock = SystemClock()
    store, other = PostgresStore(pg_database), PostgresStore(pg_database)
    store.add_jobs([job(f"k{i}") for i in range(6)], clock.now())
    for j in store.claim_realtime("late", clock.now(), 6):
        store.finish_realtime(j.id, Outcome(None, "succeeded", "{}"), clock.now())
    late = Router(store=store, backend=FakeBackend(), clock=clock,
                  worker=WorkerConfig(worker_id="late", lease=2.0))  # fmt: skip
    assert store.join_fleet("late", clock.now(), 2.0)  # no heartbeat: a stalled worker
    time.sleep(1.2)  # under half its lease left
    written: list[str] = []
    with pytest.raises(StoreError, match="wrote none of the 6 results"):
        late.deliver(lambda d: written.append(d.key))
    assert written == []  # its claim still stands, but it wrote nothing
    time.sleep(1.0)
    assert other.reap(clock.now()) == (0, 0)  # its lease expired: its claims are free
    assert store.deliver_claimed([j.id for j in store.jobs()], "late", clock.now()) == 0
    assert len(other.claim_deliveries("other", 100)) == 6  # delivered once, by another
    store.close()
    other.close()


class Died(Exception):
    """A worker killed between writing results to its sink and marking them delivered."""


def finished_results(store: PostgresStore, worker: str, n: int) -> None:
    store.add_jobs([job(f"k{i}") for i in range(n)], NOW)
    for j in store.claim_realtime(worker, NOW, n):
        store.finish_realtime(j.id, Outcome(None, "succeeded", "{}"), NOW)


def die_writing(store: PostgresStore, out: Path, after: int) -> None:
    """Worker "a" delivers to its JSONL file and dies once `after` lines are on disk: its
    session ends (its liveness lock is free), the rest of its chunk never written."""
    sink = JsonlSink(out)
    written = 0

    def checkpoint(name: str) -> None:
        nonlocal written
        if name == "result_written":
            written += 1
            if written == after:
                sink.flush()
                raise Died

    assert store.join_fleet("a", NOW, 30)
    config = WorkerConfig(worker_id="a", lease=30)
    router = Router(store=store, backend=FakeBackend(), clock=FakeClock(NOW), worker=config,
                    checkpoint=checkpoint)  # fmt: skip
    with pytest.raises(Died):
        router.deliver(sink)
    sink.close()
    store.close()


def keys_in(*files: Path) -> list[str]:
    lines = [line for f in files if f.exists() for line in f.read_text().splitlines()]
    return sorted(json.loads(line)["key"] for line in lines)


def test_results_a_worker_was_writing_when_it_died_wait_for_it_whatever_the_lease(
    pg_database: str, tmp_path: Path
) -> None:
    a, b = PostgresStore(pg_database), PostgresStore(pg_database)
    finished_results(a, "a", 6)
    die_writing(a, tmp_path / "a.jsonl", after=3)
    assert keys_in(tmp_path / "a.jsonl") == ["k0", "k1", "k2"]
    assert b.join_fleet("b", NOW + timedelta(minutes=5), 30)
    assert b.reap(NOW + timedelta(minutes=5)) == (0, 0)  # a's lease long expired
    assert b.claim_deliveries("b", 100) == []  # in doubt: only a's sink can tell
    assert [(w, n) for w, n, _ in b.in_doubt()] == [("a", 6)]
    again = PostgresStore(pg_database)  # a, started again with its file
    assert again.join_fleet("a", NOW + timedelta(minutes=6), 30)
    with JsonlSink(tmp_path / "a.jsonl") as sink:
        Router(store=again, backend=FakeBackend(), clock=FakeClock(NOW + timedelta(minutes=6)),
               worker=WorkerConfig(worker_id="a", lease=30)).deliver(sink)  # fmt: skip
    assert keys_in(tmp_path / "a.jsonl") == [f"k{i}" for i in range(6)]  # each once
    assert again.job_counts() == {JobState.DELIVERED: 6} and again.in_doubt() == []
    again.close()
    b.close()


def forgotten(store: PostgresStore, worker: str) -> list[str] | None:
    """`forget_worker` once the server has ended the dead worker's session (it does so a
    moment after the connection closes)."""
    deadline = time.monotonic() + 10
    while (keys := store.forget_worker(worker, NOW)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return keys


def test_a_worker_forgotten_for_good_hands_its_results_in_doubt_to_the_others(
    pg_database: str, tmp_path: Path
) -> None:
    a, b = PostgresStore(pg_database), PostgresStore(pg_database)
    finished_results(a, "a", 5)
    assert b.join_fleet("b", NOW, 30)
    assert b.forget_worker("b", NOW) is None  # alive: refused
    die_writing(a, tmp_path / "a.jsonl", after=2)
    assert forgotten(b, "a") == [f"k{i}" for i in range(5)]  # a's sink may hold them
    assert b.in_doubt() == []
    with JsonlSink(tmp_path / "b.jsonl") as sink:
        Router(store=b, backend=FakeBackend(), clock=FakeClock(NOW),
               worker=WorkerConfig(worker_id="b", lease=30)).deliver(sink)  # fmt: skip
    assert keys_in(tmp_path / "b.jsonl") == [f"k{i}" for i in range(5)]
    b.close()


def test_status_names_the_results_in_doubt_and_forget_worker_frees_them(
    pg_database: str, tmp_path: Path, cli: Any
) -> None:
    a = PostgresStore(pg_database)
    finished_results(a, "a", 3)
    die_writing(a, tmp_path / "a.jsonl", after=1)
    status = cli("status", "--store", pg_database)
    assert status.code == 0, status.err
    assert "in doubt: 3 results worker a was writing" in status.out
    assert "nowait forget-worker a" in status.out
    as_json = json.loads(cli("status", "--store", pg_database, "--json").out)
    assert [(d["worker"], d["results"]) for d in as_json["in_doubt"]] == [("a", 3)]
    live = PostgresStore(pg_database)
    assert live.join_fleet("live", NOW, 30)
    refused = cli("forget-worker", "live", "--store", pg_database)
    assert refused.code == 2 and "is running" in refused.err and "Traceback" not in refused.err
    deadline = time.monotonic() + 10  # until the server has ended a's session
    while (forget := cli("forget-worker", "a", "--store", pg_database)).code != 0:
        assert "is running" in forget.err and time.monotonic() < deadline
        time.sleep(0.05)
    assert "forgot worker a: 3 results" in forget.out
    assert forget.out.split(":\n", 1)[1].split() == ["k0", "k1", "k2"]
    assert json.loads(cli("status", "--store", pg_database, "--json").out)["in_doubt"] == []
    live.close()


def test_the_delivery_fence_reads_the_workers_clock(pg_database: str) -> None:
    store = PostgresStore(pg_database)
    finished_results(store, "w", 1)
    clock = FakeClock(NOW)  # far from the database's clock: the fence must not read that one
    assert store.join_fleet("w", clock.now(), 10)
    router = Router(store=store, backend=FakeBackend(), clock=clock,
                    worker=WorkerConfig(worker_id="w", lease=10))  # fmt: skip
    clock.advance(4)  # 6 s of 10 left: more than half
    written: list[str] = []
    assert router.deliver(lambda d: written.append(d.key)) == 1
    store.add_jobs([job("late")], NOW)
    [late] = store.claim_realtime("w", NOW, 1)
    store.finish_realtime(late.id, Outcome(None, "succeeded", "{}"), NOW)
    clock.advance(2)  # 4 s left: under half
    with pytest.raises(StoreError, match="wrote none of the 1 results"):
        router.deliver(lambda d: written.append(d.key))
    assert written == ["k0"]
    store.close()


def test_a_worker_started_again_at_once_waits_for_its_old_session_a_live_name_is_refused(
    pg_database: str,
) -> None:
    old = PostgresStore(pg_database)
    assert old.join_fleet("w", NOW, 30)
    closing = threading.Timer(0.5, old.close)  # its session ends a moment after the restart
    closing.start()
    again = PostgresStore(pg_database)
    worker = Worker(again, FakeBackend(), SystemClock(), WorkerConfig(worker_id="w", lease=5))
    with worker.membership():
        assert not closing.is_alive()  # it joined once the old session had ended
    holder = PostgresStore(pg_database)
    assert holder.join_fleet("h", NOW, 30)
    twin = Worker(again, FakeBackend(), SystemClock(), WorkerConfig(worker_id="h", lease=1))
    busy = "another live worker on this store is named 'h'"
    with pytest.raises(StoreBusyError, match=busy), twin.membership():
        pass
    holder.close()
    again.close()


def test_the_shared_budget_holds_workers_together_within_the_limit(pg_database: str) -> None:
    stores = [PostgresStore(pg_database) for _ in range(3)]
    sizes = (60.0, 1e9, 1e9)
    taken = [0, 0, 0]

    def take(i: int) -> None:
        while stores[i].take_budget("haiku", sizes, (1.0, 100.0, 10.0), NOW) == 0.0:
            taken[i] += 1

    threads = [threading.Thread(target=take, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 60  # one minute's worth for the three together, not each
    wait = stores[0].take_budget("haiku", sizes, (1.0, 100.0, 10.0), NOW)
    assert wait == pytest.approx(1.0)  # 60 a minute: one more a second
    assert stores[1].take_budget("haiku", sizes, (1, 100, 10), NOW + timedelta(seconds=1)) == 0
    stores[2].pause_budget("haiku", NOW + timedelta(seconds=30))  # a 429's retry-after
    assert stores[0].take_budget("haiku", sizes, (1, 1, 1), NOW + timedelta(seconds=20)) >= 10
    for store in stores:
        store.close()


def test_a_529_pauses_the_worker_that_got_it_and_a_429_the_whole_fleet(
    pg_database: str,
) -> None:
    """A 429 is the account's limit, which the workers share; a 529 (the API overloaded) is
    a wait for the worker told, as for one process: else N workers draw N times the 529s and
    each stops them all."""
    stores = [PostgresStore(pg_database) for _ in range(2)]
    told, other = (SharedPacer(store, SystemClock()) for store in stores)
    capacity = Capacity(6000.0, 1e9, 1e9)
    assert isinstance(told.reserve("haiku", capacity, 10, 10, NOW), Reservation)
    told.pause("haiku", capacity, 2.0, NOW, account=False)  # a 529's retry-after
    assert told.reserve("haiku", capacity, 10, 10, NOW + timedelta(seconds=1)) == 1.0
    assert isinstance(other.reserve("haiku", capacity, 10, 10, NOW), Reservation)
    later = NOW + timedelta(seconds=2)
    assert isinstance(told.reserve("haiku", capacity, 10, 10, later), Reservation)
    other.pause("haiku", capacity, 30.0, later)  # a 429's: the account's, every worker's
    for pacer in (told, other):
        assert pacer.reserve("haiku", capacity, 10, 10, later) == pytest.approx(30.0)
    for store in stores:
        store.close()


def test_a_call_slot_waits_out_its_workers_529_and_goes_on(pg_database: str) -> None:
    """After a 529 the slot sleeps through the `retry-after` and runs the next calls in the
    same pass (it used to end its turns: idle until the pass's other slots were done)."""
    store = PostgresStore(pg_database)
    store.add_jobs([job(f"k{i}") for i in range(5)], NOW)
    backend = FakeBackend(SystemClock())
    backend.fail_next(1, status=529, retry_after=0.2)
    capacity = Capacity(6000.0, 1e9, 1e9, concurrency=1)
    worker = Worker(store, backend, SystemClock(), WorkerConfig(worker_id="a", capacity=capacity))
    started = time.monotonic()
    assert worker.run_realtime() >= 5  # the 529's retry and the four others, one pass
    assert time.monotonic() - started >= 0.2
    assert store.job_counts().get(JobState.SUCCEEDED, 0) >= 4
    store.close()


def test_a_second_worker_on_sqlite_is_told_to_use_postgresql(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "nowait.db")
    with store.claim(), pytest.raises(StoreBusyError, match="PostgreSQL"), store.claim():
        pass
    store.close()


@pytest.mark.slow
def test_the_fleet_load_test_small() -> None:
    """bench/fleet.py, small: real worker processes killed at random and restarted."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    import fleet  # bench/fleet.py

    opts = fleet.Options(
        requests=300, per_worker=20, workers=3, kill_every=1.5, counts=(1, 2), rounds=1
    )
    opts.timeout = 120
    report = fleet.run(opts)
    assert len(report.throughput) == 2  # measured (ratios are the bench's, not a test's)
    failures = [f for f in report.failures if "of one" not in f]
    assert failures == []
    assert report.figures["kills"] >= 1


@pytest.mark.slow
def test_worker_processes_together_stay_within_the_accounts_limit(
    pg_database: str, tmp_path: Path
) -> None:
    """Three `nowait worker` processes, 150 awaited calls, an account allowing 120 a minute:
    without one budget each would send up to 120 at once; together they send 120, then two a
    second, and the emulator refuses (almost) none."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    import fleet  # bench/fleet.py

    rpm = 120
    config = EmulatorConfig(realtime_latency=0.05, rate_limits={"*": RateLimit(rpm)})
    store = PostgresStore(pg_database)
    with EmulatorServer(config, SystemClock()) as server:
        workers = fleet.Fleet(pg_database, server.base_url, fleet.Options(), tmp_path, rpm=rpm)
        for slot in (1, 2, 3):
            workers.start(slot)
        try:
            fleet.wait_joined(store, 3)
            store.add_jobs(fleet.jobs(150, 1.0, "rt"), SystemClock().now())
            done = fleet.wait_for(store, 150, 90)
        finally:
            workers.stop()
        assert done < float("inf")
        assert server.emulator.rate_limited <= 3
        assert server.emulator.calls["messages"] - server.emulator.rate_limited == 150
    assert sum(workers.delivered().values()) == 150
    store.close()
