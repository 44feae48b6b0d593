"""Pacing of the real-time path: a call starts only when the account's limits have room.

Per model class, three token buckets of the capacity in use (`guard.capacity`): requests,
input tokens and output tokens a minute. A call reserves one request, its estimated input
tokens (the guard's estimator, `prompt_tokens_estimate`) and its `max_tokens` of output (the
API, too, counts output against `max_tokens` until the call ends); its answer's usage then
gives back what it did not spend, or charges what it spent beyond. A 429's `retry-after`
pauses the class, and each answer's `remaining` lowers a bucket that thought it held more
(other processes share the account). No clock here: every method takes `now`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from nowait.guard.policy import Capacity
from nowait.ratelimits import RateLimits, TokenBucket
from nowait.types import Usage

if TYPE_CHECKING:
    from nowait.clock import Clock
    from nowait.store import Store

TOKEN_ROUNDING = 500
"""Token `remaining` headers are rounded to the nearest thousand: trust them within this."""


@dataclass(frozen=True)
class Reservation:
    """What one call took from its class's buckets."""

    model_class: str
    input_tokens: int
    output_tokens: int


class _Buckets:
    def __init__(self, capacity: Capacity, now: datetime) -> None:
        self.requests = TokenBucket(capacity.requests_per_minute, now)
        self.input = TokenBucket(capacity.input_tokens_per_minute, now)
        self.output = TokenBucket(capacity.output_tokens_per_minute, now)
        self.paused_until = now

    def all(self) -> tuple[TokenBucket, TokenBucket, TokenBucket]:
        return self.requests, self.input, self.output

    def fit(self, capacity: Capacity, now: datetime) -> None:
        sizes = (
            capacity.requests_per_minute,
            capacity.input_tokens_per_minute,
            capacity.output_tokens_per_minute,
        )
        for bucket, size in zip(self.all(), sizes, strict=True):
            bucket.refill(now)
            if bucket.per_minute != size:
                bucket.resize(size)


class Pacer:
    """Token buckets per model class. Thread-safe: answers settle from the call threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._classes: dict[str, _Buckets] = {}

    def reserve(
        self,
        model_class: str,
        capacity: Capacity,
        input_tokens: int,
        output_tokens: int,
        now: datetime,
    ) -> Reservation | float:
        """Take room for one call when every bucket has it now (a `Reservation`); otherwise
        take nothing and return the seconds until it will."""
        with self._lock:
            buckets = self._of(model_class, capacity, now)
            if buckets.paused_until > now:
                return (buckets.paused_until - now).total_seconds()
            wants = (1.0, float(input_tokens), float(output_tokens))
            wait = max(b.wait_for(w) for b, w in zip(buckets.all(), wants, strict=True))
            if wait > 0:
                return wait
            for bucket, amount in zip(buckets.all(), wants, strict=True):
                bucket.charge(amount)
            return Reservation(model_class, input_tokens, output_tokens)

    def settle(self, reservation: Reservation, usage: Usage) -> None:
        """Correct a reservation with the usage the answer reports (cache writes count as
        input, as the API counts them; cache reads do not)."""
        spent_in = usage.input_tokens + usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
        with self._lock:
            buckets = self._classes.get(reservation.model_class)
            if buckets is None:
                return
            buckets.input.charge(spent_in - reservation.input_tokens)
            buckets.output.charge(usage.output_tokens - reservation.output_tokens)

    def pause(
        self,
        model_class: str,
        capacity: Capacity,
        seconds: float,
        now: datetime,
        *,
        account: bool = True,
    ) -> None:
        """The API refused a call (429, 529): no call of the class starts for `seconds`.
        (`account`: whether the refusal was about the account's limit; one process pauses
        either way.)"""
        with self._lock:
            buckets = self._of(model_class, capacity, now)
            buckets.paused_until = max(buckets.paused_until, now + timedelta(seconds=seconds))

    def sync(self, model_class: str, capacity: Capacity, limits: RateLimits, now: datetime) -> None:
        """Lower each bucket to what the API says remains (never raise it: answers arrive out
        of order, and calls reserved here may not have reached the API yet)."""
        with self._lock:
            buckets = self._of(model_class, capacity, now)
            for bucket, limit, slack in (
                (buckets.requests, limits.requests, 0),
                (buckets.input, limits.input_tokens, TOKEN_ROUNDING),
                (buckets.output, limits.output_tokens, TOKEN_ROUNDING),
            ):
                if limit is not None and limit.remaining is not None:
                    bucket.level = min(bucket.level, float(limit.remaining + slack))

    def _of(self, model_class: str, capacity: Capacity, now: datetime) -> _Buckets:
        buckets = self._classes.get(model_class)
        if buckets is None:
            buckets = self._classes[model_class] = _Buckets(capacity, now)
        else:
            buckets.fit(capacity, now)
        return buckets


class SharedPacer:
    """The fleet's pacer (a store several workers share, `Store.fleet`): the same buckets,
    kept in the store, so the workers together stay within the account's limits. Each method
    is one store call; the clock dates the calls that get no `now`.

    A 429 (the account's limit, which the fleet shares) pauses every worker; a 529 (the API
    overloaded: not the account's doing) pauses the worker that got it, as it would pause a
    process of its own. Were a 529 to pause the fleet, N workers would draw N times the 529s
    and each would stop them all: 2% 529s with a 0.1 s `retry-after` idle 4 workers 27% of
    the time, 1 worker 8%."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._sizes: dict[str, Sizes] = {}
        self._lock = threading.Lock()
        self._paused: dict[str, datetime] = {}
        """Until when this worker starts no call of a class (a 529's `retry-after`)."""

    def reserve(
        self,
        model_class: str,
        capacity: Capacity,
        input_tokens: int,
        output_tokens: int,
        now: datetime,
    ) -> Reservation | float:
        if mine := self.paused_here(model_class, now):  # no store call while this worker waits
            return mine
        sizes = self._sizes[model_class] = _sizes(capacity)
        wants = (1.0, float(input_tokens), float(output_tokens))
        wait = self._store.take_budget(model_class, sizes, wants, now)
        return wait if wait > 0 else Reservation(model_class, input_tokens, output_tokens)

    def paused_here(self, model_class: str, now: datetime) -> float:
        """Seconds this worker's own pause of the class (a 529's) still runs, 0.0: none."""
        with self._lock:
            paused = self._paused.get(model_class)
        return max(0.0, (paused - now).total_seconds()) if paused is not None else 0.0

    def settle(self, reservation: Reservation, usage: Usage) -> None:
        sizes = self._sizes.get(reservation.model_class)
        if sizes is None:
            return
        spent_in = usage.input_tokens + usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
        charges = (
            0.0,
            float(spent_in - reservation.input_tokens),
            float(usage.output_tokens - reservation.output_tokens),
        )
        self._store.adjust_budget(reservation.model_class, sizes, charges, self._clock.now())

    def pause(
        self,
        model_class: str,
        capacity: Capacity,
        seconds: float,
        now: datetime,
        *,
        account: bool = True,
    ) -> None:
        """`account`: the whole fleet pauses (a 429); else this worker alone (a 529)."""
        until = now + timedelta(seconds=seconds)
        if account:
            self._store.pause_budget(model_class, until)
            return
        with self._lock:
            self._paused[model_class] = max(until, self._paused.get(model_class, until))

    def sync(self, model_class: str, capacity: Capacity, limits: RateLimits, now: datetime) -> None:
        levels = tuple(
            None if one is None or one.remaining is None else float(one.remaining + slack)
            for one, slack in (
                (limits.requests, 0),
                (limits.input_tokens, TOKEN_ROUNDING),
                (limits.output_tokens, TOKEN_ROUNDING),
            )
        )
        self._store.lower_budget(
            model_class, _sizes(capacity), (levels[0], levels[1], levels[2]), now
        )


Sizes = tuple[float, float, float]


def _sizes(capacity: Capacity) -> Sizes:
    return (
        float(capacity.requests_per_minute),
        float(capacity.input_tokens_per_minute),
        float(capacity.output_tokens_per_minute),
    )
