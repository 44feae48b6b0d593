"""Rate limits: what the API says about them in its response headers, and the token bucket
that paces nowait's real-time calls (and that the emulator enforces).

The API states the account's limits on every response (`anthropic-ratelimit-requests-*`,
`-input-tokens-*`, `-output-tokens-*`: limit, remaining, reset), and on a 429 how long to wait
(`retry-after-ms`, `retry-after`). Reading them is pure: a mapping of headers in, values out.

Why a bucket of our own: the rate-limit libraries on PyPI (aiolimiter, pyrate-limiter, limits)
keep time with `time` or the event loop, not a `Clock`, so tests could not run them on fast
time; none can take back the part of an estimate that actual usage did not spend (a call's
input tokens are estimated before it, its output tokens reserved at `max_tokens`); and
pyrate-limiter stores one entry per unit of weight (50,000 entries for 50,000 tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

KINDS = ("requests", "input-tokens", "output-tokens")
"""The limits of the real-time API, as their headers name them."""


@dataclass(frozen=True)
class Limit:
    """One limit as a response stated it."""

    limit: int
    """Per minute."""
    remaining: int | None = None
    reset: datetime | None = None
    """When the bucket is full again."""


@dataclass(frozen=True)
class RateLimits:
    """The rate-limit headers of one response; a limit the response did not state is None."""

    requests: Limit | None = None
    input_tokens: Limit | None = None
    output_tokens: Limit | None = None

    def of(self, kind: str) -> Limit | None:
        """The limit of a kind named as in `KINDS`."""
        return {
            "requests": self.requests,
            "input-tokens": self.input_tokens,
            "output-tokens": self.output_tokens,
        }[kind]


def read_rate_limits(headers: Mapping[str, str]) -> RateLimits | None:
    """The `anthropic-ratelimit-*` headers of a response (keys lower case, as HTTP libraries
    give them); None when it carries none. A value that cannot be read is left out."""
    found = [_limit(headers, kind) for kind in KINDS]
    if not any(found):
        return None
    return RateLimits(*found)


def _limit(headers: Mapping[str, str], kind: str) -> Limit | None:
    prefix = f"anthropic-ratelimit-{kind}-"
    limit = _int(headers.get(prefix + "limit"))
    if limit is None or limit <= 0:
        return None
    remaining = _int(headers.get(prefix + "remaining"))
    return Limit(limit, remaining, _time(headers.get(prefix + "reset")))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def read_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the API asks a client to wait: `retry-after-ms` when sent (finer), else
    `retry-after` (seconds); None when neither can be read."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        text = headers.get(name)
        if text is None:
            continue
        try:
            seconds = float(text) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


class TokenBucket:
    """Holds up to `per_minute` units and refills at `per_minute`/60 a second, on the time it
    is given (no clock of its own). Its level may go below zero: a charge after the fact
    (actual usage above the estimate) is a debt that the refill pays first. Not thread-safe:
    its owner holds a lock."""

    def __init__(self, per_minute: float, now: datetime, *, full: bool = True) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = float(per_minute)
        self.level = self.per_minute if full else 0.0
        self.updated = now

    def refill(self, now: datetime) -> None:
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.level = min(self.per_minute, self.level + elapsed * self.per_minute / 60.0)
        self.updated = max(self.updated, now)

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (capped at a full bucket, so an amount larger
        than a minute's worth waits for a full bucket, not forever); 0 if it is now."""
        needed = min(amount, self.per_minute) - self.level
        return 0.0 if needed <= 0 else needed * 60.0 / self.per_minute

    def charge(self, amount: float) -> None:
        """Take `amount` (negative: give back), whatever the level."""
        self.level = min(self.per_minute, self.level - amount)

    def resize(self, per_minute: float) -> None:
        """A new limit: the level is kept, within the new size."""
        self.per_minute = float(per_minute)
        self.level = min(self.level, self.per_minute)

    def reset_at(self, now: datetime) -> datetime:
        """When the bucket is full again."""
        missing = self.per_minute - self.level
        return now + timedelta(seconds=max(0.0, missing) * 60.0 / self.per_minute)
