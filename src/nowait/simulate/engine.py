"""Replay a trace on a virtual clock for five routing policies, and score each.

Shared, so every policy faces the same world: batches form per model in fixed windows
(submitted at the window's end), each batch's turnaround is drawn once from the turnaround
model, and each request finishes at its own point inside its batch's turnaround. Real time
is a FIFO server per model paced by the rate limits (requests, input and output tokens per
minute), each call taking `seconds_per_request`. Money is integer units of 1e-10 USD from the
price table: exact, and fast enough for millions of requests.

    all-realtime   everything real time
    all-batch      everything in batches, no guard
    fixed-buffer   batch all but awaited work; N minutes before a deadline an unfinished batch
                   is cancelled and all its requests re-run one at a time (finished work is
                   discarded and paid twice) - what firming does
    nowait         forecast the turnaround; real time when no batch fits; at the latest safe
                   moment cancel, keep what finished, run the rest in parallel
    oracle         knows every batch's turnaround: batches exactly the requests it would land
                   in time; the best any policy can do
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from nowait.errors import InputError
from nowait.policy import (
    Capacity,
    GuardConfig,
    WorkLeft,
    deadline_class,
    fallback_start,
    realtime_duration,
    worth_batching,
)
from nowait.pricing import PriceTable, default_table
from nowait.simulate.trace import TraceRequest
from nowait.turnaround import Turnaround

UNIT = Decimal("1e-10")  # USD
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRY = 24 * 3600.0
POLICIES = ("all-realtime", "all-batch", "fixed-buffer", "nowait", "oracle")


@dataclass(frozen=True)
class SimConfig:
    turnaround: Turnaround = field(default_factory=lambda: Turnaround(20 * 60, 3 * 3600))
    batch_window: float = 300.0
    capacity: Capacity = field(
        default_factory=lambda: Capacity(4_000, 2_000_000, 400_000, 64, 15.0)
    )
    guard: GuardConfig = field(default_factory=GuardConfig)
    fixed_buffer: float = 600.0
    seed: int = 1
    forecast: Turnaround | None = None
    """What nowait believes about turnaround; None: the true model, as if learned from
    history (the store's forecast converges to it)."""


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
    batch_submit: list[float]
    batch_turnaround: list[float]
    batch_members: list[list[int]]
    model_index: list[int]
    models: list[str]


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
    factor = table.batch_discount
    rt_cost, batch_cost, batch_of, frac = [], [], [], []
    keys: dict[tuple[int, int], int] = {}
    submit: list[float] = []
    turnaround: list[float] = []
    members: list[list[int]] = []
    for i, r in enumerate(requests):
        rin, rout = rates[r.model]
        cost = r.input_tokens * rin + r.output_tokens * rout
        rt_cost.append(cost)
        batch_cost.append(int(Decimal(cost) * factor))
        window = int(r.t // config.batch_window)
        key = (index[r.model], window)
        b = keys.get(key)
        if b is None:
            b = keys[key] = len(submit)
            submit.append((window + 1) * config.batch_window)
            rng = random.Random(_seed(config.seed, r.model, window))
            turnaround.append(config.turnaround.draw(rng))
            members.append([])
        batch_of.append(b)
        members[b].append(i)
        frac.append(_unit_hash(config.seed, i))
    return _World(
        requests,
        rt_cost,
        batch_cost,
        batch_of,
        frac,
        submit,
        turnaround,
        members,
        [index[r.model] for r in requests],
        models,
    )


def _seed(seed: int, model: str, window: int) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"{seed}:{model}:{window}".encode(), digest_size=8).digest()
    )


def _unit_hash(seed: int, i: int) -> float:
    x = (i * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
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
    """Real-time calls through a FIFO server per model, paced by the rate limits."""
    free = [0.0] * len(world.models)
    per_request = 60.0 / capacity.requests_per_minute
    per_in = 60.0 / capacity.input_tokens_per_minute
    per_out = 60.0 / capacity.output_tokens_per_minute
    latency = capacity.seconds_per_request
    outcome.realtime.sort()
    for ready, _, i in outcome.realtime:
        r = world.requests[i]
        m = world.model_index[i]
        start = ready if ready > free[m] else free[m]
        free[m] = start + max(per_request, r.input_tokens * per_in, r.output_tokens * per_out)
        outcome.done[i] = start + latency
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


# ---- the policies ---------------------------------------------------------------------------
def all_realtime(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    for i, r in enumerate(world.requests):
        outcome.run_realtime(r.t, i)
    return outcome


def all_batch(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    for i in range(len(world.requests)):
        done = _finish(world, i)
        b = world.batch_of[i]
        if done - world.batch_submit[b] <= EXPIRY:
            outcome.in_batch(world, i, done)
        else:  # expired after 24 h: re-run in real time, late
            outcome.run_realtime(world.batch_submit[b] + EXPIRY, i)
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
        end = submit + min(turnaround, EXPIRY)
        if end <= cancel:
            for i in batch:
                outcome.in_batch(world, i, _finish(world, i))
            continue
        # Cancel and re-run every request serially; what finished is discarded (paid twice).
        start = max(cancel, submit)
        for order, i in enumerate(batch):
            if _finish(world, i) <= start:
                outcome.cost += world.batch_cost[i]
                outcome.paid_twice += 1
            outcome.run_realtime(start + order * config.capacity.seconds_per_request, i, order)
    return outcome


def nowait(world: _World, config: SimConfig) -> _Outcome:
    outcome = _Outcome(len(world.requests))
    guard, capacity = config.guard, config.capacity
    chance = (config.forecast or config.turnaround).probability_within
    for b, members in enumerate(world.batch_members):
        submit = world.batch_submit[b]
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
                if worth_batching(_at(submit), due, alone, capacity, guard, chance):
                    groups.setdefault(deadline_class(r.t + r.deadline - submit), []).append(i)
                else:
                    outcome.run_realtime(r.t, i)
        for group in groups.values():  # one batch per deadline class: a near deadline
            _guarded_batch(world, outcome, config, b, group)  # never cancels far ones
    return outcome


def _deadline_of(world: _World, i: int) -> float:
    r = world.requests[i]
    return r.t + r.deadline if r.deadline is not None else math.inf


def _guarded_batch(
    world: _World, outcome: _Outcome, config: SimConfig, b: int, batch: list[int]
) -> None:
    submit, turnaround = world.batch_submit[b], world.batch_turnaround[b]
    requests = [world.requests[i] for i in batch]
    work = WorkLeft(
        len(batch), sum(r.input_tokens for r in requests), sum(r.output_tokens for r in requests)
    )
    earliest = min(_deadline_of(world, i) for i in batch)
    cancel = (
        _secs(fallback_start(_at(earliest), work, config.capacity, config.guard))
        if earliest < math.inf
        else math.inf
    )
    end = submit + min(turnaround, EXPIRY)
    if end <= cancel:
        for i in batch:
            if _finish(world, i) - submit <= EXPIRY:
                outcome.in_batch(world, i, _finish(world, i))
            else:
                outcome.run_realtime(submit + EXPIRY, i)
        return
    ended = max(cancel, submit) + config.guard.cancel_latency.total_seconds()
    for i in batch:  # keep what finished (paid once, at batch price); run the rest now
        if _finish(world, i) <= ended:
            outcome.in_batch(world, i, _finish(world, i))
        else:
            outcome.run_realtime(ended, i)


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
