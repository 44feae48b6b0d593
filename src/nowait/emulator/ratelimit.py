"""Token-bucket rate limits of the real-time API, per model, on emulated time."""

from __future__ import annotations

import math
from datetime import datetime

from nowait.emulator.config import RateLimit
from nowait.ratelimits import KINDS, TokenBucket


class ModelLimiter:
    """The three buckets of one model: requests, input tokens, output tokens."""

    KINDS = KINDS

    def __init__(self, limit: RateLimit, now: datetime) -> None:
        sizes = (
            limit.requests_per_minute,
            limit.input_tokens_per_minute,
            limit.output_tokens_per_minute,
        )
        self.buckets = {
            kind: TokenBucket(size, now)
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
                self.buckets[taken].charge(wants[taken])
        return 0.0, None

    def charge_output(self, output_tokens: int) -> None:
        if "output-tokens" in self.buckets:
            self.buckets["output-tokens"].charge(output_tokens)

    def headers(self, now: datetime) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, bucket in self.buckets.items():
            prefix = f"anthropic-ratelimit-{kind}"
            remaining = max(0, math.floor(bucket.level))
            if kind != "requests":
                remaining = round(remaining, -3) if remaining >= 1000 else remaining
            out[f"{prefix}-limit"] = str(int(bucket.per_minute))
            out[f"{prefix}-remaining"] = str(remaining)
            out[f"{prefix}-reset"] = rfc3339(bucket.reset_at(now), micro=False)
        return out


def rfc3339(moment: datetime, *, micro: bool = True) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(fmt)
