"""The sorting framework: where a workload belongs, and what moving it saves. Pure.

One question decides: is a person or a process waiting on this specific result before it can
proceed? `classify` answers it from a workload's facts (declared in a worksheet, or inferred from
logs by the analyzer) and says why in plain words. `price_move` prices the answer, stacking the
batch discount with prompt caching (discounts multiply, they do not add).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from nowait.sort.pricing import CostBreakdown, PriceTable, cost_of_totals
from nowait.types import Tier, Usage


class Verdict(StrEnum):
    REALTIME = "realtime"
    BATCH = "batch"
    SPLIT = "split"  # a fast part someone waits on + a deferred part nobody waits on
    REVIEW = "review"  # triggered by a user but maybe not awaited by one: a person should check


class Trigger(StrEnum):
    """What starts the work."""

    USER_ACTION = "user_action"  # a click, a message, an upload
    SCHEDULE = "schedule"  # cron, nightly, weekly
    QUEUE = "queue"  # a message or job queue consumer
    PIPELINE = "pipeline"  # a data pipeline / ETL step
    EVENT = "event"  # a webhook or system event
    BACKFILL = "backfill"  # one-off backlog processing
    AGENT = "agent"  # a step of an agent loop


class Waiter(StrEnum):
    """Who waits on this specific result before they can proceed."""

    PERSON = "person"
    PROCESS = "process"
    NOBODY = "nobody"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Facts:
    """What is known about a workload's latency needs."""

    trigger: Trigger | None = None
    waiter: Waiter = Waiter.UNKNOWN
    needed_within: timedelta | None = None  # how soon the result is needed; None: no deadline
    has_deferred_part: bool = False  # an immediate part someone waits on + a part read later
    feeds_next_step: bool = False  # an agent loop: this result is the next call's input


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reasons: tuple[str, ...]


# A batch cannot be counted on for work needed sooner than this: most batches end within an hour
# and the API promises only 24 h. Between this and 24 h, the deadline guard falls back in time.
REALTIME_WITHIN = timedelta(hours=1)
BATCH_WINDOW = timedelta(hours=24)
_UNATTENDED = {Trigger.SCHEDULE, Trigger.PIPELINE, Trigger.BACKFILL, Trigger.QUEUE}


def classify(  # noqa: PLR0911 (a decision table: one return per rule)
    facts: Facts, *, realtime_within: timedelta = REALTIME_WITHIN
) -> Classification:
    """Sort one workload: realtime, batch, split or review, with the reasons."""
    if facts.feeds_next_step or facts.trigger is Trigger.AGENT:
        return Classification(
            Verdict.REALTIME,
            ("agent loop: each result feeds the next step, so the loop waits on it",),
        )
    if facts.has_deferred_part and facts.waiter in (Waiter.PERSON, Waiter.PROCESS):
        return Classification(
            Verdict.SPLIT,
            (
                f"a {facts.waiter.value} waits on the immediate part: keep it real-time",
                "nobody waits on the deferred part: send it to the batch API",
            ),
        )
    if facts.waiter is Waiter.PERSON:
        return Classification(Verdict.REALTIME, ("a person waits on this result",))
    if facts.waiter is Waiter.PROCESS:
        return Classification(Verdict.REALTIME, ("a process waits on this result to proceed",))
    deadline = _deadline_reason(facts.needed_within, realtime_within)
    if deadline is not None and deadline[0] is Verdict.REALTIME:
        return Classification(Verdict.REALTIME, (deadline[1],))
    window = () if deadline is None else (deadline[1],)
    if facts.waiter is Waiter.NOBODY:
        why = "nobody waits on this result"
        if facts.trigger is Trigger.USER_ACTION:
            why = "triggered by a user, but nobody waits on the result"
        return Classification(Verdict.BATCH, (why, *window))
    # Nobody said who waits.
    if facts.trigger is Trigger.USER_ACTION:
        return Classification(
            Verdict.REVIEW,
            (
                "triggered by a user action, but it is not known whether the user waits",
                "check whether the result is shown at once or read later",
            ),
        )
    if facts.trigger in _UNATTENDED:
        assert facts.trigger is not None
        return Classification(
            Verdict.BATCH,
            (f"{_TRIGGER_WORDS[facts.trigger]}: nobody watches it run", *window),
        )
    return Classification(
        Verdict.REVIEW, ("not known who waits on this result; answer that to sort it",)
    )


_TRIGGER_WORDS = {
    Trigger.SCHEDULE: "runs on a schedule",
    Trigger.PIPELINE: "a pipeline step",
    Trigger.BACKFILL: "backlog processing",
    Trigger.QUEUE: "consumed from a queue",
}


def _deadline_reason(
    needed_within: timedelta | None, realtime_within: timedelta
) -> tuple[Verdict, str] | None:
    if needed_within is None:
        return None
    if needed_within < realtime_within:
        return (
            Verdict.REALTIME,
            f"needed within {human_duration(needed_within)}: a batch is not sure to land that "
            f"soon (most end within an hour, up to 24 h)",
        )
    if needed_within < BATCH_WINDOW:
        return (
            Verdict.BATCH,
            f"needed within {human_duration(needed_within)}: a batch fits, and the deadline "
            "guard finishes a late one in real time",
        )
    return (
        Verdict.BATCH,
        f"needed within {human_duration(needed_within)}: the 24 h batch limit fits",
    )


def human_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        hours = seconds / 3600
        return f"{hours:g} h" if hours == int(hours) else f"{hours:.1f} h"
    return f"{seconds / 86400:.1f} days".replace(".0 days", " days")


# --- money ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """A month of one workload part's calls on one model."""

    model: str
    requests: int
    usage: Usage  # monthly totals


@dataclass(frozen=True)
class MoveCost:
    """A workload's monthly cost now, after the move to batch, and with caching on top.

    `current` is everything real-time as the traffic is today. `after_batch` moves the parts
    nobody waits on to the batch tier. `after_cache` also serves the cacheable share of their
    input from the prompt cache. `None` where a model has no price.
    """

    current: Decimal | None
    after_batch: Decimal | None
    after_cache: Decimal | None
    batchable_current: Decimal | None  # today's cost of the parts that can move

    @property
    def saved(self) -> Decimal | None:
        if self.current is None or self.after_cache is None:
            return None
        return self.current - self.after_cache

    @property
    def saved_by_batch(self) -> Decimal | None:
        if self.current is None or self.after_batch is None:
            return None
        return self.current - self.after_batch

    @property
    def saved_by_cache(self) -> Decimal | None:
        if self.after_batch is None or self.after_cache is None:
            return None
        return self.after_batch - self.after_cache


def with_cache_share(traffic: Traffic, share: Decimal) -> Traffic:
    """The same traffic with `share` of its prompt served as cache reads (writes kept as they are).

    A share at or below today's changes nothing: caching is only ever added.
    """
    usage = traffic.usage
    cacheable = usage.input_tokens + usage.cache_read_tokens
    target_reads = int(Decimal(usage.prompt_tokens) * share)
    reads = min(max(target_reads, usage.cache_read_tokens), cacheable)
    moved = reads - usage.cache_read_tokens
    return Traffic(
        traffic.model,
        traffic.requests,
        Usage(
            input_tokens=usage.input_tokens - moved,
            output_tokens=usage.output_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            cache_read_tokens=reads,
        ),
    )


def traffic_cost(traffic: Traffic, tier: Tier, table: PriceTable | None = None) -> Decimal | None:
    breakdown = traffic_breakdown(traffic, tier, table)
    return None if breakdown is None else breakdown.total


def traffic_breakdown(
    traffic: Traffic, tier: Tier, table: PriceTable | None = None
) -> CostBreakdown | None:
    return cost_of_totals(traffic.usage, traffic.requests, traffic.model, tier, table)


def _sum(*amounts: Decimal | None) -> Decimal | None:
    if any(a is None for a in amounts):
        return None
    return sum((a for a in amounts if a is not None), Decimal(0))


def price_move(
    verdict: Verdict,
    immediate: Traffic,
    deferred: Traffic | None = None,
    *,
    cache_share_after: Decimal | None = None,
    table: PriceTable | None = None,
) -> MoveCost:
    """Price a workload before and after acting on its verdict.

    `immediate` is the whole workload, or for a split its awaited part; `deferred` is a split's
    part nobody waits on. Only batch workloads and deferred parts move; realtime and review work
    stays where it is. `cache_share_after` is the share of every part's prompt that would be served
    from the prompt cache; on moved parts it stacks on the batch discount, so the two multiply.
    """
    parts = [immediate] if deferred is None else [immediate, deferred]
    current = _sum(*(traffic_cost(p, Tier.STANDARD, table) for p in parts))
    if verdict is Verdict.BATCH:
        moving, staying = [immediate, *([deferred] if deferred else [])], []
    elif verdict is Verdict.SPLIT and deferred is not None:
        moving, staying = [deferred], [immediate]
    else:
        moving, staying = [], parts
    batched = _sum(
        *(traffic_cost(p, Tier.STANDARD, table) for p in staying),
        *(traffic_cost(p, Tier.BATCH, table) for p in moving),
    )
    if cache_share_after is None:
        cached = batched
    else:
        cached = _sum(
            *(
                traffic_cost(with_cache_share(p, cache_share_after), Tier.STANDARD, table)
                for p in staying
            ),
            *(
                traffic_cost(with_cache_share(p, cache_share_after), Tier.BATCH, table)
                for p in moving
            ),
        )
    batchable = _sum(*(traffic_cost(p, Tier.STANDARD, table) for p in moving))
    return MoveCost(current, batched, cached, batchable)
