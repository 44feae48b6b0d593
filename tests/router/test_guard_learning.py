"""The worker's deadline guard learns from what its own store saw, and plans each fallback
with the other batches it shares the account with: FakeBackend + FakeClock + a real SQLite
file, every fact written by the router itself (no history faked)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nowait.clock import FakeClock
from nowait.guard.policy import Capacity, GuardConfig, PollConfig
from nowait.route.router import Delivery, Router
from nowait.route.worker import WorkerConfig
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore
from nowait.testing import FakeBackend
from router_helpers import ask

MakeRouter = Callable[..., Router]
CONFIG: dict[str, Any] = {
    "capacity": Capacity(requests_per_minute=60, concurrency=8, seconds_per_request=20),
    "guard": GuardConfig(margin=timedelta(minutes=10), cancel_latency=timedelta(minutes=2)),
    "poll": PollConfig(first=60, factor=1.5, longest=300),
}


@pytest.fixture
def backend(fake_clock: FakeClock) -> FakeBackend:
    # A slow day: batches take 5 hours; cancels take 8 minutes; calls 45 s.
    return FakeBackend(fake_clock, turnaround=5 * 3600, cancel_latency=8 * 60, realtime_latency=45)


@pytest.fixture
def router(tmp_path: Path, fake_clock: FakeClock, backend: FakeBackend) -> Iterator[Router]:
    store = SQLiteStore(tmp_path / "nowait.db")
    yield Router(store=store, backend=backend, clock=fake_clock, worker=WorkerConfig(**CONFIG))
    store.close()


@pytest.fixture
def serial_router(tmp_path: Path, fake_clock: FakeClock, backend: FakeBackend) -> Iterator[Router]:
    """One call at a time: on a FakeClock concurrent calls' sleeps add up, so a call's
    measured duration is its own only when no other runs beside it."""
    store = SQLiteStore(tmp_path / "nowait.db")
    serial = Capacity(requests_per_minute=60, concurrency=1, seconds_per_request=20)
    config = WorkerConfig(**{**CONFIG, "capacity": serial})
    yield Router(store=store, backend=backend, clock=fake_clock, worker=config)
    store.close()


def run_all(router: Router) -> list[Delivery]:
    received: list[Delivery] = []
    router.run(received.append)
    return received


def _open_batch(router: Router, keys: range, deadline_in: timedelta) -> int:
    """Submit one request per key due in `deadline_in`, and send them as one batch."""
    deadline = router.clock.now() + deadline_in
    before = {b.id for b in router.store.batches(BatchState.CREATED)}
    for i in keys:
        router.submit(ask(i), key=f"k{i}", deadline=deadline)
    router.worker.plan_batches()
    router.worker.submit_planned()
    [batch] = [b for b in router.store.batches(BatchState.CREATED) if b.id not in before]
    return batch.id


def test_slow_cancels_and_slow_calls_move_the_fallback_earlier(
    serial_router: Router, backend: FakeBackend, fake_clock: FakeClock
) -> None:
    router = serial_router
    worker = router.worker
    first = _open_batch(router, range(1), timedelta(hours=2))
    batch = next(b for b in router.store.batches(BatchState.CREATED) if b.id == first)
    deadline = fake_clock.now() + timedelta(hours=2)
    # No history: the settings (2-minute cancel, 20 s a call).
    assert worker.fallback_moment(batch) == deadline - timedelta(minutes=12, seconds=20)
    assert worker.latencies.cancel.source() == "the setting (0 of 10 cancels seen)"
    run_all(router)  # the guard cancels it; the cancel takes 8 minutes
    for n in range(1, 10):  # nine more slow days: ten cancels, ten calls seen
        _open_batch(router, range(n * 10, n * 10 + 2), timedelta(hours=2))
        delivered = run_all(router)
        assert all(d.ok for d in delivered)
    assert len(backend.calls_to("batches.cancel")) == 10
    assert router.store.cancel_history() == [480.0] * 10
    assert len(router.store.call_history()) == 19 and {
        s for _, _, s in router.store.call_history()
    } == {45.0}
    # Ten cancels seen: the guard plans the cancel at their p95 (8 min); calls are still the
    # setting's 20 s (19 of 20 seen).
    last = _open_batch(router, range(500, 501), timedelta(hours=2))
    batch = next(b for b in router.store.batches(BatchState.CREATED) if b.id == last)
    deadline = fake_clock.now() + timedelta(hours=2)
    assert worker.fallback_moment(batch) == deadline - timedelta(minutes=18, seconds=20)
    assert worker.latencies.cancel.source() == "p95 of 10 cancels"
    run_all(router)  # a twentieth call: now the calls are learned too (45 s)
    worker.relearn()
    nxt = _open_batch(router, range(600, 601), timedelta(hours=2))
    batch = next(b for b in router.store.batches(BatchState.CREATED) if b.id == nxt)
    deadline = fake_clock.now() + timedelta(hours=2)
    assert worker.fallback_moment(batch) == deadline - timedelta(minutes=18, seconds=45)


def test_a_fallback_makes_room_for_other_batches_due_first(
    router: Router, fake_clock: FakeClock
) -> None:
    # Two batches of the same model, 40 requests each, due at the same moment: each alone runs
    # in 40 s of starts (60 a minute) but 5 waves of 20 s = 100 s; together 80 requests take
    # 80 s of starts and 10 waves = 200 s. Each plans for both.
    deadline = fake_clock.now() + timedelta(hours=2)
    a = _open_batch(router, range(40), timedelta(hours=2))
    alone = router.worker.fallback_moment(
        next(b for b in router.store.batches(BatchState.CREATED) if b.id == a)
    )
    assert alone == deadline - timedelta(minutes=12, seconds=100)
    b = _open_batch(router, range(40, 80), timedelta(hours=2))
    created = {x.id: x for x in router.store.batches(BatchState.CREATED)}
    both = deadline - timedelta(minutes=12, seconds=200)
    assert router.worker.fallback_moment(created[a]) == both
    assert router.worker.fallback_moment(created[b]) == both
    # A batch due later does not move an earlier one's moment; it counts the earlier one.
    later = _open_batch(router, range(80, 120), timedelta(hours=5))
    created = {x.id: x for x in router.store.batches(BatchState.CREATED)}
    assert router.worker.fallback_moment(created[a]) == both
    moment = router.worker.fallback_moment(created[later])
    assert moment == deadline + timedelta(hours=3) - timedelta(minutes=12, seconds=100)
    delivered = run_all(router)
    assert len(delivered) == 120 and all(d.ok for d in delivered)
    assert fake_clock.now() <= deadline + timedelta(hours=3)
