"""The one clock: fake time moves only when told, and never without a timezone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nowait.clock import FakeClock, ScaledClock, utc


def test_fake_clock_sleep_advances_instantly() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.sleep(3600)
    assert clock.now() == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert clock.monotonic() == 3600
    clock.sleep(-5)  # a negative wait does not turn time back
    assert clock.monotonic() == 3600


def test_fake_clock_needs_an_aware_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))


def test_scaled_clock_runs_faster_than_real_time() -> None:
    clock = ScaledClock(scale=3600.0)
    before = clock.now()
    clock.sleep(1800)  # half an hour of scaled time is half a real second
    assert clock.now() - before >= timedelta(minutes=30)


def test_utc_reads_naive_times_as_utc() -> None:
    assert utc(datetime(2026, 1, 1)).tzinfo is UTC
