"""Reconciliation: a batch the API made whose id nowait never stored is found, not sent
again; a batch the API no longer shows is given up without stopping the worker. Real SDK,
real emulator over HTTP, real SQLite file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anthropic

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.guard.policy import RetryConfig
from nowait.route import custom_ids
from nowait.route.backend import AnthropicBackend
from nowait.route.router import Delivery, Router
from nowait.route.worker import WorkerConfig
from nowait.store import BatchState
from nowait.store.sqlite import SQLiteStore
from router_helpers import ReplyLostBackend, ask


def router_on(path: Path, backend: AnthropicBackend, clock: FakeClock, **worker: Any) -> Router:
    return Router(
        store=SQLiteStore(path), backend=backend, clock=clock, worker=WorkerConfig(**worker)
    )


def sent_per_job(server: Any) -> Counter[str]:
    """How many times each job of a nowait store was sent (`j<id>`), other clients left out."""
    emulator = server.emulator
    parsed = (
        custom_ids.parse(c) for b in emulator.batch_ids() for c in emulator.batch_custom_ids(b)
    )
    return Counter(f"j{p.job_id}" for p in parsed if p is not None)


def run_all(router: Router) -> list[Delivery]:
    received: list[Delivery] = []
    router.run(received.append)
    return received


def test_a_create_long_after_planning_is_found_after_a_crash(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """Matching starts at the create call, not at the plan: here 10 minutes apart."""
    with EmulatorServer(EmulatorConfig(), fake_clock) as server:
        lost = ReplyLostBackend(api_key="k", base_url=server.base_url)
        first = router_on(tmp_path / "nowait.db", lost, fake_clock)
        for i in range(5):
            first.submit(ask(i), key=f"k{i}")
        first.worker.plan_batches()
        fake_clock.advance(600)
        first.worker.submit_planned()  # the API made it; the process "died" before storing it
        first.store.close()
        backend = AnthropicBackend(api_key="k", base_url=server.base_url)
        again = router_on(tmp_path / "nowait.db", backend, fake_clock)
        assert sorted(d.key for d in run_all(again)) == [f"k{i}" for i in range(5)]
        again.store.close()
        backend.close()
        assert sent_per_job(server) == {f"j{i}": 1 for i in range(1, 6)}  # none sent twice


def test_an_ambiguous_create_failure_is_matched_before_creating_again(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    with EmulatorServer(EmulatorConfig(), fake_clock) as server:
        lost = ReplyLostBackend(api_key="k", base_url=server.base_url)
        router = router_on(tmp_path / "nowait.db", lost, fake_clock)
        for i in range(5):
            router.submit(ask(i), key=f"k{i}")
        received = run_all(router)  # the first create "times out"; the next pass must not resend
        assert sorted(d.key for d in received) == [f"k{i}" for i in range(5)]
        assert all(d.ok for d in received)
        assert len(server.emulator.batch_ids()) == 1
        assert server.emulator.batch_create_requests == 5
        router.store.close()


def test_two_plans_of_one_size_are_told_apart_and_older_batches_are_paged_back_to(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """Plan 1's create was refused (529), plan 2's made a batch whose reply was lost, and
    another client then made 120 batches: the one API batch fits both plans by count and
    time, and lies beyond the first page of the list."""
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(600)), fake_clock) as server:
        lost = ReplyLostBackend(api_key="k", base_url=server.base_url)
        first = router_on(tmp_path / "nowait.db", lost, fake_clock, max_batch_requests=5)
        for i in range(10):
            first.submit(ask(i), key=f"k{i}")
        first.worker.plan_batches()
        server.emulator.fail_next(1, status=529, endpoint="batches.create")
        first.worker.submit_planned()
        first.store.close()
        with anthropic.Anthropic(api_key="other", base_url=server.base_url) as other:
            for i in range(120):
                other.messages.batches.create(requests=[{"custom_id": f"x{i}", "params": ask(i)}])  # type: ignore[list-item]
        backend = AnthropicBackend(api_key="k", base_url=server.base_url)
        again = router_on(tmp_path / "nowait.db", backend, fake_clock, max_batch_requests=5)
        received = run_all(again)
        again.store.close()
        backend.close()
        assert sorted(d.key for d in received) == sorted(f"k{i}" for i in range(10))
        assert all(d.ok for d in received)
        assert sent_per_job(server) == {f"j{i}": 1 for i in range(1, 11)}  # each sent once


def test_a_batch_the_api_no_longer_knows_is_lost_and_its_jobs_sent_again(
    emulator_server: Any, make_router: Any
) -> None:
    router = make_router(emulator_server)
    for i in range(3):
        router.submit(ask(i), key=f"k{i}")
    router.worker.run_once()  # created
    emulator_server.emulator.fail_next(1, status=404, endpoint="batches.retrieve")
    received = run_all(router)
    assert sorted(d.key for d in received) == ["k0", "k1", "k2"] and all(d.ok for d in received)
    assert [b.state for b in router.store.batches(*BatchState)] == [
        BatchState.LOST,
        BatchState.COLLECTED,
    ]
    assert {j.attempts for j in router.store.jobs()} == {2}  # the lost attempt counted


def test_lost_results_fail_the_jobs_at_the_attempt_cap(
    emulator_server: Any, make_router: Any
) -> None:
    router = make_router(emulator_server, retry=RetryConfig(max_attempts=1))
    router.submit(ask(0), key="k")
    emulator_server.emulator.fail_next(1, status=404, endpoint="batches.results")
    [delivery] = run_all(router)
    assert not delivery.ok
    assert "lost: 404" in (delivery.error or "") and "gave up after 1 attempts" in (
        delivery.error or ""
    )
