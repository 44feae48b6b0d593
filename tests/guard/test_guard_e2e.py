"""The deadline guard end to end: a batch that runs late against the emulator is cancelled at
the latest safe moment; what it finished is collected from the batch (paid once, at batch
price) and only the rest runs in real time, in time for the deadline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.guard.policy import Capacity, GuardConfig, PollConfig
from nowait.types import Route, Tier
from router_helpers import ask


def test_a_slow_batch_falls_back_in_time_without_paying_twice(
    fake_clock: FakeClock, make_router: Any
) -> None:
    config = EmulatorConfig(turnaround=Turnaround(5 * 3600), cancel_latency=30)  # a slow day
    with EmulatorServer(config, fake_clock) as server:
        router = make_router(
            server,
            capacity=Capacity(requests_per_minute=60, concurrency=8, seconds_per_request=20),
            guard=GuardConfig(margin=timedelta(minutes=10), cancel_latency=timedelta(minutes=2)),
            poll=PollConfig(first=60, factor=1.5, longest=300),
        )
        deadline = fake_clock.now() + timedelta(hours=2)
        for i in range(40):
            router.submit(ask(i), key=f"k{i}", workload="report", deadline=deadline)
        assert {j.route for j in router.store.jobs()} == {Route.BATCH}  # worth trying a batch
        delivered: list[Any] = []
        router.run(delivered.append)
        finished_at = fake_clock.now()

        assert finished_at <= deadline  # the deadline held
        assert sorted(d.key for d in delivered) == sorted(f"k{i}" for i in range(40))
        assert all(d.ok for d in delivered)
        [api_id] = server.emulator.batch_ids()  # one batch, never resubmitted as a batch
        counts = server.emulator.get_batch(api_id).final_counts()
        assert counts["succeeded"] > 0 and counts["canceled"] > 0
        tiers = [j.tier for j in router.store.jobs()]
        assert tiers.count(Tier.BATCH) == counts["succeeded"]  # collected from the batch
        assert tiers.count(Tier.STANDARD) == counts["canceled"]
        # not paid twice: exactly the unfinished requests went to the Messages API
        assert server.emulator.calls["messages"] == counts["canceled"]
        assert server.emulator.batch_create_requests == 40
        rerouted = [j for j in router.store.jobs() if j.tier is Tier.STANDARD]
        assert all("deadline guard" in j.reasons for j in rerouted)


def test_a_batch_that_lands_in_time_is_left_alone(fake_clock: FakeClock, make_router: Any) -> None:
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(1800)), fake_clock) as server:
        router = make_router(server)
        deadline = fake_clock.now() + timedelta(hours=4)
        for i in range(10):
            router.submit(ask(i), key=f"k{i}", deadline=deadline)
        router.run(lambda _: None)
        assert server.emulator.calls["batches.cancel"] == 0
        assert server.emulator.calls["messages"] == 0
        assert {j.tier for j in router.store.jobs()} == {Tier.BATCH}


def test_the_forecast_learns_from_the_store(fake_clock: FakeClock, make_router: Any) -> None:
    with EmulatorServer(EmulatorConfig(turnaround=Turnaround(7 * 3600)), fake_clock) as server:
        router = make_router(server, poll=PollConfig(first=3600, factor=2, longest=4 * 3600))
        for round_ in range(20):  # twenty slow batches end up in the history
            router.submit(ask(round_), key=f"history-{round_}")
            router.run(lambda _: None)
        assert "history" in router.forecast.source("claude-haiku-5-5", 1)
        key = router.submit(
            ask(99), key="due-in-3h", deadline=fake_clock.now() + timedelta(hours=3)
        )
        job = router.store.get_job(key)
        assert job is not None and job.route is Route.REALTIME  # batches here take 7 h
        assert "of batches end within" in job.reasons
