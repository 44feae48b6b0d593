"""The schedule evidence says the span the arrivals chart shows: one hour, or two."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nowait.analyze.signals import Signals, infer

QUIET = Signals(
    requests=100, streamed=0.0, ttft_recorded=0.0, with_user=0.0, http=0.0, queue=0.0,
    cron=0.0, script=0.0, tool_use=0.0, batch_tier=0.0, peak_two_hours=0.1, days=30,
    per_request=True,
)  # fmt: skip


@pytest.mark.parametrize(
    ("peak_two_hours", "peak_hour", "start", "text"),
    [
        (1.0, 1.0, 2, "100% arrive in the same hour every day (02:00 UTC): a schedule"),
        (0.9, 0.87, 23, "87% arrive in the same hour every day (23:00 UTC): a schedule"),
        (0.9, 0.5, 23, "90% arrive in the same two hours every day (23:00–01:00 UTC): a schedule"),
    ],
)
def test_the_schedule_names_its_hours(
    peak_two_hours: float, peak_hour: float, start: int, text: str
) -> None:
    signals = replace(QUIET, peak_two_hours=peak_two_hours, peak_hour=peak_hour, peak_start=start)
    assert text in infer(signals).evidence
