"""Pure routing decisions. No I/O, no clock: `now` is passed in.

The router calls `decide_route` for every submitted request; its docstring states the deadline
guard's rule. The forecast (`forecast.py`) supplies the chance that a batch ends in time, and the
worker cancels at `fallback_start`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from nowait.types import Decision, OutcomeKind, ResultType, Route

if TYPE_CHECKING:
    from nowait.settings import Settings


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

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryConfig:
        retry = settings.retry
        return cls(
            retry.max_attempts, retry.base_delay.total_seconds(), retry.max_delay.total_seconds()
        )


@dataclass(frozen=True)
class PollConfig:
    first: float = 10.0
    """Seconds after creation before the first poll."""
    factor: float = 1.5
    longest: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PollConfig:
        """The longest interval is never below the first."""
        first = settings.poll.first.total_seconds()
        longest = max(first, settings.poll.longest.total_seconds())
        return cls(first, settings.poll.factor, longest)


def line_verdict(kind: ResultType, error_type: str | None) -> OutcomeKind:
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


RATE_LIMIT_STATUSES = frozenset({429, 529})
"""Rate limited, overloaded: the API says "not now", not "this request is wrong"."""
WAIT_HORIZON = timedelta(hours=24)
"""How long rate-limited work with no deadline keeps waiting (the batch API's own window)."""


def wait_retry_at(
    attempts: int, now: datetime, retry_after: float | None, give_up_at: datetime,
    config: RetryConfig,
) -> datetime | None:  # fmt: skip
    """When to try again after a 429 or 529: a wait, not a failure, so no attempt cap. The
    API's `retry-after` is a floor; the backoff doubles from `base_delay` up to a minute (the
    limits' window: by then every bucket has refilled). None when that try would start at or
    after `give_up_at` (the deadline): only then is waiting pointless."""
    backoff = min(60.0, config.base_delay * 2 ** min(max(0, attempts - 1), 10))
    when = now + timedelta(seconds=max(backoff, retry_after or 0.0))
    return None if when >= give_up_at else when


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

    @classmethod
    def from_settings(cls, settings: Settings) -> Capacity:
        c = settings.capacity
        return cls(
            c.requests_per_minute,
            c.input_tokens_per_minute,
            c.output_tokens_per_minute,
            c.concurrency,
            c.seconds_per_request,
        )


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
    """The deadline guard's settings. The rule they feed is `decide_route`'s."""

    margin: timedelta = timedelta(minutes=10)
    """Slack kept between the planned end of a fallback and the deadline: it absorbs what the
    plan does not know (slower calls, a slower cancel, other real-time work, polling)."""
    cancel_latency: timedelta = timedelta(minutes=2)
    """From the cancel call to `ended` (in-flight requests finish meanwhile)."""
    min_batch_chance: float = 0.2
    """Try a batch when at least this share of batches (by the forecast) ends before the
    fallback moment. The deadline does not depend on it: the fallback makes it either way.
    What a lower value costs is real-time load moved to fallback moments, where it meets other
    work; a higher one gives up savings."""

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardConfig:
        g = settings.guard
        return cls(g.margin, g.cancel_latency, g.min_batch_chance)


def competing_work(own: WorkLeft, others: Iterable[WorkLeft]) -> WorkLeft:
    """The real-time work a batch's fallback must make room for: its own, and that of the
    same model's other open batches (or fallbacks) whose deadlines come no later. The
    real-time queue serves earlier deadlines first, so a fallback planned for its own work
    alone would be late whenever several batches fall back together (overnight reports all
    due at 08:00); counting them spreads their fallbacks over the time they need."""
    total = own
    for work in others:
        total = WorkLeft(
            total.requests + work.requests,
            total.input_tokens + work.input_tokens,
            total.output_tokens + work.output_tokens,
        )
    return total


def fallback_start(
    deadline: datetime, work: WorkLeft, capacity: Capacity, config: GuardConfig
) -> datetime:
    """The latest moment to cancel a batch and still finish its work in real time in time:
    the deadline, less the margin, the cancel latency and the real-time run of `work`."""
    return deadline - config.margin - config.cancel_latency - realtime_duration(work, capacity)


def fallback_among(
    deadline: datetime,
    work: WorkLeft,
    others: Callable[[datetime], Iterable[WorkLeft]],
    capacity: Capacity,
    config: GuardConfig,
) -> datetime:
    """`fallback_start` for a batch whose fallback shares the account with other open work:
    `others(moment)` is the same model's work still open at `moment` and due after it, no
    later than `deadline` (`competing_work`). Counting it moves the moment earlier, which can
    bring more work into view; a few rounds settle it."""
    moment = fallback_start(deadline, work, capacity, config)
    for _ in range(4):
        earlier = fallback_start(deadline, competing_work(work, others(moment)), capacity, config)
        if earlier >= moment:
            break
        moment = earlier
    return moment


def batch_chance(
    now: datetime,
    deadline: datetime,
    work: WorkLeft,
    capacity: Capacity,
    config: GuardConfig,
    chance_within: Callable[[float], float],
) -> tuple[timedelta, float]:
    """The room before the fallback moment, and the forecast's chance (`chance_within(seconds)`:
    P(turnaround <= seconds)) that a batch created now ends within it; 0 without room."""
    room = fallback_start(deadline, work, capacity, config) - now
    if room <= timedelta(0):
        return room, 0.0
    return room, chance_within(room.total_seconds())


def worth_batching(
    now: datetime,
    deadline: datetime,
    work: WorkLeft,
    capacity: Capacity,
    config: GuardConfig,
    chance_within: Callable[[float], float],
) -> bool:
    """Whether `decide_route` would batch this work: there is room for a fallback, and the
    batch has at least `min_batch_chance` of ending before it."""
    room, chance = batch_chance(now, deadline, work, capacity, config, chance_within)
    return room > timedelta(0) and chance >= config.min_batch_chance


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
    """The one routing decision, and the deadline guard's rule.

    1. Someone waits on the result: real time.
    2. Nobody waits and there is no deadline: batch.
    3. A deadline: find the fallback moment (`fallback_start`: the deadline less the margin,
       the cancel latency and the request's real-time run within the account's capacity).
       If it has passed, no batch can be guarded: real time. nowait does not bet a deadline
       on a batch alone, however likely the forecast says it is to end in time.
    4. Otherwise the deadline is met with or without the batch: either the batch ends before
       the fallback moment, or the guard cancels it then, keeps every finished result (paid
       once, at batch price) and runs the rest in real time, planned to end `margin` before
       the deadline. So a batch is tried even when its chance is modest: cancelled requests
       are not billed. Only below `min_batch_chance` does the request go real time now, where
       it would otherwise have added to the real-time load at the fallback moment.

    There is no confidence level to configure: given room for a fallback, the plan meets the
    deadline with certainty under the account's capacity, and `margin` covers the difference
    between that plan and the real world (the simulator measures it against a noisy world).
    """
    if request.awaited:
        return Decision(Route.REALTIME, ("a person or process is waiting on this result",))
    if request.deadline is None:
        return Decision(Route.BATCH, ("nobody waits and there is no deadline",))
    work = WorkLeft(1, request.prompt_tokens, request.max_output_tokens)
    room, chance = batch_chance(now, request.deadline, work, capacity, guard, chance_within)
    if room <= timedelta(0):
        return Decision(
            Route.REALTIME,
            (
                f"deadline in {_human(request.deadline - now)} "
                "leaves no time for a batch and a fallback",
            ),
        )
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
