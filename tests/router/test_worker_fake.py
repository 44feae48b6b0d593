"""The worker step by step on `FakeBackend` + `FakeClock` + a real SQLite file: submit, poll,
collect, deliver, retries, rate limits and the deadline guard's slow-cancel fallback.

Fast and deterministic: no HTTP, no threads but the real-time pool. The same behaviour runs
against the real SDK and the emulator in `test_router.py` and `tests/guard/test_guard_e2e.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock
from nowait.guard.policy import Capacity, GuardConfig, PollConfig, RetryConfig
from nowait.route.custom_ids import custom_id
from nowait.route.router import Delivery, Router
from nowait.route.worker import WorkerConfig
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore
from nowait.testing import CheckpointLog, FakeBackend
from nowait.types import JobState, Route, Tier
from router_helpers import ask

MakeRouter = Callable[..., Router]


def cid(router: Router, job_id: int, attempt: int) -> str:
    """The custom_id this router's store gives a job's attempt."""
    return custom_id(router.store.namespace, job_id, attempt)


@pytest.fixture
def backend(fake_clock: FakeClock) -> FakeBackend:
    return FakeBackend(fake_clock, turnaround=600, cancel_latency=30)


@pytest.fixture
def make(tmp_path: Path, fake_clock: FakeClock, backend: FakeBackend) -> Iterator[MakeRouter]:
    stores: list[SQLiteStore] = []

    def make_router(checkpoint: Any = None, **worker: Any) -> Router:
        stores.append(SQLiteStore(tmp_path / "nowait.db"))
        hook = {"checkpoint": checkpoint} if checkpoint else {}
        return Router(
            store=stores[-1],
            backend=backend,
            clock=fake_clock,
            worker=WorkerConfig(**worker),
            **hook,
        )

    yield make_router
    for store in stores:
        store.close()


def run_all(router: Router) -> dict[str, Delivery]:
    received: list[Delivery] = []
    router.run(received.append)
    keys = [d.key for d in received]
    assert len(keys) == len(set(keys))  # each result delivered once
    return {d.key: d for d in received}


def test_submit_poll_collect_deliver_step_by_step(
    make: MakeRouter, backend: FakeBackend, fake_clock: FakeClock
) -> None:
    steps = CheckpointLog()
    router = make(steps)
    for i in range(10):
        router.submit(ask(i), key=f"b{i}")
    for i in range(2):
        router.submit(ask(100 + i), key=f"rt{i}", awaited=True)
    worker = router.worker

    report = worker.run_once()
    assert (report.realtime, report.planned, report.submitted) == (2, 1, 1)
    [api_id] = backend.batch_ids()
    assert backend.request_counts(api_id)["processing"] == 10
    assert router.store.job_counts() == {JobState.SUCCEEDED: 2, JobState.IN_BATCH: 10}

    fake_clock.advance(599)  # a poll before the end changes nothing
    assert worker.poll_batches() == 1 and worker.collect_ended() == 0
    fake_clock.advance(1)
    assert worker.poll_batches() == 0  # the next poll is not due yet: backoff
    fake_clock.advance(WorkerConfig().poll.longest)
    assert worker.poll_batches() == 1
    assert [b.state for b in router.store.batches(*BatchState)] == [BatchState.ENDED]
    assert backend.request_counts(api_id) == {
        "processing": 0, "succeeded": 10, "errored": 0, "canceled": 0, "expired": 0,
    }  # fmt: skip
    assert worker.collect_ended() == 1

    received: list[Delivery] = []
    assert router.deliver(received.append) == 12
    assert router.deliver(received.append) == 0  # never twice
    tiers = {d.key: d.tier for d in received}
    assert tiers == {**{f"b{i}": "batch" for i in range(10)}, "rt0": "standard", "rt1": "standard"}
    for job in router.store.jobs():  # usage counted from the content, never zero
        assert job.usage is not None and job.usage.input_tokens > 0
        assert job.usage.output_tokens > 0
        message = received[0].message
        assert message is not None and message["type"] == "message"
    assert max(backend.sent_custom_ids().values()) == 1
    assert len(backend.messages_sent()) == 2
    order = [
        "batch_planned", "submit_started", "batch_created", "batch_ended", "result_line",
        "result_written",
    ]  # fmt: skip
    assert sorted(set(steps.passed) - {"realtime_answered"}, key=steps.passed.index) == order
    assert steps.passed.count("result_line") == 10
    assert steps.passed.count("realtime_answered") == 2


def test_errored_lines_are_retried_up_to_the_cap(make: MakeRouter, backend: FakeBackend) -> None:
    backend.fail_next_lines(2, "overloaded_error")  # the first two lines of the first batch
    router = make(retry=RetryConfig(max_attempts=3))
    for attempt in (1, 2, 3):  # job 3 (key k2) errors at every attempt
        backend.fail_line(cid(router, 3, attempt), "api_error")
    for i in range(5):
        router.submit(ask(i), key=f"k{i}")
    received = run_all(router)
    assert {k for k, d in received.items() if d.ok} == {"k0", "k1", "k3", "k4"}
    assert not received["k2"].ok
    assert "gave up after 3 attempts" in (received["k2"].error or "")
    assert "api_error" in (received["k2"].error or "")
    attempts = {j.key: j.attempts for j in router.store.jobs()}
    assert attempts == {"k0": 2, "k1": 2, "k2": 3, "k3": 1, "k4": 1}
    assert sum(backend.sent_custom_ids().values()) == 5 + 2 + 2
    assert max(backend.sent_custom_ids().values()) == 1  # each attempt has its own custom_id


def test_invalid_lines_fail_without_a_retry(make: MakeRouter, backend: FakeBackend) -> None:
    router = make()
    backend.fail_line(cid(router, 2, 1), "invalid_request_error")
    for i in range(3):
        router.submit(ask(i), key=f"k{i}")
    received = run_all(router)
    assert not received["k1"].ok and "invalid_request_error" in (received["k1"].error or "")
    assert received["k0"].ok and received["k2"].ok
    assert sum(backend.sent_custom_ids().values()) == 3


def test_expired_lines_are_sent_again(make: MakeRouter, backend: FakeBackend) -> None:
    backend.fail_next_lines(1, "expired")
    router = make()
    router.submit(ask(0), key="k0")
    assert run_all(router)["k0"].ok
    assert len(backend.calls_to("batches.create")) == 2


def test_429_and_529_are_retried_after_retry_after(
    make: MakeRouter, backend: FakeBackend, fake_clock: FakeClock
) -> None:
    backend.fail_next(1, status=529, retry_after=30)
    backend.fail_next(1, status=429, retry_after=90)
    router = make()
    router.submit(ask(0), key="chat", awaited=True)
    start = fake_clock.now()
    delivered = run_all(router)
    assert delivered["chat"].ok and delivered["chat"].tier == "standard"
    calls = backend.calls_to("messages")
    assert len(calls) == 3
    assert calls[1].at - calls[0].at >= timedelta(seconds=30)
    assert calls[2].at - calls[1].at >= timedelta(seconds=90)
    assert fake_clock.now() - start >= timedelta(seconds=120)


def test_an_overloaded_batch_create_is_reconciled_then_sent_once(
    make: MakeRouter, backend: FakeBackend
) -> None:
    backend.fail_next(2, status=529, endpoint="batches.create", retry_after=5)
    router = make()
    for i in range(4):
        router.submit(ask(i), key=f"k{i}")
    assert all(d.ok for d in run_all(router).values())
    assert len(backend.calls_to("batches.create")) == 3
    assert backend.calls_to("batches.list")  # checked for a batch the failed call made
    assert backend.sent_custom_ids() == {cid(router, i, 1): 1 for i in range(1, 5)}


def test_a_permanent_realtime_error_fails_the_job(make: MakeRouter, backend: FakeBackend) -> None:
    backend.fail_next(1, status=400)
    router = make()
    router.submit(ask(0), key="chat", awaited=True)
    delivery = run_all(router)["chat"]
    assert not delivery.ok and "400 invalid_request_error" in (delivery.error or "")
    assert len(backend.calls_to("messages")) == 1


def test_a_slow_cancel_falls_back_in_time_without_paying_twice(
    make: MakeRouter,
    backend: FakeBackend,
    fake_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend.turnaround = 5 * 3600  # a slow day
    backend.cancel_latency = 8 * 60  # and a cancel that takes 8 minutes to end the batch
    router = make(
        capacity=Capacity(requests_per_minute=60, concurrency=8, seconds_per_request=20),
        guard=GuardConfig(margin=timedelta(minutes=10), cancel_latency=timedelta(minutes=2)),
        poll=PollConfig(first=60, factor=1.5, longest=300),
    )
    deadline = fake_clock.now() + timedelta(hours=2)
    for i in range(40):
        router.submit(ask(i), key=f"k{i}", workload="report", deadline=deadline)
    assert {j.route for j in router.store.jobs()} == {Route.BATCH}

    caplog.set_level(logging.INFO, logger="nowait.route.worker")
    received = run_all(router)

    assert fake_clock.now() <= deadline  # the deadline held
    assert set(received) == {f"k{i}" for i in range(40)} and all(d.ok for d in received.values())
    [api_id] = backend.batch_ids()  # one batch, never resubmitted as a batch
    [cancel] = backend.calls_to("batches.cancel")
    counts = backend.request_counts(api_id)
    assert counts["succeeded"] > 0 and counts["canceled"] > 0
    assert counts["succeeded"] + counts["canceled"] == 40
    ended_at = backend.retrieve_batch(api_id).ended_at
    assert ended_at == cancel.at + timedelta(minutes=8)  # the cancel took its time
    tiers = [j.tier for j in router.store.jobs()]
    assert tiers.count(Tier.BATCH) == counts["succeeded"]  # collected from the batch
    assert tiers.count(Tier.STANDARD) == counts["canceled"]
    assert len(backend.messages_sent()) == counts["canceled"]  # only the rest ran in real time
    assert all(c.at >= ended_at for c in backend.calls_to("messages"))
    rerouted = [j for j in router.store.jobs() if j.tier is Tier.STANDARD]
    assert all("deadline guard" in j.reasons for j in rerouted)
    said = [r.getMessage() for r in caplog.records]
    for line in (
        f"batch {api_id}: in_progress→canceling: the deadline guard's latest safe moment",
        f"batch {api_id}: canceling→ended after ",
        f"batch {api_id} fallback: {counts['canceled']} jobs rerouted batch→realtime",
    ):
        assert any(m.startswith(line) for m in said), (line, said)


def test_a_batch_the_api_forgot_is_sent_again(
    make: MakeRouter, backend: FakeBackend, fake_clock: FakeClock
) -> None:
    router = make()
    router.submit(ask(0), key="k0")
    router.worker.run_once()
    [api_id] = backend.batch_ids()
    backend.forget(api_id)
    fake_clock.advance(600)
    assert run_all(router)["k0"].ok
    assert backend.sent_custom_ids() == {cid(router, 1, 1): 1, cid(router, 1, 2): 1}
    assert [b.state for b in router.store.batches(*BatchState)] == [
        BatchState.LOST,
        BatchState.COLLECTED,
    ]


def test_a_plan_waiting_on_another_stores_batch_falls_back_before_its_deadline(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """Store A's create failed ambiguously; store B, on the same account, then made a batch of
    the same size. A cannot tell whether it is its own until it ends (2 h): the guard gives
    the plan up at its latest safe moment and meets the deadline in real time, leaving B's
    batch alone."""
    backend = FakeBackend(fake_clock, turnaround=7200)
    a = Router(store=SQLiteStore(tmp_path / "a.db"), backend=backend, clock=fake_clock)
    b = Router(store=SQLiteStore(tmp_path / "b.db"), backend=backend, clock=fake_clock)
    deadline = fake_clock.now() + timedelta(hours=1)
    for i in range(2):
        a.submit(ask(i), key=f"a{i}", deadline=deadline)
    assert {j.route for j in a.store.jobs()} == {Route.BATCH}
    backend.fail_next(1, status=529, endpoint="batches.create", retry_after=1)
    a.worker.run_once()  # planned, the create's fate unknown
    for i in range(2):
        b.submit(ask(10 + i), key=f"b{i}")
    b.worker.run_once()  # B's batch: two requests, made after A's call started
    fake_clock.advance(5)
    a.worker.run_once()
    [plan] = a.store.batches(BatchState.PLANNED)
    assert plan.waiting_for == tuple(backend.batch_ids())  # not adopted, not resent

    delivered = run_all(a)
    assert sorted(delivered) == ["a0", "a1"]
    assert all(d.ok and d.route == "realtime" for d in delivered.values())
    assert fake_clock.now() <= deadline
    assert backend.calls_to("batches.cancel") == []  # B's batch is B's business
    assert len(backend.calls_to("batches.create")) == 2  # A's failed call and B's
    assert not a.store.batches(BatchState.PLANNED)
    a.store.close()
    b.store.close()


def test_a_large_batch_is_delivered_chunk_by_chunk_while_it_is_collected(
    make: MakeRouter,
) -> None:
    steps = CheckpointLog()
    router = make(steps, apply_chunk=4)
    for i in range(10):
        router.submit(ask(i), key=f"b{i}")
    received = run_all(router)
    assert sorted(received) == [f"b{i}" for i in range(10)]
    passed = [s for s in steps.passed if s in ("result_line", "result_written")]
    assert (
        passed
        == ["result_line"] * 4
        + ["result_written"] * 4
        + ["result_line"] * 4
        + ["result_written"] * 4
        + ["result_line"] * 2
        + ["result_written"] * 2
    )


class FlushingSink:
    """A sink that flushes, as `JsonlSink`: what it holds counts once flushed; it skips keys
    it holds, and its flush fails once when told to."""

    def __init__(self) -> None:
        self.written: list[Delivery] = []
        self.flushed: list[str] = []
        self.fail_flush = False

    def __call__(self, delivery: Delivery) -> None:
        if delivery.key not in {d.key for d in self.written}:
            self.written.append(delivery)

    def flush(self) -> None:
        if self.fail_flush:
            self.fail_flush = False
            raise SinkFull("no space left")
        self.flushed = [d.key for d in self.written]


def test_a_flushing_sink_gets_each_chunk_in_the_transaction_that_applies_it(
    make: MakeRouter,
) -> None:
    """Each chunk's results reach the sink before the chunk's commit, which marks them
    delivered too: a job's row is written once for both."""
    steps = CheckpointLog()
    router = make(steps, apply_chunk=4)
    for i in range(10):
        router.submit(ask(i), key=f"b{i}")
    sink = FlushingSink()
    router.run(sink)
    assert sorted(sink.flushed) == [f"b{i}" for i in range(10)]
    assert router.store.job_counts() == {JobState.DELIVERED: 10}
    passed = [
        s for s in steps.passed if s in ("result_line", "result_written", "results_chunk_applied")
    ]
    chunk = ["result_line"] * 4 + ["result_written"] * 4 + ["results_chunk_applied"]
    assert passed == chunk + chunk + ["result_line"] * 2 + ["result_written"] * 2


def test_a_failed_flush_leaves_its_chunk_unapplied_and_the_next_run_delivers_each_once(
    make: MakeRouter,
) -> None:
    router = make(apply_chunk=4)
    for i in range(10):
        router.submit(ask(i), key=f"b{i}")
    sink = FlushingSink()
    sink.fail_flush = True
    with pytest.raises(SinkFull):
        router.run(sink)
    assert router.store.job_counts() == {JobState.IN_BATCH: 10}  # nothing applied
    assert [b.state for b in router.store.batches(*BatchState)] == [BatchState.ENDED]
    router.run(sink)
    assert sorted(d.key for d in sink.written) == [f"b{i}" for i in range(10)]
    assert router.store.job_counts() == {JobState.DELIVERED: 10}


class SinkFull(Exception):
    pass


def test_a_sink_failing_while_a_batch_is_collected_stops_the_run_and_fails_no_job(
    make: MakeRouter,
) -> None:
    """The sink's failure is not the batch's: no quarantine, nothing failed; the next run
    collects the rest and delivers every result once."""
    router = make(apply_chunk=4)
    for i in range(10):
        router.submit(ask(i), key=f"b{i}")
    received: list[Delivery] = []

    def sink(delivery: Delivery) -> None:
        if len(received) == 5:
            raise SinkFull("no space left")
        received.append(delivery)

    with pytest.raises(SinkFull):
        router.run(sink)
    assert JobState.FAILED not in router.store.job_counts()
    assert [b.state for b in router.store.batches(*BatchState)] == [BatchState.ENDED]
    router.run(received.append)
    assert sorted(d.key for d in received) == [f"b{i}" for i in range(10)]
    assert all(d.ok for d in received)
