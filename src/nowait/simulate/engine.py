"""Replay a trace on a virtual clock for five routing policies, and score each.

The world, shared so every policy faces the same one:

- batches form per model in fixed windows (submitted at the window's end); each batch's
  turnaround is drawn once from the turnaround model, and each request finishes at its own
  point inside it (a seeded hash, or `SimConfig.finish_fractions` for traces worked by hand);
- results are seen when the batch has ended, at the worker's next poll (`SimConfig.poll`);
- a cancel takes the world's own time to reach `ended` (`cancel_seconds`, ± `noise`), in
  which in-flight requests still finish;
- real time is, per model, a first-come-first-served server with `capacity.concurrency`
  slots, starts paced by the rate limits (requests, input and output tokens per minute), each
  call taking the world's own time (`call_seconds`, ± `noise`). Every policy's real-time
  calls share it: awaited work and the fallbacks of several batches meet there (nowait's
  plan counts the same model's open batches due no later, not awaited work);
- nowait plans with cancel latency and call duration learned (`guard.latency`: p95) from a
  history of the same world (`history_cancels` cancels and `history_calls` calls, drawn with
  their own seed, not this run's draws), as the store's history teaches `nowait run`; with
  `SimConfig.latencies` set (`--prior`), with those instead: the settings, no learning.

Money is integer units of 1e-10 USD from the price table: exact, and fast for millions of
requests.

    all-realtime   everything real time
    all-batch      everything in batches, no guard
    fixed-buffer   batch all but awaited work; N minutes before a deadline an unfinished batch
                   is cancelled and all its requests re-run one at a time (finished work is
                   discarded and paid twice) - what firming does
    nowait         `policy.decide_route`'s rule with a forecast; at the latest safe moment
                   cancel, keep what finished, run the rest in parallel
    oracle         knows where every request finishes: batches exactly the requests that land
                   in time, each seen the moment it finishes (an upper bound for any policy)
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from nowait.errors import InputError
from nowait.guard.latency import CallSample, Latencies, learn, output_bucket
from nowait.guard.policy import (
    Capacity,
    GuardConfig,
    PollConfig,
    WorkLeft,
    deadline_class,
    fallback_among,
    next_poll,
    realtime_duration,
    worth_batching,
)
from nowait.guard.turnaround import Turnaround
from nowait.simulate.trace import TraceRequest
from nowait.sort.pricing import PriceTable, default_table

if TYPE_CHECKING:
    from nowait.settings import Settings

UNIT = Decimal("1e-10")  # USD
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRY = 24 * 3600.0
POLICIES = ("all-realtime", "all-batch", "fixed-buffer", "nowait", "oracle")


@dataclass(frozen=True)
class SimConfig:
    turnaround: Turnaround = field(default_factory=lambda: Turnaround(20 * 60, 3 * 3600))
    """The world's batch turnaround."""
    batch_window: float = 300.0
    capacity: Capacity = field(default_factory=Capacity)
    """The account's real-time limits: the world's server and the guard's plan share them,
    except the duration of a call (the world's is `call_seconds`). The default is `nowait
    run`'s (`Capacity()`), so a simulation describes the setup that runs."""
    guard: GuardConfig = field(default_factory=GuardConfig)
    fixed_buffer: float = 600.0
    seed: int = 1
    forecast: Turnaround | None = None
    """What nowait believes about turnaround; None: the true model, as if learned from
    history (the store's forecast converges to it)."""
    call_seconds: float = 15.0
    """How long one real-time call takes in the world."""
    cancel_seconds: float = 180.0
    """How long a cancel takes to reach `ended` in the world."""
    noise: float = 0.5
    """Each call's and each batch's cancel duration is drawn uniformly (seeded) within ± this
    share of the above; 0: exactly the above."""
    poll: PollConfig | None = field(default_factory=PollConfig)
    """The worker's polling, from a batch's creation and again from a cancel: an ended batch
    is seen at the next poll. None: at once."""
    finish_fractions: Sequence[float] | None = None
    """Where each request (by its index in the trace) finishes inside its batch's turnaround,
    each in (0, 1]; None: a seeded hash. For traces worked by hand."""
    latencies: Latencies | None = None
    """What nowait plans cancels and calls with; None: learned from a history of this world
    (`history_cancels`, `history_calls`), as `nowait run` learns them from its store."""
    history_cancels: int = 200
    history_calls: int = 2_000

    @classmethod
    def from_settings(cls, settings: Settings, **world: Any) -> SimConfig:
        """What `nowait run` would do with these settings (capacity, guard, polling), in a
        world described by `world` (turnaround, call_seconds, ...)."""
        return cls(
            capacity=Capacity.from_settings(settings),
            guard=GuardConfig.from_settings(settings),
            poll=PollConfig.from_settings(settings),
            **world,
        )


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    cost: Decimal
    batched: int
    realtime: int
    paid_twice: int
    missed: int
    with_deadline: int
    p50_late: float
    p99_late: float


@dataclass
class _World:
    """Per-request and per-batch facts every policy shares (plain lists: fast loops)."""

    requests: Sequence[TraceRequest]
    rt_cost: list[int]
    batch_cost: list[int]
    batch_of: list[int]
    finish_frac: list[float]
    call: list[float]
    batch_submit: list[float]
    batch_turnaround: list[float]
    batch_cancel: list[float]
    batch_members: list[list[int]]
    model_index: list[int]
    models: list[str]
    seen: Callable[[float, float], float]
    """seen(polling_from, ended): when the worker sees a batch that ended at `ended`."""
    latencies: Latencies
    """What nowait plans cancels and calls with."""


def _units(rate: Decimal) -> int:
    value = rate * 10_000  # USD per million tokens → 1e-10 USD per token
    if value != value.to_integral_value():
        raise ValueError(f"rate {rate} is finer than the simulator's unit")
    return int(value)


def build_world(requests: Sequence[TraceRequest], config: SimConfig, table: PriceTable) -> _World:
    models = sorted({r.model for r in requests})
    index = {m: i for i, m in enumerate(models)}
    rates = {}
    for model in models:
        price = table.lookup(model)
        if price is None:
            raise InputError(f"the price table has no model {model!r}", field="model")
        rates[model] = (_units(price.rates.input), _units(price.rates.output))
    if config.finish_fractions is not None:
        frac = [float(f) for f in config.finish_fractions]
        if len(frac) != len(requests) or not all(0 < f <= 1 for f in frac):
            raise ValueError("finish_fractions needs one value in (0, 1] per request")
    else:
        frac = [_unit_hash(config.seed, i) for i in range(len(requests))]
    if not 0 <= config.noise < 1:
        raise ValueError("noise is a share in [0, 1)")
    spread = 2 * config.noise
    low = 1 - config.noise
    call = [
        config.call_seconds * (low + spread * _unit_hash(config.seed, i, salt=1))
        if spread
        else config.call_seconds
        for i in range(len(requests))
    ]
    num, den = table.batch_discount.as_integer_ratio()  # exact: int(Decimal(cost) * discount)
    rt_cost, batch_cost, batch_of = [], [], []
    keys: dict[tuple[int, int], int] = {}
    submit: list[float] = []
    turnaround: list[float] = []
    cancel: list[float] = []
    members: list[list[int]] = []
    for i, r in enumerate(requests):
        rin, rout = rates[r.model]
        cost = r.input_tokens * rin + r.output_tokens * rout
        rt_cost.append(cost)
        batch_cost.append(cost * num // den)
        window = int(r.t // config.batch_window)
        key = (index[r.model], window)
        b = keys.get(key)
        if b is None:
            b = keys[key] = len(submit)
            submit.append((window + 1) * config.batch_window)
            rng = random.Random(_seed(config.seed, r.model, window))
            turnaround.append(config.turnaround.draw(rng))
            cancel.append(config.cancel_seconds * (low + spread * rng.random()))
            members.append([])
        batch_of.append(b)
        members[b].append(i)
    return _World(
        requests,
        rt_cost,
        batch_cost,
        batch_of,
        frac,
        call,
        submit,
        turnaround,
        cancel,
        members,
        [index[r.model] for r in requests],
        models,
        _poller(config.poll),
        config.latencies or _learned_latencies(requests, config),
    )


def _learned_latencies(requests: Sequence[TraceRequest], config: SimConfig) -> Latencies:
    """Cancel latency and call duration learned from a history of this world: cancels and
    calls drawn from its distributions with a seed of their own (what earlier days taught the
    store), calls for requests picked from the trace (their model and output size)."""
    rng = random.Random(_seed(config.seed, "latency history", 0))
    low, spread = 1 - config.noise, 2 * config.noise
    cancels = [
        config.cancel_seconds * (low + spread * rng.random()) for _ in range(config.history_cancels)
    ]
    picked = rng.choices(requests, k=config.history_calls) if requests else []
    calls = [
        CallSample(r.model, r.output_tokens, config.call_seconds * (low + spread * rng.random()))
        for r in picked
    ]
    return learn(cancels, calls, config.capacity, config.guard)


class _Plans:
    """The capacity and guard nowait plans a request or batch with, by (model, output bucket)
    (latencies learned per model and output size); cached, as a trace repeats them."""

    def __init__(self, world: _World, config: SimConfig) -> None:
        self._latencies, self._config = world.latencies, config
        self._cache: dict[tuple[str, int], tuple[Capacity, GuardConfig]] = {}

    def __call__(self, model: str, output_tokens: int) -> tuple[Capacity, GuardConfig]:
        key = (model, output_bucket(output_tokens))
        plan = self._cache.get(key)
        if plan is None:
            plan = self._cache[key] = self._latencies.plan(
                self._config.capacity, self._config.guard, model, output_tokens
            )
        return plan


def _poller(poll: PollConfig | None) -> Callable[[float, float], float]:
    """seen(start, ended): the first poll at or after `ended` of polling begun at `start`
    (after `first`, intervals growing by `factor` up to `longest`)."""
    if poll is None:
        return lambda start, ended: ended
    offsets: list[float] = []
    at = interval = 0.0
    while True:
        step = next_poll(interval, poll)
        at += step
        offsets.append(at)
        if step >= poll.longest or step <= interval or len(offsets) >= 1_000:
            break
        interval = step
    step = max(1.0, next_poll(step, poll))  # the interval from then on
    last = offsets[-1]

    def seen(start: float, ended: float) -> float:
        after = ended - start
        if after <= last:
            return start + offsets[bisect.bisect_left(offsets, after)]
        return start + last + math.ceil((after - last) / step) * step

    return seen


def _seed(seed: int, model: str, window: int) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"{seed}:{model}:{window}".encode(), digest_size=8).digest()
    )


def _unit_hash(seed: int, i: int, salt: int = 0) -> float:
    x = (i * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9 + salt * 0xD6E8FEB86659FD93) & (
        0xFFFFFFFFFFFFFFFF
    )
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 29
    return max(1e-9, (x & 0xFFFFFFFFFFFF) / float(1 << 48))


class _Outcome:
    """Where each request ends up and when, and what it cost."""

    def __init__(self, n: int) -> None:
        self.done = [math.inf] * n
        self.cost = 0
        self.batched = 0
        self.paid_twice = 0
        self.realtime: list[tuple[float, int, int]] = []  # (ready, order, request) for the server

    def run_realtime(self, ready: float, i: int, order: int = 0) -> None:
        self.realtime.append((ready, order, i))

    def in_batch(self, world: _World, i: int, done: float) -> None:
        self.done[i] = done
        self.cost += world.batch_cost[i]
        self.batched += 1


def _serve(world: _World, outcome: _Outcome, capacity: Capacity) -> None:
    """Real-time calls through `concurrency` slots per model, their starts paced by the rate
    limits. Whenever a slot is free, the ready call with the earliest deadline starts (the
    store hands the worker due jobs in that order; no deadline: last); each call takes the
    world's time for it."""
    per_request = 60.0 / capacity.requests_per_minute
    per_in = 60.0 / capacity.input_tokens_per_minute
    per_out = 60.0 / capacity.output_tokens_per_minute
    requests, call, done = world.requests, world.call, outcome.done
    push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace
    queues: list[list[tuple[float, int, int]]] = [[] for _ in world.models]
    for item in outcome.realtime:
        queues[world.model_index[item[2]]].append(item)
    for queue in queues:
        queue.sort()
        slots = [0.0] * max(1, capacity.concurrency)  # a heap: when each slot is free
        free = 0.0  # when the rate limits next allow a start
        waiting: list[tuple[float, float, int, int]] = []  # (due, ready, order, request)
        k, n = 0, len(queue)
        while k < n or waiting:
            now = max(slots[0], free)
            if not waiting and queue[k][0] > now:
                now = queue[k][0]
            while k < n and queue[k][0] <= now:
                ready, order, i = queue[k]
                r = requests[i]
                due = r.t + r.deadline if r.deadline is not None else math.inf
                push(waiting, (due, ready, order, i))
                k += 1
            i = pop(waiting)[3]
            r = requests[i]
            end = now + call[i]
            replace(slots, end)
            free = now + max(per_request, r.input_tokens * per_in, r.output_tokens * per_out)
            done[i] = end
            outcome.cost += world.rt_cost[i]


def _score(name: str, world: _World, outcome: _Outcome) -> PolicyResult:
    late: list[float] = []
    missed = 0
    for i, r in enumerate(world.requests):
        if r.deadline is None:
            continue
        lateness = max(0.0, outcome.done[i] - (r.t + r.deadline))
        late.append(lateness)
        missed += lateness > 0
    late.sort()
    p50 = late[len(late) // 2] if late else 0.0
    p99 = late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0
    return PolicyResult(
        name, Decimal(outcome.cost) * UNIT, outcome.batched, len(outcome.realtime),
        outcome.paid_twice, missed, len(late), p50, p99,
    )  # fmt: skip


def _finish(world: _World, i: int) -> float:
    b = world.batch_of[i]
    return world.batch_submit[b] + world.finish_frac[i] * world.batch_turnaround[b]


def _settle(world: _World, outcome: _Outcome, batch: list[int], ended: float, seen: float) -> None:
    """A batch reached `ended` and the worker saw it at `seen`: what finished by then is
    kept at batch price, the rest runs in real time from `seen`."""
    for i in batch:
        if _finish(world, i) <= ended:
            outcome.in_batch(world, i, seen)
        else:
            outcome.run_realtime(seen, i)


def _ends(world: _World, outcome: _Outcome, b: int, batch: list[int]) -> None:
    """Batch `b` (these of its requests) runs to its end: every result is seen then; what
    had not finished after 24 h expired and is re-run in real time."""
    submit = world.batch_submit[b]
    end = submit + min(world.batch_turnaround[b], EXPIRY)
    _settle(world, outcome, batch, end, world.seen(submit, end))


# ---- the policies ---------------------------------------------------------------------------
def all_realtime(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    for i, r in enumerate(world.requests):
        outcome.run_realtime(r.t, i)
    return outcome


def all_batch(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    for b, members in enumerate(world.batch_members):
        _ends(world, outcome, b, members)
    return outcome


def fixed_buffer(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    for b, members in enumerate(world.batch_members):
        batch = [i for i in members if not world.requests[i].awaited]
        for i in members:
            if world.requests[i].awaited:
                outcome.run_realtime(world.requests[i].t, i)
        if not batch:
            continue
        submit, turnaround = world.batch_submit[b], world.batch_turnaround[b]
        cancel = min(_deadline_of(world, i) for i in batch) - config.fixed_buffer
        if submit + min(turnaround, EXPIRY) <= cancel:
            _ends(world, outcome, b, batch)
            continue
        # Cancel and re-run every request serially, each call once the one before has
        # returned. What finished before `ended` is billed and discarded: paid twice.
        start = max(cancel, submit)
        ended = start + world.batch_cancel[b]
        ready = start
        for order, i in enumerate(batch):
            if _finish(world, i) <= ended:
                outcome.cost += world.batch_cost[i]
                outcome.paid_twice += 1
            outcome.run_realtime(ready, i, order)
            ready += world.call[i]
    return outcome


def nowait(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    plans = _Plans(world, config)
    chance = (config.forecast or config.turnaround).probability_within
    guarded: list[_Guarded] = []
    for b, members in enumerate(world.batch_members):
        submit = world.batch_submit[b]
        now = _at(submit)
        groups: dict[int, list[int]] = {}
        for i in members:
            r = world.requests[i]
            if r.awaited:
                outcome.run_realtime(r.t, i)
            elif r.deadline is None:
                groups.setdefault(-1, []).append(i)
            else:
                alone = WorkLeft(1, r.input_tokens, r.output_tokens)
                due = _at(r.t + r.deadline)
                capacity, guard = plans(r.model, r.output_tokens)
                if worth_batching(now, due, alone, capacity, guard, chance):
                    groups.setdefault(deadline_class(r.t + r.deadline - submit), []).append(i)
                else:
                    outcome.run_realtime(r.t, i)
        for group in groups.values():  # one batch per deadline class: a near deadline
            guarded.append(_guard(world, plans, b, group))  # never cancels far ones
    for g, cancel in zip(guarded, _cancel_moments(guarded), strict=True):
        _guarded_batch(world, outcome, g, cancel)
    return outcome


def _deadline_of(world: _World, i: int) -> float:
    r = world.requests[i]
    return r.t + r.deadline if r.deadline is not None else math.inf


@dataclass(frozen=True, slots=True)
class _Guarded:
    """One batch nowait guards: its requests, earliest deadline, work and plan."""

    b: int
    members: list[int]
    model: int
    deadline: float
    work: WorkLeft
    capacity: Capacity
    guard: GuardConfig
    submit: float
    end: float
    """When it ends if not cancelled."""


def _guard(
    world: _World,
    plans: Callable[[str, int], tuple[Capacity, GuardConfig]],
    b: int,
    batch: list[int],
) -> _Guarded:
    requests = [world.requests[i] for i in batch]
    work = WorkLeft(
        len(batch), sum(r.input_tokens for r in requests), sum(r.output_tokens for r in requests)
    )
    capacity, guard = plans(requests[0].model, work.output_tokens // work.requests)
    submit = world.batch_submit[b]
    return _Guarded(
        b, batch, world.model_index[batch[0]], min(_deadline_of(world, i) for i in batch), work,
        capacity, guard, submit, submit + min(world.batch_turnaround[b], EXPIRY),
    )  # fmt: skip


def _cancel_moments(guarded: Sequence[_Guarded]) -> list[float]:
    """Each batch's fallback moment as the worker finds it (`policy.fallback_among`): its own
    work, and that of the model's other batches open at that moment whose deadlines come no
    later (the real-time queue serves them first)."""
    by_model: dict[int, list[_Guarded]] = {}
    for g in guarded:
        if g.deadline < math.inf:
            by_model.setdefault(g.model, []).append(g)
    moments: dict[int, float] = {}
    for group in by_model.values():
        group.sort(key=lambda g: g.deadline)
        deadlines = [g.deadline for g in group]
        for g in group:

            def others(
                moment: datetime,
                g: _Guarded = g,
                group: list[_Guarded] = group,
                deadlines: list[float] = deadlines,
            ) -> list[WorkLeft]:
                at = _secs(moment)
                lo = bisect.bisect_right(deadlines, at)
                hi = bisect.bisect_right(deadlines, g.deadline)
                return [h.work for h in group[lo:hi] if h is not g and h.submit <= at < h.end]

            moment = fallback_among(_at(g.deadline), g.work, others, g.capacity, g.guard)
            moments[id(g)] = _secs(moment)
    return [moments.get(id(g), math.inf) for g in guarded]


def _guarded_batch(world: _World, outcome: _Outcome, g: _Guarded, cancel: float) -> None:
    if g.end <= cancel:
        _ends(world, outcome, g.b, g.members)
        return
    # Cancel at the fallback moment; the batch reaches `ended` in the world's cancel time and
    # is seen at the next poll. Keep what finished (paid once, at batch price); run the rest.
    start = max(cancel, g.submit)
    ended = start + world.batch_cancel[g.b]
    _settle(world, outcome, g.members, ended, world.seen(start, ended))


def oracle(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    for i, r in enumerate(world.requests):
        done = _finish(world, i)
        in_time = r.deadline is None or done <= r.t + r.deadline
        if not r.awaited and in_time and done - world.batch_submit[world.batch_of[i]] <= EXPIRY:
            outcome.in_batch(world, i, done)
        else:
            outcome.run_realtime(r.t, i)
    return outcome


def _at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _secs(moment: datetime) -> float:
    return (moment - EPOCH).total_seconds()


RUNNERS: dict[str, Callable[[_World, SimConfig], _Outcome]] = {
    "all-realtime": all_realtime,
    "all-batch": all_batch,
    "fixed-buffer": fixed_buffer,
    "nowait": nowait,
    "oracle": oracle,
}


def simulate(
    requests: Sequence[TraceRequest],
    config: SimConfig | None = None,
    table: PriceTable | None = None,
    policies: Sequence[str] = POLICIES,
) -> list[PolicyResult]:
    config = config or SimConfig()
    world = build_world(requests, config, table or default_table())
    results = []
    for name in policies:
        outcome = RUNNERS[name](world, config)
        _serve(world, outcome, config.capacity)
        results.append(_score(name, world, outcome))
    return results


__all__ = ["POLICIES", "PolicyResult", "SimConfig", "realtime_duration", "simulate"]
