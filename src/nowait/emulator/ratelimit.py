"""Token-bucket rate limits of the real-time API, per model, on emulated time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from nowait.emulator.config import RateLimit


@dataclass
class Bucket:
    """Holds up to `per_minute` units; refills continuously at `per_minute`/60 a second."""

    per_minute: int
    level: float
    updated: datetime

    def refill(self, now: datetime) -> None:
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.level = min(float(self.per_minute), self.level + elapsed * self.per_minute / 60.0)
        self.updated = max(self.updated, now)

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` (capped at a full bucket) is available; 0 if it is now."""
        needed = min(amount, float(self.per_minute)) - self.level
        return 0.0 if needed <= 0 else needed * 60.0 / self.per_minute

    def reset_at(self, now: datetime) -> datetime:
        missing = self.per_minute - self.level
        return now + timedelta(seconds=max(0.0, missing) * 60.0 / self.per_minute)


class ModelLimiter:
    """The three buckets of one model: requests, input tokens, output tokens."""

    KINDS = ("requests", "input-tokens", "output-tokens")

    def __init__(self, limit: RateLimit, now: datetime) -> None:
        sizes = (
            limit.requests_per_minute,
            limit.input_tokens_per_minute,
            limit.output_tokens_per_minute,
        )
        self.buckets = {
            kind: Bucket(size, float(size), now)
            for kind, size in zip(self.KINDS, sizes, strict=True)
            if size is not None
        }

    def admit(self, input_tokens: int, now: datetime) -> tuple[float, str | None]:
        """Take one request and its input tokens; or return the seconds to wait (> 0) and
        the limit that is exhausted ("requests", "input-tokens" or "output-tokens")."""
        for bucket in self.buckets.values():
            bucket.refill(now)
        wants = {"requests": 1.0, "input-tokens": float(input_tokens), "output-tokens": 1.0}
        waits = {k: b.wait_for(wants[k]) for k, b in self.buckets.items()}
        kind = max(waits, key=waits.__getitem__, default=None)
        if kind is not None and waits[kind] > 0:
            return waits[kind], kind
        for taken in ("requests", "input-tokens"):
            if taken in self.buckets:
                self.buckets[taken].level -= wants[taken]
        return 0.0, None

    def charge_output(self, output_tokens: int) -> None:
        if "output-tokens" in self.buckets:
            self.buckets["output-tokens"].level -= output_tokens

    def headers(self, now: datetime) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, bucket in self.buckets.items():
            prefix = f"anthropic-ratelimit-{kind}"
            remaining = max(0, math.floor(bucket.level))
            if kind != "requests":
                remaining = round(remaining, -3) if remaining >= 1000 else remaining
            out[f"{prefix}-limit"] = str(bucket.per_minute)
            out[f"{prefix}-remaining"] = str(remaining)
            out[f"{prefix}-reset"] = rfc3339(bucket.reset_at(now), micro=False)
        return out


def rfc3339(moment: datetime, *, micro: bool = True) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(fmt)
