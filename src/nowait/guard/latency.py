"""How long a cancel and a real-time call take, learned from the store's history. Pure.

The fallback moment (`policy.fallback_start`) is the deadline less the margin, the cancel
latency and the real-time run of the work left. Both latencies are learned like turnaround
(`forecast.py`): the history's quantile once there is enough of it, the settings until then
(`guard.cancel_latency`, `capacity.seconds_per_request`: the prior).

The plan takes the **95th percentile** (`PLAN_QUANTILE`) of each. A cancel slower than
planned, or a wave of calls slower than planned, eats into the margin; planning at p95 leaves
the margin only the tail beyond it (1 in 20), where the median would spend it on every other
cancel. A higher quantile buys little: with a few dozen samples p99 is the slowest one ever
seen, so a single outlier would move every plan, and the margin is there for that tail.

Cancel latency: from the cancel call to the batch's `ended` (in-flight requests finish
meanwhile). Call duration: by model and output size (a call's time is mostly its output), the
nearest bucket with enough samples, then the model's, then every call's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from nowait.guard.policy import Capacity, GuardConfig

PLAN_QUANTILE = 0.95
"""The quantile of cancel latency and call duration the guard plans with (see above)."""
MIN_CANCELS = 10
"""Cancels seen before their history replaces the prior: the guard cancels rarely."""
MIN_CALLS = 20
OUTPUT_BUCKETS = (256, 1_024, 4_096, 16_384)
"""Output-token bounds of the call-duration buckets; larger outputs share the last bucket."""


def output_bucket(tokens: int) -> int:
    """The smallest bucket bound at or above `tokens` (the largest beyond them all)."""
    for bound in OUTPUT_BUCKETS:
        if tokens <= bound:
            return bound
    return OUTPUT_BUCKETS[-1] * 4


def _nearest_rank(values: tuple[float, ...], q: float) -> float:
    """Never below an observed value that often happened (as the turnaround forecast)."""
    rank = max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))
    return values[rank]


@dataclass(frozen=True)
class Learned:
    """One duration: the quantile of what history saw, or the prior until `min_samples`."""

    prior: float
    samples: tuple[float, ...] = ()
    """Seconds, sorted."""
    min_samples: int = MIN_CALLS
    what: str = ""
    """What the samples are, for `source` ("cancels", "claude-x calls of up to 1,024 …")."""

    @property
    def learned(self) -> bool:
        return len(self.samples) >= self.min_samples

    def seconds(self, q: float = PLAN_QUANTILE) -> float:
        return _nearest_rank(self.samples, q) if self.learned else self.prior

    def source(self) -> str:
        if self.learned:
            return f"p{round(PLAN_QUANTILE * 100)} of {len(self.samples):,} {self.what}"
        return f"the setting ({len(self.samples)} of {self.min_samples} {self.what} seen)"


@dataclass(frozen=True)
class CallSample:
    model: str
    output_tokens: int
    seconds: float


@dataclass(frozen=True)
class Latencies:
    """What the guard plans a fallback with: cancel latency and call duration."""

    cancel: Learned = field(default_factory=lambda: Learned(120.0, (), MIN_CANCELS, "cancels"))
    call_prior: float = 20.0
    calls: dict[tuple[str, int], tuple[float, ...]] = field(default_factory=dict)
    """Sorted seconds by (model, output bucket); bucket 0: every call of the model; model
    "": every call."""
    min_calls: int = MIN_CALLS

    def call(self, model: str, output_tokens: int) -> Learned:
        """The call duration for one call of `model` writing up to `output_tokens`."""
        bucket = output_bucket(output_tokens)
        keys = ((model, bucket), (model, 0), ("", 0))
        names = (f"{model} calls of up to {bucket:,} output tokens", f"{model} calls", "calls")
        for key, what in zip(keys, names, strict=True):
            samples = self.calls.get(key, ())
            if len(samples) >= self.min_calls:
                return Learned(self.call_prior, samples, self.min_calls, what)
        return Learned(self.call_prior, self.calls.get((model, 0), ()), self.min_calls, names[1])

    def plan(
        self, capacity: Capacity, guard: GuardConfig, model: str, output_tokens: int
    ) -> tuple[Capacity, GuardConfig]:
        """`capacity` and `guard` with the learned latencies in place of the settings, for
        work on `model` writing up to `output_tokens` per request."""
        seconds = self.call(model, output_tokens).seconds()
        cancel = timedelta(seconds=self.cancel.seconds())
        return (
            replace(capacity, seconds_per_request=seconds),
            replace(guard, cancel_latency=cancel),
        )


def learn(
    cancels: Iterable[float],
    calls: Iterable[CallSample],
    capacity: Capacity,
    guard: GuardConfig,
    *,
    min_cancels: int = MIN_CANCELS,
    min_calls: int = MIN_CALLS,
) -> Latencies:
    """Latencies from history (seconds of each cancel; each call), with the settings as the
    prior: `guard.cancel_latency` and `capacity.seconds_per_request`."""
    grouped: dict[tuple[str, int], list[float]] = {}
    for call in calls:
        for key in (
            (call.model, output_bucket(call.output_tokens)),
            (call.model, 0),
            ("", 0),
        ):
            grouped.setdefault(key, []).append(call.seconds)
    cancel = Learned(
        guard.cancel_latency.total_seconds(),
        tuple(sorted(max(0.0, s) for s in cancels)),
        min_cancels,
        "cancels",
    )
    return Latencies(
        cancel,
        capacity.seconds_per_request,
        {k: tuple(sorted(v)) for k, v in grouped.items()},
        min_calls,
    )


def prior(capacity: Capacity, guard: GuardConfig) -> Latencies:
    """No history: the settings alone."""
    return learn((), (), capacity, guard)
