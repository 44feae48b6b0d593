"""What prompt caching does to the shared prefixes of a trace's batched requests, under each
cache policy and the oracle (pure; the same world as the routing policies).

The requests are those nobody awaits (the ones a batch can take), in the world's batches: one
per model and window, each request running at its own point of the batch's turnaround. The
rules are the API's, as the emulator models them: a cache entry lives 5 minutes or 1 hour from
its last use (a read refreshes it); batch requests run in parallel, so no request reads what
another request of its own batch writes; a prefix under `CACHE_MIN_TOKENS` is never cached.

    no planning      nowait adds no marker (`cache = "off"` on unmarked prompts): every prefix
                     is fresh input
    grouping only    the prefix carries the user's 5-minute marker, its requests grouped in
                     the same batches (`cache = "keep"`): each request writes unless an entry
                     of an earlier batch still lives
    grouping + 1h + priming
                     `cache = "auto"`: where planning pays (`cacheplan.plans`), one request
                     primes the prefix with a 1-hour write before its batch and the rest read
                     it; a live 1-hour entry from an earlier batch is read without priming; a
                     request that runs after the entry lapsed writes it again
    oracle           knows every use in advance: one write per run of uses no more than an
                     hour apart (5-minute when no gap of the run passes 5 minutes, else
                     1-hour; none for a use alone) and reads for the rest, batches or not
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from nowait.route.cacheplan import CACHE_MIN_TOKENS, Group, plans
from nowait.simulate.engine import SimConfig, _finish, _World, build_world
from nowait.simulate.trace import TraceRequest
from nowait.sort.pricing import MILLION, PriceTable, Rates, default_table
from nowait.types import Tier

FIVE_MINUTES = 300.0
ONE_HOUR = 3600.0
CACHE_POLICIES = ("no planning", "grouping only", "grouping + 1h + priming", "oracle")


@dataclass(frozen=True)
class CacheResult:
    """The prefix tokens of one cache policy, billed by kind, and their cost at batch price."""

    policy: str
    requests: int
    fresh: int
    writes_5m: int
    writes_1h: int
    reads: int
    cost: Decimal

    @property
    def hit_rate(self) -> Decimal | None:
        """Prefix tokens read from the cache over all prefix tokens (the receipts' hit rate,
        counted on the prefixes)."""
        total = self.fresh + self.writes_5m + self.writes_1h + self.reads
        return Decimal(self.reads) / total if total else None


@dataclass
class _Tally:
    fresh: int = 0
    writes_5m: int = 0
    writes_1h: int = 0
    reads: int = 0

    def priced(self, rates: Rates) -> Decimal:
        return (
            self.fresh * rates.input
            + self.writes_5m * rates.cache_write_5m
            + self.writes_1h * rates.cache_write_1h
            + self.reads * rates.cache_read
        ) / MILLION


Key = tuple[str, str]  # (model, prefix)


def simulate_cache(
    requests: Sequence[TraceRequest],
    config: SimConfig | None = None,
    table: PriceTable | None = None,
) -> list[CacheResult]:
    """Each cache policy on the trace's prefixed requests nobody awaits; [] when none has a
    prefix."""
    config, table = config or SimConfig(), table or default_table()
    if not any(_batchable(r) for r in requests):
        return []
    world = build_world(requests, config, table)
    rates = {m: _batch_rates(table, m) for m in world.models}
    batches = _batches(world)
    runs = (
        ("no planning", _no_planning(world, batches)),
        ("grouping only", _grouping_only(world, batches)),
        ("grouping + 1h + priming", _primed(world, batches, rates)),
        ("oracle", _oracle(world, batches)),
    )
    count = sum(len(members) for _, members in batches)
    return [_result(name, count, tallies, rates) for name, tallies in runs]


def _batch_rates(table: PriceTable, model: str) -> Rates:
    price, factor = table.lookup(model), table.tier_factor(Tier.BATCH)
    assert price is not None and factor is not None  # build_world refused unpriced models
    return price.rates.scaled(factor)


def _result(
    name: str, count: int, tallies: dict[str, _Tally], rates: dict[str, Rates]
) -> CacheResult:
    cost = sum((t.priced(rates[m]) for m, t in tallies.items()), Decimal(0))
    parts = list(tallies.values())
    return CacheResult(
        name, count, sum(t.fresh for t in parts), sum(t.writes_5m for t in parts),
        sum(t.writes_1h for t in parts), sum(t.reads for t in parts), cost,
    )  # fmt: skip


def _batches(world: _World) -> list[tuple[int, list[int]]]:
    """Each batch's prefixed requests nobody awaits, by finish time; batches by submit time."""
    out = []
    for b, members in enumerate(world.batch_members):
        mine = [i for i in members if _batchable(world.requests[i])]
        if mine:
            out.append((b, sorted(mine, key=lambda i: _finish(world, i))))
    return sorted(out, key=lambda x: world.batch_submit[x[0]])


def _batchable(r: TraceRequest) -> bool:
    return r.prefix is not None and not r.awaited


def _key(world: _World, i: int) -> Key:
    r = world.requests[i]
    return (r.model, r.prefix or "")


def _cacheable(world: _World, i: int) -> bool:
    return world.requests[i].prefix_tokens >= CACHE_MIN_TOKENS


def _tally(tallies: dict[str, _Tally], world: _World, i: int) -> tuple[_Tally, int]:
    r = world.requests[i]
    return tallies.setdefault(r.model, _Tally()), r.prefix_tokens


def _no_planning(world: _World, batches: list[tuple[int, list[int]]]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {}
    for _, members in batches:
        for i in members:
            tally, tokens = _tally(tallies, world, i)
            tally.fresh += tokens
    return tallies


def _grouping_only(world: _World, batches: list[tuple[int, list[int]]]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {}
    expiry: dict[Key, float] = {}  # entries written by earlier batches
    for _, members in batches:
        written: dict[Key, float] = {}  # this batch's writes: no request of it reads them
        for i in members:
            tally, tokens = _tally(tallies, world, i)
            key, at = _key(world, i), _finish(world, i)
            if not _cacheable(world, i):
                tally.fresh += tokens
            elif expiry.get(key, -1.0) >= at:
                tally.reads += tokens
                expiry[key] = at + FIVE_MINUTES
            else:
                tally.writes_5m += tokens
                written[key] = max(written.get(key, 0.0), at + FIVE_MINUTES)
        for key, until in written.items():
            expiry[key] = max(expiry.get(key, 0.0), until)
    return tallies


def _primed(
    world: _World, batches: list[tuple[int, list[int]]], rates: dict[str, Rates]
) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {}
    expiry: dict[Key, float] = {}
    for b, members in batches:
        submit = world.batch_submit[b]
        groups: dict[Key, list[int]] = {}
        for i in members:
            groups.setdefault(_key(world, i), []).append(i)
        for key, group in groups.items():
            tokens = max(world.requests[i].prefix_tokens for i in group)
            plan = Group(key[0], key[1], tokens, 1, tuple(group))
            live = expiry.get(key, -1.0) >= submit
            if not live and not plans(plan, rates[key[0]], "auto"):
                for i in group:
                    tally, own = _tally(tallies, world, i)
                    tally.fresh += own
                continue
            rest = group
            if not live:  # the primer, written before the batch runs
                expiry[key] = submit + ONE_HOUR
                tally, own = _tally(tallies, world, group[0])
                tally.writes_1h += own
                rest = group[1:]
            _read_or_write(world, tallies, expiry, key, rest)
    return tallies


def _read_or_write(
    world: _World,
    tallies: dict[str, _Tally],
    expiry: dict[Key, float],
    key: Key,
    group: list[int],
) -> None:
    """A marked group's requests, in finish order: each reads while the 1-hour entry lives
    (and renews it); once it has lapsed, the rest of the batch writes again (none reads what
    its own batch writes)."""
    lapsed = 0.0
    for i in group:
        tally, own = _tally(tallies, world, i)
        at = _finish(world, i)
        if not lapsed and expiry[key] >= at:
            tally.reads += own
            expiry[key] = at + ONE_HOUR
        else:
            tally.writes_1h += own
            lapsed = max(lapsed, at + ONE_HOUR)
    if lapsed:
        expiry[key] = max(expiry[key], lapsed)


def _oracle(world: _World, batches: list[tuple[int, list[int]]]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {}
    uses: dict[Key, list[int]] = {}
    for _, members in batches:
        for i in members:
            if _cacheable(world, i):
                uses.setdefault(_key(world, i), []).append(i)
            else:
                tally, tokens = _tally(tallies, world, i)
                tally.fresh += tokens
    for group in uses.values():
        times = sorted(_finish(world, i) for i in group)
        ordered = sorted(group, key=lambda i: _finish(world, i))
        for start, end in _runs(times):
            ttl = FIVE_MINUTES if _longest_gap(times[start:end]) <= FIVE_MINUTES else ONE_HOUR
            for n, i in enumerate(ordered[start:end]):
                tally, tokens = _tally(tallies, world, i)
                if end - start == 1:
                    tally.fresh += tokens  # nobody would read a write: fresh input is cheaper
                elif n > 0:
                    tally.reads += tokens
                elif ttl == FIVE_MINUTES:
                    tally.writes_5m += tokens
                else:
                    tally.writes_1h += tokens
    return tallies


def _runs(times: list[float]) -> list[tuple[int, int]]:
    """[start, end) of each run of uses no more than an hour apart."""
    runs, start = [], 0
    for n in range(1, len(times) + 1):
        if n == len(times) or times[n] - times[n - 1] > ONE_HOUR:
            runs.append((start, n))
            start = n
    return runs


def _longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


__all__ = ["CACHE_POLICIES", "CacheResult", "simulate_cache"]
