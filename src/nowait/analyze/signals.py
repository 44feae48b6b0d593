"""Was anyone waiting? From a workload's signals to the sorting framework's facts, with the
evidence in plain words and a confidence. Pure: the numbers come from the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from nowait.sort.classify import (
    REALTIME_WITHIN,
    Classification,
    Facts,
    Trigger,
    Verdict,
    Waiter,
    classify,
    human_duration,
)


@dataclass(frozen=True)
class Signals:
    """Shares are of the workload's requests (0..1); `None` where nothing could be known."""

    requests: int
    streamed: float | None  # of the requests whose streaming is known
    ttft_recorded: float
    with_user: float
    http: float
    queue: float
    cron: float
    script: float
    tool_use: float
    batch_tier: float
    peak_two_hours: float  # share of requests in the busiest two hours of the day
    days: int  # distinct days with traffic
    per_request: bool  # False for aggregated (Admin API) buckets: no context at all
    stream_unknown: float = 0.0  # requests whose producer did not say whether they streamed
    peak_hour: float = 0.0  # share of requests in the busiest hour of the day
    peak_start: int | None = None  # UTC hour the busiest two (or one) hours start at
    # What the caller told nowait (its own results and store; 0 for every other producer).
    awaited_known: float = 0.0
    awaited: float = 0.0
    with_deadline: float = 0.0
    short_deadline: float = 0.0  # a deadline sooner than a batch can be counted on
    shortest_deadline_s: float | None = None


@dataclass(frozen=True)
class Inference:
    facts: Facts
    classification: Classification
    confidence: str  # high | medium | low
    evidence: tuple[str, ...]
    already_batched: bool = False


def _schedule(s: Signals) -> str:
    """Where the day's requests bunch, as the arrivals chart shows it: one hour when the
    busiest hour holds (nearly) all of the busiest two, else two hours."""
    if s.peak_hour >= 0.95 * s.peak_two_hours:
        at = f" ({s.peak_start:02d}:00 UTC)" if s.peak_start is not None else ""
        return f"{_pct(s.peak_hour)} arrive in the same hour every day{at}"
    at = (
        f" ({s.peak_start:02d}:00–{(s.peak_start + 2) % 24:02d}:00 UTC)"
        if s.peak_start is not None
        else ""
    )
    return f"{_pct(s.peak_two_hours)} arrive in the same two hours every day{at}"


def _pct(share: float) -> str:
    return f"{share:.0%}"


def told(s: Signals) -> Inference | None:
    """What the caller told nowait, the strongest evidence there is: `awaited: true` means
    someone waits; a deadline sooner than a batch can be counted on means real time; and
    `awaited: false` on every request means nobody waits. None when nowait was told nothing."""
    if s.awaited >= 0.5:
        why = f"{_pct(s.awaited)} are marked awaited: true (nowait's own records): someone waits"
        facts = Facts(None, Waiter.PERSON)
        done = Classification(Verdict.REALTIME, ("the caller said someone waits on the result",))
        return Inference(facts, done, "high", (why,))
    within = (
        timedelta(seconds=max(0.0, s.shortest_deadline_s))
        if s.shortest_deadline_s is not None
        else None
    )
    if s.short_deadline >= 0.5 and within is not None:
        why = (
            f"{_pct(s.short_deadline)} carry a deadline under {human_duration(REALTIME_WITHIN)}"
            f" (nowait's own records; the shortest {human_duration(within)})"
        )
        facts = Facts(None, Waiter.NOBODY, needed_within=within)
        return Inference(facts, classify(facts), "high", (why,))
    if s.awaited_known >= 0.9 and s.awaited == 0:
        evidence = ["every request is marked awaited: false (nowait's own records): nobody waits"]
        if within is not None:
            evidence.append(f"{_pct(s.with_deadline)} carry a deadline (the shortest "
                            f"{human_duration(within)}): the deadline guard keeps it")  # fmt: skip
        facts = Facts(Trigger.PIPELINE, Waiter.NOBODY, needed_within=within)
        return Inference(facts, classify(facts), "high", tuple(evidence))
    return None


def infer(s: Signals) -> Inference:  # noqa: PLR0911, PLR0912 (a decision table)
    if (by_caller := told(s)) is not None:
        return by_caller
    evidence: list[str] = []
    if s.batch_tier >= 0.9:
        why = f"{_pct(s.batch_tier)} already runs on the batch tier"
        facts = Facts(Trigger.PIPELINE, Waiter.NOBODY)
        done = Classification(Verdict.BATCH, ("already at batch price: nothing left to move",))
        return Inference(facts, done, "high", (why,), True)
    if not s.per_request:
        facts = Facts(None, Waiter.UNKNOWN)
        why = "aggregated usage only (no per-request context): say who waits to sort it"
        return Inference(facts, classify(facts), "low", (why,))
    if s.tool_use >= 0.3:
        evidence.append(f"{_pct(s.tool_use)} of calls end in tool_use: an agent loop")
        facts = Facts(Trigger.AGENT, Waiter.PROCESS, feeds_next_step=True)
        return Inference(facts, classify(facts), "high", tuple(evidence))
    streamed = s.streamed or 0.0
    interactive = streamed >= 0.8 or (s.ttft_recorded >= 0.8 and s.with_user >= 0.5)
    if streamed >= 0.2:
        evidence.append(f"{_pct(streamed)} of calls stream")
    # Said only where the verdict leans on "does not stream" (not for a cron job, say).
    unknown = (
        f"{_pct(s.stream_unknown)} do not say whether they stream (OpenLLMetry, for one, "
        "records nothing for messages.stream()): check them before moving"
        if s.stream_unknown >= 0.2
        else None
    )
    if s.ttft_recorded >= 0.2:
        evidence.append(f"time to first token recorded on {_pct(s.ttft_recorded)}")
    if s.with_user >= 0.2:
        evidence.append(f"{_pct(s.with_user)} carry a user or session id")
    if 0.2 <= streamed < 0.8 and s.http >= 0.5:
        evidence.append("a streamed part and a non-streamed part: someone waits on one only")
        evidence.extend([unknown] if unknown else [])
        facts = Facts(Trigger.USER_ACTION, Waiter.PERSON, has_deferred_part=True)
        return Inference(facts, classify(facts), "medium", tuple(evidence))
    if interactive:
        if s.http >= 0.5:
            evidence.append(f"{_pct(s.http)} run inside an HTTP request handler")
        facts = Facts(Trigger.USER_ACTION, Waiter.PERSON)
        return Inference(facts, classify(facts), "high", tuple(evidence))
    scheduled = s.cron >= 0.5 or (s.peak_two_hours >= 0.6 and s.days >= 3 and s.with_user < 0.2)
    if scheduled:
        if s.cron >= 0.5:
            evidence.append(f"{_pct(s.cron)} run in a cron job (k8s CronJob or timer trigger)")
        if s.peak_two_hours >= 0.6:
            evidence.append(f"{_schedule(s)}: a schedule")
        facts = Facts(Trigger.SCHEDULE, Waiter.NOBODY)
        return Inference(
            facts, classify(facts), "high" if s.cron >= 0.5 else "medium", tuple(evidence)
        )
    if s.queue >= 0.5:
        evidence.append(f"{_pct(s.queue)} run in a queue consumer: no caller holds the line")
        facts = Facts(Trigger.QUEUE, Waiter.UNKNOWN)
        return Inference(facts, classify(facts), "medium", tuple(evidence))
    if s.script >= 0.5:
        evidence.append(f"{_pct(s.script)} come from a script or batch job")
        facts = Facts(Trigger.BACKFILL, Waiter.UNKNOWN)
        return Inference(facts, classify(facts), "medium", tuple(evidence))
    if s.http >= 0.5:
        evidence.append(
            f"{_pct(s.http)} run inside an HTTP handler but "
            f"{'are not recorded as streaming' if s.stream_unknown >= 0.5 else 'do not stream'}"
            ": a user triggers them, maybe without waiting"
        )
        evidence.extend([unknown] if unknown else [])
        facts = Facts(Trigger.USER_ACTION, Waiter.UNKNOWN, needed_within=None)
        return Inference(facts, classify(facts), "low", tuple(evidence))
    evidence.append("no streaming, no user, no trigger context recorded")
    evidence.extend([unknown] if unknown else [])
    facts = Facts(None, Waiter.UNKNOWN)
    return Inference(facts, classify(facts), "low", tuple(evidence))
