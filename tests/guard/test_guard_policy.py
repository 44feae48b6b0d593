"""The deadline guard's pure decisions, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nowait.guard.forecast import PRIOR, BatchSample, fit, size_bucket
from nowait.guard.policy import (
    Capacity,
    GuardConfig,
    PollConfig,
    RetryConfig,
    RouteRequest,
    WorkLeft,
    batch_chance,
    deadline_class,
    decide_route,
    fall_back_now,
    fallback_among,
    fallback_start,
    next_poll,
    realtime_duration,
    retry_at,
    worth_batching,
)
from nowait.guard.turnaround import Turnaround
from nowait.types import Route

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CAP = Capacity(
    requests_per_minute=60,
    input_tokens_per_minute=60_000,
    output_tokens_per_minute=6_000,
    concurrency=100,
    seconds_per_request=30,
)


@pytest.mark.parametrize(
    ("work", "seconds", "bound_by"),
    [
        (WorkLeft(0, 0, 0), 0, "nothing to do"),
        (WorkLeft(120, 1_000, 1_000), 120, "requests per minute: 120 / 60 = 2 min"),
        (WorkLeft(10, 600_000, 100), 600, "input tokens: 600k / 60k = 10 min"),
        (WorkLeft(10, 100, 60_000), 600, "output tokens: 60k / 6k = 10 min"),
        (WorkLeft(50, 100, 100), 50, "requests per minute: 50 / 60 min > one 30 s wave"),
    ],
)
def test_realtime_duration_is_bound_by_the_tightest_limit(
    work: WorkLeft, seconds: float, bound_by: str
) -> None:
    assert realtime_duration(work, CAP) == timedelta(seconds=seconds), bound_by


def test_fallback_among_makes_room_for_work_due_between_it_and_the_deadline() -> None:
    config = GuardConfig(margin=timedelta(minutes=10), cancel_latency=timedelta(minutes=2))
    deadline = NOW + timedelta(hours=3)
    own = WorkLeft(60, 0, 0)  # 1 min at 60 a minute: alone, the moment is deadline - 13 min
    rivals = [
        (deadline, WorkLeft(120, 0, 0)),  # due with it: counted (2 min more)
        (deadline - timedelta(minutes=14), WorkLeft(60, 0, 0)),  # due after the new moment
        (deadline - timedelta(hours=1), WorkLeft(600, 0, 0)),  # done before: not counted
        (deadline + timedelta(minutes=1), WorkLeft(600, 0, 0)),  # due later: waits for it
    ]

    def others(moment: datetime) -> list[WorkLeft]:
        return [w for d, w in rivals if moment < d <= deadline]

    alone = fallback_start(deadline, own, CAP, config)
    assert alone == deadline - timedelta(minutes=13)
    # 1 + 2 min: deadline - 15 min, which brings the one due at -14 min into view: 1 + 2 + 1.
    moment = fallback_among(deadline, own, others, CAP, config)
    assert moment == deadline - timedelta(minutes=16)
    assert fallback_among(deadline, own, lambda _: [], CAP, config) == alone


def test_fallback_start_leaves_margin_cancel_latency_and_the_real_time_run() -> None:
    config = GuardConfig(margin=timedelta(minutes=10), cancel_latency=timedelta(minutes=2))
    deadline = NOW + timedelta(hours=3)
    start = fallback_start(deadline, WorkLeft(120, 0, 0), CAP, config)
    assert start == deadline - timedelta(minutes=10 + 2 + 2)
    assert not fall_back_now(
        start - timedelta(seconds=1), deadline, WorkLeft(120, 0, 0), CAP, config
    )
    assert fall_back_now(start, deadline, WorkLeft(120, 0, 0), CAP, config)


@pytest.mark.parametrize(
    ("deadline_in", "expected", "why"),
    [
        (timedelta(minutes=10), False, "no room: the fallback moment has passed"),
        (timedelta(minutes=16), False, "3.5 min of room: under a 20% chance of ending by then"),
        (timedelta(minutes=20), True, "7.5 min of room: a 23% chance, worth trying"),
        (timedelta(hours=3), True, "plenty of room: most batches end in time"),
        (timedelta(days=2), True, "a far deadline"),
    ],
)
def test_worth_batching(deadline_in: timedelta, expected: bool, why: str) -> None:
    turnaround = Turnaround(20 * 60, 3 * 3600)
    got = worth_batching(
        NOW,
        NOW + deadline_in,
        WorkLeft(1, 1000, 100),
        CAP,
        GuardConfig(),
        turnaround.probability_within,
    )
    assert got is expected, why


def test_forecast_uses_the_prior_until_history_suffices() -> None:
    forecast = fit([], Turnaround(median=1800, p95=4 * 3600))
    assert forecast.quantile(0.5, "claude-haiku-5-5", 10) == timedelta(seconds=1800)
    assert forecast.source("claude-haiku-5-5", 10) == "the prior (not enough history yet)"


def test_forecast_learns_quantiles_by_model_size_and_hour() -> None:
    base = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    history = [
        BatchSample(
            "claude-haiku-5-5",
            500,
            base + timedelta(days=d),
            base + timedelta(days=d, minutes=10 + d),
        )
        for d in range(25)
    ]
    history += [
        BatchSample(
            "claude-haiku-5-5", 50_000, base + timedelta(days=d), base + timedelta(days=d, hours=2)
        )
        for d in range(25)
    ]
    forecast = fit(history, min_samples=20)
    small = forecast.quantile(0.95, "claude-haiku-5-5", 800, at=base)
    assert small == timedelta(minutes=10 + 23)  # nearest rank: the 24th of 25 values
    assert forecast.quantile(0.5, "claude-haiku-5-5", 60_000) == timedelta(hours=2)
    assert "at 03h" in forecast.source("claude-haiku-5-5", 800, at=base)
    assert forecast.source("claude-opus-5-5", 10) == "the prior (not enough history yet)"
    assert (
        size_bucket(1) == 1_000 and size_bucket(5_000) == 10_000 and size_bucket(10**6) == 100_000
    )


def test_prior_quantiles_and_turnaround_probability_agree() -> None:
    turnaround = Turnaround(1800, 4 * 3600)
    assert turnaround.quantile(0.5) == pytest.approx(1800)
    assert turnaround.quantile(0.95) == pytest.approx(4 * 3600)
    assert turnaround.probability_within(turnaround.quantile(0.8)) == pytest.approx(0.8)
    assert PRIOR.quantile(0.5) == pytest.approx(1800)


def test_concurrency_bounds_long_calls() -> None:
    narrow = Capacity(6_000, 10**9, 10**9, concurrency=5, seconds_per_request=30)
    assert realtime_duration(WorkLeft(50, 100, 100), narrow) == timedelta(seconds=300)  # 10 waves


# ---- decide_route: the guard's rule -----------------------------------------------------------
# One request of 1,000 in and 100 out takes 30 s in real time under CAP (one call: the 30 s
# wave binds). With the default guard (10 min margin, 2 min cancel latency) the fallback moment
# is 12.5 min before the deadline. The forecast is log-normal, median 20 min, p95 3 h
# (sigma = ln 9 / 1.645 = 1.336).
TYPICAL = Turnaround(20 * 60, 3 * 3600)


@pytest.mark.parametrize(
    ("awaited", "deadline_in", "guard", "route", "reason"),
    [
        (True, timedelta(hours=5), GuardConfig(), Route.REALTIME, "is waiting on this result"),
        (True, None, GuardConfig(), Route.REALTIME, "is waiting on this result"),
        (False, None, GuardConfig(), Route.BATCH, "nobody waits and there is no deadline"),
        (
            False,
            timedelta(minutes=10),
            GuardConfig(),
            Route.REALTIME,
            "deadline in 10 min leaves no time for a batch and a fallback",
        ),
        # Exactly at the fallback moment: no room left.
        (
            False,
            timedelta(minutes=12, seconds=30),
            GuardConfig(),
            Route.REALTIME,
            "leaves no time for a batch and a fallback",
        ),
        # 210 s of room: P = Φ(ln(210/1200) / 1.336) = Φ(-1.30) = 10% < 20%.
        (
            False,
            timedelta(minutes=16),
            GuardConfig(),
            Route.REALTIME,
            "only 10% of batches end within the 3 min before a fallback",
        ),
        # The same room, but any chance is worth a try: the fallback keeps the deadline.
        (False, timedelta(minutes=16), GuardConfig(min_batch_chance=0.0), Route.BATCH, "10%"),
        # 450 s of room: Φ(ln(450/1200) / 1.336) = Φ(-0.73) = 23%.
        (False, timedelta(minutes=20), GuardConfig(), Route.BATCH, "23% of batches end within 7"),
        # 10,050 s: Φ(ln(8.375) / 1.336) = Φ(1.59) = 94%.
        (False, timedelta(hours=3), GuardConfig(), Route.BATCH, "94% of batches end within 2.8 h"),
        # A larger margin eats the room: 3 h - 3 h margin - 2.5 min.
        (
            False,
            timedelta(hours=3),
            GuardConfig(margin=timedelta(hours=3)),
            Route.REALTIME,
            "leaves no time",
        ),
        # Demanding certainty from the batch itself sends deadline work to real time:
        # 20,850 s of room is Φ(ln(17.375) / 1.336) = Φ(2.14) = 98%.
        (False, timedelta(hours=6), GuardConfig(min_batch_chance=1.0), Route.REALTIME, "only 98%"),
    ],
)
def test_decide_route(
    awaited: bool,
    deadline_in: timedelta | None,
    guard: GuardConfig,
    route: Route,
    reason: str,
) -> None:
    deadline = NOW + deadline_in if deadline_in is not None else None
    request = RouteRequest(awaited, deadline, "claude-haiku-5-5", 1_000, 100)
    decision = decide_route(request, NOW, CAP, guard, TYPICAL.probability_within)
    assert decision.route is route
    assert reason in "; ".join(decision.reasons)


@pytest.mark.parametrize(
    ("deadline_in", "room", "chance"),
    [
        (timedelta(minutes=5), -450, 0.0),  # past the fallback moment: no chance at all
        (timedelta(minutes=12, seconds=30), 0, 0.0),
        (timedelta(minutes=32, seconds=30), 1200, 0.5),  # room = the median
        (timedelta(hours=3, minutes=12, seconds=30), 10_800, 0.95),  # room = the p95
    ],
)
def test_batch_chance(deadline_in: timedelta, room: float, chance: float) -> None:
    got_room, got_chance = batch_chance(
        NOW,
        NOW + deadline_in,
        WorkLeft(1, 1000, 100),
        CAP,
        GuardConfig(),
        TYPICAL.probability_within,
    )
    assert got_room == timedelta(seconds=room)
    assert got_chance == pytest.approx(chance)


@pytest.mark.parametrize(
    ("seconds_left", "cls"),
    [
        (None, -1),  # no deadline: a class of its own
        (-600.0, 0),  # already past: the nearest class
        (0.0, 0),
        (1800.0, 0),
        (3600.0, 0),
        (7199.0, 0),
        (7200.0, 1),  # 2 h
        (4 * 3600 - 1.0, 1),
        (4 * 3600.0, 2),  # 4 h
        (8 * 3600.0, 3),
        (48 * 3600.0, 5),  # log2(48) = 5.6
    ],
)
def test_deadline_class(seconds_left: float | None, cls: int) -> None:
    assert deadline_class(seconds_left) == cls


@pytest.mark.parametrize(
    ("work", "margin", "cancel", "before_deadline"),
    [
        (WorkLeft(1, 0, 0), 10, 2, 12 * 60 + 30),  # one call: a 30 s wave
        (WorkLeft(120, 0, 0), 10, 2, 14 * 60),  # 120 requests at 60 a minute: 2 min
        (WorkLeft(120, 0, 0), 0, 0, 120),
        (WorkLeft(10, 100, 60_000), 5, 1, 16 * 60),  # output tokens: 10 min
    ],
)
def test_fallback_start_table(
    work: WorkLeft, margin: int, cancel: int, before_deadline: float
) -> None:
    config = GuardConfig(margin=timedelta(minutes=margin), cancel_latency=timedelta(minutes=cancel))
    deadline = NOW + timedelta(hours=5)
    start = fallback_start(deadline, work, CAP, config)
    assert deadline - start == timedelta(seconds=before_deadline)
    assert fall_back_now(start, deadline, work, CAP, config)
    assert not fall_back_now(start - timedelta(microseconds=1), deadline, work, CAP, config)


@pytest.mark.parametrize(
    ("attempts", "retry_after", "seconds"),
    [
        (1, None, 2.0),  # base delay
        (2, None, 4.0),  # doubled
        (4, None, 16.0),
        (1, 30.0, 30.0),  # the API's retry-after is a floor
        (4, 3.0, 16.0),  # ... never shortening the backoff
        (5, None, None),  # the cap: give up
    ],
)
def test_retry_at(attempts: int, retry_after: float | None, seconds: float | None) -> None:
    got = retry_at(attempts, NOW, retry_after, RetryConfig(max_attempts=5, base_delay=2.0))
    assert got == (NOW + timedelta(seconds=seconds) if seconds is not None else None)


def test_retry_at_caps_the_backoff() -> None:
    config = RetryConfig(max_attempts=50, base_delay=2.0, max_delay=600.0)
    assert retry_at(20, NOW, None, config) == NOW + timedelta(seconds=600)


@pytest.mark.parametrize(
    ("interval", "following"),
    [(0.0, 10.0), (10.0, 15.0), (60.0, 90.0), (100.0, 120.0), (120.0, 120.0)],
)
def test_next_poll(interval: float, following: float) -> None:
    assert next_poll(interval, PollConfig(first=10, factor=1.5, longest=120)) == following


@pytest.mark.parametrize(
    ("turnaround", "seconds", "chance"),
    [
        (Turnaround(600), 599.0, 0.0),  # fixed: all or nothing
        (Turnaround(600), 600.0, 1.0),
        (Turnaround(1200, 10_800), 0.0, 0.0),
        (Turnaround(1200, 10_800), 1200.0, 0.5),
        (Turnaround(1200, 10_800), 10_800.0, 0.95),
    ],
)
def test_turnaround_probability_within(
    turnaround: Turnaround, seconds: float, chance: float
) -> None:
    assert turnaround.probability_within(seconds) == pytest.approx(chance)


@pytest.mark.parametrize(
    ("requests", "bucket"),
    [(1, 1_000), (1_000, 1_000), (1_001, 10_000), (10_000, 10_000), (10**6, 100_000)],
)
def test_size_bucket(requests: int, bucket: int) -> None:
    assert size_bucket(requests) == bucket
