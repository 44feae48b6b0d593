"""The guard's plan for one open batch, in full, for people (`nowait status`). Pure.

It answers why nowait will or will not wait: when the batch is forecast to end (p50, p95),
when the guard cancels it at the latest (the fallback moment), and what that moment assumes
(the capacity, the cancel latency and call duration and where they were learned, the margin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nowait.guard.forecast import Forecast
from nowait.guard.latency import Latencies
from nowait.guard.policy import (
    Capacity,
    GuardConfig,
    WorkLeft,
    competing_work,
    deadline_class,
    fallback_among,
    realtime_duration,
)


def _nothing(moment: datetime) -> list[WorkLeft]:
    return []


@dataclass(frozen=True)
class FallbackPlan:
    deadline: datetime
    deadline_class: int
    requests: int
    created_at: datetime | None
    """None: not sent yet (the forecast counts from `now`)."""
    finish_p50: datetime
    finish_p95: datetime
    chance: float
    """The forecast's chance that the batch ends before the fallback moment."""
    fallback_at: datetime
    realtime: timedelta
    """How long the work left takes in real time within `capacity`, with the work of other
    batches due first (`shared_requests` of them)."""
    shared_requests: int
    capacity: Capacity
    cancel_latency: timedelta
    cancel_source: str
    call_seconds: float
    call_source: str
    margin: timedelta
    turnaround_source: str

    def verdict(self, now: datetime) -> str:
        """Why nowait waits, or does not, in one sentence."""
        if now >= self.fallback_at:
            return (
                "the fallback moment has passed: the guard cancels and runs the rest in real time"
            )
        if self.finish_p95 <= self.fallback_at:
            return "waits: 95% of batches like it end before the fallback moment"
        return (
            f"waits: {self.chance:.0%} of batches like it end before the fallback moment; "
            f"if it has not ended by then, the guard cancels it and runs the rest in real time"
        )


def plan_fallback(
    *,
    deadline: datetime,
    work: WorkLeft,
    model: str,
    created_at: datetime | None,
    capacity: Capacity,
    guard: GuardConfig,
    latencies: Latencies,
    forecast: Forecast,
    now: datetime,
    others: Callable[[datetime], Iterable[WorkLeft]] = _nothing,
) -> FallbackPlan:
    """The plan the worker follows for a batch of `work` on `model` due at `deadline`: the
    same `fallback_among` (`others` as there) with the same learned latencies."""
    per_request = work.output_tokens // max(1, work.requests)
    planned_capacity, planned_guard = latencies.plan(capacity, guard, model, per_request)
    start = created_at or now
    fallback = fallback_among(deadline, work, others, planned_capacity, planned_guard)
    shared = competing_work(work, others(fallback))
    room = (fallback - start).total_seconds()
    chance = forecast.probability_within(room, model, work.requests, start) if room > 0 else 0.0
    return FallbackPlan(
        deadline=deadline,
        deadline_class=deadline_class((deadline - start).total_seconds()),
        requests=work.requests,
        created_at=created_at,
        finish_p50=start + forecast.quantile(0.5, model, work.requests, start),
        finish_p95=start + forecast.quantile(0.95, model, work.requests, start),
        chance=chance,
        fallback_at=fallback,
        realtime=realtime_duration(shared, planned_capacity),
        shared_requests=shared.requests - work.requests,
        capacity=planned_capacity,
        cancel_latency=planned_guard.cancel_latency,
        cancel_source=latencies.cancel.source(),
        call_seconds=planned_capacity.seconds_per_request,
        call_source=latencies.call(model, per_request).source(),
        margin=planned_guard.margin,
        turnaround_source=forecast.source(model, work.requests, start),
    )
