"""Durations as people write them: `90s`, `15m`, `6h`, `2d`, `1w`."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day|days|w)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
_UNIT_SECONDS |= {"d": 86400, "day": 86400, "days": 86400, "w": 604800}


MAX_DURATION = timedelta(days=400)
"""Longest duration or deadline nowait reads (400 days: over a year, far beyond any batch's
24 hours): anything longer is a typo, and would overflow a date."""
MAX_DURATION_TEXT = "at most 400 days"


class DurationOutOfRange(ValueError):
    """A well-formed duration that is not finite, below 0 or beyond `MAX_DURATION`."""


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `6h`, `2d`, `1w` → timedelta up to `MAX_DURATION`; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(text)
    return duration_from_seconds(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def duration_from_seconds(seconds: float) -> timedelta:
    """A number of seconds as a timedelta; ValueError if not finite, below 0 or beyond
    `MAX_DURATION` (timedelta itself would raise OverflowError on huge values)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise DurationOutOfRange(f"{seconds!r} seconds is not a duration")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationOutOfRange(f"{seconds:g} seconds is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest spelling `parse_duration` reads back: `10m`, `2h`, `90s`, `0.05s`."""
    seconds = delta.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
