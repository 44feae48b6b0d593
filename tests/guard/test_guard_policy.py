"""The deadline guard's pure decisions, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nowait.forecast import PRIOR, BatchSample, fit, size_bucket
from nowait.policy import (
    Capacity,
    GuardConfig,
    WorkLeft,
    fall_back_now,
    fallback_start,
    realtime_duration,
    worth_batching,
)
from nowait.turnaround import Turnaround

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
