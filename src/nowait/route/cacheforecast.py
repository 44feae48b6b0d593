"""What cache planning is expected to save, from the hit rates this account really got.

The planning model (`cacheplan`) expects one 1-hour write of a group's prefix and a read for
every other request. What happens is measured in the store: of the prompt tokens that went
through the cache in batches (1-hour and 5-minute writes, reads), the share that were reads.
That *read share* is what a forecast needs: a prefix of P tokens sent N times under planning
costs N × P × (share × read rate + (1 - share) × 1-hour write rate). With enough history (per
workload and model, else per model) the share is learned; else the planning model's own
expectation stands in. Pure: the history comes in as the store's usage rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from nowait.route.cacheplan import CACHE_MIN_TOKENS, GroupCost, batch_rates
from nowait.sort.classify import Verdict
from nowait.sort.pricing import MILLION, PriceTable
from nowait.sort.worksheet import WorksheetResult
from nowait.store import UsageRow
from nowait.types import Tier, Usage

MIN_HISTORY = 50
"""Batch requests (of usage rows with cache traffic) before their read share is trusted over
the planning model's."""
HOURS_PER_MONTH = 730
"""365 × 24 / 12. A primed 1-hour entry lives an hour from its last use, so under planning one
prefix is written at most once an hour: at most this many writes a month."""


@dataclass(frozen=True)
class ReadShare:
    """Of the prefix tokens that go through the cache, the share that is read."""

    share: Decimal
    source: str
    """"planning model", or where it was learned: "learned: WORKLOAD on MODEL (N requests)"."""

    @property
    def learned(self) -> bool:
        return self.source != "planning model"


def read_share_of(usage: Usage) -> Decimal | None:
    """Reads over reads and writes (None: no cache traffic)."""
    through = usage.cache_read_tokens + usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
    return Decimal(usage.cache_read_tokens) / through if through else None


@dataclass(frozen=True)
class _Seen:
    usage: Usage = field(default_factory=Usage)
    requests: int = 0

    def __add__(self, row: UsageRow) -> _Seen:
        return _Seen(self.usage + row.usage, self.requests + row.requests)


@dataclass(frozen=True)
class History:
    """Batch cache traffic the store has seen, per (workload, model) and per model."""

    by_workload: dict[tuple[str, str], _Seen]
    by_model: dict[str, _Seen]

    def read_share(self, model: str, workload: str | None, expected: Decimal) -> ReadShare:
        """The workload's own share on this model with enough history, else the model's, else
        the planning model's `expected`."""
        candidates = []
        if workload is not None:
            candidates.append((self.by_workload.get((workload, model)), f"{workload} on {model}"))
        candidates.append((self.by_model.get(model), model))
        for seen, where in candidates:
            share = read_share_of(seen.usage) if seen is not None else None
            if seen is not None and share is not None and seen.requests >= MIN_HISTORY:
                return ReadShare(share, f"learned: {where} ({seen.requests:,} requests)")
        return ReadShare(expected, "planning model")


NO_HISTORY = History({}, {})


def learn(rows: Iterable[UsageRow]) -> History:
    """The history of the store's usage rows (`Store.usage_rows()`): batch rows with cache
    traffic only, since planning is about batches."""
    by_workload: dict[tuple[str, str], _Seen] = {}
    by_model: dict[str, _Seen] = {}
    for row in rows:
        if row.tier is not Tier.BATCH or read_share_of(row.usage) is None:
            continue
        if row.workload is not None:
            key = (row.workload, row.model)
            by_workload[key] = by_workload.get(key, _Seen()) + row
        by_model[row.model] = by_model.get(row.model, _Seen()) + row
    return History(by_workload, by_model)


@dataclass(frozen=True)
class PrefixForecast:
    """A prefix sent `requests` times in batches: its input cost without planning and with
    it at the read share given (USD; None: the model has no price)."""

    model: str
    requests: int
    prefix_tokens: int
    read_share: ReadShare
    plain: Decimal | None
    planned: Decimal | None

    @property
    def cacheable(self) -> bool:
        return self.prefix_tokens >= CACHE_MIN_TOKENS

    @property
    def pays(self) -> bool:
        return self.plain is not None and self.planned is not None and self.planned < self.plain

    @property
    def adds(self) -> Decimal | None:
        """What planning saves (0 where it does not pay: nowait would not plan)."""
        if self.plain is None or self.planned is None:
            return None
        return max(Decimal(0), self.plain - self.planned)


def forecast_prefix(
    model: str,
    requests: int,
    prefix_tokens: int,
    prompt_tokens: int,
    prices: PriceTable,
    share: ReadShare,
) -> PrefixForecast:
    """The prefix's batch input cost, plain and planned at `share`. A prefix too short to
    cache costs the same either way. `prompt_tokens` (one request's whole prompt) picks
    long-context rates."""
    rates = batch_rates(prices, model, prompt_tokens)
    if rates is None:
        return PrefixForecast(model, requests, prefix_tokens, share, None, None)
    tokens = Decimal(requests) * Decimal(prefix_tokens) / MILLION
    plain = tokens * rates.input
    if prefix_tokens < CACHE_MIN_TOKENS or requests == 0:
        return PrefixForecast(model, requests, prefix_tokens, share, plain, plain)
    per_token = share.share * rates.cache_read + (1 - share.share) * rates.cache_write_1h
    return PrefixForecast(model, requests, prefix_tokens, share, plain, tokens * per_token)


def group_share(members: int) -> Decimal:
    """The planning model's read share for one primed group: one write, members - 1 reads."""
    return Decimal(members - 1) / Decimal(members) if members else Decimal(0)


def monthly_share(requests_per_month: int) -> Decimal:
    """The planning model's read share for a month of one prefix: at most one 1-hour write an
    hour (`HOURS_PER_MONTH`), every other request a read."""
    writes = min(requests_per_month, HOURS_PER_MONTH)
    if not requests_per_month:
        return Decimal(0)
    return Decimal(requests_per_month - writes) / requests_per_month


def forecast_monthly(
    workload: str,
    model: str,
    requests_per_month: int,
    prompt_tokens: int,
    prefix_tokens: int,
    prices: PriceTable,
    history: History = NO_HISTORY,
) -> PrefixForecast:
    """What planning would add to a month of a batch workload whose requests share a prefix
    of `prefix_tokens` (of `prompt_tokens` each): learned read share, else the model's."""
    expected = monthly_share(requests_per_month)
    share = history.read_share(model, workload, Decimal(expected))
    return forecast_prefix(model, requests_per_month, prefix_tokens, prompt_tokens, prices, share)


@dataclass(frozen=True)
class WorkloadPlan:
    """What cache planning would add to one batch workload (one model of it), and where the
    size of its shared prefix comes from."""

    workload: str
    forecast: PrefixForecast
    basis: str


def plan_workload(
    workload: str,
    model: str,
    requests_per_month: int,
    prompt_tokens: int,
    prefix: tuple[Decimal, str] | None,
    prices: PriceTable,
    history: History = NO_HISTORY,
) -> WorkloadPlan:
    """`prefix`: the share of each prompt the requests share, and where that share comes from
    (None: not known, so no prefix to plan)."""
    share, basis = prefix if prefix is not None else (Decimal(0), "no shared prefix known")
    tokens = int(share * prompt_tokens)
    forecast = forecast_monthly(
        workload, model, requests_per_month, prompt_tokens, tokens, prices, history
    )
    return WorkloadPlan(workload, forecast, basis)


def worksheet_plans(
    result: WorksheetResult, prices: PriceTable, history: History = NO_HISTORY
) -> list[WorkloadPlan]:
    """Each batch workload's (or split's deferred part's) plan. The prefix is the share of the
    prompt a stable prefix could serve (`cacheable_share`), else what the cache serves today
    (`cache_share`)."""
    out = []
    for row in result.rows:
        verdict, w = row.classification.verdict, row.workload
        part = w.deferred if verdict is Verdict.SPLIT else w.part
        if part is None or verdict not in (Verdict.BATCH, Verdict.SPLIT):
            continue
        prefix = None
        if w.cacheable_share:
            prefix = (w.cacheable_share, "cacheable_share")
        elif part.cache_share:
            prefix = (part.cache_share, "cache_share")
        requests, prompt = part.requests_per_month, part.avg_input_tokens
        out.append(plan_workload(w.name, part.model, requests, prompt, prefix, prices, history))
    return out


@dataclass(frozen=True)
class GroupForecast:
    """A prefix group of `nowait plan` with its expected cost at the read share this account
    got (the planning model's where the store has too little history)."""

    cost: GroupCost
    prefix: PrefixForecast

    @property
    def expected(self) -> Decimal | None:
        """The group's batch input cost, planned as nowait plans it, at the read share."""
        plain, prefix = self.cost.plain, self.prefix
        if not self.cost.planned or plain is None:
            return plain
        if prefix.plain is None or prefix.planned is None:
            return None
        return plain - prefix.plain + prefix.planned


def forecast_groups(
    costs: Sequence[GroupCost],
    workloads: Sequence[str | None],
    prices: PriceTable,
    history: History = NO_HISTORY,
) -> list[GroupForecast]:
    """Each row's forecast; `workloads`: each request's workload, by the index `group`
    gave its members (a row of one workload learns from that workload first). The tokens a
    row writes or reads are priced at the read share; the planning model's share is the row's
    own (one write, every other request a read: (n-1)/n for a group of n)."""
    out = []
    for cost in costs:
        g = cost.group
        names = {workloads[i] for i in g.members}
        workload = names.pop() if len(names) == 1 else None
        share = history.read_share(g.model, workload, planned_share(cost))
        out.append(GroupForecast(cost, _forecast_cached(cost, share)))
    return out


def planned_share(cost: GroupCost) -> Decimal:
    """The read share of a row's cache traffic as the router runs it (no traffic: a group's
    planning-model share)."""
    traffic = cost.traffic
    if not traffic.cached:
        return group_share(len(cost.group.members))
    return Decimal(traffic.read) / Decimal(traffic.cached)


def _forecast_cached(cost: GroupCost, share: ReadShare) -> PrefixForecast:
    """The tokens the row writes or reads, plain and at `share`, at the row's rates."""
    g, cached, rates = cost.group, cost.traffic.cached, cost.rates
    if rates is None:
        return PrefixForecast(g.model, len(g.members), g.tokens, share, None, None)
    tokens = Decimal(cached) / MILLION
    per_token = share.share * rates.cache_read + (1 - share.share) * rates.cache_write_1h
    return PrefixForecast(
        g.model, len(g.members), g.tokens, share, tokens * rates.input, tokens * per_token
    )


__all__ = [
    "HOURS_PER_MONTH",
    "MIN_HISTORY",
    "NO_HISTORY",
    "GroupForecast",
    "History",
    "PrefixForecast",
    "ReadShare",
    "WorkloadPlan",
    "forecast_groups",
    "forecast_monthly",
    "forecast_prefix",
    "group_share",
    "learn",
    "monthly_share",
    "plan_workload",
    "planned_share",
    "read_share_of",
    "worksheet_plans",
]
