"""Pure routing decisions. No I/O, no clock: `now` is passed in.

The deadline guard refines these with a learned turnaround forecast (`forecast.py`); the router
calls `choose_route` for every submitted request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nowait.models import Decision, Route


@dataclass(frozen=True)
class RouteRequest:
    """What the policy sees of one request."""

    awaited: bool
    deadline: datetime | None = None
    model: str = ""
    prompt_tokens: int = 0
    max_output_tokens: int = 0


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "the past"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


# ---- retries and polling (pure) ------------------------------------------------------------
RETRYABLE_ERROR_TYPES = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
)


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 5
    """Attempts per request, the first included; then the last error is reported."""
    base_delay: float = 2.0
    """Seconds before the first retry; doubles each time."""
    max_delay: float = 600.0


@dataclass(frozen=True)
class PollConfig:
    first: float = 10.0
    """Seconds after creation before the first poll."""
    factor: float = 1.5
    longest: float = 120.0


def line_verdict(kind: str, error_type: str | None) -> str:
    """What to do with a batch result line: "succeeded", "retry" or "failed"."""
    if kind == "succeeded":
        return "succeeded"
    if kind in ("expired", "canceled"):
        return "retry"
    return "retry" if error_type in RETRYABLE_ERROR_TYPES else "failed"


def retry_at(
    attempts: int, now: datetime, retry_after: float | None, config: RetryConfig
) -> datetime | None:
    """When to try again after `attempts` failed tries; None once the cap is reached.

    The API's `retry-after` is a floor, never shortened by the backoff.
    """
    if attempts >= config.max_attempts:
        return None
    backoff = min(config.max_delay, config.base_delay * 2 ** max(0, attempts - 1))
    return now + timedelta(seconds=max(backoff, retry_after or 0.0))


def next_poll(interval: float, config: PollConfig) -> float:
    """The next polling interval after one of `interval` seconds (0: the first)."""
    return config.first if interval <= 0 else min(config.longest, interval * config.factor)


# ---- the deadline guard (pure) -------------------------------------------------------------
@dataclass(frozen=True)
class Capacity:
    """What the account can run in real time, per model: its rate limits and concurrency."""

    requests_per_minute: float = 50.0
    input_tokens_per_minute: float = 50_000.0
    output_tokens_per_minute: float = 10_000.0
    concurrency: int = 8
    seconds_per_request: float = 20.0
    """How long one real-time call takes (mostly output generation)."""


@dataclass(frozen=True)
class WorkLeft:
    requests: int
    input_tokens: int
    output_tokens: int


def realtime_duration(work: WorkLeft, capacity: Capacity) -> timedelta:
    """How long `work` takes in real time, in parallel, within every limit at once."""
    if work.requests == 0:
        return timedelta(0)
    minutes = max(
        work.requests / capacity.requests_per_minute,
        work.input_tokens / capacity.input_tokens_per_minute,
        work.output_tokens / capacity.output_tokens_per_minute,
    )
    waves = math.ceil(work.requests / max(1, capacity.concurrency))
    return timedelta(seconds=max(minutes * 60, waves * capacity.seconds_per_request))


@dataclass(frozen=True)
class GuardConfig:
    confidence: float = 0.95
    """Quantile of the turnaround forecast a batch must fit in."""
    margin: timedelta = timedelta(minutes=10)
    cancel_latency: timedelta = timedelta(minutes=2)
    """From the cancel call to `ended` (in-flight requests finish meanwhile)."""
    min_batch_chance: float = 0.2
    """Try a batch when at least this share of batches would end before the fallback moment:
    trying costs nothing (cancelled requests are not billed, finished ones are kept)."""


def fallback_start(
    deadline: datetime, work: WorkLeft, capacity: Capacity, config: GuardConfig
) -> datetime:
    """The latest moment to cancel a batch and still finish its work in real time in time."""
    return deadline - config.margin - config.cancel_latency - realtime_duration(work, capacity)


def worth_batching(
    now: datetime,
    deadline: datetime,
    work: WorkLeft,
    capacity: Capacity,
    config: GuardConfig,
    chance_within: Callable[[float], float],
) -> bool:
    """Batch when the guard can still fall back in time and the batch has a fair chance
    (`chance_within(seconds)`: the forecast's probability of ending within that long) of
    ending before the fallback moment. The deadline holds either way: the guard sees to it."""
    room = (fallback_start(deadline, work, capacity, config) - now).total_seconds()
    return room > 0 and chance_within(room) >= config.min_batch_chance


def fall_back_now(
    now: datetime, deadline: datetime, work: WorkLeft, capacity: Capacity, config: GuardConfig
) -> bool:
    return now >= fallback_start(deadline, work, capacity, config)


def decide_route(
    request: RouteRequest,
    now: datetime,
    capacity: Capacity,
    guard: GuardConfig,
    chance_within: Callable[[float], float],
) -> Decision:
    """The one routing decision: real time when someone waits, or when no batch has a fair
    chance to end before the moment the guard would have to fall back; batch otherwise (the
    guard then makes the deadline either way)."""
    if request.awaited:
        return Decision(Route.REALTIME, ("a person or process is waiting on this result",))
    if request.deadline is None:
        return Decision(Route.BATCH, ("nobody waits and there is no deadline",))
    work = WorkLeft(1, request.prompt_tokens, request.max_output_tokens)
    room = fallback_start(request.deadline, work, capacity, guard) - now
    if room <= timedelta(0):
        return Decision(
            Route.REALTIME,
            (
                f"deadline in {_human(request.deadline - now)} "
                "leaves no time for a batch and a fallback",
            ),
        )
    chance = chance_within(room.total_seconds())
    if chance < guard.min_batch_chance:
        return Decision(
            Route.REALTIME,
            (f"only {chance:.0%} of batches end within the {_human(room)} before a fallback",),
        )
    return Decision(
        Route.BATCH,
        (
            f"nobody waits; {chance:.0%} of batches end within {_human(room)}, and the guard "
            "finishes the rest in real time before the deadline",
        ),
    )


def deadline_class(seconds_left: float | None) -> int:
    """Batches are packed by how far their deadlines are (-1: none; then doubling hours), so
    one guard moment suits every request in a batch and a near deadline never cancels far ones."""
    if seconds_left is None:
        return -1
    return int(math.log2(max(1.0, seconds_left / 3600)))
